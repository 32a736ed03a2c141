//! Filesystem checks run against a mounted tree, by the test process or as another user (through
//! `lazyrun-testkit fscheck ...`): a tree walk to compare with another unpacker, the
//! copy-on-write operations and their persistence, and a POSIX errno and permission suite.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Result};
use nix::errno::Errno;

use crate::build::{Compression, Image, Layer, LayerBuilder};

/// One line per entry below `root`, sorted by path: everything a tree comparison looks at.
/// Hardlinked files name the first path of their group; directories' times are left out
/// (their listing changes them), so is the root itself.
pub fn walk(root: &Path) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    collect(root, root, &mut paths)?;
    paths.sort();
    let mut groups: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut out = Vec::new();
    for rel in paths {
        let full = root.join(&rel);
        let m = fs::symlink_metadata(&full)?;
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "dev"
        };
        let mut line = format!(
            "{rel} {kind} mode={:o} uid={} gid={}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        );
        match kind {
            "file" => {
                let group = groups
                    .entry((m.dev(), m.ino()))
                    .or_insert_with(|| rel.clone());
                // A file the walking user may not read shows as `sha=-`.
                let mut data = Vec::new();
                let sha = match File::open(&full) {
                    Ok(mut f) => {
                        f.read_to_end(&mut data)?;
                        crate::build::sha256(&data)[..16].to_owned()
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => "-".into(),
                    Err(e) => return Err(e.into()),
                };
                line.push_str(&format!(
                    " size={} mtime={} nlink={} link-group={} sha={sha}",
                    m.size(),
                    m.mtime(),
                    m.nlink(),
                    group,
                ));
            }
            "symlink" => line.push_str(&format!(" target={}", fs::read_link(&full)?.display())),
            "dev" => line.push_str(&format!(" rdev={:x} mtime={}", m.rdev(), m.mtime())),
            "fifo" => line.push_str(&format!(" mtime={}", m.mtime())),
            _ => {}
        }
        if kind != "symlink" {
            let mut names = xattr_names(&full);
            names.retain(|n| n.starts_with("user.") || n.starts_with("security.capability"));
            names.sort();
            for n in names {
                let v = rustix::fs::lgetxattr(&full, n.as_str(), &mut [0u8; 256][..]).ok();
                line.push_str(&format!(" xattr:{n}={}", v.unwrap_or(0)));
            }
        }
        out.push(line);
    }
    Ok(out)
}

/// Paths below `dir`; a directory the walking user may not list contributes only itself.
fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let e = e?;
        let rel = e.path().strip_prefix(root)?.to_string_lossy().into_owned();
        out.push(rel);
        if e.file_type()?.is_dir() {
            collect(root, &e.path(), out)?;
        }
    }
    Ok(())
}

fn xattr_names(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::llistxattr(path, &mut buf[..]) {
        Ok(n) => buf[..n]
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `len` bytes that do not compress (xorshift), the same every time.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Bytes of the large file in [`cow_image`]: 3 MiB of a repeating pattern.
pub fn big_data() -> Vec<u8> {
    (0..3 << 20).map(|i: u32| (i % 251) as u8).collect()
}

/// The image the copy-on-write checks expect: two layers, the second changing the first.
pub fn cow_image() -> Image {
    let base = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/motd", b"hello\n", 0o644)
        .hardlink("etc/motd-link", "etc/motd")
        .symlink("etc/link", "motd")
        .file("etc/big", &big_data(), 0o644)
        .file("etc/owned", b"o", 0o644)
        .file("etc/su", b"su", 0o4755)
        .file("etc/ro", b"read-only", 0o444)
        .file_with_pax(
            "etc/xattr-file",
            b"x",
            0o644,
            &[("SCHILY.xattr.user.test", b"1")],
        )
        .dir("data", 0o755)
        .file("data/a", b"a", 0o644)
        .file("data/b", b"b", 0o644)
        .dir("data/sub", 0o755)
        .file("data/sub/c", b"c", 0o644)
        .dir("emptydir", 0o755)
        .dir("tmp", 0o1777)
        .dir("run", 0o755)
        .fifo("run/fifo")
        .dir("old", 0o755)
        .file("old/keep", b"k", 0o644)
        .finish();
    let top = LayerBuilder::new()
        .file("etc/motd", b"hello again\n", 0o644)
        .hardlink("etc/motd-link", "etc/motd")
        .whiteout("data/b-none")
        .finish();
    Image::new(vec![
        Layer::new(base, Compression::Gzip),
        Layer::new(top, Compression::Gzip),
    ])
}

/// Collects failed expectations instead of stopping at the first.
#[derive(Default)]
pub struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(format!("{what}: {}", detail()));
        }
    }

    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        let ok = got == want;
        self.check(what, ok, || format!("got {got:?}, want {want:?}"));
    }

    /// An operation must fail with exactly this errno.
    fn errno<T: std::fmt::Debug>(&mut self, what: &str, r: std::io::Result<T>, want: Errno) {
        match r {
            Ok(v) => self
                .failed
                .push(format!("{what}: succeeded ({v:?}), want {want}")),
            Err(e) => {
                let got = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                self.eq(what, got, want);
            }
        }
    }

    fn ok<T>(&mut self, what: &str, r: std::io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                self.passed += 1;
                Some(v)
            }
            Err(e) => {
                self.failed.push(format!("{what}: {e}"));
                None
            }
        }
    }

    /// Ok when nothing failed; else every failure, one per line.
    pub fn finish(self) -> Result<usize> {
        if self.failed.is_empty() {
            Ok(self.passed)
        } else {
            bail!(
                "{} of {} checks failed:\n{}",
                self.failed.len(),
                self.failed.len() + self.passed,
                self.failed.join("\n")
            )
        }
    }
}

