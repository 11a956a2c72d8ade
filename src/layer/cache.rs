//! The per-machine cache of extracted layers: one read-mostly tree per digest at
//! `<cache>/<digest>/`, filled atomically so a tree that exists is always complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Digest, LayerError, artifact_name, extract};
use crate::store::ArtifactStore;

/// Downloads of one layer before a hash mismatch is final. act lists an artifact as soon as it
/// is created, before its upload is finished, so a worker can download a partial layer; on
/// github.com only finalized artifacts are listed and a mismatch is real corruption.
const FETCH_ATTEMPTS: u32 = 5;

/// The wait after the first mismatch; doubled after each one (0.25 + 0.5 + 1 + 2 s in all).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Extracted layers on one machine, keyed by digest.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
}

impl LayerCache {
    /// A cache rooted at `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self, LayerError> {
        fs::create_dir_all(dir).map_err(|e| {
            LayerError::io(format!("creating the layer cache '{}'", dir.display()), e)
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The extracted tree of `digest`, downloading, verifying and extracting it if needed.
    ///
    /// A download that does not hash to `digest` is deleted and retried with backoff
    /// (five downloads in all, about 4 s of waiting) because act serves artifacts that are still being uploaded;
    /// after that the error is [`LayerError::HashMismatch`].
    pub async fn fetch(
        &self,
        store: &ArtifactStore,
        digest: &Digest,
    ) -> Result<PathBuf, LayerError> {
        let tree = self.tree_path(digest)?;
        if tree.is_dir() {
            return Ok(tree);
        }
        let name = artifact_name(digest);
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let artifact = store
                .find(&name)
                .await?
                .ok_or_else(|| LayerError::Missing(digest.0.clone()))?;
            // Removed when dropped, whatever happens below.
            let download = tempfile::Builder::new()
                .prefix(".download-")
                .tempfile_in(&self.dir)
                .map_err(|e| {
                    LayerError::io(
                        format!("creating a download file in '{}'", self.dir.display()),
                        e,
                    )
                })?;
            store.download_to(&artifact, download.path()).await?;
            let cache = self.clone();
            let expected = digest.clone();
            let inserted =
                tokio::task::spawn_blocking(move || cache.insert(download.path(), &expected))
                    .await
                    .map_err(|e| {
                        LayerError::io(
                            format!("extracting layer {digest}"),
                            std::io::Error::other(e),
                        )
                    })?;
            match inserted {
                Err(LayerError::HashMismatch { actual, .. }) if attempt < FETCH_ATTEMPTS => {
                    tracing::debug!(%digest, %actual, attempt, "layer download incomplete or corrupt; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Verifies that the local file `archive` hashes to `digest`, extracts it into a staging
    /// directory inside the cache and renames that to `<cache>/<digest>`; returns the tree.
    ///
    /// `archive` is left in place (the caller owns it). If the tree exists already, e.g.
    /// because a concurrent insert won the rename, that is success. A mismatch is
    /// [`LayerError::HashMismatch`] and leaves the cache unchanged.
    pub fn insert(&self, archive: &Path, digest: &Digest) -> Result<PathBuf, LayerError> {
        let tree = self.tree_path(digest)?;
        let actual = Digest::of_file(archive)?;
        if actual != *digest {
            return Err(LayerError::HashMismatch {
                expected: digest.0.clone(),
                actual: actual.0,
            });
        }
        if tree.is_dir() {
            return Ok(tree);
        }
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
        extract(archive, staging.path(), digest)?;
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

    /// Where the tree of `digest` lives; the digest is checked since it becomes a path.
    fn tree_path(&self, digest: &Digest) -> Result<PathBuf, LayerError> {
        Digest::parse(&digest.0)?;
        Ok(self.dir.join(&digest.0))
    }
}
