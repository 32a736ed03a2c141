//! Image-level queries: naming, listing, sizes, removal.

use rusqlite::{params, Connection, OptionalExtension};

use super::db::{now, Result};

/// What `pull` records for a new image.
pub struct NewImage<'a> {
    pub manifest_digest: &'a str,
    pub config_digest: &'a str,
    pub manifest: &'a [u8],
    pub config: &'a [u8],
    pub platform: &'a str,
    pub layer_ids: &'a [i64],
    pub name: &'a str,
}

/// Records an image, its layer order and its name in one transaction.
/// Returns false when the image was already there (only the name moved).
pub fn insert(conn: &mut Connection, img: &NewImage) -> Result<bool> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let inserted = tx.execute(
        "INSERT INTO images (manifest_digest, config_digest, manifest, config, platform, pulled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(manifest_digest) DO NOTHING",
        params![
            img.manifest_digest,
            img.config_digest,
            img.manifest,
            img.config,
            img.platform,
            now()
        ],
    )? == 1;
    let id: i64 = tx.query_row(
        "SELECT id FROM images WHERE manifest_digest = ?1",
        [img.manifest_digest],
        |r| r.get(0),
    )?;
    if inserted {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO image_layers (image_id, position, layer_id) VALUES (?1, ?2, ?3)",
        )?;
        for (pos, layer) in img.layer_ids.iter().enumerate() {
            stmt.execute(params![id, pos as i64, layer])?;
        }
    }
    set_tag(&tx, img.name, id)?;
    tx.commit()?;
    Ok(inserted)
}

/// Points `name` at image `id` (moving it from any other image).
pub fn set_tag(conn: &Connection, name: &str, id: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO tags (name, image_id) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
        params![name, id],
    )?;
    Ok(())
}

/// (id, config digest, layer count) of the image with this manifest digest.
pub fn image_by_manifest(conn: &Connection, digest: &str) -> Result<Option<(i64, String, usize)>> {
    Ok(conn
        .query_row(
            "SELECT i.id, i.config_digest, (SELECT COUNT(*) FROM image_layers l WHERE l.image_id = i.id)
             FROM images i WHERE i.manifest_digest = ?1",
            [digest],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as usize)),
        )
        .optional()?)
}

/// One stored image.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub id: i64,
    pub manifest_digest: String,
    pub config_digest: String,
    pub platform: String,
    pub pulled_at: i64,
    pub names: Vec<String>,
}

const IMAGE_COLUMNS: &str = "id, manifest_digest, config_digest, platform, pulled_at";

fn image_row(conn: &Connection, r: &rusqlite::Row) -> rusqlite::Result<ImageRow> {
    let id: i64 = r.get(0)?;
    let mut stmt =
        conn.prepare_cached("SELECT name FROM tags WHERE image_id = ?1 ORDER BY name")?;
    let names = stmt
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ImageRow {
        id,
        manifest_digest: r.get(1)?,
        config_digest: r.get(2)?,
        platform: r.get(3)?,
        pulled_at: r.get(4)?,
        names,
    })
}

/// Every image, newest first.
pub fn list(conn: &Connection) -> Result<Vec<ImageRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {IMAGE_COLUMNS} FROM images ORDER BY pulled_at DESC, id DESC"
    ))?;
    let rows = stmt.query_map([], |r| image_row(conn, r))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// How a user named an image on the command line.
