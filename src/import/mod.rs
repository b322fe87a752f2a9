//! Converters from other formats into berth manifests.

pub mod compose;
