//! Where a layer lives in the store, and putting it there once.
//!
//! A layer's artifact is `ca-layer-<sha256>`. An upload that dies after `CreateArtifact`
//! (retries spent, process killed, job cancelled) leaves that name taken by an artifact that
//! is never finalized: github.com never lists it, and no one can create it again. So a
//! publisher that finds the name taken waits for the other upload as long as the retry policy
//! allows, and if it never becomes listed uploads a copy under a second name,
//! `ca-layer-<sha256>.<random>`. Consumers take the main name when it is listed, else any
//! listed copy: a layer is usable whenever any upload of its bytes was finalized.

//!
//! With a cluster secret the packed file is sealed first and the layer is named by the keyed
//! hash of the sealed bytes ([`crate::seal::LayerSeal`]); everything else is the same.

use std::path::Path;
use std::time::Instant;

use super::{Digest, LayerError, transport};
use crate::seal::LayerSeal;
use crate::store::{ArtifactInfo, ArtifactStore, StoreError, UploadOutcome};

/// A published layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// What jobs name the layer by: the digest of the packed bytes, or with a seal the keyed
    /// hash of the sealed bytes.
    pub digest: Digest,
    /// Whether this call uploaded it.
    pub outcome: UploadOutcome,
}

/// The artifact name of a layer: `ca-layer-<sha256>`.
pub fn artifact_name(digest: &Digest) -> String {
    format!("ca-layer-{}", digest.0)
}

/// Whether `name` is a layer's artifact, [`artifact_name`] or a copy's name: `ca-layer-`, a
/// digest (64 lowercase hex, sealed or not), and for a copy a dot and 16 more; a user's
/// `ca-layer-notes` is not.
pub fn is_layer_artifact(name: &str) -> bool {
    let hex = |text: &str, len: usize| {
        text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let Some(rest) = name.strip_prefix("ca-layer-") else {
        return false;
    };
    match rest.split_once('.') {
        Some((digest, copy)) => hex(digest, 64) && hex(copy, 16),
        None => hex(rest, 64),
    }
}

/// A name for another copy of the layer: the main name, a dot, and a random suffix (unique,
/// so it is never taken by a dead upload of the same job).
fn copy_name(digest: &Digest) -> String {
    let suffix: u64 = rand::random();
    format!("{}.{suffix:016x}", artifact_name(digest))
}

/// A listed artifact holding `digest`'s bytes: the main name if listed, else the newest
/// listed copy (found by listing the run's artifacts, since `nameFilter` matches exactly).
pub(super) async fn find_layer(
    store: &ArtifactStore,
    digest: &Digest,
) -> Result<Option<ArtifactInfo>, StoreError> {
    let name = artifact_name(digest);
    if let Some(found) = store.find(&name).await? {
        return Ok(Some(found));
    }
    let prefix = format!("{name}.");
    Ok(store
        .list(None)
        .await?
        .into_iter()
        .filter(|a| a.name.starts_with(&prefix))
        .max_by_key(|a| a.database_id))
}

/// Uploads a packed layer (`digest` is its SHA-256, from [`super::pack`]) unless the store
/// has it already; with `seal`, the sealed form under its keyed name.
pub async fn publish(
    store: &ArtifactStore,
    seal: Option<&LayerSeal>,
    archive: &Path,
    digest: &Digest,
) -> Result<Published, LayerError> {
    let Some(seal) = seal else {
        let outcome = publish_bytes(store, archive, digest, &digest.0).await?;
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
    let outcome = publish_bytes(store, &sealed_file, &digest, &sealed.sha256).await?;
    Ok(Published { digest, outcome })
}

/// Uploads the file `archive` as layer `digest` (whose bytes hash to `sha256`) unless the
/// store has it already. A concurrent upload of the same digest that is finalized while we
/// wait counts as present; one that never is (a dead upload holding the name) is replaced by
/// a copy under another name.
async fn publish_bytes(
    store: &ArtifactStore,
    archive: &Path,
    digest: &Digest,
    sha256: &str,
) -> Result<UploadOutcome, LayerError> {
    let name = artifact_name(digest);
    let started = Instant::now();
    if store.find(&name).await?.is_some() {
        return Ok(UploadOutcome::AlreadyPresent);
    }
    let uploaded_as = match transport::upload(store, &name, archive, sha256).await {
        Ok(bytes) => (name, bytes),
        Err(StoreError::AlreadyExists(_)) => {
            if store
                .wait_for(|| find_layer(store, digest))
                .await?
                .is_some()
            {
                return Ok(UploadOutcome::AlreadyPresent);
            }
            let copy = copy_name(digest);
            tracing::warn!(
                artifact = name,
                copy,
                "the layer's artifact was created by an upload that was never finalized; \
                 uploading a copy under another name"
            );
            let bytes = transport::upload(store, &copy, archive, sha256).await?;
            (copy, bytes)
        }
        Err(e) => return Err(e.into()),
    };
    let (artifact, bytes) = uploaded_as;
    tracing::info!(
        layer = %digest,
        artifact,
        bytes,
        ms = started.elapsed().as_millis() as u64,
        "layer uploaded"
    );
    Ok(UploadOutcome::Uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_and_copies_are_layers_and_look_alikes_are_not() {
        let digest = Digest("0a".repeat(32));
        assert!(is_layer_artifact(&artifact_name(&digest)));
        assert!(is_layer_artifact(&copy_name(&digest)));
        for name in [
            "ca-layer-notes".to_string(),
            "ca-layer-".into(),
            format!("ca-layer-{}", "0A".repeat(32)),
            format!("ca-layer-{}", "0a".repeat(31)),
            format!("{}.copy", artifact_name(&digest)),
            format!("{}.", artifact_name(&digest)),
        ] {
            assert!(!is_layer_artifact(&name), "{name}");
        }
    }
}