pub enum Lookup<'a> {
    /// A normalised `registry/repo:tag` or `registry/repo@digest`.
    Name(&'a str),
    /// A (prefix of a) config digest hex, the docker image id; or a full manifest digest.
    Id(&'a str),
}

/// Finds images matching a lookup; more than one means an ambiguous id prefix.
pub fn find(conn: &Connection, what: Lookup) -> Result<Vec<ImageRow>> {
    let (sql, arg) = match what {
        Lookup::Name(n) => (
            format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id IN (SELECT image_id FROM tags WHERE name = ?1)"),
            n.to_owned(),
        ),
        Lookup::Id(id) => {
            let hex = id.strip_prefix("sha256:").unwrap_or(id);
            if id.starts_with("sha256:") && hex.len() == 64 {
                (
                    format!("SELECT {IMAGE_COLUMNS} FROM images WHERE config_digest = ?1 OR manifest_digest = ?1"),
                    id.to_owned(),
                )
            } else {
                (
                    format!("SELECT {IMAGE_COLUMNS} FROM images WHERE substr(config_digest, 8, length(?1)) = ?1"),
                    hex.to_owned(),
                )
            }
        }
    };
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([arg], |r| image_row(conn, r))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The raw config and manifest JSON of an image.
pub fn image_blobs(conn: &Connection, id: i64) -> Result<(Vec<u8>, Vec<u8>)> {
    Ok(conn.query_row(
        "SELECT config, manifest FROM images WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Layer row ids of an image, bottom first.
pub fn image_layer_ids(conn: &Connection, id: i64) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT layer_id FROM image_layers WHERE image_id = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
}

/// Size of an image (distinct objects it uses) and how much of that other images use too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageSize {
    pub size: u64,
    pub shared: u64,
}

/// Sizes of every image, by image id.
pub fn sizes(conn: &Connection) -> Result<std::collections::HashMap<i64, ImageSize>> {
    let mut stmt = conn.prepare(
        "WITH img_obj AS (
             SELECT DISTINCT il.image_id, e.digest
             FROM image_layers il JOIN entries e ON e.layer_id = il.layer_id
             WHERE e.digest IS NOT NULL),
         users AS (SELECT digest, COUNT(*) AS n FROM img_obj GROUP BY digest)
         SELECT io.image_id, SUM(o.size), SUM(CASE WHEN u.n > 1 THEN o.size ELSE 0 END)
         FROM img_obj io JOIN objects o ON o.digest = io.digest JOIN users u ON u.digest = io.digest
         GROUP BY io.image_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            ImageSize {
                size: r.get::<_, i64>(1)? as u64,
                shared: r.get::<_, i64>(2)? as u64,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Removes one name. Returns the image id it pointed at.
pub fn remove_tag(conn: &Connection, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "DELETE FROM tags WHERE name = ?1 RETURNING image_id",
            [name],
            |r| r.get(0),
        )
        .optional()?)
}

/// Number of names an image still has.
pub fn tag_count(conn: &Connection, id: i64) -> Result<usize> {
    Ok(
        conn.query_row("SELECT COUNT(*) FROM tags WHERE image_id = ?1", [id], |r| {
            r.get::<_, i64>(0)
        })? as usize,
    )
}

/// Deletes an image (its names and layer list), then every layer no image uses any more.
pub fn delete_image(conn: &mut Connection, id: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM tags WHERE image_id = ?1", [id])?;
    tx.execute("DELETE FROM image_layers WHERE image_id = ?1", [id])?;
    tx.execute("DELETE FROM images WHERE id = ?1", [id])?;
    delete_unused_layers(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Deletes layers (and their entries) that no image lists.
pub fn delete_unused_layers(conn: &Connection) -> Result<usize> {
    conn.execute(
        "DELETE FROM entries WHERE layer_id IN
           (SELECT id FROM layers WHERE id NOT IN (SELECT layer_id FROM image_layers))",
        [],
    )?;
    Ok(conn.execute(
        "DELETE FROM layers WHERE id NOT IN (SELECT layer_id FROM image_layers)",
        [],
    )?)
}

/// Ids of images with no name.
pub fn dangling(conn: &Connection) -> Result<Vec<i64>> {
    let mut stmt =
        conn.prepare("SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM tags)")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
}

/// Totals for `df`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub images: u64,
    pub layers: u64,
    pub entries: u64,
    /// Sum of every layer's regular-file bytes: what unpacking each layer would write.
    pub logical: u64,
    pub objects: u64,
    /// Bytes held in `objects/`: each distinct content once.
    pub stored: u64,
}

pub fn usage(conn: &Connection) -> Result<Usage> {
    let one =
        |sql: &str| -> Result<u64> { Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
    Ok(Usage {
        images: one("SELECT COUNT(*) FROM images")?,
        layers: one("SELECT COUNT(*) FROM layers")?,
        entries: one("SELECT COUNT(*) FROM entries")?,
        logical: one("SELECT COALESCE(SUM(unpacked_size), 0) FROM layers")?,
        objects: one("SELECT COUNT(*) FROM objects")?,
        stored: one("SELECT COALESCE(SUM(size), 0) FROM objects")?,
    })
}
