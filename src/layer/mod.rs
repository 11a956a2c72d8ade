//! Content-addressed layers: the files a job needs, packed as a deterministic tar + gzip and
//! named by the SHA-256 of the packed bytes, so a layer is uploaded once and verified on use.
//!
//! Flow: [`pack`] a tree → [`publish`] it (upload if absent) → on a worker,
//! [`LayerCache::fetch`] downloads, verifies and [`extract`]s it once per machine →
//! [`LayerCache::assemble`] copies the layers a job needs into its own directory
//! ([`materialize`]), checking that no job changed them in the cache.
//!
//! Modules: `digest` (SHA-256 names), `rules` (what a layer may contain, shared by packing and
//! extraction), `tree` (sorted non-following walks), `gzip` (a writer whose level changes per
//! file), `pack`, `publish` (names in the store, upload-if-absent, the copy that replaces a dead
//! upload), `extract`, `transport` (the one place a layer's bytes pass between a local
//! archive and the store), `cache`, `stamp` (what a cached tree was when made, to notice a job writing into it),
//! `materialize`.

mod cache;
mod digest;
mod error;
mod extract;
mod gzip;
mod materialize;
mod pack;
mod publish;
mod rules;
mod stamp;
mod transport;
mod tree;

pub use cache::LayerCache;
pub use digest::Digest;
pub use error::LayerError;
pub use extract::extract;
pub use materialize::materialize;
pub use pack::pack;
pub use publish::{artifact_name, publish};
