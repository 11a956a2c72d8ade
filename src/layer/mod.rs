//! Content-addressed layers: the files a job needs, packed as a deterministic tar + gzip and
//! named by the SHA-256 of the packed bytes, so a layer is uploaded once and verified on use.
//!
//! Flow: [`pack`] a tree → [`publish`] it (upload if absent) → on a worker,
//! [`LayerCache::fetch`] downloads, verifies and [`extract`]s it once per machine →
//! [`materialize`] copies the layers a job needs into its own directory.
//!
//! Modules: `digest` (SHA-256 names), `rules` (what a layer may contain, shared by packing and
//! extraction), `tree` (sorted non-following walks), `select` (bounded, non-following glob
//! matching for layer paths and job outputs), `pack`, `extract`, `cache`, `materialize`.

mod cache;
mod digest;
mod error;
mod extract;
mod materialize;
mod pack;
mod rules;
mod select;
mod tree;

use std::path::Path;

use crate::store::{ArtifactStore, UploadOutcome};

pub use cache::LayerCache;
pub use digest::Digest;
pub use error::LayerError;
pub use extract::extract;
pub use materialize::materialize;
pub use pack::{Listed, check, pack, pack_listed};
pub use select::{Bounds, Directories, SelectError, Selection, select};

/// The artifact name of a layer: `ca-layer-<sha256>`.
pub fn artifact_name(digest: &Digest) -> String {
    format!("ca-layer-{}", digest.0)
}

/// Uploads a packed layer unless the store has it already (a concurrent upload of the same
/// digest counts as present).
pub async fn publish(
    store: &ArtifactStore,
    archive: &Path,
    digest: &Digest,
) -> Result<UploadOutcome, LayerError> {
    Ok(store
        .upload_file(&artifact_name(digest), archive, &digest.0)
        .await?)
}
