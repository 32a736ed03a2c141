//! Layer import: one pass over a compressed layer stream that verifies its digest and diff id,
//! stores every regular file's content by digest and records every entry for the index.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{self, BufReader, Read};

use crate::entry::{sanitize_path, split_parent, Entry, EntryKind, PathError};
use crate::store::objects::{digest_string, ObjectError, ObjectStore};

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Errors importing one layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer media type {0:?} is not supported (supported: tar, tar+gzip, tar+zstd)")]
    UnsupportedMediaType(String),
    #[error("layer {digest}: foreign or non-distributable layer ({media_type}) cannot be pulled; the registry does not serve it")]
    Foreign { digest: String, media_type: String },
    #[error("digest mismatch: expected {expected}, found {found}")]
    DigestMismatch { expected: String, found: String },
    #[error("size mismatch: expected {expected} bytes, found {found}")]
    SizeMismatch { expected: u64, found: u64 },
    #[error("uncompressed content does not match the image config's diff id: expected {expected}, found {found}")]
    DiffIdMismatch { expected: String, found: String },
    #[error("reading layer: {0}")]
    Read(io::Error),
    #[error("hostile entry refused: {0}")]
    Path(#[from] PathError),
    #[error("entry {path}: {source}")]
    Entry { path: String, source: io::Error },
    #[error("entry {path}: {source}")]
    Object { path: String, source: ObjectError },
}

pub type Result<T> = std::result::Result<T, LayerError>;

impl Compression {
    /// Maps an OCI or Docker layer media type; foreign layers and unknown types are errors.
    pub fn from_media_type(media_type: &str, digest: &str) -> Result<Compression> {
        if media_type.contains("nondistributable") || media_type.contains("foreign") {
            return Err(LayerError::Foreign {
                digest: digest.to_owned(),
                media_type: media_type.to_owned(),
            });
        }
        Ok(match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
            other => return Err(LayerError::UnsupportedMediaType(other.to_owned())),
        })
    }
}

/// What the caller knows about the layer before reading it.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub digest: &'a str,
    pub size: u64,
    /// From the image config's `rootfs.diff_ids`, when the config has one for this layer.
    pub diff_id: Option<&'a str>,
    pub compression: Compression,
}

/// The result of a verified import.
#[derive(Debug)]
pub struct Imported {
    pub entries: Vec<Entry>,
    /// Every object this layer's entries use, with its size.
    pub objects: Vec<(String, u64)>,
    pub diff_id: String,
    /// Sum of regular file sizes: what unpacking this layer alone would write.
    pub unpacked_size: u64,
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    fn finish(self) -> (String, u64, R) {
        (
            digest_string(&self.hasher.finalize()),
            self.count,
            self.inner,
        )
    }
}

/// Imports a layer from its compressed byte stream. Nothing is recorded in the index here:
/// the caller commits the returned entries only after this has verified everything.
pub fn import(blob: impl Read, expected: &Expected, objects: &ObjectStore) -> Result<Imported> {
    let raw = Hashing::new(BufReader::with_capacity(256 * 1024, blob));
    let (tar_stream, imported) = match expected.compression {
        Compression::None => {
            let mut diff = Hashing::new(raw);
            let imported = read_tar(&mut diff, objects);
            (diff, imported)
        }
        Compression::Gzip => {
            let mut diff = Hashing::new(Decoder::Gzip(Box::new(
                flate2::read::MultiGzDecoder::new(raw),
            )));
            let imported = read_tar(&mut diff, objects);
            (map_inner(diff), imported)
        }
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::new(raw).map_err(LayerError::Read)?;
            let mut diff = Hashing::new(Decoder::Zstd(dec));
            let imported = read_tar(&mut diff, objects);
            (map_inner(diff), imported)
        }
    };
    // A hostile entry or a store that cannot write is final whatever the digest says.
    let imported = match imported {
        Err(
            e @ (LayerError::Path(_)
            | LayerError::Object {
                source: ObjectError::Io { .. },
                ..
            }),
        ) => return Err(e),
        other => other,
    };
    let (diff_id, _, raw) = tar_stream.finish();
    let mut raw = raw;
    // Bytes after the compressed stream still count toward the blob digest. When decoding
    // failed, the digest usually says why (a corrupt blob), so it is checked first.
    let drained = io::copy(&mut raw, &mut io::sink());
    let (digest, size, _) = raw.finish();
    if drained.is_ok() && digest != expected.digest {
        return Err(LayerError::DigestMismatch {
            expected: expected.digest.to_owned(),
            found: digest,
        });
    }
    let imported = imported?;
    drained.map_err(LayerError::Read)?;
    if size != expected.size {
        return Err(LayerError::SizeMismatch {
            expected: expected.size,
            found: size,
        });
    }
    if let Some(want) = expected.diff_id {
        if want != diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: want.to_owned(),
                found: diff_id,
            });
        }
    }
    Ok(Imported {
        diff_id,
        ..imported
    })
}

