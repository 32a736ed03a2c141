use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context};
use fusefs::IdMap;
use lazyrun::images::ImageError;
use lazyrun::pull::PullOptions;
use lazyrun::store::Store;

#[derive(clap::Args)]
pub struct Args {
    /// Image to mount: a name (pulled if not stored) or an id
    #[arg(value_name = "IMAGE")]
    image: String,
    /// An existing empty directory
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
    /// Keep changes in this directory (created if missing) so a later mount sees them;
    /// without it changes are discarded at unmount
    #[arg(long, value_name = "DIR")]
    upper: Option<PathBuf>,
    /// Refuse every change
    #[arg(long, conflicts_with = "upper")]
    read_only: bool,
    /// Show image uids through a mapping CONTAINER:HOST:SIZE (repeatable), e.g. 0:1000:1
    #[arg(long = "uid-map", value_name = "MAP")]
    uid_map: Vec<String>,
    /// Show image gids through a mapping CONTAINER:HOST:SIZE (repeatable)
    #[arg(long = "gid-map", value_name = "MAP")]
    gid_map: Vec<String>,
    /// Let other users in (root always does; others need user_allow_other in /etc/fuse.conf)
    #[arg(long)]
    allow_other: bool,
    /// Platform to pull when the image is not stored [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Serve every read through the server, even where the kernel could read the store directly
    #[arg(long)]
    no_passthrough: bool,
    /// Threads serving requests
    #[arg(long, default_value_t = fusefs::Options::default().threads, value_name = "N")]
    threads: usize,
    /// Serve in the foreground until unmounted or interrupted
    #[arg(long)]
    foreground: bool,
    /// Internal: the background server started by `mount`; reports readiness on stdout
    #[arg(long, hide = true)]
    daemon_child: bool,
}

pub fn run(g: &crate::Global, a: Args) -> anyhow::Result<()> {
    let uid_map = IdMap::parse(&a.uid_map)?;
    let gid_map = IdMap::parse(&a.gid_map)?;
    let mnt = std::path::absolute(&a.mountpoint)
        .with_context(|| format!("bad mountpoint {}", a.mountpoint.display()))?;
    if !a.daemon_child {
        check_mountpoint(&mnt)?;
        check_fuse()?;
        if let Some(u) = &a.upper {
            if u.exists() && !u.is_dir() {
                bail!("upper {} exists and is not a directory", u.display());
            }
        }
        let store = Store::open(&g.root)?;
        ensure_image(g, &store, &a)?;
    }
    if a.foreground || a.daemon_child {
        return serve(g, &a, &mnt, uid_map, gid_map);
    }
    start_server(g, &mnt)
}

fn check_mountpoint(mnt: &Path) -> anyhow::Result<()> {
    let mut entries = match std::fs::read_dir(mnt) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "mountpoint {} does not exist: create it with mkdir",
                mnt.display()
            )
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            bail!("mountpoint {} is not a directory", mnt.display())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => bail!(
            "mountpoint {} is a dead mount whose server is gone: run `lazyfs umount {}` first",
            mnt.display(),
            mnt.display()
        ),
        Err(e) => bail!("mountpoint {}: {e}", mnt.display()),
    };
    if entries.next().is_some() {
        bail!(
            "mountpoint {} is not empty (or is already mounted): use an empty directory",
            mnt.display()
        );
    }
    Ok(())
}

fn check_fuse() -> anyhow::Result<()> {
    match OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "/dev/fuse is unusable ({e}): install fuse3 and make it accessible (chmod 666 /dev/fuse)"
        ),
    }
}

/// Pulls the image when the store does not have it.
fn ensure_image(g: &crate::Global, store: &Store, a: &Args) -> anyhow::Result<()> {
    match lazyrun::images::resolve(store, &a.image) {
        Ok(_) => return Ok(()),
        Err(ImageError::NotFound(_)) if lazyrun::reference::parse(&a.image).is_ok() => {}
        Err(e) => return Err(e.into()),
    }
    let opts = PullOptions::from_args(a.platform.as_deref(), &g.insecure)?;
    let rt = tokio::runtime::Runtime::new()?;
    let bars = Arc::new(crate::progress::Bars::new(false));
    let pulled = rt.block_on(lazyrun::pull::pull(store, &a.image, &opts, bars))?;
    eprintln!("Pulled {} ({})", pulled.name, pulled.manifest_digest);
    Ok(())
}

