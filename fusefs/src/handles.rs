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

    pub fn remove(&self, fh: u64) -> Option<Arc<FileHandle>> {
        self.map().remove(&fh)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<FileHandle>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}
