//! The bytes of a layer on their way between a local archive and the store: every upload and
//! every download of a layer passes through this module and nowhere else, so a step that
//! transforms them (sealing: encryption at publish, decryption at fetch) goes here.
//!
//! Downloads are streams: the store's reader task sends chunks (several ranges at once for a
//! big layer) into a bounded channel, and [`Download`] hands them to blocking code (hashing,
//! gunzip, untar) as a [`Read`], so download, verification and extraction overlap.

use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::{ArtifactInfo, ArtifactStore, StoreError};

/// Chunks in flight between the download and the extraction (bounds memory with the store's
/// own parallel ranges).
const BUFFERED_CHUNKS: usize = 4;

/// Uploads the packed (or sealed) layer at `archive`, whose bytes hash to `sha256`, as the
/// new artifact `name`; returns its size. [`StoreError::AlreadyExists`] when the name is taken.
pub(super) async fn upload(
    store: &ArtifactStore,
    name: &str,
    archive: &Path,
    sha256: &str,
) -> Result<u64, StoreError> {
    store.upload_new(name, archive, sha256).await
}

/// Starts downloading `artifact`: returns the reader of its bytes (for a blocking thread) and
/// the task that fills it, whose result says whether the store delivered everything.
pub(super) fn download(
    store: &ArtifactStore,
    artifact: ArtifactInfo,
) -> (Download, JoinHandle<Result<u64, StoreError>>) {
    let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
    let store = store.clone();
    let task = tokio::spawn(async move { store.read_to(&artifact, &tx).await });
    let reader = Download {
        rx,
        chunk: Bytes::new(),
        waited: Duration::ZERO,
    };
    (reader, task)
}

/// The bytes of a download as they arrive; the end of the stream (or of a failed download)
/// reads as end of file, so the caller checks the download task's result too.
pub(super) struct Download {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
    waited: Duration,
}

impl Download {
    /// How long reads waited for bytes to arrive (the rest of a reader's time was its own).
    pub(super) fn waited(&self) -> Duration {
        self.waited
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            let start = Instant::now();
            let next = self.rx.blocking_recv();
            self.waited += start.elapsed();
            match next {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