/// Starts the server as a child in its own session and waits for its verdict on a pipe.
fn start_server(g: &crate::Global, mnt: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the lazyfs executable")?;
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    args.push("--daemon-child".into());
    let log = if g.log_level == "warn" {
        Stdio::null()
    } else {
        let path = g.root.join("lazyfs.log");
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening log {}", path.display()))?;
        Stdio::from(f)
    };
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting the lazyfs server")?;
    let Some(out) = child.stdout.take() else {
        bail!("starting the lazyfs server: no pipe");
    };
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    match line.trim_end() {
        "ready" => Ok(()),
        "" => {
            let status = child.wait()?;
            bail!(
                "the lazyfs server for {} exited before the mount was ready ({status})",
                mnt.display()
            )
        }
        msg => {
            let _ = child.wait();
            bail!("{}", msg.strip_prefix("error: ").unwrap_or(msg))
        }
    }
}

/// Mounts and serves until unmounted. A background child reports readiness or its error on
/// stdout, then lets go of it.
fn serve(
    g: &crate::Global,
    a: &Args,
    mnt: &Path,
    uid_map: IdMap,
    gid_map: IdMap,
) -> anyhow::Result<()> {
    if a.daemon_child {
        let _ = nix::unistd::setsid();
    }
    // Signals are taken by one thread (below); block them before any other thread exists.
    let signals = {
        use nix::sys::signal::{SigSet, Signal};
        let mut s = SigSet::empty();
        s.add(Signal::SIGINT);
        s.add(Signal::SIGTERM);
        s.add(Signal::SIGHUP);
        s.thread_block()?;
        s
    };
    let ready = prepare_and_mount(g, a, mnt, uid_map, gid_map);
    let (mut session, volatile, hold) = match ready {
        Ok(v) => v,
        Err(e) => {
            if a.daemon_child {
                println!("error: {}", crate::format::one_line(&e));
            }
            return Err(e);
        }
    };
    if a.daemon_child {
        println!("ready");
        let _ = std::io::stdout().flush();
        if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(&null);
        }
    } else {
        eprintln!(
            "lazyfs: {} mounted at {}; unmount with `lazyfs umount {}` or Ctrl-C",
            a.image,
            mnt.display(),
            mnt.display()
        );
    }
    let mut unmounter = session.unmount_callable();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            tracing::info!(signal = ?sig, "unmounting");
            if let Err(e) = unmounter.unmount() {
                tracing::warn!(error = %e, "unmount on signal failed");
            }
        }
    });
    let served = session.run();
    drop(hold);
    if let Some(dir) = volatile {
        let _ = std::fs::remove_dir_all(dir);
    }
    served.context("serving the mount")
}

type Mounted = (
    fusefs::Session,
    Option<PathBuf>,
    nix::fcntl::Flock<std::fs::File>,
);

fn prepare_and_mount(
    g: &crate::Global,
    a: &Args,
    mnt: &Path,
    uid_map: IdMap,
    gid_map: IdMap,
) -> anyhow::Result<Mounted> {
    raise_open_file_limit();
    let store = Store::open(&g.root)?;
    let prepared = lazyrun::mount::prepare(&store, &a.image)?;
    let pid = std::process::id();
    let (upper, volatile) = match (&a.upper, a.read_only) {
        (Some(u), _) => (Some(u.clone()), None),
        (None, true) => (None, None),
        (None, false) => {
            clean_volatile(&g.root.join("volatile"));
            let dir = g.root.join("volatile").join(pid.to_string());
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            (Some(dir.clone()), Some(dir))
        }
    };
    let opts = fusefs::Options {
        upper,
        read_only: a.read_only,
        uid_map,
        gid_map,
        allow_other: a.allow_other || nix::unistd::geteuid().is_root(),
        fsname: format!("lazyfs:{pid}"),
        passthrough: !a.no_passthrough,
        threads: a.threads,
        ..fusefs::Options::default()
    };
    let fs =
        fusefs::LazyFs::new(prepared.tree, prepared.lower, &opts).with_context(|| {
            match &opts.upper {
                Some(u) => format!("preparing upper directory {}", u.display()),
                None => "preparing the filesystem".into(),
            }
        })?;
    let session = fusefs::mount(fs, mnt, &opts).map_err(|e| {
        anyhow::anyhow!(
            "mounting at {}: {e}{}",
            mnt.display(),
            if opts.allow_other && !nix::unistd::geteuid().is_root() {
                " (--allow-other needs user_allow_other in /etc/fuse.conf)"
            } else {
                ""
            }
        )
    })?;
    Ok((session, volatile, prepared.hold))
}

/// Removes throwaway upper directories no server holds (their server was killed outright).
fn clean_volatile(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if let Ok(Some(_free)) = fusefs::upper::lock(&e.path()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Lower contents stay open between reads; let the process hold as many as it may.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
