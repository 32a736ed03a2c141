//! lazyfs against real FUSE mounts: the merged tree compared with umoci's unpack, every
//! copy-on-write operation as root and as an unprivileged user (persisting across remounts),
//! the POSIX errno suite, and the mount command's errors.

#![allow(clippy::unwrap_used)]

mod common;

use common::fuse::{self, Mounted, TestUser};
use common::*;
use std::path::Path;

/// An image exercising the layer rules: changed, deleted and replaced entries, an opaque
/// directory, hardlinks within and across layers, special files, owners and xattrs.
fn tree_image() -> Image {
    let l1 = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/changed", b"v1", 0o644)
        .file("etc/deleted", b"gone", 0o644)
        .file("etc/shadow", b"secret", 0o640)
        .file("etc/suid", b"s", 0o4755)
        .symlink("etc/link", "changed")
        .hardlink("etc/changed-hl", "etc/changed")
        .file("etc/keep", b"keep", 0o600)
        .hardlink("etc/keep-hl", "etc/keep")
        .file_with_pax(
            "etc/xattrs",
            b"x",
            0o644,
            &[("SCHILY.xattr.user.origin", b"l1")],
        )
        .dir("opq", 0o755)
        .file("opq/old1", b"1", 0o644)
        .dir("opq/olddir", 0o755)
        .file("opq/olddir/f", b"f", 0o644)
        .dir("wdir", 0o755)
        .file("wdir/f", b"f", 0o644)
        .dir("to-symlink", 0o755)
        .file("to-symlink/f", b"f", 0o644)
        .file("to-dir", b"file", 0o644)
        .dir("dev", 0o755)
        .char_device("dev/null", 1, 3)
        .fifo("dev/fifo")
        .owner(1000, 1000)
        .dir("home", 0o750)
        .file("home/user-file", b"mine", 0o600)
        .finish();
    let l2 = LayerBuilder::new()
        .file("etc/changed", b"version two", 0o600)
        .whiteout("etc/deleted")
        .whiteout("wdir")
        .opaque("opq")
        .file("opq/new", b"new", 0o644)
        .hardlink("etc/keep-hl2", "etc/keep")
        .symlink("to-symlink", "/etc")
        .dir("to-dir", 0o700)
        .file("to-dir/inside", b"in", 0o644)
        .finish();
    Image::new(vec![
        Layer::new(l1, Compression::Gzip),
        // umoci unpacks gzip layers only.
        Layer::new(l2, Compression::Gzip),
    ])
}

fn pushed(reg: &TestRegistry, name: &str, image: &Image) -> String {
    rt().block_on(Pusher::new(&reg.addr).image(name, image, Format::Oci))
        .unwrap();
    format!("{}/{name}", reg.addr)
}

fn mkdir(p: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(p).unwrap();
    p.to_owned()
}

#[test]
fn merged_tree_matches_umoci_unpack_as_root_and_as_a_user() {
    if !is_root() {
        eprintln!("skipped: umoci unpack keeps owners only as root");
        return;
    }
    let reg = TestRegistry::start().unwrap();
    let name = pushed(&reg, "tree/img:1", &tree_image());
    let work = tempfile::tempdir().unwrap();
    let reference = fuse::walk(
        None,
        &fuse::umoci_unpack(&reg.addr, "tree/img:1", work.path()),
    );
    assert!(
        reference.len() >= 20,
        "umoci tree too small: {reference:#?}"
    );

    let env = Env::new();
    env.ok(&["pull", &name]);
    let mnt = mkdir(&work.path().join("mnt"));
    let m = Mounted::new(None, env.root(), &name, &mnt, &["--read-only"]);
    let ours = fuse::walk(None, &mnt);
    assert!(ours == reference, "{}", fuse::diff(&ours, &reference));
    m.unmount();

    let user = TestUser::get().unwrap();
    let (_home, root, mnt) = user.workdir();
    // Pulled by the mount itself, as the user.
    let m = Mounted::new(Some(&user), &root, &name, &mnt, &[]);
    let theirs = fuse::walk(Some(&user), &mnt);
    let expected = fuse::as_seen_by_other(&reference);
    assert!(
        expected.iter().filter(|l| l.ends_with(" sha=-")).count() == 5,
        "the image has five files only root reads: {expected:#?}"
    );
    assert!(theirs == expected, "{}", fuse::diff(&theirs, &expected));
    drop(m);
}

