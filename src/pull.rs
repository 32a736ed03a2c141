//! `pull`: resolve a reference, fetch and verify the config, import every layer not yet
//! indexed (all in parallel, each streamed once), then record the image in one transaction.
//!
//! Crash safety: a layer's entries are committed only after its digest, size and diff id
//! checked out and its objects reached the disk (syncfs); the image row only after all its
//! layers. An interrupted pull leaves at most unreferenced objects and files in `tmp/`.

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::Reference;
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::sync::Arc;

use crate::image::ImageConfig;
use crate::layer::{self, Compression, Expected, LayerError};
use crate::manifest::{self, Descriptor, ImageManifest, Manifest, ManifestError, Platform};
use crate::reference::{self, RefError};
use crate::registry::{BlobSource, Registry, RegistryError, RegistryOptions};
use crate::store::{self, db, Store, StoreError, StoreLock};

/// Largest manifest or config accepted, so a hostile registry cannot exhaust memory.
const MAX_JSON: u64 = 8 << 20;

/// Errors of a pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{reference}: {source}")]
    Manifest {
        reference: String,
        source: ManifestError,
    },
    #[error("image config {digest}: {reason}")]
    Config { digest: String, reason: String },
    #[error("layer {digest}: {source}")]
    Layer { digest: String, source: LayerError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("internal task failed: {0}")]
    Task(String),
}

pub type Result<T> = std::result::Result<T, PullError>;

/// What a pull should select and how to reach the registry.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    pub registry: RegistryOptions,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            registry: RegistryOptions::default(),
        }
    }
}

impl PullOptions {
    /// Options from a command line: `os/arch[/variant]` (the host's when absent) and the
    /// registries to reach over plain HTTP.
    pub fn from_args(
        platform: Option<&str>,
        insecure: &[String],
    ) -> std::result::Result<PullOptions, crate::manifest::ManifestError> {
        Ok(PullOptions {
            platform: match platform {
                Some(p) => Platform::parse(p)?,
                None => Platform::host(),
            },
            registry: RegistryOptions {
                insecure: insecure.to_vec(),
            },
        })
    }
}

/// Receives progress as layers are fetched; the CLI draws bars from it.
pub trait Progress: Send + Sync {
    /// A layer of `size` compressed bytes is about to be fetched.
    fn start(&self, digest: &str, size: u64);
    /// `n` more bytes of that layer arrived.
    fn advance(&self, digest: &str, n: u64);
    /// The layer is indexed; `cached` when nothing had to be fetched.
    fn finish(&self, digest: &str, cached: bool);
}

/// A progress sink that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: bool) {}
}

/// The outcome of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The normalised name the image is now known by.
    pub name: String,
    pub manifest_digest: String,
    pub config_digest: String,
    /// False when the store already had this exact image.
    pub new_image: bool,
    /// Layers fetched by this pull (the rest were already indexed).
    pub layers_fetched: usize,
    pub layers_total: usize,
}

