//! Regular-file contents stored once by sha256: `objects/ab/cdef…`.
//!
//! An object is written to `tmp/<pid>-…` while it is hashed, made read-only, and renamed under its
//! digest only once complete, so a name under `objects/` always holds exactly the bytes it names.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Contents up to this size are hashed in memory before touching the disk, so an object
/// the store already has costs no write at all.
const IN_MEMORY_LIMIT: u64 = 1 << 20;

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("content store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("reading file content: {0}")]
    Read(io::Error),
    #[error("file content is {found} bytes, expected {expected}")]
    ShortContent { expected: u64, found: u64 },
}

pub type Result<T> = std::result::Result<T, ObjectError>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ObjectError + '_ {
    move |source| ObjectError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Formats a sha256 as the OCI digest string `sha256:<hex>`.
pub fn digest_string(hash: &[u8]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

/// The content-addressed object directory and its temporary area.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    objects: PathBuf,
    tmp: PathBuf,
}

impl ObjectStore {
    /// Uses (creating if needed) `objects/` and `tmp/` below `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        for i in 0..=255u8 {
            let d = objects.join(format!("{i:02x}"));
            fs::create_dir_all(&d).map_err(io_at(&d))?;
        }
        Ok(ObjectStore { objects, tmp })
    }

    /// Where the object with this `sha256:<hex>` digest lives (whether or not it exists).
    pub fn path_of(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let (a, b) = hex.split_at(hex.len().min(2));
        self.objects.join(a).join(b)
    }

    /// The temporary directory, for partial downloads of any kind.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// The object directory.
    pub fn objects_dir(&self) -> &Path {
        &self.objects
    }

    /// True when an object of this digest and size is present.
    pub fn has(&self, digest: &str, size: u64) -> bool {
        fs::metadata(self.path_of(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Opens an object read-only.
    pub fn open_object(&self, digest: &str) -> Result<File> {
        let p = self.path_of(digest);
        File::open(&p).map_err(io_at(&p))
    }

    /// Reads exactly `size` bytes from `reader`, stores them, and returns their digest.
    /// `buf` is scratch space reused across calls.
    pub fn put_reader(
        &self,
        reader: &mut impl Read,
        size: u64,
        buf: &mut Vec<u8>,
    ) -> Result<String> {
        if size <= IN_MEMORY_LIMIT {
            buf.clear();
            reader
                .take(size)
                .read_to_end(buf)
                .map_err(ObjectError::Read)?;
            if buf.len() as u64 != size {
                return Err(ObjectError::ShortContent {
                    expected: size,
                    found: buf.len() as u64,
                });
            }
            let digest = digest_string(&Sha256::digest(&buf[..]));
            if !self.has(&digest, size) {
                let mut tmp = self.temp_file()?;
                tmp.write_all(buf).map_err(io_at(tmp.path()))?;
                self.commit(tmp, &digest)?;
            }
            return Ok(digest);
        }
        let mut tmp = self.temp_file()?;
        let mut hasher = Sha256::new();
        let mut left = size;
        buf.resize(256 * 1024, 0);
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = reader.read(&mut buf[..want]).map_err(ObjectError::Read)?;
            if n == 0 {
                return Err(ObjectError::ShortContent {
                    expected: size,
                    found: size - left,
                });
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io_at(tmp.path()))?;
            left -= n as u64;
        }
        let digest = digest_string(&hasher.finalize());
        if !self.has(&digest, size) {
            self.commit(tmp, &digest)?;
        }
        Ok(digest)
    }

    /// A new temporary file in `tmp/`, named after this process so stale ones can be found.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempfile_in(&self.tmp)
            .map_err(io_at(&self.tmp))
    }

    fn commit(&self, tmp: tempfile::NamedTempFile, digest: &str) -> Result<()> {
        let dest = self.path_of(digest);
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(io_at(tmp.path()))?;
        tmp.persist(&dest).map_err(|e| ObjectError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Removes temporary files left by processes that no longer run (a killed pull).
    pub fn clean_stale_tmp(&self) {
        let Ok(dir) = fs::read_dir(&self.tmp) else {
            return;
        };
        for ent in dir.flatten() {
            let name = ent.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|p| {
                !matches!(
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None),
                    Err(nix::errno::Errno::ESRCH)
                )
            });
            if !alive {
                let _ = fs::remove_file(ent.path());
            }
        }
    }

    /// Every object file on disk, as `(digest, path)`.
    pub fn list(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for a in fs::read_dir(&self.objects).map_err(io_at(&self.objects))? {
            let a = a.map_err(io_at(&self.objects))?;
            let Some(prefix) = a.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(inner) = fs::read_dir(a.path()) else {
                continue;
            };
            for b in inner.flatten() {
                if let Some(rest) = b.file_name().to_str() {
                    out.push((format!("sha256:{prefix}{rest}"), b.path()));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_once_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path()).unwrap();
        let mut buf = Vec::new();
        let d1 = store.put_reader(&mut &b"hello"[..], 5, &mut buf).unwrap();
        let d2 = store.put_reader(&mut &b"hello"[..], 5, &mut buf).unwrap();
        assert_eq!(d1, d2);
        assert_eq!(
            d1,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(fs::read(store.path_of(&d1)).unwrap(), b"hello");
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn large_content_streams_and_short_input_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path()).unwrap();
        let data = vec![7u8; 3 << 20];
        let mut buf = Vec::new();
        let d = store
            .put_reader(&mut &data[..], data.len() as u64, &mut buf)
            .unwrap();
        assert!(store.has(&d, data.len() as u64));
        let err = store
            .put_reader(&mut &data[..100], 2 << 20, &mut buf)
            .unwrap_err();
        assert!(matches!(err, ObjectError::ShortContent { .. }));
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }
}
