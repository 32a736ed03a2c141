//! The image store: a root directory holding the SQLite index and the content store.
//!
//! ```text
//! <root>/index.db        SQLite (WAL): images, tags, layers, entries, objects
//! <root>/objects/ab/cd…  regular-file contents by sha256, shared by every layer and image
//! <root>/tmp/            partial files, renamed into objects/ only after their digest is known
//! <root>/locks/          advisory locks: store.lock (shared by pulls, exclusive for GC),
//!                        one per layer digest while it is being imported
//! ```

pub mod db;
pub mod gc;
pub mod objects;
pub mod query;

use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

pub use objects::ObjectStore;

/// Errors opening or locking the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Object(#[from] objects::ObjectError),
    #[error("locking {path}: {source}")]
    Lock {
        path: PathBuf,
        source: nix::errno::Errno,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An open store root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    objects: ObjectStore,
}

/// Which kind of hold on the whole store a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLock {
    /// Adds data (pull): many at once.
    Shared,
    /// Deletes objects (rmi, prune): alone, so nothing it deletes is being referenced meanwhile.
    Exclusive,
}

impl Store {
    /// The default root: `$LAZYRUN_ROOT`, else `/var/lib/lazyrun` for root,
    /// else `$XDG_DATA_HOME/lazyrun` (`~/.local/share/lazyrun`).
    pub fn default_root() -> PathBuf {
        if let Some(r) = std::env::var_os("LAZYRUN_ROOT").filter(|r| !r.is_empty()) {
            return PathBuf::from(r);
        }
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/lazyrun");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("lazyrun");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
        PathBuf::from(home).join(".local/share/lazyrun")
    }

    /// Opens the store at `root`, creating its layout on first use.
    pub fn open(root: &Path) -> Result<Store> {
        for d in [root.to_path_buf(), root.join("locks")] {
            fs::create_dir_all(&d).map_err(|source| StoreError::Io { path: d, source })?;
        }
        let objects = ObjectStore::open(root)?;
        let store = Store {
            root: root.to_path_buf(),
            objects,
        };
        // Creating the database and its schema under a lock means concurrent first uses do
        // not race on switching the journal mode; every later connection finds it ready.
        let _init = store.flock(&root.join("locks/init.lock"), FlockArg::LockExclusive)?;
        db::open(&store.db_path())?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("index.db")
    }

    /// A new connection to the index (one per thread).
    pub fn connect(&self) -> Result<rusqlite::Connection> {
        Ok(db::open(&self.db_path())?)
    }

    /// Takes the store-wide lock; it is released when the returned guard drops.
    pub fn lock(&self, kind: StoreLock) -> Result<Flock<File>> {
        let arg = match kind {
            StoreLock::Shared => FlockArg::LockShared,
            StoreLock::Exclusive => FlockArg::LockExclusive,
        };
        self.flock(&self.root.join("locks/store.lock"), arg)
    }

    /// Takes the import lock of one layer, so two processes never import it at once.
    pub fn lock_layer(&self, digest: &str) -> Result<Flock<File>> {
        let name = digest.replace(':', "-");
        self.flock(
            &self.root.join("locks").join(format!("{name}.lock")),
            FlockArg::LockExclusive,
        )
    }

    /// Marks an image as served by a mount for as long as the guard lives.
    pub fn hold_image(&self, id: i64) -> Result<Flock<File>> {
        self.flock(&self.image_lock(id), FlockArg::LockShared)
    }

    /// True while some mount holds the image.
    pub fn image_in_use(&self, id: i64) -> bool {
        let path = self.image_lock(id);
        if !path.exists() {
            return false;
        }
        matches!(
            self.flock(&path, FlockArg::LockExclusiveNonblock),
            Err(StoreError::Lock {
                source: nix::errno::Errno::EWOULDBLOCK,
                ..
            })
        )
    }

    fn image_lock(&self, id: i64) -> PathBuf {
        self.root.join("locks").join(format!("image-{id}.lock"))
    }

    fn flock(&self, path: &Path, arg: FlockArg) -> Result<Flock<File>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        Flock::lock(f, arg).map_err(|(_, source)| StoreError::Lock {
            path: path.to_owned(),
            source,
        })
    }
}
