//! The per-machine cache of extracted layers: one read-mostly tree per digest at
//! `<cache>/<digest>/`, filled atomically so a tree that exists is always complete.
//!
//! A download is extracted as it arrives, into a staging directory, while its bytes are hashed;
//! only a download that hashes to its digest is renamed into place, so a corrupt or partial one
//! leaves nothing behind. One digest is fetched once per cache however many jobs ask at once.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::digest::HashingReader;
use super::extract::extract_from;
use super::publish::find_layer;
use super::{Digest, LayerError, transport};
use crate::store::ArtifactStore;

/// Downloads of one layer before a hash mismatch is final. act lists an artifact as soon as it
/// is created, before its upload is finished, so a worker can download a partial layer; on
/// github.com only finalized artifacts are listed and a mismatch is real corruption.
const FETCH_ATTEMPTS: u32 = 5;

/// The wait after the first mismatch; doubled after each one (0.25 + 0.5 + 1 + 2 s in all).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// One digest's place in the cache: held while it is fetched, so a second fetch waits for the
/// first; `true` once this cache has put a complete tree there.
type Slot = Arc<tokio::sync::Mutex<bool>>;

/// Extracted layers on one machine, keyed by digest. Clones share the same slots.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
    slots: Arc<Mutex<HashMap<Digest, Slot>>>,
}

impl LayerCache {
    /// A cache rooted at `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self, LayerError> {
        fs::create_dir_all(dir).map_err(|e| {
            LayerError::io(format!("creating the layer cache '{}'", dir.display()), e)
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            slots: Arc::default(),
        })
    }

    /// The extracted tree of `digest`, downloading, verifying and extracting it if needed.
    ///
    /// A download that does not hash to `digest` is deleted and retried with backoff
    /// (five downloads in all, about 4 s of waiting) because act serves artifacts that are
    /// still being uploaded; after that the error is [`LayerError::HashMismatch`].
    pub async fn fetch(
        &self,
        store: &ArtifactStore,
        digest: &Digest,
    ) -> Result<PathBuf, LayerError> {
        let tree = self.tree_path(digest)?;
        let slot = self.slot(digest);
        let mut ready = slot.lock().await;
        if *ready || tree.is_dir() {
            *ready = true;
            return Ok(tree);
        }
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.download(store, digest).await {
                Err(LayerError::HashMismatch { actual, .. }) if attempt < FETCH_ATTEMPTS => {
                    tracing::debug!(%digest, %actual, attempt, "layer download incomplete or corrupt; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                result => {
                    *ready = result.is_ok();
                    return result;
                }
            }
        }
    }

    /// One download of `digest`, extracted as it arrives; the tree once it is in place.
    async fn download(
        &self,
        store: &ArtifactStore,
        digest: &Digest,
    ) -> Result<PathBuf, LayerError> {
        let started = Instant::now();
        let artifact = find_layer(store, digest)
            .await?
            .ok_or_else(|| LayerError::Missing(digest.0.clone()))?;
        let (mut download, reading) = transport::download(store, artifact);
        let (cache, expected) = (self.clone(), digest.clone());
        let receiving = tokio::task::spawn_blocking(move || {
            let tree = cache.receive(&mut download, &expected);
            (tree, download.waited(), started.elapsed())
        });
        let reading = async {
            let read = reading.await;
            (read, started.elapsed())
        };
        let (received, (read, download_time)) = tokio::join!(receiving, reading);
        let joined = |e: tokio::task::JoinError| {
            LayerError::io(format!("fetching layer {digest}"), std::io::Error::other(e))
        };
        let bytes = read.map_err(joined)??;
        let (tree, waited, receive_time) = received.map_err(joined)?;
        let tree = tree?;
        tracing::info!(
            layer = %digest,
            bytes,
            download_ms = download_time.as_millis() as u64,
            extract_ms = receive_time.saturating_sub(waited).as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "layer fetched"
        );
        Ok(tree)
    }

    /// Verifies that the local file `archive` hashes to `digest`, extracts it into a staging
    /// directory inside the cache and renames that to `<cache>/<digest>`; returns the tree.
    ///
    /// `archive` is left in place (the caller owns it). If the tree exists already, e.g.
    /// because a concurrent insert won the rename, that is success. A mismatch is
    /// [`LayerError::HashMismatch`] and leaves the cache unchanged.
    pub fn insert(&self, archive: &Path, digest: &Digest) -> Result<PathBuf, LayerError> {
        let tree = self.tree_path(digest)?;
        let slot = self.slot(digest);
        let mut ready = slot.blocking_lock();
        if *ready {
            let actual = Digest::of_file(archive)?;
            if actual != *digest {
                return Err(LayerError::HashMismatch {
                    expected: digest.0.clone(),
                    actual: actual.0,
                });
            }
            return Ok(tree);
        }
        let file = File::open(archive).map_err(|e| {
            LayerError::io(
                format!("reading layer {digest} from '{}'", archive.display()),
                e,
            )
        })?;
        let tree = self.receive(file, digest)?;
        *ready = true;
        Ok(tree)
    }

    /// Extracts the tar.gz stream `archive` into a staging directory while hashing it, and
    /// renames the staging directory to the tree of `digest` only if the hash matches.
    fn receive(&self, archive: impl Read, digest: &Digest) -> Result<PathBuf, LayerError> {
        let tree = self.tree_path(digest)?;
        // Removed when dropped unless it became the tree.
        let staging = tempfile::Builder::new()
            .prefix(".extract-")
            .tempdir_in(&self.dir)
            .map_err(|e| {
                LayerError::io(
                    format!("creating a staging directory in '{}'", self.dir.display()),
                    e,
                )
            })?;
        let mut hashing = HashingReader::new(archive);
        let extracted = extract_from(&mut hashing, staging.path(), digest);
        // The hash decides first: a hostile entry in a corrupt download is corruption.
        let actual = hashing
            .finish()
            .map_err(|e| LayerError::io(format!("reading layer {digest}"), e))?;
        if actual != *digest {
            return Err(LayerError::HashMismatch {
                expected: digest.0.clone(),
                actual: actual.0,
            });
        }
        extracted?;
        match fs::rename(staging.path(), &tree) {
            Ok(()) => {
                // The staging path is the tree now: nothing left to clean up.
                let _ = staging.keep();
                Ok(tree)
            }
            Err(_) if tree.is_dir() => Ok(tree),
            Err(e) => Err(LayerError::io(
                format!("moving layer {digest} into '{}'", tree.display()),
                e,
            )),
        }
    }

    /// The slot of `digest`, made on first use.
    fn slot(&self, digest: &Digest) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(digest.clone()).or_default().clone()
    }

    /// Where the tree of `digest` lives; the digest is checked since it becomes a path.
    fn tree_path(&self, digest: &Digest) -> Result<PathBuf, LayerError> {
        Digest::parse(&digest.0)?;
        Ok(self.dir.join(&digest.0))
    }
}
