//! Content-addressed layers: the files a job needs, packed as a deterministic tar + gzip and
//! named by the SHA-256 of the packed bytes, so a layer is uploaded once and verified on use.
//!
//! Flow: [`pack`] a tree → [`publish`] it (upload if absent) → on a worker,
//! [`LayerCache::fetch`] downloads, verifies and [`extract`]s it once per machine →
//! [`materialize`] copies the layers a job needs into its own directory.
//!
//! Modules: `digest` (SHA-256 names), `rules` (what a layer may contain, shared by packing and
//! extraction), `tree` (sorted non-following walks), `gzip` (a writer whose level changes per
//! file), `pack`, `extract`, `transport` (the one place a layer's bytes pass between a local
//! archive and the store), `cache`, `materialize`.

mod cache;
mod digest;
mod error;
mod extract;
mod gzip;
mod materialize;
mod pack;
mod rules;
mod transport;
mod tree;

use std::path::Path;
use std::time::Instant;

use crate::store::{ArtifactStore, StoreError, UploadOutcome};

pub use cache::LayerCache;
pub use digest::Digest;
pub use error::LayerError;
pub use extract::extract;
pub use materialize::materialize;
pub use pack::pack;

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
    let name = artifact_name(digest);
    let started = Instant::now();
    if store.find(&name).await?.is_some() {
        return Ok(UploadOutcome::AlreadyPresent);
    }
    let outcome = match transport::upload(store, &name, archive, digest).await {
        Ok(bytes) => {
            tracing::info!(layer = %digest, bytes, ms = started.elapsed().as_millis() as u64, "layer uploaded");
            UploadOutcome::Uploaded
        }
        Err(StoreError::AlreadyExists(_)) => {
            if store.wait_for(|| store.find(&name)).await?.is_none() {
                tracing::warn!(
                    artifact = name,
                    "another upload of this layer has not been finalized; counting it as present"
                );
            }
            UploadOutcome::AlreadyPresent
        }
        Err(e) => return Err(e.into()),
    };
    Ok(outcome)
}
