//! A stored image as a lazyfs lower tree: the index's entries, the content store's objects.

use std::fs::File;
use std::io;
use std::sync::Arc;

use fusefs::{EntryKind as FsKind, LowerEntry, LowerTree};
use nix::fcntl::Flock;

use crate::entry::{Entry, EntryKind};
use crate::images::{self, ImageError};
use crate::store::query::{self, ImageRow};
use crate::store::{ObjectStore, Store, StoreError, StoreLock};

/// Contents from the store's objects.
#[derive(Debug)]
pub struct StoreLower {
    objects: ObjectStore,
}

impl fusefs::Lower for StoreLower {
    fn open(&self, content: &str) -> io::Result<File> {
        File::open(self.objects.path_of(content))
    }
}

/// Everything a mount of one image needs, and the hold that keeps the image from removal.
pub struct Prepared {
    pub image: ImageRow,
    pub tree: LowerTree,
    pub lower: Arc<StoreLower>,
    /// Keeps `rmi` and `prune` off this image while the mount lives.
    pub hold: Flock<File>,
}

/// Resolves an image, takes its hold, and merges its layers' entries.
pub fn prepare(store: &Store, input: &str) -> Result<Prepared, ImageError> {
    let (image, hold) = {
        let _lock = store.lock(StoreLock::Shared)?;
        let image = images::resolve(store, input)?;
        let hold = store.hold_image(image.id)?;
        (image, hold)
    };
    let conn = store.connect()?;
    let mut layers = Vec::new();
    for layer in query::image_layer_ids(&conn, image.id)? {
        let entries = crate::store::db::layer_entries(&conn, layer)?;
        layers.push(entries.iter().map(lower_entry).collect::<Vec<_>>());
    }
    let tree = LowerTree::build(layers);
    let objects = ObjectStore::open(store.root()).map_err(StoreError::from)?;
    Ok(Prepared {
        image,
        tree,
        lower: Arc::new(StoreLower { objects }),
        hold,
    })
}

fn lower_entry(e: &Entry) -> LowerEntry {
    let id = |v: u64| u32::try_from(v).unwrap_or(fusefs::idmap::OVERFLOW);
    LowerEntry {
        path: e.path.clone(),
        kind: match e.kind {
            EntryKind::Regular => FsKind::File,
            EntryKind::Directory => FsKind::Dir,
            EntryKind::Symlink => FsKind::Symlink,
            EntryKind::Hardlink => FsKind::Hardlink,
            EntryKind::CharDevice => FsKind::CharDevice,
            EntryKind::BlockDevice => FsKind::BlockDevice,
            EntryKind::Fifo => FsKind::Fifo,
            EntryKind::Whiteout => FsKind::Whiteout,
            EntryKind::Opaque => FsKind::Opaque,
        },
        mode: e.mode,
        uid: id(e.uid),
        gid: id(e.gid),
        size: e.size,
        mtime: e.mtime,
        link: e.link.clone(),
        rdev_major: e.dev_major,
        rdev_minor: e.dev_minor,
        xattrs: e.xattrs.clone(),
        content: e.digest.clone(),
    }
}
