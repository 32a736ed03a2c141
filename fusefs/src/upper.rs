//! The writable upper directory: a plain tree mirroring the merged paths, plus the records a
//! plain tree cannot hold.
//!
//! ```text
//! upper/
//!   etc/hosts                 a changed or new file
//!   etc/.wh.motd              whiteout: the lower etc/motd is deleted
//!   opt/.wh..wh..opq          opaque: nothing of the lower opt/ shows through
//!   .wh..wh..lazyfs.work/     scratch for atomic copy-up (hidden: `.wh.` names never show,
//!   .wh..wh..lazyfs.lock      and `.wh..wh.` ones cannot name an image entry); the lock is
//!                             held by the one server using this upper directory
//! ```
//!
//! Markers use the OCI layer names, so an upper directory is already a layer changeset. What the
//! upper file itself cannot say lives in the xattr `user.lazyfs.meta`: owner ids when not root,
//! the lower content of a metadata-only copy-up (`content`, `size`), and device numbers of a
//! device copied up without the privilege to mknod. Extended attributes the merged view shows are
//! stored under `user.lazyfs.x.<name>`, so any name can be kept without privilege.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{self, FileStat};

use crate::lower::Kind;

/// Prefix of whiteout and other marker names; such names are never shown.
pub const WH: &str = ".wh.";
/// Opaque-directory marker.
pub const OPAQUE: &str = ".wh..wh..opq";
/// Scratch directory for copy-up, inside the upper root.
pub const WORK: &str = ".wh..wh..lazyfs.work";
/// Lock file the serving process holds, inside the upper root.
pub const LOCK: &str = ".wh..wh..lazyfs.lock";
/// The xattr holding [`Meta`].
pub const META: &str = "user.lazyfs.meta";
/// Prefix under which shown xattrs are stored.
pub const XATTR_PREFIX: &str = "user.lazyfs.x.";

/// True for names reserved for markers.
pub fn reserved(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH.as_bytes())
}

/// What an upper entry records beyond its own inode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Metadata-only copy-up: the data is still this lower content.
    pub content: Option<String>,
    pub size: Option<u64>,
    /// A special file (device, fifo, socket) kept as an empty regular file, because without
    /// privilege the upper filesystem can neither make devices nor hold xattrs on specials.
    pub dev: Option<(Kind, u32, u32)>,
}

impl Meta {
    pub fn is_empty(&self) -> bool {
        *self == Meta::default()
    }

    pub fn encode(&self) -> String {
        let mut out = String::from("v1");
        if let Some(u) = self.uid {
            out.push_str(&format!(" uid={u}"));
        }
        if let Some(g) = self.gid {
            out.push_str(&format!(" gid={g}"));
        }
        if let Some(c) = &self.content {
            out.push_str(&format!(" content={c}"));
        }
        if let Some(s) = self.size {
            out.push_str(&format!(" size={s}"));
        }
        if let Some((k, ma, mi)) = self.dev {
            let t = match k {
                Kind::BlockDevice => 'b',
                Kind::Fifo => 'p',
                Kind::Socket => 's',
                _ => 'c',
            };
            out.push_str(&format!(" dev={t},{ma},{mi}"));
        }
        out
    }

    pub fn decode(raw: &[u8]) -> Meta {
        let mut m = Meta::default();
        for field in String::from_utf8_lossy(raw).split_whitespace() {
            let Some((k, v)) = field.split_once('=') else {
                continue;
            };
            match k {
                "uid" => m.uid = v.parse().ok(),
                "gid" => m.gid = v.parse().ok(),
                "content" => m.content = Some(v.to_owned()),
                "size" => m.size = v.parse().ok(),
                "dev" => {
                    let p: Vec<&str> = v.split(',').collect();
                    if let [t, ma, mi] = p.as_slice() {
                        let kind = match *t {
                            "b" => Kind::BlockDevice,
                            "p" => Kind::Fifo,
                            "s" => Kind::Socket,
                            _ => Kind::CharDevice,
                        };
                        if let (Ok(ma), Ok(mi)) = (ma.parse(), mi.parse()) {
                            m.dev = Some((kind, ma, mi));
                        }
                    }
                }
                _ => {}
            }
        }
        m
    }
}

/// A directory's upper listing: shown names, whiteouts, and the opaque flag.
#[derive(Debug, Default)]
pub struct Listing {
    pub names: Vec<OsString>,
    pub whiteouts: std::collections::HashSet<OsString>,
    pub opaque: bool,
}

