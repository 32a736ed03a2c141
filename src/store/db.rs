//! The SQLite index: schema, migrations and the queries the rest of the crate needs.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::Path;
use std::time::Duration;

use crate::entry::{Entry, EntryKind};

/// Errors of the index database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("index database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("index database schema version {found} is newer than this lazyrun understands ({known}); upgrade lazyrun")]
    TooNew { found: i64, known: i64 },
    #[error("index database: {0}")]
    Sql(#[from] rusqlite::Error),
}

pub type Result<T> = std::result::Result<T, DbError>;

/// Ordered migrations: entry N brings the schema from version N to N+1.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: images, tags, layers, entries, objects.
    r#"
    CREATE TABLE images (
        id              INTEGER PRIMARY KEY,
        manifest_digest TEXT NOT NULL UNIQUE,
        config_digest   TEXT NOT NULL,
        manifest        BLOB NOT NULL,
        config          BLOB NOT NULL,
        platform        TEXT NOT NULL,
        pulled_at       INTEGER NOT NULL
    );
    CREATE TABLE tags (
        name     TEXT PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE layers (
        id            INTEGER PRIMARY KEY,
        digest        TEXT NOT NULL UNIQUE,
        diff_id       TEXT NOT NULL,
        media_type    TEXT NOT NULL,
        size          INTEGER NOT NULL,
        unpacked_size INTEGER NOT NULL,
        entry_count   INTEGER NOT NULL,
        imported_at   INTEGER NOT NULL
    );
    CREATE TABLE image_layers (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        layer_id INTEGER NOT NULL REFERENCES layers(id),
        PRIMARY KEY (image_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX image_layers_layer ON image_layers(layer_id);
    CREATE TABLE entries (
        id         INTEGER PRIMARY KEY,
        layer_id   INTEGER NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
        path       TEXT NOT NULL,
        kind       TEXT NOT NULL,
        mode       INTEGER NOT NULL,
        uid        INTEGER NOT NULL,
        gid        INTEGER NOT NULL,
        size       INTEGER NOT NULL,
        mtime      INTEGER NOT NULL,
        link       TEXT,
        dev_major  INTEGER NOT NULL,
        dev_minor  INTEGER NOT NULL,
        xattrs     BLOB,
        digest     TEXT,
        tar_offset INTEGER NOT NULL
    );
    CREATE INDEX entries_layer ON entries(layer_id);
    CREATE INDEX entries_digest ON entries(digest) WHERE digest IS NOT NULL;
    CREATE TABLE objects (
        digest TEXT PRIMARY KEY,
        size   INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
];

/// Opens (creating if needed) the index at `path` and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|source| DbError::Open {
        path: path.display().to_string(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(60))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > known {
        return Err(DbError::TooNew {
            found: version,
            known,
        });
    }
    if version == known {
        return Ok(());
    }
    // IMMEDIATE takes the write lock first, so two processes racing here migrate once.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let run = || -> Result<()> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", (n + 1) as i64)?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A layer row as the index keeps it.
#[derive(Debug, Clone)]
pub struct LayerRecord {
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    pub size: u64,
    pub unpacked_size: u64,
}

/// Returns the row id of the layer with this compressed digest, if it is indexed.
pub fn layer_id(conn: &Connection, digest: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM layers WHERE digest = ?1")?
        .query_row([digest], |r| r.get(0))
        .optional()?)
}

/// Records a fully imported layer, its entries and the objects they use, in one transaction.
pub fn insert_layer(
    conn: &mut Connection,
    layer: &LayerRecord,
    entries: &[Entry],
    objects: &[(String, u64)],
) -> Result<i64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Another process may have imported the same layer while this one streamed it.
    if let Some(id) = layer_id(&tx, &layer.digest)? {
        return Ok(id);
    }
    tx.prepare_cached(
        "INSERT INTO layers (digest, diff_id, media_type, size, unpacked_size, entry_count, imported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        layer.digest,
        layer.diff_id,
        layer.media_type,
        layer.size as i64,
        layer.unpacked_size as i64,
        entries.len() as i64,
        now()
    ])?;
    let id = tx.last_insert_rowid();
    insert_entries(&tx, id, entries)?;
    {
        let mut stmt =
            tx.prepare_cached("INSERT OR IGNORE INTO objects (digest, size) VALUES (?1, ?2)")?;
        for (digest, size) in objects {
            stmt.execute(params![digest, *size as i64])?;
        }
    }
    tx.commit()?;
    Ok(id)
}

fn insert_entries(tx: &Transaction, layer_id: i64, entries: &[Entry]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO entries (layer_id, path, kind, mode, uid, gid, size, mtime, link,
                              dev_major, dev_minor, xattrs, digest, tar_offset)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for e in entries {
        let xattrs = if e.xattrs.is_empty() {
            None
        } else {
            Some(crate::entry::encode_xattrs(&e.xattrs))
        };
        stmt.execute(params![
            layer_id,
            e.path,
            e.kind.as_str(),
            e.mode,
            e.uid as i64,
            e.gid as i64,
            e.size as i64,
            e.mtime,
            e.link,
            e.dev_major,
            e.dev_minor,
            xattrs,
            e.digest,
            e.tar_offset as i64,
        ])?;
    }
    Ok(())
}

/// Reads every entry of a layer, in the order they were recorded.
pub fn layer_entries(conn: &Connection, layer_id: i64) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT path, kind, mode, uid, gid, size, mtime, link, dev_major, dev_minor, xattrs,
                digest, tar_offset
         FROM entries WHERE layer_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([layer_id], |r| {
        let kind: String = r.get(1)?;
        let xattrs: Option<Vec<u8>> = r.get(10)?;
        Ok(Entry {
            path: r.get(0)?,
            kind: EntryKind::parse(&kind).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    1,
                    rusqlite::types::Type::Text,
                    format!("unknown entry kind {kind:?}").into(),
                )
            })?,
            mode: r.get(2)?,
            uid: r.get::<_, i64>(3)? as u64,
            gid: r.get::<_, i64>(4)? as u64,
            size: r.get::<_, i64>(5)? as u64,
            mtime: r.get(6)?,
            link: r.get(7)?,
            dev_major: r.get(8)?,
            dev_minor: r.get(9)?,
            xattrs: xattrs
                .map(|b| crate::entry::decode_xattrs(&b))
                .unwrap_or_default(),
            digest: r.get(11)?,
            tar_offset: r.get::<_, i64>(12)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
