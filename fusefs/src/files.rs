//! Open files: opening (with copy-up for writers), reads, writes, sync, release.
//!
//! A handle holds a descriptor: an upper file, or an image content object opened read-only.
//! Reads and writes use it directly and never take the state lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::fs::{LazyFs, State};
use crate::handles::FileHandle;
use crate::lower::Kind;
use crate::upper;

/// How long a writer waits for passthrough readers that were just closed to be released.
pub(crate) const READERS_CLOSING: std::time::Duration = std::time::Duration::from_millis(500);

fn errno(e: i32) -> Error {
    Error::Errno(Errno::from_raw(e))
}

impl LazyFs {
    pub(crate) fn do_open(&self, ino: u64, flags: i32) -> Result<(u64, bool, Option<Arc<File>>)> {
        let acc = flags & libc::O_ACCMODE;
        let write = acc != libc::O_RDONLY;
        if write || flags & libc::O_TRUNC != 0 {
            self.io.wait_for_readers(ino, READERS_CLOSING);
        }
        let mut st = self.lock();
        let n = self.node(&st, ino)?.clone();
        if n.kind == Kind::Dir {
            return Err(errno(libc::EISDIR));
        }
        if write || flags & libc::O_TRUNC != 0 {
            if write {
                self.upper()?;
            }
            // The kernel reads an inode in passthrough straight from the image's object and
            // cannot mix that with writes through the server (see README). Nothing changes.
            if !self.io.start_write(ino) {
                return Err(errno(libc::ETXTBSY));
            }
            let opened = self.open_for_write(&mut st, ino, flags, write);
            if !write || opened.is_err() {
                self.io.end_write(ino);
            }
            let file = opened?;
            let fh = self.handles.insert(FileHandle {
                ino,
                file: Arc::new(file),
                writable: write,
                backing: Default::default(),
            });
            return Ok((fh, false, None));
        }
        let content: Option<String> = if n.upper {
            let path = self.upper()?.abs(&self.path_of(&st, ino)?);
            match upper::read_meta(&path)?.content {
                Some(c) => Some(c),
                None => {
                    let file = open_upper(
                        &path,
                        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW),
                    )?;
                    drop(st);
                    let fh = self.handles.insert(FileHandle {
                        ino,
                        file: Arc::new(file),
                        writable: false,
                        backing: Default::default(),
                    });
                    return Ok((fh, true, None));
                }
            }
        } else {
            n.lower
                .and_then(|l| self.tree.node(l))
                .and_then(|l| l.content.as_deref().map(str::to_owned))
        };
        drop(st);
        // An empty image file has no content to open, nor anything to pass through.
        let (file, image_content) = match content {
            Some(c) => (self.open_content(&c)?, true),
            None => (Arc::new(File::open("/dev/null")?), false),
        };
        let fh = self.handles.insert(FileHandle {
            ino,
            file: file.clone(),
            writable: false,
            backing: Default::default(),
        });
        Ok((fh, true, image_content.then_some(file)))
    }

    /// Copies up (or truncates) and opens the upper file, all under the state lock so no
    /// rename can swap the path meanwhile.
    fn open_for_write(&self, st: &mut State, ino: u64, flags: i32, write: bool) -> Result<File> {
        let path = if flags & libc::O_TRUNC != 0 {
            self.truncate(st, ino, 0, None)?;
            self.upper()?.abs(&self.path_of(st, ino)?)
        } else {
            self.copy_up_data(st, ino)?
        };
        let mut o = OpenOptions::new();
        o.read(true)
            .write(write)
            .custom_flags(flags & (libc::O_SYNC | libc::O_DSYNC) | libc::O_NOFOLLOW);
        open_upper(&path, &o)
    }

    /// Closes a handle; a writer stops counting.
    pub(crate) fn do_release(&self, fh: u64) {
        if let Some(h) = self.handles.remove(fh) {
            if h.writable {
                self.io.end_write(h.ino);
            }
            drop(h);
            self.io.closed();
        }
    }

    pub(crate) fn do_read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let f = self.handles.get(fh).ok_or(errno(libc::EBADF))?;
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match f.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    pub(crate) fn do_write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let f = self.handles.get(fh).ok_or(errno(libc::EBADF))?;
        if !f.writable {
            return Err(errno(libc::EBADF));
        }
        f.file.write_all_at(data, offset)?;
        Ok(data.len() as u32)
    }

    pub(crate) fn do_fsync(&self, fh: u64, datasync: bool) -> Result<()> {
        let f = self.handles.get(fh).ok_or(errno(libc::EBADF))?;
        if f.writable {
            if datasync {
                f.file.sync_data()?;
            } else {
                f.file.sync_all()?;
            }
        }
        Ok(())
    }

    pub(crate) fn do_fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> Result<()> {
        let f = self.handles.get(fh).ok_or(errno(libc::EBADF))?;
        if !f.writable {
            return Err(errno(libc::EBADF));
        }
        nix::fcntl::fallocate(
            &*f.file,
            nix::fcntl::FallocateFlags::from_bits_truncate(mode),
            offset as i64,
            len as i64,
        )?;
        Ok(())
    }
}

/// Opens an upper file for the server; when the file's mode shuts its owner out (the kernel
/// already allowed the caller), opens it with the owner's bits added for a moment.
pub(crate) fn open_upper(path: &Path, opts: &OpenOptions) -> Result<File> {
    match opts.open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            let before = std::fs::symlink_metadata(path)?.permissions();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(before.mode() | 0o600))?;
            let f = opts.open(path);
            std::fs::set_permissions(path, before)?;
            Ok(f?)
        }
        Err(e) => Err(e.into()),
    }
}
