//! The per-machine cache of extracted layers: one read-mostly tree per digest at
//! `<cache>/<digest>/`, filled atomically so a tree that exists is always complete.
//!
//! A download is extracted as it arrives, into a staging directory, while its bytes are hashed;
//! only a download that hashes to its digest is renamed into place, so a corrupt or partial one
//! leaves nothing behind. One digest is fetched once per cache however many jobs ask at once.
//!
//! Jobs run as the worker's user, so nothing stops a job from writing into the cache (by a
//! relative path such as `../../cache/<digest>/`, or a hard link). The cache therefore trusts
//! only trees it made itself and whose stamps (`stamp`) still match: a tree found changed, or
//! found on disk without this cache having made it, is moved aside and fetched again, and job
//! directories are private copies checked against the stamps after copying ([`LayerCache::assemble`]).
//!
//! A cache made [`LayerCache::with_seal`] fetches sealed layers: the download goes to a file,
//! whose keyed name and every chunk are checked while it is opened ([`LayerSeal::open_file`]),
//! and the opened tar.gz is extracted as above (the seal, not a SHA-256, vouches for it).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::digest::HashingReader;
use super::extract::extract_from;
use super::publish::find_layer;
use super::stamp::Snapshot;
use super::{Digest, LayerError, materialize, transport};
use crate::retry::RetryPolicy;
use crate::seal::LayerSeal;
use crate::store::ArtifactStore;

/// Downloads of one layer before a hash mismatch is final, and the waits between them (0.25 +
/// 0.5 + 1 + 2 s in all). act lists an artifact as soon as it is created, before its upload
/// is finished, so a worker can download a partial layer; on github.com only finalized
/// artifacts are listed and a mismatch is real corruption.
const FETCH_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    base_delay: Duration::from_millis(250),
    max_delay: Duration::from_secs(2),
};

/// Builds of one job directory before a layer that keeps changing under it is an error.
const ASSEMBLE_ATTEMPTS: u32 = 3;

/// One digest's place in the cache: held while it is fetched or checked, so a second fetch
/// waits for the first; the stamps of the tree once this cache has put it there.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Snapshot>>>>;

/// What vouches for a layer's bytes before its tree is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vouched {
    /// Their SHA-256 must be the digest.
    ByHash,
    /// The seal was opened: the keyed name and every chunk authenticated.
    BySeal,
}

