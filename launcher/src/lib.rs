//! launcher: OCI runtime bundles and the runc/crun lifecycle for `lazyrun run`. Not built yet:
//! this crate is empty until `run` lands.
