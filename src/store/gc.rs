//! Garbage collection of the content store. Callers hold the exclusive store lock, so no pull
//! is between writing an object and recording the layer that uses it.

use std::collections::HashSet;

use super::{Result, Store};

/// What a collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    pub objects: u64,
    pub bytes: u64,
}

/// Drops object rows no entry references, then deletes every object file without a row
/// (including ones an interrupted pull wrote but never recorded).
pub fn collect(store: &Store) -> Result<Collected> {
    let conn = store.connect()?;
    conn.execute(
        "DELETE FROM objects WHERE digest NOT IN
           (SELECT digest FROM entries WHERE digest IS NOT NULL)",
        [],
    )
    .map_err(super::db::DbError::from)?;
    let mut stmt = conn
        .prepare("SELECT digest FROM objects")
        .map_err(super::db::DbError::from)?;
    let keep: HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(super::db::DbError::from)?
        .collect::<rusqlite::Result<_>>()
        .map_err(super::db::DbError::from)?;
    let mut out = Collected::default();
    for (digest, path) in store.objects().list()? {
        if keep.contains(&digest) {
            continue;
        }
        let len = std::fs::symlink_metadata(&path)
            .map(|m| m.len())
            .unwrap_or(0);
        if std::fs::remove_file(&path).is_ok() {
            out.objects += 1;
            out.bytes += len;
        }
    }
    store.objects().clean_stale_tmp();
    Ok(out)
}