enum Decoder<R: Read> {
    Gzip(Box<flate2::read::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// Takes the decoder off the compressed reader so its remaining bytes can be drained and
/// hashed. Bytes the decoder buffered but did not use were hashed when they were read.
fn map_inner<R: Read>(diff: Hashing<Decoder<R>>) -> Hashing<R> {
    let Hashing {
        inner,
        hasher,
        count,
    } = diff;
    let raw = match inner {
        Decoder::Gzip(d) => (*d).into_inner(),
        Decoder::Zstd(d) => d.finish().into_inner(),
    };
    Hashing {
        inner: raw,
        hasher,
        count,
    }
}

/// Reads the tar stream to its end (and past it, so the diff id covers every byte).
fn read_tar<R: Read>(stream: &mut R, objects: &ObjectStore) -> Result<Imported> {
    let mut archive = tar::Archive::new(&mut *stream);
    let mut entries: Vec<Entry> = Vec::new();
    // (path, is_opaque) -> index in `entries`: a later member with the same path wins.
    let mut by_path: HashMap<(String, bool), usize> = HashMap::new();
    let mut objs: HashMap<String, u64> = HashMap::new();
    let mut buf = Vec::new();
    for member in archive.entries().map_err(LayerError::Read)? {
        let mut member = member.map_err(LayerError::Read)?;
        let Some(entry) = read_member(&mut member, &by_path, &entries, objects, &mut buf)? else {
            continue;
        };
        if let Some(d) = &entry.digest {
            objs.insert(d.clone(), entry.size);
        }
        let key = (entry.path.clone(), entry.kind == EntryKind::Opaque);
        match by_path.get(&key) {
            Some(&i) => entries[i] = entry,
            None => {
                by_path.insert(key, entries.len());
                entries.push(entry);
            }
        }
    }
    io::copy(stream, &mut io::sink()).map_err(LayerError::Read)?;
    let unpacked_size = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Regular)
        .map(|e| e.size)
        .sum();
    // Objects no surviving entry uses (overwritten within the layer) are not this layer's.
    let used: std::collections::HashSet<&str> =
        entries.iter().filter_map(|e| e.digest.as_deref()).collect();
    let objects = objs
        .into_iter()
        .filter(|(d, _)| used.contains(d.as_str()))
        .collect();
    Ok(Imported {
        entries,
        objects,
        diff_id: String::new(),
        unpacked_size,
    })
}

fn read_member<R: Read>(
    member: &mut tar::Entry<'_, R>,
    by_path: &HashMap<(String, bool), usize>,
    entries: &[Entry],
    objects: &ObjectStore,
    buf: &mut Vec<u8>,
) -> Result<Option<Entry>> {
    use tar::EntryType as T;
    let etype = member.header().entry_type();
    let kind = match etype {
        T::Regular | T::Continuous => EntryKind::Regular,
        T::Directory => EntryKind::Directory,
        T::Symlink => EntryKind::Symlink,
        T::Link => EntryKind::Hardlink,
        T::Char => EntryKind::CharDevice,
        T::Block => EntryKind::BlockDevice,
        T::Fifo => EntryKind::Fifo,
        // PAX global headers and anything unknown carry no filesystem entry.
        _ => return Ok(None),
    };
    let raw_path = member.path_bytes().into_owned();
    let mut path = sanitize_path(&raw_path)?;
    let mut kind = kind;
    if let Some((parent, name)) = split_parent(&path) {
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                kind = EntryKind::Opaque;
                path = parent.to_owned();
            } else if hidden.starts_with(".wh.") {
                // Other `.wh..wh.` names are aufs bookkeeping, not content.
                return Ok(None);
            } else {
                kind = EntryKind::Whiteout;
                path = if parent.is_empty() {
                    hidden.to_owned()
                } else {
                    format!("{parent}/{hidden}")
                };
            }
        }
    }
    let header = member.header();
    let err = |source| LayerError::Entry {
        path: path.clone(),
        source,
    };
    let mut e = Entry {
        path: path.clone(),
        kind,
        mode: header.mode().map_err(err)? & 0o7777,
        uid: header.uid().map_err(err)?,
        gid: header.gid().map_err(err)?,
        size: 0,
        mtime: header.mtime().map_err(err)? as i64,
        link: None,
        dev_major: 0,
        dev_minor: 0,
        xattrs: Vec::new(),
        digest: None,
        tar_offset: member.raw_file_position(),
    };
    if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        e.dev_major = header.device_major().map_err(err)?.unwrap_or(0);
        e.dev_minor = header.device_minor().map_err(err)?.unwrap_or(0);
    }
    if let Some(pax) = member.pax_extensions().map_err(err)? {
        for ext in pax {
            let ext = ext.map_err(err)?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let num = || std::str::from_utf8(value).ok().map(str::trim);
            match key {
                "uid" => e.uid = num().and_then(|v| v.parse().ok()).unwrap_or(e.uid),
                "gid" => e.gid = num().and_then(|v| v.parse().ok()).unwrap_or(e.gid),
                "mtime" => {
                    // PAX mtimes may carry a fraction: keep whole seconds.
                    let secs = num().and_then(|v| v.split('.').next()?.parse().ok());
                    e.mtime = secs.unwrap_or(e.mtime);
                }
                k => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        e.xattrs.push((name.to_owned(), value.to_vec()));
                    }
                }
            }
        }
    }
    match kind {
        EntryKind::Regular => {
            e.size = member.size();
            let digest =
                objects
                    .put_reader(member, e.size, buf)
                    .map_err(|source| LayerError::Object {
                        path: path.clone(),
                        source,
                    })?;
            e.digest = Some(digest);
        }
        EntryKind::Symlink => {
            let target = link_target(member, &path)?;
            let target = std::str::from_utf8(&target)
                .map_err(|_| PathError::NotUtf8(String::from_utf8_lossy(&target).into_owned()))?;
            if target.contains('\0') {
                return Err(PathError::Nul(target.to_owned()).into());
            }
            e.link = Some(target.to_owned());
        }
        EntryKind::Hardlink => {
            let target = link_target(member, &path)?;
            let target = sanitize_path(&target)?;
            if let Some(&i) = by_path.get(&(target.clone(), false)) {
                let t = &entries[i];
                if t.kind == EntryKind::Regular {
                    e.size = t.size;
                    e.digest = t.digest.clone();
                }
            }
            e.link = Some(target);
        }
        _ => {}
    }
    Ok(Some(e))
}

fn link_target<R: Read>(member: &tar::Entry<'_, R>, path: &str) -> Result<Vec<u8>> {
    member
        .link_name_bytes()
        .map(|t| t.into_owned())
        .ok_or_else(|| LayerError::Entry {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, "link has no target"),
        })
}
