//! Test and benchmark support: Debian's real registry (`docker-registry`) on a free loopback
//! port, and OCI / Docker images built from Rust and pushed to it. Nothing here reaches the
//! internet.

pub mod build;
pub mod debian;
pub mod fscheck;
pub mod registry;

pub use build::{Compression, Format, Image, LayerBuilder};
pub use registry::TestRegistry;