fn nerr(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn read(p: &Path) -> std::io::Result<Vec<u8>> {
    fs::read(p)
}

fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every copy-on-write operation on a fresh mount of [`cow_image`]. `privileged` says whether
/// the caller may make device nodes (real root).
pub fn cow(m: &Path, privileged: bool) -> Result<usize> {
    let mut c = Checks::default();
    // create + write
    c.ok("create new.txt", fs::write(m.join("new.txt"), b"new"));
    c.eq(
        "read new.txt",
        read(&m.join("new.txt")).ok(),
        Some(b"new".to_vec()),
    );
    // write to a lower file (copy-up); its hardlink follows
    if let Some(mut f) = c.ok(
        "open etc/motd for append",
        OpenOptions::new().append(true).open(m.join("etc/motd")),
    ) {
        c.ok("append to etc/motd", f.write_all(b"more\n"));
    }
    c.eq(
        "etc/motd after append",
        read(&m.join("etc/motd")).ok(),
        Some(b"hello again\nmore\n".to_vec()),
    );
    c.eq(
        "etc/motd-link follows its hardlink",
        read(&m.join("etc/motd-link")).ok(),
        Some(b"hello again\nmore\n".to_vec()),
    );
    let (a, b) = (
        fs::metadata(m.join("etc/motd")).ok(),
        fs::metadata(m.join("etc/motd-link")).ok(),
    );
    c.eq(
        "hardlinks share an inode after copy-up",
        a.as_ref().map(|m| (m.ino(), m.nlink())),
        b.as_ref().map(|m| (m.ino(), 2)),
    );
    // truncate a large lower file
    c.ok(
        "truncate etc/big",
        OpenOptions::new()
            .write(true)
            .open(m.join("etc/big"))
            .and_then(|f| f.set_len(1000)),
    );
    c.eq(
        "etc/big after truncate",
        read(&m.join("etc/big")).ok(),
        Some(big_data()[..1000].to_vec()),
    );
    // mkdir, rmdir
    c.ok("mkdir newdir", fs::create_dir(m.join("newdir")));
    c.ok("mkdir newdir/x", fs::create_dir(m.join("newdir/x")));
    c.ok("mkdir rmme", fs::create_dir(m.join("rmme")));
    c.ok("rmdir rmme", fs::remove_dir(m.join("rmme")));
    c.ok("rmdir lower emptydir", fs::remove_dir(m.join("emptydir")));
    // unlink, rename of files and directories from the image
    c.ok("unlink lower data/b", fs::remove_file(m.join("data/b")));
    c.ok(
        "rename data/a",
        fs::rename(m.join("data/a"), m.join("data/a2")),
    );
    c.ok(
        "rename lower dir data/sub",
        fs::rename(m.join("data/sub"), m.join("newdir/sub2")),
    );
    c.eq(
        "data after unlink and renames",
        names(&m.join("data")),
        vec!["a2".to_owned()],
    );
    c.eq(
        "moved dir keeps its files",
        read(&m.join("newdir/sub2/c")).ok(),
        Some(b"c".to_vec()),
    );
    c.ok(
        "rename lower dir old over nothing",
        fs::rename(m.join("old"), m.join("renamed")),
    );
    // symlink, link
    c.ok(
        "symlink",
        std::os::unix::fs::symlink("new.txt", m.join("sl")),
    );
    c.eq(
        "readlink",
        fs::read_link(m.join("sl")).ok(),
        Some("new.txt".into()),
    );
    c.ok(
        "link",
        fs::hard_link(m.join("new.txt"), m.join("new-link.txt")),
    );
    c.ok(
        "link to a lower file",
        fs::hard_link(m.join("etc/owned"), m.join("owned-link")),
    );
    let nl = fs::metadata(m.join("new-link.txt")).ok();
    c.eq(
        "new link shares inode",
        nl.as_ref().map(|m| m.nlink()),
        Some(2),
    );
    // chmod, chown, utimens
    c.ok(
        "chmod etc/motd",
        fs::set_permissions(m.join("etc/motd"), fs::Permissions::from_mode(0o600)),
    );
    c.ok(
        "chown etc/owned",
        std::os::unix::fs::lchown(m.join("etc/owned"), Some(1234), Some(2345)),
    );
    c.ok(
        "utimens data/a2",
        File::open(m.join("data/a2")).and_then(|f| {
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        }),
    );
    c.eq(
        "utimens sets mtime",
        fs::metadata(m.join("data/a2")).ok().map(|m| m.mtime()),
        Some(1_000_000_000),
    );
    c.ok(
        "utimens renamed/keep (from the image)",
        File::open(m.join("renamed/keep")).and_then(|f| {
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_234_567_890))
        }),
    );
    // xattrs
    c.ok(
        "setxattr",
        rustix::fs::lsetxattr(
            m.join("etc/motd"),
            "user.foo",
            b"bar",
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(Into::into),
    );
    c.ok(
        "removexattr of an image xattr",
        rustix::fs::lremovexattr(m.join("etc/xattr-file"), "user.test").map_err(Into::into),
    );
    // mknod, mkfifo
    c.ok(
        "mkfifo",
        nix::unistd::mkfifo(
            &m.join("myfifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .map_err(nerr),
    );
    let dev = nix::sys::stat::mknod(
        &m.join("mydev"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(1, 3),
    )
    .map_err(nerr);
    if privileged {
        c.ok("mknod char device", dev);
    } else {
        c.errno("mknod char device unprivileged", dev, Errno::EPERM);
    }
    // fallocate, fsync
    if let Some(f) = c.ok("create falloc", File::create(m.join("falloc"))) {
        c.ok(
            "fallocate",
            nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, 1 << 20)
                .map_err(nerr),
        );
        c.ok("fsync", f.sync_all());
    }
    // set-id bits and owner-read-only modes survive copy-up, without privilege too
    c.ok(
        "rename setuid etc/su",
        fs::rename(m.join("etc/su"), m.join("etc/su2")),
    );
    c.eq(
        "etc/su2 keeps setuid",
        mode_of(&m.join("etc/su2")),
        Some(0o4755),
    );
    c.ok(
        "rename 0444 etc/ro",
        fs::rename(m.join("etc/ro"), m.join("etc/ro2")),
    );
    c.ok(
        "chmod 0444 etc/ro2",
        fs::set_permissions(m.join("etc/ro2"), fs::Permissions::from_mode(0o640)),
    );
    c.ok(
        "create a 0444 file",
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(m.join("readonly-new")),
    );
    c.eq(
        "readonly-new mode",
        mode_of(&m.join("readonly-new")),
        Some(0o444),
    );
    // a directory emptied while it is being listed, as `rm -r` does, ends empty
    c.ok("mkdir many", fs::create_dir(m.join("many")));
    for i in 0..1500 {
        let _ = fs::write(m.join(format!("many/file-{i:04}-{}", "x".repeat(40))), b"");
    }
    let mut removed = 0;
    if let Some(dir) = c.ok("list many", fs::read_dir(m.join("many"))) {
        for e in dir.flatten() {
            if fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    c.eq("removed while listing", removed, 1500);
    c.ok("rmdir many", fs::remove_dir(m.join("many")));
    // deleting a whole lower directory, then making one at the same name: it starts empty
    c.ok("rm -r data", fs::remove_dir_all(m.join("data")));
    c.ok("mkdir data again", fs::create_dir(m.join("data")));
    c.eq(
        "recreated data is empty",
        names(&m.join("data")),
        Vec::<String>::new(),
    );
    verify_into(m, privileged, &mut c);
    c.finish()
}

/// After a remount: every change [`cow`] made is still there.
pub fn verify(m: &Path, privileged: bool) -> Result<usize> {
    let mut c = Checks::default();
    verify_into(m, privileged, &mut c);
    c.finish()
}

fn verify_into(m: &Path, privileged: bool, c: &mut Checks) {
    let mut want = vec![
        "data",
        "etc",
        "falloc",
        "myfifo",
        "new-link.txt",
        "new.txt",
        "newdir",
        "owned-link",
        "readonly-new",
        "renamed",
        "run",
        "sl",
        "tmp",
    ];
    if privileged {
        want.push("mydev");
        want.sort();
    }
    c.eq(
        "root listing",
        names(m),
        want.iter().map(|s| s.to_string()).collect(),
    );
    c.eq(
        "new.txt",
        read(&m.join("new.txt")).ok(),
        Some(b"new".to_vec()),
    );
    c.eq(
        "etc/motd",
        read(&m.join("etc/motd")).ok(),
        Some(b"hello again\nmore\n".to_vec()),
    );
    c.eq(
        "etc/motd-link",
        read(&m.join("etc/motd-link")).ok(),
        Some(b"hello again\nmore\n".to_vec()),
    );
    let motd = fs::metadata(m.join("etc/motd")).ok();
    c.eq(
        "etc/motd mode",
        motd.as_ref().map(|m| m.mode() & 0o7777),
        Some(0o600),
    );
    c.eq(
        "etc/big size",
        fs::metadata(m.join("etc/big")).ok().map(|m| m.len()),
        Some(1000),
    );
    c.eq(
        "etc/owned owner",
        fs::metadata(m.join("etc/owned"))
            .ok()
            .map(|m| (m.uid(), m.gid())),
        Some((1234, 2345)),
    );
    c.eq(
        "owned-link shares etc/owned",
        fs::metadata(m.join("owned-link"))
            .ok()
            .map(|m| (m.uid(), m.nlink())),
        Some((1234, 2)),
    );
    c.eq(
        "renamed/keep mtime",
        fs::metadata(m.join("renamed/keep")).ok().map(|m| m.mtime()),
        Some(1_234_567_890),
    );
    c.eq(
        "newdir listing",
        names(&m.join("newdir")),
        vec!["sub2".into(), "x".into()],
    );
    c.eq(
        "newdir/sub2/c",
        read(&m.join("newdir/sub2/c")).ok(),
        Some(b"c".to_vec()),
    );
    c.eq(
        "renamed/keep",
        read(&m.join("renamed/keep")).ok(),
        Some(b"k".to_vec()),
    );
    c.eq("old is gone", m.join("old").exists(), false);
    c.eq("emptydir is gone", m.join("emptydir").exists(), false);
    c.eq(
        "sl",
        fs::read_link(m.join("sl")).ok(),
        Some("new.txt".into()),
    );
    c.eq(
        "new-link.txt nlink",
        fs::metadata(m.join("new-link.txt")).ok().map(|m| m.nlink()),
        Some(2),
    );
    let mut buf = [0u8; 16];
    let got = rustix::fs::lgetxattr(m.join("etc/motd"), "user.foo", &mut buf[..]);
    c.eq(
        "user.foo",
        got.ok().map(|n| buf[..n].to_vec()),
        Some(b"bar".to_vec()),
    );
    c.eq(
        "user.test removed",
        xattr_names(&m.join("etc/xattr-file")).contains(&"user.test".to_owned()),
        false,
    );
    let fifo = fs::symlink_metadata(m.join("myfifo")).ok();
    c.eq(
        "myfifo is a fifo 0640",
        fifo.map(|f| (f.mode() & libc::S_IFMT, f.mode() & 0o7777)),
        Some((libc::S_IFIFO, 0o640)),
    );
    if privileged {
        let dev = fs::symlink_metadata(m.join("mydev")).ok();
        c.eq(
            "mydev is char 1:3",
            dev.map(|d| (d.mode() & libc::S_IFMT, d.rdev())),
            Some((libc::S_IFCHR, nix::sys::stat::makedev(1, 3))),
        );
    }
    c.eq(
        "falloc size",
        fs::metadata(m.join("falloc")).ok().map(|m| m.len()),
        Some(1 << 20),
    );
    c.eq(
        "recreated data",
        names(&m.join("data")),
        Vec::<String>::new(),
    );
    c.eq("etc/su2 mode", mode_of(&m.join("etc/su2")), Some(0o4755));
    c.eq("etc/ro2 mode", mode_of(&m.join("etc/ro2")), Some(0o640));
    c.eq(
        "etc/ro2 data",
        read(&m.join("etc/ro2")).ok(),
        Some(b"read-only".to_vec()),
    );
    c.eq(
        "no marker shows",
        names(m).iter().any(|n| n.starts_with(".wh.")),
        false,
    );
}

/// Runs `f` with filesystem ids switched to `uid`/`gid` (dropping the filesystem capabilities
/// for the duration), then switches back.
fn as_fsid<T>(uid: u32, gid: u32, f: impl FnOnce() -> T) -> T {
    let old_gid = nix::unistd::setfsgid(gid.into());
    let old_uid = nix::unistd::setfsuid(uid.into());
    let r = f();
    nix::unistd::setfsuid(old_uid);
    nix::unistd::setfsgid(old_gid);
    r
}

fn mode_of(p: &Path) -> Option<u32> {
    fs::symlink_metadata(p).ok().map(|m| m.mode() & 0o7777)
}

/// Errno and permission behaviour of a local filesystem, in `m/posix` (run as root, or as root
/// of a user namespace that maps uids 1000-1002).
pub fn posix(m: &Path) -> Result<usize> {
    let mut c = Checks::default();
    let d = m.join("posix");
    fs::create_dir(&d)?;
    fs::write(d.join("f"), b"data")?;
    fs::create_dir(d.join("full"))?;
    fs::write(d.join("full/x"), b"")?;
    fs::create_dir(d.join("empty"))?;
    // ENOENT
    c.errno("open missing", File::open(d.join("missing")), Errno::ENOENT);
    c.errno(
        "unlink missing",
        fs::remove_file(d.join("missing")),
        Errno::ENOENT,
    );
    c.errno(
        "rmdir missing",
        fs::remove_dir(d.join("missing")),
        Errno::ENOENT,
    );
    c.errno(
        "stat under missing dir",
        fs::metadata(d.join("missing/x")),
        Errno::ENOENT,
    );
    c.errno(
        "rename missing",
        fs::rename(d.join("missing"), d.join("other")),
        Errno::ENOENT,
    );
    c.errno(
        "deleted lower file",
        fs::metadata(m.join("etc/gone-never")),
        Errno::ENOENT,
    );
    // EEXIST
    c.errno(
        "mkdir existing",
        fs::create_dir(d.join("full")),
        Errno::EEXIST,
    );
    c.errno(
        "mkdir over lower dir",
        fs::create_dir(m.join("etc")),
        Errno::EEXIST,
    );
    c.errno(
        "O_EXCL existing",
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(d.join("f")),
        Errno::EEXIST,
    );
    c.errno(
        "O_EXCL over lower file",
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.join("etc/motd")),
        Errno::EEXIST,
    );
    c.errno(
        "symlink over existing",
        std::os::unix::fs::symlink("x", d.join("f")),
        Errno::EEXIST,
    );
    c.errno(
        "link over existing",
        fs::hard_link(d.join("f"), d.join("full")),
        Errno::EEXIST,
    );
    c.errno(
        "RENAME_NOREPLACE",
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            d.join("f"),
            rustix::fs::CWD,
            d.join("full"),
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(Into::into),
        Errno::EEXIST,
    );
    // ENOTEMPTY
    c.errno(
        "rmdir non-empty",
        fs::remove_dir(d.join("full")),
        Errno::ENOTEMPTY,
    );
    c.errno(
        "rmdir non-empty lower",
        fs::remove_dir(m.join("etc")),
        Errno::ENOTEMPTY,
    );
    c.errno(
        "rename dir over non-empty dir",
        fs::rename(d.join("empty"), d.join("full")),
        Errno::ENOTEMPTY,
    );
    // EISDIR / ENOTDIR
    c.errno(
        "open dir for writing",
        OpenOptions::new().write(true).open(d.join("full")),
        Errno::EISDIR,
    );
    c.errno("unlink dir", fs::remove_file(d.join("full")), Errno::EISDIR);
    c.errno(
        "rename file over dir",
        fs::rename(d.join("f"), d.join("empty")),
        Errno::EISDIR,
    );
    c.errno("rmdir file", fs::remove_dir(d.join("f")), Errno::ENOTDIR);
    c.errno(
        "path through a file",
        fs::metadata(d.join("f/x")),
        Errno::ENOTDIR,
    );
    c.errno(
        "create under a file",
        File::create(d.join("f/x")),
        Errno::ENOTDIR,
    );
    c.errno(
        "rename dir over file",
        fs::rename(d.join("empty"), d.join("f")),
        Errno::ENOTDIR,
    );
    // ENAMETOOLONG
    let long = "n".repeat(256);
    c.errno(
        "create 256-byte name",
        File::create(d.join(&long)),
        Errno::ENAMETOOLONG,
    );
    c.errno(
        "stat 256-byte name",
        fs::metadata(d.join(&long)),
        Errno::ENAMETOOLONG,
    );
    c.ok("create 255-byte name", File::create(d.join(&long[..255])));
    // EINVAL; and no EXDEV inside one mount
    c.errno(
        "rename dir into itself",
        fs::rename(d.join("full"), d.join("full/sub")),
        Errno::EINVAL,
    );
    c.ok(
        "rename across directories",
        fs::rename(d.join("full/x"), d.join("empty/x")),
    );
    c.ok("rename lower dir", fs::rename(m.join("run"), d.join("run")));
    c.ok("rename back", fs::rename(d.join("run"), m.join("run")));
    c.ok(
        "rename over empty dir",
        fs::rename(d.join("full"), d.join("gone")),
    );
    c.ok(
        "rename lower file over lower file",
        fs::rename(m.join("etc/link"), m.join("etc/xattr-file")),
    );
    // Permission checks as an ordinary uid.
    fs::create_dir(d.join("locked"))?;
    fs::set_permissions(d.join("locked"), fs::Permissions::from_mode(0o700))?;
    fs::write(d.join("secret"), b"s")?;
    fs::set_permissions(d.join("secret"), fs::Permissions::from_mode(0o600))?;
    fs::write(d.join("ro"), b"r")?;
    fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o444))?;
    fs::write(d.join("sticky-theirs"), b"")?;
    std::os::unix::fs::lchown(d.join("sticky-theirs"), Some(1001), Some(1001))?;
    fs::create_dir(d.join("sticky"))?;
    fs::set_permissions(d.join("sticky"), fs::Permissions::from_mode(0o1777))?;
    fs::rename(d.join("sticky-theirs"), d.join("sticky/theirs"))?;
    as_fsid(1000, 1000, || {
        c.errno(
            "create in 0700 dir",
            File::create(d.join("locked/x")),
            Errno::EACCES,
        );
        c.errno(
            "stat in 0700 dir",
            fs::metadata(d.join("locked/x")),
            Errno::EACCES,
        );
        c.errno(
            "read 0600 file",
            File::open(d.join("secret")),
            Errno::EACCES,
        );
        c.errno(
            "write 0444 file",
            OpenOptions::new().write(true).open(d.join("ro")),
            Errno::EACCES,
        );
        c.errno(
            "write lower root-owned file",
            OpenOptions::new().write(true).open(m.join("etc/big")),
            Errno::EACCES,
        );
        c.errno(
            "chmod another's file",
            fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o777)),
            Errno::EPERM,
        );
        c.errno(
            "chown another's file",
            std::os::unix::fs::lchown(d.join("ro"), Some(1000), None),
            Errno::EPERM,
        );
        c.errno(
            "unlink another's file in a sticky dir",
            fs::remove_file(d.join("sticky/theirs")),
            Errno::EPERM,
        );
        c.ok(
            "create own file in sticky dir",
            fs::write(d.join("sticky/mine"), b""),
        );
        c.ok(
            "unlink own file in sticky dir",
            fs::remove_file(d.join("sticky/mine")),
        );
    });
    // set-user-ID cleared by a write from a non-owner-privileged writer and by chown
    fs::write(d.join("suid"), b"x")?;
    std::os::unix::fs::lchown(d.join("suid"), Some(1000), Some(1000))?;
    fs::set_permissions(d.join("suid"), fs::Permissions::from_mode(0o6755))?;
    as_fsid(1000, 1000, || {
        let w = OpenOptions::new()
            .write(true)
            .open(d.join("suid"))
            .and_then(|f| f.write_all_at(b"y", 1));
        c.ok("owner writes its setuid file", w);
    });
    c.eq(
        "write clears setuid and setgid",
        mode_of(&d.join("suid")),
        Some(0o755),
    );
    fs::set_permissions(d.join("suid"), fs::Permissions::from_mode(0o4755))?;
    std::os::unix::fs::lchown(d.join("suid"), Some(1002), None)?;
    c.eq("chown clears setuid", mode_of(&d.join("suid")), Some(0o755));
    // set-group-ID directories pass their group on
    fs::create_dir(d.join("sgid"))?;
    std::os::unix::fs::lchown(d.join("sgid"), None, Some(1234))?;
    fs::set_permissions(d.join("sgid"), fs::Permissions::from_mode(0o2775))?;
    fs::write(d.join("sgid/f"), b"")?;
    fs::create_dir(d.join("sgid/sub"))?;
    c.eq(
        "file in setgid dir takes its group",
        fs::metadata(d.join("sgid/f")).ok().map(|m| m.gid()),
        Some(1234),
    );
    c.eq(
        "dir in setgid dir is setgid",
        fs::metadata(d.join("sgid/sub"))
            .ok()
            .map(|m| (m.gid(), m.mode() & 0o2000)),
        Some((1234, 0o2000)),
    );
    // timestamps
    let t = |p: &Path| {
        fs::symlink_metadata(p)
            .map(|m| {
                (
                    m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                )
            })
            .unwrap_or((0, 0))
    };
    let (dm0, _) = t(&d);
    let (fm0, fc0) = t(&d.join("f"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    c.ok(
        "write",
        OpenOptions::new()
            .write(true)
            .open(d.join("f"))
            .and_then(|f| f.write_all_at(b"more", 4)),
    );
    let (fm1, fc1) = t(&d.join("f"));
    c.check(
        "write moves mtime and ctime",
        fm1 > fm0 && fc1 > fc0,
        || format!("mtime {fm0}->{fm1} ctime {fc0}->{fc1}"),
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    c.ok(
        "chmod",
        fs::set_permissions(d.join("f"), fs::Permissions::from_mode(0o640)),
    );
    let (fm2, fc2) = t(&d.join("f"));
    c.check("chmod moves ctime only", fm2 == fm1 && fc2 > fc1, || {
        format!("mtime {fm1}->{fm2} ctime {fc1}->{fc2}")
    });
    c.ok("create", fs::write(d.join("newer"), b""));
    let (dm1, _) = t(&d);
    c.check("create moves the parent's mtime", dm1 > dm0, || {
        format!("{dm0}->{dm1}")
    });
    let lower_m0 = t(&m.join("tmp")).0;
    std::thread::sleep(std::time::Duration::from_millis(20));
    c.ok("create in a lower dir", fs::write(m.join("tmp/x"), b""));
    let lower_m1 = t(&m.join("tmp")).0;
    c.check(
        "create moves a lower parent's mtime",
        lower_m1 > lower_m0,
        || format!("{lower_m0}->{lower_m1}"),
    );
    // a file unlinked while open keeps working through its descriptor and stays gone
    if let Some(f) = c.ok(
        "open then unlink",
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.join("doomed")),
    ) {
        c.ok("unlink open file", fs::remove_file(d.join("doomed")));
        c.ok("write after unlink", f.write_all_at(b"still", 0));
        c.ok(
            "fchmod after unlink",
            f.set_permissions(fs::Permissions::from_mode(0o600)),
        );
        c.eq(
            "fstat after unlink",
            f.metadata().ok().map(|m| m.len()),
            Some(5),
        );
        c.eq("unlinked file stays gone", d.join("doomed").exists(), false);
    }
    if let Some(f) = c.ok("open image file", File::open(m.join("etc/owned"))) {
        c.ok(
            "unlink open image file",
            fs::remove_file(m.join("etc/owned")),
        );
        let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
        c.eq(
            "unlinked image file stays gone",
            m.join("etc/owned").exists(),
            false,
        );
    }
    // names reserved for markers
    c.errno(
        "create .wh. name",
        File::create(d.join(".wh.x")),
        Errno::EINVAL,
    );
    c.eq(
        "no .wh. name ever shows",
        names(&d).iter().any(|n| n.as_bytes().starts_with(b".wh.")),
        false,
    );
    c.finish()
}
