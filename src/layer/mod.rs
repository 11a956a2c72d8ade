//! Content-addressed layers: the files a job needs, packed as a deterministic tar + gzip and
//! named by the SHA-256 of the packed bytes, so a layer is uploaded once and verified on use.
//!
//! Flow: [`pack`] a tree → [`publish`] it (upload if absent) → on a worker,
//! [`LayerCache::fetch`] downloads, verifies and [`extract`]s it once per machine →
//! [`LayerCache::assemble`] copies the layers a job needs into its own directory
//! ([`materialize`]), checking that no job changed them in the cache.
//!
//! With a cluster secret, [`publish`] seals the packed file first ([`crate::seal::LayerSeal`])
//! and names it by the keyed hash of the sealed bytes; a cache made
//! [`LayerCache::with_seal`] checks that name and opens the seal before extracting. The two
//! hooks are `publish` and `LayerCache::insert`: everything between them sees plain tar.gz.
//!
//! Modules: `digest` (SHA-256 names), `rules` (what a layer may contain, shared by packing and
//! extraction), `tree` (sorted non-following walks), `select` (bounded, non-following glob
//! matching for layer paths and job outputs), `gzip` (a writer whose level changes per file),
//! `pack`, `publish` (names in the store, upload-if-absent, the copy that replaces a dead
//! upload, sealing), `extract`, `transport` (the one place a layer's bytes pass between a local
//! archive and the store), `cache`, `stamp` (what a cached tree was when made, to notice a job
//! writing into it), `materialize`.

mod cache;
mod digest;
mod error;
mod extract;
mod gzip;
mod materialize;
mod pack;
mod publish;
mod rules;
mod select;
mod stamp;
mod transport;
mod tree;

pub use cache::LayerCache;
pub use digest::Digest;
pub use error::LayerError;
pub use extract::extract;
pub use materialize::materialize;
pub use pack::{Listed, check, pack, pack_listed};
pub use publish::{Published, artifact_name, is_layer_artifact, publish};
pub use select::{Bounds, Directories, SelectError, Selection, select};
