//! One module per CLI verb.

pub mod df;
pub mod images;
pub mod inspect;
pub mod prune;
pub mod pull;
pub mod rmi;
