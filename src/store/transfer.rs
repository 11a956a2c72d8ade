//! The composite operations streams and layers are built on: append-blob artifacts that stay
//! writable after finalize, upload-if-absent of a file, downloads, and incremental reads that
//! re-sign an expired URL.

use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::blob::{BlobClient, RangeRead, Span};
use super::{ArtifactInfo, ArtifactStore, StoreError};

/// Big blobs are read in ranges of this size...
const SPAN: u64 = 4 * 1024 * 1024;

/// ...this many at once (a single connection to blob storage is slower than the disk).
const PARALLEL_SPANS: usize = 4;

/// The result of an upload-if-absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// We uploaded it.
    Uploaded,
    /// Someone already had it, or was uploading it concurrently and has finished (we wait,
    /// as patiently as the retry policy, for it to be listed): counts as success.
    AlreadyPresent,
}

/// Whether an error means the signed URL no longer works (expired), so a fresh one may.
fn url_expired(error: &StoreError) -> bool {
    matches!(error.status(), Some(401 | 403))
}

impl ArtifactStore {
    /// Creates `name` as an append blob, finalized with size 0 so it is listable; keep
    /// appending through the returned writer.
    pub async fn create_append(&self, name: &str) -> Result<AppendWriter, StoreError> {
        AppendCreation::new(name).create(self).await
    }

    /// Uploads a file as block blob artifact `name` and finalizes it, unless it exists
    /// already. The file is read and sent a block at a time, so memory stays bounded.
    pub async fn upload_file(
        &self,
        name: &str,
        path: &Path,
        sha256_hex: &str,
    ) -> Result<UploadOutcome, StoreError> {
        if self.find(name).await?.is_some() {
            return Ok(UploadOutcome::AlreadyPresent);
        }
        match self.upload_new(name, path, sha256_hex).await {
            Ok(_) => Ok(UploadOutcome::Uploaded),
            Err(StoreError::AlreadyExists(_)) => {
                if self.wait_for(|| self.find(name)).await?.is_none() {
                    tracing::warn!(
                        artifact = name,
                        "another upload of this artifact has not been finalized; counting it as present"
                    );
                }
                Ok(UploadOutcome::AlreadyPresent)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates artifact `name`, uploads the file at `path` as its block blob and finalizes
    /// it; returns the byte count. A name already taken is [`StoreError::AlreadyExists`].
    pub async fn upload_new(
        &self,
        name: &str,
        path: &Path,
        sha256_hex: &str,
    ) -> Result<u64, StoreError> {
        // Opened first: a create whose upload cannot even start would leave the name taken.
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| StoreError::Io {
                context: format!("opening {} to upload it as '{name}'", path.display()),
                source,
            })?;
        let url = self.create_artifact(name).await?;
        let size = self
            .blob
            .put_block_blob_from(name, &url, file, &path.display().to_string())
            .await?;
        self.finalize_artifact(name, size, Some(sha256_hex)).await?;
        Ok(size)
    }

    /// Polls `probe` until it finds something, as patiently as the retry policy (github.com
    /// lists an artifact only once it is finalized, so this is how a concurrent upload is
    /// awaited); `None` when it never did.
    pub async fn wait_for<T, F>(
        &self,
        mut probe: impl FnMut() -> F,
    ) -> Result<Option<T>, StoreError>
    where
        F: std::future::Future<Output = Result<Option<T>, StoreError>>,
    {
        let retry = &self.cfg.retry;
        for attempt in 1..=retry.max_attempts {
            if let Some(found) = probe().await? {
                return Ok(Some(found));
            }
            tokio::time::sleep(retry.jittered_pause(attempt)).await;
        }
        Ok(None)
    }

    /// Downloads a listed artifact to `dest`; returns the byte count.
    pub async fn download_to(
        &self,
        artifact: &ArtifactInfo,
        dest: &Path,
    ) -> Result<u64, StoreError> {
        let url = self.download_url(artifact).await?;
        match self.blob.download(&artifact.name, &url, dest).await {
            Err(e) if url_expired(&e) => {
                let url = self.download_url(artifact).await?;
                self.blob.download(&artifact.name, &url, dest).await
            }
            result => result,
        }
    }

    /// Sends the bytes of a listed artifact, in order, into `sink` as they arrive; returns the
    /// byte count. A blob bigger than one span is read in ranges, several at once, each retried
    /// on its own; a server that ignores ranges (act) sends it in one answer. A closed `sink`
    /// (the consumer gave up) ends the read early without an error.
    pub async fn read_to(
        &self,
        artifact: &ArtifactInfo,
        sink: &mpsc::Sender<Bytes>,
    ) -> Result<u64, StoreError> {
        let url = self.download_url(artifact).await?;
        let (bytes, total) = match self.span(artifact, &url, 0).await? {
            Span::Part { bytes, total } => (bytes, total),
            Span::Whole(mut response) => {
                let mut sent = 0u64;
                let cut = |e: reqwest::Error| StoreError::Transport {
                    op: "download",
                    artifact: artifact.name.clone(),
                    message: super::retry::error_chain(&e),
                };
                while let Some(chunk) = response.chunk().await.map_err(cut)? {
                    sent += chunk.len() as u64;
                    if sink.send(chunk).await.is_err() {
                        break;
                    }
                }
                return Ok(sent);
            }
        };
        let mut sent = bytes.len() as u64;
        if sink.send(bytes).await.is_err() {
            return Ok(sent);
        }
        let mut rest = futures_util::stream::iter((sent..total).step_by(SPAN as usize))
            .map(|start| self.span(artifact, &url, start))
            .buffered(PARALLEL_SPANS);
        while let Some(span) = rest.next().await {
            let Span::Part { bytes, .. } = span? else {
                return Err(StoreError::Protocol {
                    op: "read",
                    artifact: artifact.name.clone(),
                    message: "the server stopped honouring ranges in the middle of a read".into(),
                });
            };
            sent += bytes.len() as u64;
            if sink.send(bytes).await.is_err() {
                break;
            }
        }
        Ok(sent)
    }

    /// The span of `artifact` starting at `start`, re-signing the URL once if it expired.
    async fn span(
        &self,
        artifact: &ArtifactInfo,
        url: &str,
        start: u64,
    ) -> Result<Span, StoreError> {
        let end = start + SPAN - 1;
        match self.blob.read_span(&artifact.name, url, start, end).await {
            Err(e) if url_expired(&e) => {
                let url = self.download_url(artifact).await?;
                self.blob.read_span(&artifact.name, &url, start, end).await
            }
            result => result,
        }
    }

    /// An incremental reader of a listed artifact's blob (re-signs its URL when it expires).
    pub fn tail(&self, artifact: ArtifactInfo) -> BlobTail {
        BlobTail {
            store: self.clone(),
            artifact,
            url: None,
            offset: 0,
            etag: None,
        }
    }
}

/// An append-blob artifact being created ([`ArtifactStore::create_append`]'s three steps:
/// CreateArtifact, the empty append blob, FinalizeArtifact with size 0). After a step the store
/// failed, creating again repeats only what may not have taken effect: CreateArtifact once
/// answered, a second one would be refused, the name being taken by this very artifact.
///
/// A CreateArtifact answered with an error that took effect all the same (an answer lost on
/// the way back) cannot be finished: its upload URL was never seen, so the name stays taken.
#[derive(Debug)]
pub struct AppendCreation {
    name: String,
    /// The upload URL, once CreateArtifact answered it.
    url: Option<String>,
}

impl AppendCreation {
    /// The creation of `name`, nothing done yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            url: None,
        }
    }

