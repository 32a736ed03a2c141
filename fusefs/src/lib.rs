//! fusefs: the merged copy-on-write FUSE root filesystem over a read-only lower tree and a
//! writable upper directory. Not built yet: this crate is empty until lazyfs lands.
