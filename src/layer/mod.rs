//! Content-addressed layers: the files a job needs, packed as a deterministic tar + gzip and
//! named by the SHA-256 of the packed bytes, so a layer is uploaded once and verified on use.

use std::path::{Path, PathBuf};

use crate::store::{ArtifactStore, UploadOutcome};

/// A layer's SHA-256, lowercase hex.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Digest(pub String);

/// Why a layer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading or writing local files.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The downloaded bytes do not hash to the layer's name.
    #[error("layer {expected} is corrupt: its bytes hash to {actual}")]
    HashMismatch {
        /// The digest in the name.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// An entry of the archive is refused (absolute path, `..`, escaping link, device...).
    #[error("layer {layer}: refused entry '{entry}': {reason}")]
    UnsafeEntry {
        /// The layer digest.
        layer: String,
        /// The entry path.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The layer is not in the store.
    #[error("layer {0} is not in the artifact store")]
    Missing(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The artifact name of a layer: `ca-layer-<sha256>`.
pub fn artifact_name(digest: &Digest) -> String {
    format!("ca-layer-{}", digest.0)
}

/// Packs `paths` (relative to `root`; files and directories, recursively) into a deterministic
/// tar.gz at `out` and returns its digest.
pub fn pack(_root: &Path, _paths: &[PathBuf], _out: &Path) -> Result<Digest, LayerError> {
    todo!()
}

/// Uploads a packed layer unless the store has it already.
pub async fn publish(
    _store: &ArtifactStore,
    _archive: &Path,
    _digest: &Digest,
) -> Result<UploadOutcome, LayerError> {
    todo!()
}

/// Extracted layers on one machine, keyed by digest.
#[derive(Debug, Clone)]
pub struct LayerCache {
    _dir: PathBuf,
}

impl LayerCache {
    /// A cache rooted at `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self, LayerError> {
        Ok(Self {
            _dir: dir.to_path_buf(),
        })
    }
    /// The extracted tree of `digest`, downloading, verifying and extracting it if needed.
    pub async fn fetch(
        &self,
        _store: &ArtifactStore,
        _digest: &Digest,
    ) -> Result<PathBuf, LayerError> {
        todo!()
    }
}

/// Builds a job directory from extracted layers (stub).
pub fn materialize(_layers: &[PathBuf], _dest: &Path) -> Result<(), LayerError> {
    todo!()
}