/// Extracted layers on one machine, keyed by digest. Clones share the same slots.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
    slots: Arc<Mutex<HashMap<Digest, Slot>>>,
    seal: Option<LayerSeal>,
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
            seal: None,
        })
    }

    /// This cache, fetching layers sealed with `seal` (as [`super::publish`] made them).
    pub fn with_seal(self, seal: Option<LayerSeal>) -> Self {
        Self { seal, ..self }
    }

    /// The extracted tree of `digest`, downloading, verifying and extracting it if needed.
    ///
    /// A download that does not hash to `digest` is deleted and retried with backoff
    /// (five downloads in all, about 4 s of waiting) because act serves artifacts that are
    /// still being uploaded; after that the error is [`LayerError::HashMismatch`]
    /// ([`LayerError::Refused`] when sealed).
    pub async fn fetch(
        &self,
        store: &ArtifactStore,
        digest: &Digest,
    ) -> Result<PathBuf, LayerError> {
        let tree = self.tree_path(digest)?;
        let slot = self.slot(digest);
        let mut made = slot.lock().await;
        if let Some(snapshot) = made.clone() {
            if self.intact(snapshot, &tree).await? {
                return Ok(tree);
            }
            *made = None;
        }
        let mut attempt = 1;
        loop {
            match self.download(store, digest).await {
                Err(e @ (LayerError::HashMismatch { .. } | LayerError::Refused { .. }))
                    if FETCH_RETRY.retries_after(attempt) =>
                {
                    tracing::debug!(%digest, error = %e, attempt, "layer download incomplete or corrupt; retrying");
                    tokio::time::sleep(FETCH_RETRY.pause(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
                Ok(snapshot) => {
                    *made = Some(Arc::new(snapshot));
                    return Ok(tree);
                }
            }
        }
    }

    /// Builds the job directory `dest` from the layers `digests`, in order (later layers win;
    /// see [`materialize`]), fetching them as needed, all at once. The job gets private
    /// copies; a layer that changed in the cache before or while it was copied (a job writing
    /// into the cache) is fetched again and the directory rebuilt, so no job sees another
    /// job's changes.
    pub async fn assemble(
        &self,
        store: &ArtifactStore,
        digests: &[Digest],
        dest: &Path,
    ) -> Result<(), LayerError> {
        for attempt in 1..=ASSEMBLE_ATTEMPTS {
            let fetches = digests.iter().map(|digest| self.fetch(store, digest));
            let trees = futures_util::future::try_join_all(fetches).await?;
            let started = Instant::now();
            let target = dest.to_path_buf();
            let copied = tokio::task::spawn_blocking(move || {
                if attempt > 1 {
                    fs::remove_dir_all(&target).map_err(|e| {
                        LayerError::io(format!("clearing '{}'", target.display()), e)
                    })?;
                }
                materialize(&trees, &target)
            })
            .await
            .map_err(|e| {
                LayerError::io(
                    format!("building '{}'", dest.display()),
                    std::io::Error::other(e),
                )
            })?;
            let mut changed = Vec::new();
            for digest in digests {
                if !self.still_as_made(digest).await? {
                    changed.push(digest.0.as_str());
                }
            }
            if changed.is_empty() {
                copied?;
                tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    "job directory materialized"
                );
                return Ok(());
            }
        }
        Err(LayerError::KeptChanging {
            cache: self.dir.display().to_string(),
        })
    }

    /// Whether the tree of `digest` is still the one this cache made; if not it is moved aside
    /// and forgotten, so the next fetch downloads it again.
    async fn still_as_made(&self, digest: &Digest) -> Result<bool, LayerError> {
        let tree = self.tree_path(digest)?;
        let slot = self.slot(digest);
        let mut made = slot.lock().await;
        let Some(snapshot) = made.clone() else {
            return Ok(false);
        };
        let intact = self.intact(snapshot, &tree).await?;
        if !intact {
            *made = None;
        }
        Ok(intact)
    }

    /// Checks `tree` against `snapshot` (on a blocking thread: it walks the tree); a changed
    /// tree is moved aside, with a warning.
    async fn intact(&self, snapshot: Arc<Snapshot>, tree: &Path) -> Result<bool, LayerError> {
        let (cache, path) = (self.clone(), tree.to_path_buf());
        tokio::task::spawn_blocking(move || {
            if snapshot.matches(&path) {
                return Ok(true);
            }
            tracing::warn!(
                tree = %path.display(),
                "a cached layer was changed after it was extracted (does a job write into the \
                 cache?); fetching it again"
            );
            cache.evict(&path)?;
            Ok(false)
        })
        .await
        .map_err(|e| {
            LayerError::io(
                format!("checking '{}'", tree.display()),
                std::io::Error::other(e),
            )
        })?
    }

    /// Moves the tree at `tree` out of the way (so its digest can be fetched again) and
    /// removes it; a removal that fails (a job made it unremovable) only warns.
    fn evict(&self, tree: &Path) -> Result<(), LayerError> {
        let aside = self
            .dir
            .join(format!(".stale-{:016x}", rand::random::<u64>()));
        match fs::rename(tree, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(LayerError::io(
                    format!("moving the changed layer '{}' aside", tree.display()),
                    e,
                ));
            }
        }
        if let Err(e) = fs::remove_dir_all(&aside) {
            tracing::warn!(path = %aside.display(), "cannot remove a changed layer: {e}");
        }
        Ok(())
    }

    /// One download of `digest`, extracted as it arrives; the stamps of the tree once it is
    /// in place.
    async fn download(
        &self,
        store: &ArtifactStore,
        digest: &Digest,
    ) -> Result<Snapshot, LayerError> {
        let started = Instant::now();
        let artifact = find_layer(store, digest)
            .await?
            .ok_or_else(|| LayerError::Missing(digest.0.clone()))?;
        let (mut download, reading) = transport::download(store, artifact);
        let (cache, expected) = (self.clone(), digest.clone());
        let receiving = tokio::task::spawn_blocking(move || {
            let tree = match &cache.seal {
                None => cache.receive(&mut download, &expected, Vouched::ByHash),
                Some(seal) => cache.receive_sealed(seal, &mut download, &expected),
            };
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
        let snapshot = tree?;
        tracing::info!(
            layer = %digest,
            bytes,
            download_ms = download_time.as_millis() as u64,
            extract_ms = receive_time.saturating_sub(waited).as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "layer fetched"
        );
        Ok(snapshot)
    }

    /// Verifies that the local file `archive` hashes to `digest`, extracts it into a staging
    /// directory inside the cache and renames that to `<cache>/<digest>`; returns the tree.
    ///
    /// `archive` is left in place (the caller owns it). If the tree exists already, e.g.
    /// because a concurrent insert won the rename, that is success. A mismatch is
    /// [`LayerError::HashMismatch`] and leaves the cache unchanged. Blocking: call it from
    /// a blocking thread, not from async code.
    pub fn insert(&self, archive: &Path, digest: &Digest) -> Result<PathBuf, LayerError> {
        let tree = self.tree_path(digest)?;
        let slot = self.slot(digest);
        let mut made = slot.blocking_lock();
        if let Some(seal) = &self.seal {
            let file = File::open(archive).map_err(|e| {
                LayerError::io(
                    format!("reading layer {digest} from '{}'", archive.display()),
                    e,
                )
            })?;
            *made = Some(Arc::new(self.receive_sealed(seal, file, digest)?));
            return Ok(tree);
        }
        if made
            .as_ref()
            .is_some_and(|snapshot| snapshot.matches(&tree))
        {
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
        *made = Some(Arc::new(self.receive(file, digest, Vouched::ByHash)?));
        Ok(tree)
    }

    /// Writes the sealed layer `sealed` to a file, opens it (checking its keyed name `digest`
    /// and every chunk) and extracts the opened tar.gz like [`LayerCache::receive`].
    fn receive_sealed(
        &self,
        seal: &LayerSeal,
        mut sealed: impl Read,
        digest: &Digest,
    ) -> Result<Snapshot, LayerError> {
        let scratch = |what: &str| {
            tempfile::Builder::new()
                .prefix(what)
                .tempfile_in(&self.dir)
                .map_err(|e| {
                    LayerError::io(format!("creating a file in '{}'", self.dir.display()), e)
                })
        };
        let mut download = scratch(".sealed-")?;
        std::io::copy(&mut sealed, download.as_file_mut())
            .map_err(|e| LayerError::io(format!("receiving layer {digest}"), e))?;
        let plain = scratch(".opened-")?.into_temp_path();
        seal.open_file(download.path(), &digest.0, &plain)
            .map_err(|source| LayerError::Refused {
                layer: digest.0.clone(),
                source,
            })?;
        let opened = File::open(&plain)
            .map_err(|e| LayerError::io(format!("reading '{}'", plain.display()), e))?;
        self.receive(opened, digest, Vouched::BySeal)
    }

    /// Extracts the tar.gz stream `archive` into a staging directory while hashing it, and
    /// renames the staging directory to the tree of `digest` only if the hash matches;
    /// returns the stamps of the tree in place. Whatever was at the tree's path (a tree this
    /// cache did not make, or one that changed) is evicted first.
    fn receive(
        &self,
        archive: impl Read,
        digest: &Digest,
        vouched: Vouched,
    ) -> Result<Snapshot, LayerError> {
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
        if vouched == Vouched::ByHash && actual != *digest {
            return Err(LayerError::HashMismatch {
                expected: digest.0.clone(),
                actual: actual.0,
            });
        }
        extracted?;
        self.evict(&tree)?;
        match fs::rename(staging.path(), &tree) {
            // The staging path is the tree now: nothing left to clean up.
            Ok(()) => drop(staging.keep()),
            // Another process sharing this directory put it there in the meantime.
            Err(_) if tree.is_dir() => {}
            Err(e) => {
                return Err(LayerError::io(
                    format!("moving layer {digest} into '{}'", tree.display()),
                    e,
                ));
            }
        }
        Snapshot::take(&tree)
            .map_err(|e| LayerError::io(format!("reading '{}'", tree.display()), e))
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
