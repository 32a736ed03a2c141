//! The filesystem's error type and the one place it becomes an errno.

use std::io;

/// What a request failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{0}")]
    Errno(nix::errno::Errno),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<nix::errno::Errno> for Error {
    fn from(e: nix::errno::Errno) -> Self {
        Error::Errno(e)
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Errno(nix::errno::Errno::from_raw(e.raw_os_error()))
    }
}

impl Error {
    /// The errno the kernel gets.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            Error::Errno(e) => *e as i32,
        }
    }
}