#[test]
fn copy_on_write_as_root_persists_across_remount() {
    if !is_root() {
        eprintln!("skipped: needs root (the rootless variant runs as a created user)");
        return;
    }
    let (_reg, name, env, work) = cow_setup();
    let mnt = mkdir(&work.path().join("mnt"));
    let upper = work.path().join("upper");
    let up = upper.display().to_string();
    let m = Mounted::new(None, env.root(), &name, &mnt, &["--upper", &up]);
    testkit::fscheck::cow(&mnt, true).unwrap();
    m.unmount();
    assert_objects_intact(env.root());
    // The upper directory is an OCI changeset: whiteouts, and an opaque marker where a deleted
    // image directory was made again.
    assert!(upper.join("data/.wh..wh..opq").exists());
    assert!(upper.join("etc/.wh.link").exists() || upper.join(".wh.old").exists());
    assert!(!upper.join(".wh..wh..lazyfs.work").exists());
    let m = Mounted::new(None, env.root(), &name, &mnt, &["--upper", &up]);
    testkit::fscheck::verify(&mnt, true).unwrap();
    m.unmount();
    assert_objects_intact(env.root());
}

#[test]
fn copy_on_write_as_an_unprivileged_user_persists_across_remount() {
    let Some(user) = TestUser::get() else {
        return;
    };
    let reg = TestRegistry::start().unwrap();
    let name = pushed(&reg, "cow/img:1", &testkit::fscheck::cow_image());
    let (home, root, mnt) = user.workdir();
    let upper = home.path().join("upper");
    let pull = vec![
        "--root".into(),
        root.display().to_string(),
        "pull".into(),
        name.clone(),
    ];
    fuse::ok(fuse::tool(Some(&user), "lazyrun", &pull));
    let maps = user.ns_maps();
    let mut args: Vec<&str> = vec!["--upper", upper.to_str().unwrap()];
    args.extend(maps.iter().map(String::as_str));
    let in_ns = |suite: &str| in_user_ns(&user, suite, &mnt, &["--unprivileged"]);
    let m = Mounted::new(Some(&user), &root, &name, &mnt, &args);
    in_ns("cow");
    m.unmount();
    // Ownership the user could not give is recorded on the upper file, not on the inode.
    let meta = std::fs::metadata(upper.join("etc/owned")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), user.uid);
    let m = Mounted::new(Some(&user), &root, &name, &mnt, &args);
    in_ns("verify");
    m.unmount();
    assert_objects_intact(&root);
}

#[test]
fn passthrough_reads_and_a_writer_meanwhile() {
    if !is_root() {
        eprintln!("skipped: kernel passthrough is for root only");
        return;
    }
    use std::io::{Read, Write};
    let (_reg, name, env, work) = cow_setup();
    let mnt = mkdir(&work.path().join("mnt"));
    let m = Mounted::new(None, env.root(), &name, &mnt, &[]);
    let big = mnt.join("etc/big");
    let mut reader = std::fs::File::open(&big).unwrap();
    let mut second = std::fs::File::open(&big).unwrap();
    // Image files are read by the kernel from the store's object; a writer cannot join them.
    let w = std::fs::OpenOptions::new().append(true).open(&big);
    assert_eq!(
        w.err().and_then(|e| e.raw_os_error()),
        Some(libc::ETXTBSY),
        "passthrough should be on for root"
    );
    let mut data = Vec::new();
    reader.read_to_end(&mut data).unwrap();
    assert_eq!(data, testkit::fscheck::big_data());
    let mut head = [0u8; 4096];
    second.read_exact(&mut head).unwrap();
    assert_eq!(head[..], data[..4096]);
    drop((reader, second));
    // Readers and writers racing on one image file never reach the store's object.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let (stop, path) = (stop.clone(), mnt.join("etc/motd"));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if i % 2 == 0 {
                        let _ = std::fs::read(&path);
                    } else if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&path) {
                        let _ = f.write_all(b"x");
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in racers {
        r.join().unwrap();
    }
    assert_objects_intact(env.root());
    let mut w = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
    w.write_all(b"tail").unwrap();
    drop(w);
    let after = std::fs::read(&big).unwrap();
    assert_eq!(after.len(), data.len() + 4);
    assert!(after.ends_with(b"tail"));
    m.unmount();
    assert_objects_intact(env.root());
}

