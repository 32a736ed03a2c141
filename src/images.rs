//! The operations behind `images`, `inspect`, `rmi`, `prune` and `df`.

use crate::image::ImageConfig;
use crate::store::query::{self, ImageRow, ImageSize, Lookup, Usage};
use crate::store::{gc, Store, StoreError, StoreLock};

/// Errors naming or removing images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no such image: {0} (see `lazyrun images`)")]
    NotFound(String),
    #[error("image id {input} is ambiguous: it matches {count} images; give more digits")]
    Ambiguous { input: String, count: usize },
    #[error("image {id} has several names ({names}); remove them by name, or use --force")]
    MultipleNames { id: String, names: String },
    #[error("image {0} is in use by a lazyfs mount or container; unmount or remove that first")]
    InUse(String),
    #[error("image config of {id} is unreadable: {reason}")]
    Config { id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, ImageError>;

impl From<crate::store::db::DbError> for ImageError {
    fn from(e: crate::store::db::DbError) -> Self {
        ImageError::Store(StoreError::Db(e))
    }
}

/// The docker-style short id: the first 12 hex digits of the config digest.
pub fn short_id(config_digest: &str) -> String {
    let hex = config_digest
        .strip_prefix("sha256:")
        .unwrap_or(config_digest);
    hex.chars().take(12).collect()
}

fn looks_like_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    !hex.is_empty()
        && hex.len() <= 64
        && hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// Finds the one image a user means: by name (normalised like a pull), else by id prefix.
pub fn resolve(store: &Store, input: &str) -> Result<ImageRow> {
    let conn = store.connect()?;
    if let Ok(r) = crate::reference::parse(input) {
        let name = crate::reference::display(&r);
        if let Some(row) = query::find(&conn, Lookup::Name(&name))?.into_iter().next() {
            return Ok(row);
        }
    }
    if looks_like_id(input) {
        let mut rows = query::find(&conn, Lookup::Id(input))?;
        return match rows.len() {
            0 => Err(ImageError::NotFound(input.to_owned())),
            1 => Ok(rows.remove(0)),
            count => Err(ImageError::Ambiguous {
                input: input.to_owned(),
                count,
            }),
        };
    }
    Err(ImageError::NotFound(input.to_owned()))
}

/// An image with its sizes, for `images`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub row: ImageRow,
    pub size: ImageSize,
    pub created: Option<String>,
}

pub fn list(store: &Store) -> Result<Vec<Listed>> {
    let conn = store.connect()?;
    let sizes = query::sizes(&conn)?;
    let mut out = Vec::new();
    for row in query::list(&conn)? {
        let (config, _) = query::image_blobs(&conn, row.id)?;
        let created = ImageConfig::parse(&config).ok().and_then(|c| c.created);
        out.push(Listed {
            size: sizes.get(&row.id).copied().unwrap_or_default(),
            row,
            created,
        });
    }
    Ok(out)
}

/// Everything `inspect` shows.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub manifest_digest: String,
    pub platform: String,
    pub created: Option<String>,
    pub author: Option<String>,
    pub size: u64,
    pub config: crate::image::RunConfig,
    pub layers: Vec<String>,
    pub diff_ids: Vec<String>,
    pub history: Vec<crate::image::History>,
}

pub fn inspect(store: &Store, input: &str) -> Result<Inspect> {
    let row = resolve(store, input)?;
    let conn = store.connect()?;
    let (config_bytes, manifest_bytes) = query::image_blobs(&conn, row.id)?;
    let config = ImageConfig::parse(&config_bytes).map_err(|e| ImageError::Config {
        id: short_id(&row.config_digest),
        reason: e.to_string(),
    })?;
    let manifest: crate::manifest::ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| ImageError::Config {
            id: short_id(&row.config_digest),
            reason: e.to_string(),
        })?;
    let size = query::sizes(&conn)?
        .get(&row.id)
        .copied()
        .unwrap_or_default()
        .size;
    Ok(Inspect {
        id: row.config_digest.clone(),
        repo_tags: row.names.clone(),
        manifest_digest: row.manifest_digest.clone(),
        platform: row.platform.clone(),
        created: config.created.clone(),
        author: config.author.clone(),
        size,
        layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        diff_ids: config.rootfs.diff_ids.clone(),
        history: config.history.clone(),
        config: config.config,
    })
}

/// One line of `rmi` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(String),
}

/// Removes names; an image whose last name goes is deleted, then unused objects are freed.
/// A name given as an id removes the whole image (with `force` even if it has several names).
pub fn remove(
    store: &Store,
    inputs: &[String],
    force: bool,
) -> Result<(Vec<Removed>, gc::Collected)> {
    let _lock = store.lock(StoreLock::Exclusive)?;
    let mut conn = store.connect()?;
    let mut out = Vec::new();
    for input in inputs {
        let row = resolve(store, input)?;
        let by_name = crate::reference::parse(input)
            .ok()
            .map(|r| crate::reference::display(&r))
            .filter(|n| row.names.contains(n));
        let deletes = by_name.is_none() || row.names.len() <= 1;
        if deletes && store.image_in_use(row.id) {
            return Err(ImageError::InUse(input.clone()));
        }
        match by_name {
            Some(name) => {
                query::remove_tag(&conn, &name)?;
                out.push(Removed::Untagged(name));
                if query::tag_count(&conn, row.id)? > 0 {
                    continue;
                }
            }
            None => {
                if row.names.len() > 1 && !force {
                    return Err(ImageError::MultipleNames {
                        id: short_id(&row.config_digest),
                        names: row.names.join(", "),
                    });
                }
                out.extend(row.names.iter().cloned().map(Removed::Untagged));
            }
        }
        query::delete_image(&mut conn, row.id)?;
        out.push(Removed::Deleted(row.config_digest.clone()));
    }
    let collected = gc::collect(store)?;
    Ok((out, collected))
}

/// What `prune` removed.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub images: Vec<String>,
    pub collected: gc::Collected,
}

/// Deletes images without a name, layers no image uses and objects nothing references.
pub fn prune(store: &Store) -> Result<Pruned> {
    let _lock = store.lock(StoreLock::Exclusive)?;
    let mut conn = store.connect()?;
    let mut images = Vec::new();
    for id in query::dangling(&conn)? {
        if store.image_in_use(id) {
            continue;
        }
        let digest: String = conn
            .query_row(
                "SELECT config_digest FROM images WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(crate::store::db::DbError::from)?;
        query::delete_image(&mut conn, id)?;
        images.push(digest);
    }
    query::delete_unused_layers(&conn)?;
    let collected = gc::collect(store)?;
    Ok(Pruned { images, collected })
}

/// Store totals for `df`.
pub fn usage(store: &Store) -> Result<Usage> {
    Ok(query::usage(&store.connect()?)?)
}