/// Pulls `input` from its registry into `store`.
pub async fn pull(
    store: &Store,
    input: &str,
    opts: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pulled> {
    let r = reference::parse(input)?;
    let source = Arc::new(Registry::new(&r, &opts.registry));
    pull_from(source, store, &r, &opts.platform, progress).await
}

/// Pulls `r` from any [`BlobSource`].
pub async fn pull_from<S: BlobSource + 'static>(
    source: Arc<S>,
    store: &Store,
    r: &Reference,
    platform: &Platform,
    progress: Arc<dyn Progress>,
) -> Result<Pulled> {
    let (manifest, manifest_digest) = resolve(&*source, r, platform).await?;
    let name = reference::display(r);

    let s = store.clone();
    let lock = blocking(move || s.lock(StoreLock::Shared)).await??;
    store.objects().clean_stale_tmp();

    if let Some(p) = existing_image(store, &manifest_digest, &name)? {
        drop(lock);
        return Ok(p);
    }

    let config_bytes = fetch_config(&*source, r, &manifest.config).await?;
    let config = ImageConfig::parse(&config_bytes).map_err(|e| PullError::Config {
        digest: manifest.config.digest.clone(),
        reason: e.to_string(),
    })?;
    let diff_ids = config.diff_ids();
    if !diff_ids.is_empty() && diff_ids.len() != manifest.layers.len() {
        return Err(PullError::Config {
            digest: manifest.config.digest.clone(),
            reason: format!(
                "it lists {} diff ids but the manifest has {} layers",
                diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    // Refuse unsupported layers before downloading anything.
    let mut plan = Vec::new();
    for (i, l) in manifest.layers.iter().enumerate() {
        let compression =
            Compression::from_media_type(&l.media_type, &l.digest).map_err(|source| {
                PullError::Layer {
                    digest: l.digest.clone(),
                    source,
                }
            })?;
        plan.push((l.clone(), compression, diff_ids.get(i).cloned()));
    }

    let mut tasks = tokio::task::JoinSet::new();
    for (i, (desc, compression, diff_id)) in plan.into_iter().enumerate() {
        let (source, store, r, progress) =
            (source.clone(), store.clone(), r.clone(), progress.clone());
        tasks.spawn(async move {
            let fetched = ensure_layer(
                &*source,
                &store,
                &r,
                &desc,
                compression,
                diff_id,
                &*progress,
            )
            .await;
            (i, fetched)
        });
    }
    let mut layer_ids = vec![0i64; manifest.layers.len()];
    let mut fetched = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, res) = joined.map_err(|e| PullError::Task(e.to_string()))?;
        let (id, was_fetched) = res?;
        if let Some(slot) = layer_ids.get_mut(i) {
            *slot = id;
        }
        fetched += usize::from(was_fetched);
    }

    let manifest_json =
        serde_json::to_vec(&manifest).map_err(|e| PullError::Task(e.to_string()))?;
    let record = db_image::NewImage {
        manifest_digest: &manifest_digest,
        config_digest: &manifest.config.digest,
        manifest: &manifest_json,
        config: &config_bytes,
        platform: &config.platform().to_string(),
        layer_ids: &layer_ids,
        name: &name,
    };
    let s = store.clone();
    let new_image = {
        let mut conn = s.connect()?;
        db_image::insert(&mut conn, &record)?
    };
    drop(lock);
    Ok(Pulled {
        name,
        manifest_digest,
        config_digest: manifest.config.digest.clone(),
        new_image,
        layers_fetched: fetched,
        layers_total: layer_ids.len(),
    })
}

use crate::store::query as db_image;

/// Fetches the manifest, following an index to the wanted platform.
async fn resolve<S: BlobSource>(
    source: &S,
    r: &Reference,
    platform: &Platform,
) -> Result<(ImageManifest, String)> {
    let name = reference::display(r);
    let bad = |source| PullError::Manifest {
        reference: name.clone(),
        source,
    };
    let (bytes, digest) = source.manifest(r).await?;
    let (bytes, digest) = match manifest::parse(&bytes).map_err(bad)? {
        Manifest::Image(m) => return Ok((*m, digest)),
        Manifest::Index(entries) => {
            let chosen = manifest::select_platform(&entries, platform).map_err(bad)?;
            let by_digest = Reference::with_digest(
                r.registry().to_owned(),
                r.repository().to_owned(),
                chosen.digest.clone(),
            );
            source.manifest(&by_digest).await?
        }
    };
    match manifest::parse(&bytes).map_err(bad)? {
        Manifest::Image(m) => Ok((*m, digest)),
        Manifest::Index(_) => Err(bad(ManifestError::MediaType(
            "an index inside an index".into(),
        ))),
    }
}

/// When the store already has this manifest, (re)points the name at it and says so.
fn existing_image(store: &Store, manifest_digest: &str, name: &str) -> Result<Option<Pulled>> {
    let conn = store.connect()?;
    let Some((id, config_digest, layers)) = db_image::image_by_manifest(&conn, manifest_digest)?
    else {
        return Ok(None);
    };
    db_image::set_tag(&conn, name, id)?;
    Ok(Some(Pulled {
        name: name.to_owned(),
        manifest_digest: manifest_digest.to_owned(),
        config_digest,
        new_image: false,
        layers_fetched: 0,
        layers_total: layers,
    }))
}

async fn fetch_config<S: BlobSource>(
    source: &S,
    r: &Reference,
    desc: &Descriptor,
) -> Result<Vec<u8>> {
    let bad = |reason: String| PullError::Config {
        digest: desc.digest.clone(),
        reason,
    };
    if desc.size > MAX_JSON {
        return Err(bad(format!(
            "{} bytes is larger than the {} allowed",
            desc.size, MAX_JSON
        )));
    }
    let mut stream = source.blob(r, desc).await?;
    let mut buf = Vec::with_capacity(desc.size as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad(format!("download failed: {e}")))?;
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > MAX_JSON {
            return Err(bad("larger than its descriptor says".into()));
        }
    }
    let found = crate::store::objects::digest_string(&Sha256::digest(&buf));
    if found != desc.digest {
        return Err(bad(format!(
            "digest mismatch: expected {}, found {found}",
            desc.digest
        )));
    }
    Ok(buf)
}

/// Makes sure one layer is indexed; returns its row id and whether it had to be fetched.
async fn ensure_layer<S: BlobSource>(
    source: &S,
    store: &Store,
    r: &Reference,
    desc: &Descriptor,
    compression: Compression,
    diff_id: Option<String>,
    progress: &dyn Progress,
) -> Result<(i64, bool)> {
    let (s, d) = (store.clone(), desc.digest.clone());
    let guard = blocking(move || s.lock_layer(&d)).await??;
    if let Some(id) = db::layer_id(&store.connect()?, &desc.digest)? {
        progress.finish(&desc.digest, true);
        return Ok((id, false));
    }
    progress.start(&desc.digest, desc.size);
    let mut stream = source.blob(r, desc).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(32);
    let (s, d) = (store.clone(), desc.clone());
    let import = tokio::task::spawn_blocking(move || -> Result<i64> {
        let expected = Expected {
            digest: &d.digest,
            size: d.size,
            diff_id: diff_id.as_deref(),
            compression,
        };
        let reader = ChannelReader {
            rx,
            cur: Bytes::new(),
        };
        let imported =
            layer::import(reader, &expected, s.objects()).map_err(|source| PullError::Layer {
                digest: d.digest.clone(),
                source,
            })?;
        sync_store(&s)?;
        let record = db::LayerRecord {
            digest: d.digest.clone(),
            diff_id: imported.diff_id.clone(),
            media_type: d.media_type.clone(),
            size: d.size,
            unpacked_size: imported.unpacked_size,
        };
        let mut conn = s.connect()?;
        Ok(db::insert_layer(
            &mut conn,
            &record,
            &imported.entries,
            &imported.objects,
        )?)
    });
    while let Some(chunk) = stream.next().await {
        let n = chunk.as_ref().map(|c| c.len() as u64).unwrap_or(0);
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            // The importer stopped (it reports why) or the download broke (sent to it).
            break;
        }
        progress.advance(&desc.digest, n);
    }
    drop(tx);
    let id = import.await.map_err(|e| PullError::Task(e.to_string()))??;
    drop(guard);
    progress.finish(&desc.digest, false);
    Ok((id, true))
}

/// Objects must be on disk before the index row that references them is committed.
fn sync_store(store: &Store) -> Result<()> {
    let dir =
        std::fs::File::open(store.objects().objects_dir()).map_err(|source| StoreError::Io {
            path: store.objects().objects_dir().to_owned(),
            source,
        })?;
    nix::unistd::syncfs(&dir).map_err(|e| StoreError::Io {
        path: store.objects().objects_dir().to_owned(),
        source: e.into(),
    })?;
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PullError::Task(e.to_string()))
}

/// Presents an async channel of chunks as a blocking reader.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.cur = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

impl From<store::objects::ObjectError> for PullError {
    fn from(e: store::objects::ObjectError) -> Self {
        PullError::Store(StoreError::Object(e))
    }
}
