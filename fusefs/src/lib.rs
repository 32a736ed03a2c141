//! fusefs: an image served as one writable tree, without root and without overlayfs.
//!
//! A read-only lower tree (every layer's entries merged once at mount, contents opened through
//! the [`Lower`] trait) under a writable upper directory. Nothing here knows of registries or of
//! the store's index; the caller supplies entries and a way to open contents.
//!
//! ```text
//!   kernel ──FUSE──> fuse.rs (thin: reply or errno)
//!                      │
//!            ops.rs, files.rs ── fs.rs: inodes, names, attributes ── copyup.rs
//!                      │             │
//!           LowerTree (memory)    Upper (a directory: files, .wh. markers, user.lazyfs.* xattrs)
//!           Lower::open(content) ─> read-only descriptors (pread, or kernel passthrough as root)
//! ```
//!
//! Copy-up is metadata-first: a lower file that is chmod-ed, chown-ed, renamed or hardlinked
//! gets an empty upper file naming its lower content (`user.lazyfs.meta`); the data is copied
//! only on the first open for writing or a truncate to a non-zero size.

mod copyup;
mod error;
mod files;
mod fs;
mod fuse;
mod handles;
pub mod idmap;
pub mod lower;
mod ops;
pub mod upper;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::Error;
pub use fs::LazyFs;
pub use idmap::IdMap;
pub use lower::{EntryKind, LowerEntry, LowerTree};

/// A mounted filesystem, to be served with `run` (or `spawn`).
pub type Session = fuser::Session<LazyFs>;

/// Where lower file contents come from.
pub trait Lower: Send + Sync + 'static {
    /// Opens the content a [`LowerEntry::content`] names, for reading.
    fn open(&self, content: &str) -> io::Result<File>;
}

/// How to serve a tree.
#[derive(Debug, Clone)]
pub struct Options {
    /// The writable upper directory; required unless `read_only`.
    pub upper: Option<PathBuf>,
    pub read_only: bool,
    /// How image uids are shown (identity when empty).
    pub uid_map: IdMap,
    pub gid_map: IdMap,
    /// Use kernel passthrough for reads of unmodified lower files when root and supported.
    pub passthrough: bool,
    /// Threads reading requests.
    pub threads: usize,
    /// How long the kernel may cache names and attributes.
    pub ttl: Duration,
    /// Lower contents kept open between opens.
    pub open_files: usize,
    /// Let other users (and root) in: needs root or `user_allow_other` in /etc/fuse.conf.
    pub allow_other: bool,
    /// Shown as the mount's source in /proc/mounts.
    pub fsname: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            upper: None,
            read_only: false,
            uid_map: IdMap::identity(),
            gid_map: IdMap::identity(),
            passthrough: true,
            threads: 4,
            ttl: Duration::from_secs(24 * 3600),
            open_files: 256,
            allow_other: nix::unistd::geteuid().is_root(),
            fsname: "lazyfs".into(),
        }
    }
}

/// Mounts `fs` at `mountpoint`; the mount is live when this returns. Run the returned session
/// (`run`, or `spawn` for a background thread) to serve it.
pub fn mount(fs: LazyFs, mountpoint: &Path, opts: &Options) -> io::Result<Session> {
    use fuser::MountOption as M;
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        M::FSName(opts.fsname.clone()),
        M::Subtype("lazyfs".into()),
        M::DefaultPermissions,
    ];
    if opts.read_only {
        cfg.mount_options.push(M::RO);
    }
    if nix::unistd::geteuid().is_root() {
        cfg.mount_options.extend([M::Dev, M::Suid]);
    }
    if opts.allow_other {
        cfg.acl = fuser::SessionACL::All;
    }
    cfg.n_threads = Some(opts.threads.max(1));
    cfg.clone_fd = false;
    fuser::Session::new(fs, mountpoint, &cfg)
}