/// The upper directory.
#[derive(Debug)]
pub struct Upper {
    root: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Upper {
    /// Opens (creating if needed) an upper directory.
    pub fn open(root: &Path) -> io::Result<Upper> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let lock = match lock(&root)? {
            Some(l) => l,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "upper directory {} is in use by another lazyfs mount",
                        root.display()
                    ),
                ))
            }
        };
        let work = root.join(WORK);
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        std::fs::create_dir(&work)?;
        Ok(Upper { root, _lock: lock })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Absolute path of a merged path.
    pub fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// A fresh scratch path on the upper filesystem.
    pub fn scratch(&self, tag: u64) -> PathBuf {
        self.root.join(WORK).join(format!("{tag:x}"))
    }

    pub fn lstat(&self, rel: &Path) -> io::Result<Option<FileStat>> {
        match stat::lstat(&self.abs(rel)) {
            Ok(s) => Ok(Some(s)),
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn marker(&self, dir: &Path, name: &OsStr) -> PathBuf {
        let mut m = OsString::from(WH);
        m.push(name);
        self.abs(dir).join(m)
    }

    pub fn has_whiteout(&self, dir: &Path, name: &OsStr) -> bool {
        stat::lstat(&self.marker(dir, name)).is_ok()
    }

    /// True when `name` is short enough to carry a whiteout marker.
    pub fn can_whiteout(name: &OsStr) -> bool {
        name.len() + WH.len() <= 255
    }

    pub fn add_whiteout(&self, dir: &Path, name: &OsStr) -> io::Result<()> {
        if !Upper::can_whiteout(name) {
            // An image name of over 251 bytes cannot be marked deleted.
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        match std::fs::File::create_new(self.marker(dir, name)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes a whiteout; true if there was one.
    pub fn remove_whiteout(&self, dir: &Path, name: &OsStr) -> io::Result<bool> {
        if !Upper::can_whiteout(name) {
            return Ok(false);
        }
        match std::fs::remove_file(self.marker(dir, name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn is_opaque(&self, dir: &Path) -> bool {
        stat::lstat(&self.abs(dir).join(OPAQUE)).is_ok()
    }

    pub fn set_opaque(&self, dir: &Path) -> io::Result<()> {
        match std::fs::File::create_new(self.abs(dir).join(OPAQUE)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn list(&self, dir: &Path) -> io::Result<Listing> {
        let mut out = Listing::default();
        for e in std::fs::read_dir(self.abs(dir))? {
            let name = e?.file_name();
            let bytes = name.as_bytes();
            if bytes == OPAQUE.as_bytes() {
                out.opaque = true;
            } else if bytes == WORK.as_bytes() || bytes == LOCK.as_bytes() {
            } else if let Some(hidden) = bytes.strip_prefix(WH.as_bytes()) {
                out.whiteouts.insert(OsStr::from_bytes(hidden).to_owned());
            } else {
                out.names.push(name);
            }
        }
        Ok(out)
    }

    /// Removes every marker in a directory, leaving it empty if it showed nothing.
    pub fn clear_markers(&self, dir: &Path) -> io::Result<()> {
        for e in std::fs::read_dir(self.abs(dir))? {
            let e = e?;
            let name = e.file_name();
            if reserved(&name)
                && name.as_bytes() != WORK.as_bytes()
                && name.as_bytes() != LOCK.as_bytes()
            {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }
}

/// Takes the lock of the upper directory at `root` without waiting: `None` when a live server
/// holds it.
pub fn lock(root: &Path) -> io::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(LOCK))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e.into()),
    }
}

/// Reads `user.lazyfs.meta` of an upper path; empty when absent.
pub fn read_meta(path: &Path) -> io::Result<Meta> {
    match get_xattr(path, META)? {
        Some(v) => Ok(Meta::decode(&v)),
        None => Ok(Meta::default()),
    }
}

/// Writes (or, when empty, removes) `user.lazyfs.meta`.
pub fn write_meta(path: &Path, meta: &Meta) -> io::Result<()> {
    if meta.is_empty() {
        return with_owner_write(path, || match rustix::fs::lremovexattr(path, META) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
            Err(e) => Err(e.into()),
        });
    }
    let value = meta.encode();
    with_owner_write(path, || {
        rustix::fs::lsetxattr(
            path,
            META,
            value.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(Into::into)
    })
}

/// Runs an xattr change; when the file's mode shuts its owner out of writing (so user xattrs
/// are refused), runs it again with owner write added for the moment.
pub fn with_owner_write<T>(path: &Path, op: impl Fn() -> io::Result<T>) -> io::Result<T> {
    use std::os::unix::fs::PermissionsExt;
    match op() {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            let m = std::fs::symlink_metadata(path)?;
            if m.file_type().is_symlink() {
                return Err(e);
            }
            let before = m.permissions();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(before.mode() | 0o200))?;
            let r = op();
            std::fs::set_permissions(path, before)?;
            r
        }
        r => r,
    }
}

/// One xattr of a path, `None` when absent.
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 16 => {
                let need = rustix::fs::lgetxattr(path, name, &mut [0u8; 0][..]).unwrap_or(0);
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Names of the xattrs a path shows (stored under [`XATTR_PREFIX`]).
pub fn list_shown_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 20 => {
                buf.resize(buf.len() * 4, 0);
            }
            Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::PERM) => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        }
    };
    Ok(buf[..n]
        .split(|&b| b == 0)
        .filter_map(|n| n.strip_prefix(XATTR_PREFIX.as_bytes()))
        .filter(|n| !n.is_empty())
        .map(|n| n.to_vec())
        .collect())
}

/// The stored name of a shown xattr.
pub fn stored_name(name: &OsStr) -> OsString {
    let mut s = OsString::from(XATTR_PREFIX);
    s.push(name);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let m = Meta {
            uid: Some(0),
            gid: Some(42),
            content: Some("sha256:ab".into()),
            size: Some(7),
            dev: Some((Kind::Fifo, 0, 0)),
        };
        assert_eq!(Meta::decode(m.encode().as_bytes()), m);
        assert_eq!(Meta::decode(b"v1 junk uid=x"), Meta::default());
    }

    #[test]
    fn listing_hides_markers() {
        let dir = tempfile::tempdir().unwrap();
        let up = Upper::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("a"), "").unwrap();
        up.add_whiteout(Path::new(""), OsStr::new("b")).unwrap();
        up.set_opaque(Path::new("")).unwrap();
        let l = up.list(Path::new("")).unwrap();
        assert_eq!(l.names, [OsString::from("a")]);
        assert!(l.whiteouts.contains(OsStr::new("b")));
        assert!(l.opaque);
        assert!(up.remove_whiteout(Path::new(""), OsStr::new("b")).unwrap());
        assert!(!up.has_whiteout(Path::new(""), OsStr::new("b")));
    }
}
