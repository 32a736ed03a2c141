//! lazyrun's image store: pulls OCI and Docker images, indexes every entry of every layer in
//! SQLite, and keeps each distinct file content once.
//!
//! ```text
//!  registry ──manifest/config──▶ pull ──▶ index.db   images ─┬─ tags
//!     │                          │                          └─ image_layers ─ layers ─ entries
//!     └──layer blobs (parallel)──▶ layer::import ──▶ objects/ab/cdef…  (one file per content)
//! ```
//!
//! Modules: [`reference`] (names), [`auth`] (credentials), [`registry`] (the `BlobSource`
//! trait and the oci-client implementation), [`manifest`] (manifests, indexes, platforms),
//! [`layer`] (one-pass verify + index + store), [`store`] (SQLite index, content store, GC),
//! [`pull`] (orchestration), [`images`] (the operations behind the CLI verbs), [`mount`] (an image
//! as a lazyfs lower tree).

pub mod auth;
pub mod entry;
pub mod image;
pub mod images;
pub mod layer;
pub mod manifest;
pub mod mount;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod store;
