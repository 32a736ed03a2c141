//! Helpers for tests that mount: the binaries where an unprivileged user can run them, a test
//! user with subordinate ids, and a mount guard that always unmounts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// The unprivileged user rootless tests run as (created on first use; root only).
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// First subordinate uid (`/etc/subuid`) and gid (`/etc/subgid`), for user-namespace tests.
    pub sub: u32,
    pub subg: u32,
}

const USER: &str = "lazyrun-test";

impl TestUser {
    /// The test user, or `None` (with the reason printed) when not root.
    pub fn get() -> Option<TestUser> {
        static USER_INFO: OnceLock<Option<TestUser>> = OnceLock::new();
        USER_INFO
            .get_or_init(|| {
                if !super::is_root() {
                    eprintln!("skipped: rootless tests create a user and need root");
                    return None;
                }
                // The machine's /dev/fuse may be root-only; users mount through it.
                use std::os::unix::fs::PermissionsExt;
                let _ =
                    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666));
                // Mounts that other uids of the user's namespace use need --allow-other, which
                // fusermount3 grants users only with this line.
                let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
                if !conf.lines().any(|l| l.trim() == "user_allow_other") {
                    std::fs::write("/etc/fuse.conf", format!("{conf}\nuser_allow_other\n"))
                        .expect("enable user_allow_other in /etc/fuse.conf");
                }
                let exists = Command::new("id").arg(USER).output().ok()?.status.success();
                if !exists {
                    let out = Command::new("useradd")
                        .args(["--create-home", "--shell", "/bin/sh", USER])
                        .output()
                        .expect("useradd");
                    assert!(out.status.success(), "useradd: {out:?}");
                }
                let id = |flag: &str| -> u32 {
                    let out = Command::new("id").args([flag, USER]).output().expect("id");
                    String::from_utf8_lossy(&out.stdout)
                        .trim()
                        .parse()
                        .expect("id")
                };
                let find_sub = |file: &str| {
                    let subuid = std::fs::read_to_string(file).unwrap_or_default();
                    subuid.lines().find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.first() == Some(&USER)).then(|| f.get(1)?.parse::<u32>().ok())?
                    })
                };
                if find_sub("/etc/subuid").is_none() || find_sub("/etc/subgid").is_none() {
                    // useradd gives ranges only where /etc/subuid already exists.
                    let out = Command::new("usermod")
                        .args(["--add-subuids", "300000-365535"])
                        .args(["--add-subgids", "300000-365535", USER])
                        .output()
                        .expect("usermod");
                    assert!(out.status.success(), "usermod: {out:?}");
                }
                let sub = find_sub("/etc/subuid").expect("the test user has a /etc/subuid range");
                let subg = find_sub("/etc/subgid").expect("the test user has a /etc/subgid range");
                Some(TestUser {
                    name: USER.into(),
                    uid: id("-u"),
                    gid: id("-g"),
                    sub,
                    subg,
                })
            })
            .clone()
    }

    /// A fresh directory the user owns.
    pub fn dir(&self) -> tempfile::TempDir {
        let d = tempfile::Builder::new()
            .prefix("lazyrun-user-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::os::unix::fs::chown(d.path(), Some(self.uid), Some(self.gid)).expect("chown");
        // Other ids of the user's namespace walk through it too.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        d
    }

    /// A directory of the user's (removed when dropped) with a store path and an empty
    /// mountpoint the user owns.
    pub fn workdir(&self) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let home = self.dir();
        let root = home.path().join("store");
        let mnt = home.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        std::os::unix::fs::chown(&mnt, Some(self.uid), Some(self.gid)).expect("chown");
        (home, root, mnt)
    }

    /// The id maps that make the user namespace of `unshare --map-auto --map-root-user` see
    /// image ids as its own.
    pub fn ns_maps(&self) -> Vec<String> {
        let mut v = Vec::new();
        for flag in ["--uid-map", "--gid-map"] {
            let (own, sub) = if flag == "--uid-map" {
                (self.uid, self.sub)
            } else {
                (self.gid, self.subg)
            };
            v.push(flag.to_owned());
            v.push(format!("0:{own}:1"));
            v.push(flag.to_owned());
            v.push(format!("1:{sub}:65535"));
        }
        v
    }
}

/// A directory holding the binaries the tests run, readable by any user.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lazyrun-test-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bin dir");
        let lazyfs = Path::new(env!("CARGO_BIN_EXE_lazyfs"));
        let sources = [
            lazyfs.to_path_buf(),
            PathBuf::from(env!("CARGO_BIN_EXE_lazyrun")),
            lazyfs.with_file_name("lazyrun-testkit"),
        ];
        for src in sources {
            assert!(
                src.exists(),
                "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
                src.display()
            );
            let dst = dir.join(src.file_name().expect("name"));
            let _ = std::fs::remove_file(&dst);
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).expect("copy binary");
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir
    })
}

