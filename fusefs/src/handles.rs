//! Open file handles. Directories have none: the kernel is told to do without opendir, and
//! listings live in [`crate::fs::LazyFs`]'s listing cache.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An open file: the descriptor reads and writes go to, and the passthrough registration that
/// must live as long as the kernel may use it.
#[derive(Debug)]
pub(crate) struct FileHandle {
    pub ino: u64,
    pub file: Arc<File>,
    pub writable: bool,
    pub backing: Mutex<Option<Arc<fuser::BackingId>>>,
}

#[derive(Debug, Default)]
pub(crate) struct Handles {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<FileHandle>>>,
}

impl Handles {
    pub fn insert(&self, h: FileHandle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map().insert(fh, Arc::new(h));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<FileHandle>> {
        self.map().get(&fh).cloned()
    }

    /// An open handle of `ino` (a writable one when asked): how a file with no name left is
    /// still reached, since the kernel names only the inode in fchmod and fstat.
    pub fn of_inode(&self, ino: u64, writable: bool) -> Option<Arc<FileHandle>> {
        self.map()
            .values()
            .find(|h| h.ino == ino && (h.writable || !writable))
            .cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<FileHandle>> {
        self.map().remove(&fh)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<FileHandle>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How the kernel does I/O on one inode: through a passthrough registration that readers share,
/// or through the server; the kernel refuses to mix the two on one inode.
#[derive(Debug, Default)]
struct InodeIo {
    backing: std::sync::Weak<fuser::BackingId>,
    writers: usize,
}

/// [`InodeIo`] of every inode with open files, under one lock so a check and the registration
/// that depends on it are one step.
#[derive(Debug, Default)]
pub(crate) struct IoModes {
    inodes: Mutex<HashMap<u64, InodeIo>>,
    /// Signalled when a handle closes.
    released: std::sync::Condvar,
}

impl IoModes {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, InodeIo>> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (up to `limit`) until no reader of `ino` uses passthrough. The kernel tells of a
    /// close only afterwards, so a file closed just before being opened for writing would
    /// otherwise still count as read.
    pub fn wait_for_readers(&self, ino: u64, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        let mut m = self.map();
        while m.get(&ino).is_some_and(|io| io.backing.strong_count() > 0) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            m = match self.released.wait_timeout(m, left) {
                Ok((m, _)) => m,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// A handle closed: wake writers waiting for readers.
    pub fn closed(&self) {
        let _m = self.map();
        self.released.notify_all();
    }

    /// Registers a writer; false (and nothing registered) while readers use passthrough.
    pub fn start_write(&self, ino: u64) -> bool {
        let mut m = self.map();
        let io = m.entry(ino).or_default();
        if io.backing.strong_count() > 0 {
            return false;
        }
        io.writers += 1;
        true
    }

    pub fn end_write(&self, ino: u64) {
        let mut m = self.map();
        if let Some(io) = m.get_mut(&ino) {
            io.writers = io.writers.saturating_sub(1);
            if io.writers == 0 && io.backing.strong_count() == 0 {
                m.remove(&ino);
            }
        }
    }

    /// True while readers of `ino` use passthrough.
    pub fn passthrough_live(&self, ino: u64) -> bool {
        self.map()
            .get(&ino)
            .is_some_and(|io| io.backing.strong_count() > 0)
    }

    /// The passthrough registration for a reader of `ino`: the one its other readers use, else
    /// a new one from `open` when `may_open` (the reader reads image content). None while a
    /// writer is open, or when the kernel refuses.
    pub fn attach(
        &self,
        ino: u64,
        may_open: bool,
        open: impl FnOnce() -> std::io::Result<fuser::BackingId>,
    ) -> Option<Arc<fuser::BackingId>> {
        let mut m = self.map();
        let io = m.entry(ino).or_default();
        if io.writers > 0 {
            return None;
        }
        if let Some(id) = io.backing.upgrade() {
            return Some(id);
        }
        if !may_open {
            return None;
        }
        match open() {
            Ok(id) => {
                let id = Arc::new(id);
                io.backing = Arc::downgrade(&id);
                Some(id)
            }
            Err(e) => {
                tracing::debug!(ino, error = %e, "passthrough refused; reads go through the server");
                None
            }
        }
    }
}