    /// Creates the artifact, or finishes creating it after an earlier call failed; keep
    /// appending through the returned writer.
    pub async fn create(&mut self, store: &ArtifactStore) -> Result<AppendWriter, StoreError> {
        let name = self.name.as_str();
        let url = match &self.url {
            Some(url) => url.clone(),
            None => self.url.insert(store.create_artifact(name).await?).clone(),
        };
        // Both steps may be repeated: the blob is empty until the writer appends, and a
        // finalize is repeated only after it failed (`serve` accepts a second one).
        store.blob.create_append_blob(name, &url).await?;
        store.finalize_artifact(name, 0, None).await?;
        Ok(AppendWriter {
            blob: store.blob.clone(),
            name: self.name.clone(),
            url,
            position: 0,
            appends: 0,
        })
    }
}

/// Appends to one append-blob artifact through its upload URL.
#[derive(Debug)]
pub struct AppendWriter {
    blob: BlobClient,
    name: String,
    url: String,
    position: u64,
    appends: u64,
}

impl AppendWriter {
    /// Appends one block (≤ 4 MiB). An error means this URL may no longer write: rotate.
    pub async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        let len = data.len() as u64;
        self.blob
            .append_block(&self.name, &self.url, self.position, data)
            .await?;
        self.position += len;
        self.appends += 1;
        Ok(())
    }

    /// Appends made so far.
    pub fn appends(&self) -> u64 {
        self.appends
    }

    /// The artifact this writer appends to.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Reads an artifact's blob incrementally: each call returns only bytes not returned before.
#[derive(Debug)]
pub struct BlobTail {
    store: ArtifactStore,
    artifact: ArtifactInfo,
    url: Option<String>,
    offset: u64,
    etag: Option<String>,
}

impl BlobTail {
    /// New bytes since the last call, or `None` when nothing new arrived.
    pub async fn read_new(&mut self) -> Result<Option<Bytes>, StoreError> {
        let read = match self.read_once().await {
            Err(e) if url_expired(&e) => {
                self.url = None;
                self.read_once().await?
            }
            result => result?,
        };
        match read {
            RangeRead::NoNewData => Ok(None),
            RangeRead::Data { bytes, etag } => {
                self.offset += bytes.len() as u64;
                self.etag = etag;
                Ok(Some(bytes))
            }
        }
    }

    async fn read_once(&mut self) -> Result<RangeRead, StoreError> {
        let url = match &self.url {
            Some(url) => url.clone(),
            None => {
                let url = self.store.download_url(&self.artifact).await?;
                self.url = Some(url.clone());
                url
            }
        };
        self.store
            .blob
            .read_from(&self.artifact.name, &url, self.offset, self.etag.as_deref())
            .await
    }

    /// The artifact being read.
    pub fn artifact(&self) -> &ArtifactInfo {
        &self.artifact
    }
}