#[test]
fn a_deep_image_tree_is_served_and_the_server_survives_writes_into_it() {
    if !is_root() {
        eprintln!("skipped: needs root (like the other root-side mount tests)");
        return;
    }
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    // Deeper than a path may be (PATH_MAX), so it is reached one directory at a time.
    const DEPTH: usize = 3000;
    let mut b = LayerBuilder::new();
    let mut path = String::from("d");
    for _ in 0..DEPTH {
        b = b.dir(&path, 0o755);
        path.push_str("/d");
    }
    path.truncate(path.len() - 2);
    let layer = b.file(&format!("{path}/f"), b"deep", 0o644).finish();
    let reg = TestRegistry::start().unwrap();
    let name = pushed(
        &reg,
        "deep/img:1",
        &Image::new(vec![Layer::new(layer, Compression::Gzip)]),
    );
    let env = Env::new();
    env.ok(&["pull", &name]);
    let work = tempfile::tempdir().unwrap();
    let mnt = mkdir(&work.path().join("mnt"));
    let m = Mounted::new(None, env.root(), &name, &mnt, &[]);
    let mut dir = std::fs::File::open(&mnt).unwrap().into();
    for _ in 0..DEPTH {
        let next: std::os::fd::OwnedFd = openat(
            &dir,
            "d",
            // Close-on-exec: a server another test starts meanwhile must not hold it.
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        dir = next;
    }
    let f: std::fs::File = openat(&dir, "f", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .unwrap()
        .into();
    assert_eq!(std::io::read_to_string(f).unwrap(), "deep");
    // Copying the chain up is iterative; the upper path is longer than a path may be, so the
    // write is refused, and the server lives on.
    let w = openat(
        &dir,
        "f",
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    assert_eq!(w.err(), Some(nix::errno::Errno::ENAMETOOLONG));
    std::fs::write(mnt.join("shallow"), b"ok").unwrap();
    assert_eq!(std::fs::read(mnt.join("shallow")).unwrap(), b"ok");
    drop(dir);
    m.unmount();
    assert_objects_intact(env.root());
}

#[test]
fn posix_errors_and_permissions_as_root() {
    if !is_root() {
        eprintln!("skipped: the suite switches filesystem uids, which needs root");
        return;
    }
    let (_reg, name, env, work) = cow_setup();
    let mnt = mkdir(&work.path().join("mnt"));
    let m = Mounted::new(None, env.root(), &name, &mnt, &[]);
    let n = testkit::fscheck::posix(&mnt).unwrap();
    assert!(n > 50, "only {n} checks ran");
    m.unmount();
    assert_objects_intact(env.root());
}

#[test]
fn posix_errors_and_permissions_as_a_user_namespace_root() {
    let Some(user) = TestUser::get() else {
        return;
    };
    let reg = TestRegistry::start().unwrap();
    let name = pushed(&reg, "cow/img:1", &testkit::fscheck::cow_image());
    let (_home, root, mnt) = user.workdir();
    let maps = user.ns_maps();
    // The suite acts as other uids of the namespace too; they get in only with allow_other.
    let mut args: Vec<&str> = maps.iter().map(String::as_str).collect();
    args.push("--allow-other");
    let m = Mounted::new(Some(&user), &root, &name, &mnt, &args);
    let out = in_user_ns(&user, "posix", &mnt, &[]);
    assert!(out.contains("checks passed"), "{out}");
    m.unmount();
}

#[test]
fn mount_errors_are_one_line_and_leave_nothing_behind() {
    let (reg, name, env, work) = cow_setup();
    let lazyfs = |args: &[&str]| {
        let mut a = vec!["--root".to_owned(), env.root().display().to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        fuse::run(&mut fuse::tool(None, "lazyfs", &a))
    };
    let fails = |args: &[&str], want: &str| {
        let out = lazyfs(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} should fail");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    let missing = work.path().join("missing");
    fails(
        &["mount", &name, missing.to_str().unwrap()],
        "does not exist",
    );
    let full = mkdir(&work.path().join("full"));
    std::fs::write(full.join("x"), b"").unwrap();
    fails(&["mount", &name, full.to_str().unwrap()], "not empty");
    let file = work.path().join("file");
    std::fs::write(&file, b"").unwrap();
    fails(&["mount", &name, file.to_str().unwrap()], "not a directory");
    let mnt = mkdir(&work.path().join("mnt"));
    let unknown = format!("{}/no/such:1", reg.addr);
    fails(&["mount", &unknown, mnt.to_str().unwrap()], "no/such");
    fails(
        &["mount", &name, mnt.to_str().unwrap(), "--uid-map", "0:1"],
        "CONTAINER:HOST:SIZE",
    );
    fails(&["umount", mnt.to_str().unwrap()], "not a lazyfs mount");
    assert!(!lazyfs(&["mount", "--help"]).stdout.is_empty());

    // One upper directory serves one mount at a time.
    let upper = work.path().join("upper");
    let up = upper.to_str().unwrap();
    let first = Mounted::new(None, env.root(), &name, &mnt, &["--upper", up]);
    let mnt2 = mkdir(&work.path().join("mnt2"));
    fails(
        &["mount", &name, mnt2.to_str().unwrap(), "--upper", up],
        "in use by another lazyfs mount",
    );
    first.unmount();

    // rmi refuses an image in use; the server ends on umount.
    let m = Mounted::new(None, env.root(), &name, &mnt, &[]);
    let err = env.fails(&["rmi", &name]);
    assert!(err.contains("in use"), "{err}");
    let pids = server_pids(&mnt);
    assert_eq!(pids.len(), 1, "one server per mount: {pids:?}");
    m.unmount();
    assert!(
        !Path::new(&format!("/proc/{}", pids[0])).exists(),
        "server still running after umount"
    );
    assert!(std::fs::read_dir(&mnt).unwrap().next().is_none());
    // A server killed outright leaves a dead mount: mount says so, umount clears it.
    let m = Mounted::new(None, env.root(), &name, &mnt, &[]);
    let pid = server_pids(&mnt)[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    fails(&["mount", &name, mnt.to_str().unwrap()], "lazyfs umount");
    m.unmount();
    env.ok(&["rmi", &name]);
    assert_objects_intact(env.root());
}

/// The copy-on-write image in a registry, pulled into a fresh store; and a work directory.
fn cow_setup() -> (TestRegistry, String, Env, tempfile::TempDir) {
    let reg = TestRegistry::start().unwrap();
    let name = pushed(&reg, "cow/img:1", &testkit::fscheck::cow_image());
    let env = Env::new();
    env.ok(&["pull", &name]);
    (reg, name, env, tempfile::tempdir().unwrap())
}

/// Runs an fscheck suite as root of the user's namespace (uid 0 the user, 1.. its subordinate
/// ids), as a rootless container would.
fn in_user_ns(user: &TestUser, suite: &str, mnt: &Path, extra: &[&str]) -> String {
    let mut c = std::process::Command::new("runuser");
    c.args([
        "-u",
        &user.name,
        "--",
        "unshare",
        "--map-auto",
        "--map-root-user",
    ])
    .arg(fuse::bin_dir().join("lazyrun-testkit"))
    .args(["fscheck", suite])
    .arg(mnt)
    .args(extra);
    fuse::ok(c)
}

/// Pids of lazyfs servers whose command line names `mnt`.
fn server_pids(mnt: &Path) -> Vec<i32> {
    let want = mnt.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "--daemon-child") && args.contains(&want) {
            out.push(pid);
        }
    }
    out
}
