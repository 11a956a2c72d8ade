//! Content-addressed layers: the files a job needs, packed as a deterministic tar + gzip and
//! named by the SHA-256 of the packed bytes, so a layer is uploaded once and verified on use.
//!
//! Flow: [`pack`] a tree → [`publish`] it (upload if absent) → on a worker,
//! [`LayerCache::fetch`] downloads, verifies and [`extract`]s it once per machine →
//! [`materialize`] copies the layers a job needs into its own directory.
//!
//! With a cluster secret, [`publish`] seals the packed file first ([`crate::seal::LayerSeal`])
//! and names it by the keyed hash of the sealed bytes; a cache made
//! [`LayerCache::with_seal`] checks that name and opens the seal before extracting. The two
//! hooks are `publish` and `LayerCache::insert`: everything between them sees plain tar.gz.
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

use crate::seal::LayerSeal;
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

/// A published layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// What jobs name the layer by: the digest of the packed bytes, or with a seal the keyed
    /// hash of the sealed bytes.
    pub digest: Digest,
    /// Whether this call uploaded it.
    pub outcome: UploadOutcome,
}

/// Uploads a packed layer (`digest` is its SHA-256, from [`pack`]) unless the store has it
/// already (a concurrent upload of the same digest counts as present); with `seal`, the
/// sealed form under its keyed name.
pub async fn publish(
    store: &ArtifactStore,
    seal: Option<&LayerSeal>,
    archive: &Path,
    digest: &Digest,
) -> Result<Published, LayerError> {
    let Some(seal) = seal else {
        let outcome = store
            .upload_file(&artifact_name(digest), archive, &digest.0)
            .await?;
        return Ok(Published {
            digest: digest.clone(),
            outcome,
        });
    };
    let dir = archive.parent().unwrap_or(Path::new("."));
    let sealed_file = tempfile::Builder::new()
        .prefix(".sealed-")
        .tempfile_in(dir)
        .map_err(|e| LayerError::io(format!("creating a file in '{}'", dir.display()), e))?
        .into_temp_path();
    let (seal, plain, out) = (
        seal.clone(),
        archive.to_path_buf(),
        sealed_file.to_path_buf(),
    );
    let sealed = tokio::task::spawn_blocking(move || seal.seal_file(&plain, &out))
        .await
        .map_err(|e| LayerError::io("sealing a layer", std::io::Error::other(e)))?
        .map_err(|source| LayerError::Refused {
            layer: digest.0.clone(),
            source,
        })?;
    let digest = Digest(sealed.name);
    let outcome = store
        .upload_file(&artifact_name(&digest), &sealed_file, &sealed.sha256)
        .await?;
    Ok(Published { digest, outcome })
}
