//! The Results Twirp `ArtifactService` and the composite operations built on it.

use std::path::Path;

use bytes::Bytes;
use url::Url;

use super::{RetryPolicy, StoreError};
use crate::token::BackendIds;

/// Where the artifact service is and who we are to it.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `ACTIONS_RESULTS_URL`.
    pub results_url: Url,
    /// `ACTIONS_RUNTIME_TOKEN`.
    pub token: String,
    /// Parsed from the token's `scp` claim.
    pub ids: BackendIds,
    /// Retry policy for every request.
    pub retry: RetryPolicy,
}

impl StoreConfig {
    /// From `ACTIONS_RESULTS_URL` and `ACTIONS_RUNTIME_TOKEN`; errors name the variable and what was expected.
    pub fn from_env() -> Result<Self, StoreError> {
        todo!()
    }
    /// From explicit values (validated as `from_env` does).
    pub fn new(_results_url: &str, _token: &str) -> Result<Self, StoreError> {
        todo!()
    }
}

/// One entry of `ListArtifacts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// The artifact name.
    pub name: String,
    /// The owner's `workflowRunBackendId`.
    pub run_backend_id: String,
    /// The owner's `workflowJobRunBackendId` (use it for `GetSignedArtifactURL` / `DeleteArtifact`).
    pub job_backend_id: String,
    /// `databaseId`.
    pub database_id: i64,
    /// Size in bytes as listed (0 for streams; not meaningful on act).
    pub size: u64,
}

/// The result of an upload-if-absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// We uploaded it.
    Uploaded,
    /// Someone (possibly concurrently) already had: counts as success.
    AlreadyPresent,
}

/// Artifact store client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    _cfg: StoreConfig,
}

impl ArtifactStore {
    /// A client for `cfg`.
    pub fn new(cfg: StoreConfig) -> Result<Self, StoreError> {
        Ok(Self { _cfg: cfg })
    }
    /// Our own backend ids.
    pub fn ids(&self) -> &BackendIds {
        &self._cfg.ids
    }
    /// `CreateArtifact`: returns the signed upload URL.
    pub async fn create_artifact(&self, _name: &str) -> Result<String, StoreError> {
        todo!()
    }
    /// `FinalizeArtifact`: returns the artifact id.
    pub async fn finalize_artifact(
        &self,
        _name: &str,
        _size: u64,
        _sha256_hex: Option<&str>,
    ) -> Result<i64, StoreError> {
        todo!()
    }
    /// `ListArtifacts`, optionally with an exact-name filter.
    pub async fn list(&self, _name_filter: Option<&str>) -> Result<Vec<ArtifactInfo>, StoreError> {
        todo!()
    }
    /// The listed artifact of exactly this name, if any.
    pub async fn find(&self, _name: &str) -> Result<Option<ArtifactInfo>, StoreError> {
        todo!()
    }
    /// `GetSignedArtifactURL` for a listed artifact (with the owner's ids).
    pub async fn download_url(&self, _artifact: &ArtifactInfo) -> Result<String, StoreError> {
        todo!()
    }
    /// `DeleteArtifact` for a listed artifact (with the owner's ids).
    pub async fn delete(&self, _artifact: &ArtifactInfo) -> Result<(), StoreError> {
        todo!()
    }
    /// Creates `name` as an append blob, finalized with size 0 so it is listable; keep appending.
    pub async fn create_append(&self, _name: &str) -> Result<AppendWriter, StoreError> {
        todo!()
    }
    /// Uploads a file as block blob artifact `name` and finalizes it, unless it exists already.
    pub async fn upload_file(
        &self,
        _name: &str,
        _path: &Path,
        _sha256_hex: &str,
    ) -> Result<UploadOutcome, StoreError> {
        todo!()
    }
    /// Downloads a listed artifact to `dest`; returns the byte count.
    pub async fn download_to(
        &self,
        _artifact: &ArtifactInfo,
        _dest: &Path,
    ) -> Result<u64, StoreError> {
        todo!()
    }
    /// An incremental reader of a listed artifact's blob (re-signs its URL when it expires).
    pub fn tail(&self, _artifact: ArtifactInfo) -> BlobTail {
        todo!()
    }
}

/// Appends to one append-blob artifact through its upload URL.
#[derive(Debug)]
pub struct AppendWriter {
    _url: String,
}

impl AppendWriter {
    /// Appends one block (≤ 4 MiB). An error means this URL may no longer write: rotate.
    pub async fn append(&mut self, _data: Bytes) -> Result<(), StoreError> {
        todo!()
    }
    /// Appends made so far.
    pub fn appends(&self) -> u64 {
        todo!()
    }
}

/// Reads an artifact's blob incrementally: each call returns only bytes not returned before.
#[derive(Debug)]
pub struct BlobTail {
    _artifact: ArtifactInfo,
}

impl BlobTail {
    /// New bytes since the last call, or `None` when nothing new arrived.
    pub async fn read_new(&mut self) -> Result<Option<Bytes>, StoreError> {
        todo!()
    }
}