/// Runs one of the test binaries, as `user` when given.
pub fn tool(user: Option<&TestUser>, bin: &str, args: &[String]) -> Command {
    let path = bin_dir().join(bin);
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", &u.name, "--"]).arg(path);
            c
        }
        None => Command::new(path),
    };
    c.args(args)
        .env_remove("LAZYRUN_ROOT")
        .env("REGISTRY_AUTH_FILE", "/nonexistent");
    c
}

/// Runs a command and insists it succeeds; returns stdout.
pub fn ok(mut c: Command) -> String {
    let out = run(&mut c);
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command with a time limit (a hung mount must fail the test, not hang it).
pub fn run(c: &mut Command) -> Output {
    let child = c
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(600)) {
        Ok(out) => out.expect("output"),
        Err(_) => {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            panic!("{c:?} timed out");
        }
    }
}

/// A lazyfs mount that is always unmounted when dropped.
pub struct Mounted {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub user: Option<TestUser>,
}

impl Mounted {
    /// Mounts `image` from the store at `root` on `dir` with extra `args`.
    pub fn new(
        user: Option<&TestUser>,
        root: &Path,
        image: &str,
        dir: &Path,
        args: &[&str],
    ) -> Mounted {
        let mut a: Vec<String> = vec!["--root".into(), root.display().to_string(), "mount".into()];
        a.push(image.into());
        a.push(dir.display().to_string());
        a.extend(args.iter().map(|s| s.to_string()));
        ok(tool(user, "lazyfs", &a));
        Mounted {
            dir: dir.to_owned(),
            root: root.to_owned(),
            user: user.cloned(),
        }
    }

    /// Unmounts now, insisting it works.
    pub fn unmount(mut self) {
        let out = self.umount_cmd();
        assert!(out.status.success(), "umount: {out:?}");
        self.dir = PathBuf::new();
    }

    fn umount_cmd(&self) -> Output {
        let a = vec![
            "--root".into(),
            self.root.display().to_string(),
            "umount".into(),
            self.dir.display().to_string(),
        ];
        run(&mut tool(self.user.as_ref(), "lazyfs", &a))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        if !self.umount_cmd().status.success() {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Walks a tree with the testkit (as `user` when given): one line per entry.
pub fn walk(user: Option<&TestUser>, dir: &Path) -> Vec<String> {
    let out = ok(tool(
        user,
        "lazyrun-testkit",
        &["walk".into(), dir.display().to_string()],
    ));
    out.lines().map(str::to_owned).collect()
}

/// Unpacks an image with skopeo + umoci (as root) and returns its rootfs.
pub fn umoci_unpack(registry: &str, image: &str, work: &Path) -> PathBuf {
    let layout = work.join("oci");
    let mut c = Command::new("skopeo");
    c.args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{registry}/{image}"))
        .arg(format!("oci:{}:t", layout.display()));
    ok(c);
    let bundle = work.join("bundle");
    let mut c = Command::new("umoci");
    c.args(["unpack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle);
    ok(c);
    bundle.join("rootfs")
}

/// Lines only one side has, for a readable assertion message.
pub fn diff(a: &[String], b: &[String]) -> String {
    let only_a: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    format!("only in first: {only_a:#?}\nonly in second: {only_b:#?}")
}

/// What a user who owns nothing in the tree can see of a walk taken as root: files without
/// "other" read permission show `sha=-`, and nothing below a directory without "other" r-x.
pub fn as_seen_by_other(reference: &[String]) -> Vec<String> {
    let mode = |line: &str| -> u32 {
        line.split(' ')
            .find_map(|f| f.strip_prefix("mode="))
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0)
    };
    let mut hidden: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in reference {
        let path = line.split(' ').next().unwrap_or("");
        if hidden.iter().any(|h| path.starts_with(h.as_str())) {
            continue;
        }
        let kind = line.split(' ').nth(1).unwrap_or("");
        if kind == "dir" && mode(line) & 0o005 != 0o005 {
            hidden.push(format!("{path}/"));
        }
        if kind == "file" && mode(line) & 0o004 == 0 {
            let head = line.split(" sha=").next().unwrap_or(line);
            out.push(format!("{head} sha=-"));
        } else {
            out.push(line.clone());
        }
    }
    out
}
