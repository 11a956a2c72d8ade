//! The per-machine cache of extracted layers: one read-mostly tree per digest at
//! `<cache>/<digest>/`, filled atomically so a tree that exists is always complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Digest, LayerError, artifact_name, extract};
use crate::seal::LayerSeal;
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
    /// (five downloads in all, about 4 s of waiting) because act serves artifacts that are still being uploaded;
    /// after that the error is [`LayerError::HashMismatch`] ([`LayerError::Refused`] when sealed).
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
                Err(e @ (LayerError::HashMismatch { .. } | LayerError::Refused { .. }))
                    if attempt < FETCH_ATTEMPTS =>
                {
                    tracing::debug!(%digest, error = %e, attempt, "layer download incomplete or corrupt; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Verifies that the local file `archive` hashes to `digest` (with a seal: that its keyed
    /// hash is `digest` and every chunk authenticates), extracts it into a staging
    /// directory inside the cache and renames that to `<cache>/<digest>`; returns the tree.
    ///
    /// `archive` is left in place (the caller owns it). If the tree exists already, e.g.
    /// because a concurrent insert won the rename, that is success. A mismatch is
    /// [`LayerError::HashMismatch`] and leaves the cache unchanged.
    pub fn insert(&self, archive: &Path, digest: &Digest) -> Result<PathBuf, LayerError> {
        let tree = self.tree_path(digest)?;
        let opened = match &self.seal {
            Some(seal) => Some(self.open_sealed(seal, archive, digest)?),
            None => {
                let actual = Digest::of_file(archive)?;
                if actual != *digest {
                    return Err(LayerError::HashMismatch {
                        expected: digest.0.clone(),
                        actual: actual.0,
                    });
                }
                None
            }
        };
        let archive = opened.as_deref().unwrap_or(archive);
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

    /// Checks the sealed file `archive` against its name `digest` and opens it into a
    /// temporary plain file in the cache (removed when dropped).
    fn open_sealed(
        &self,
        seal: &LayerSeal,
        archive: &Path,
        digest: &Digest,
    ) -> Result<tempfile::TempPath, LayerError> {
        let plain = tempfile::Builder::new()
            .prefix(".opened-")
            .tempfile_in(&self.dir)
            .map_err(|e| LayerError::io(format!("creating a file in '{}'", self.dir.display()), e))?
            .into_temp_path();
        seal.open_file(archive, &digest.0, &plain)
            .map_err(|source| LayerError::Refused {
                layer: digest.0.clone(),
                source,
            })?;
        Ok(plain)
    }

    /// Where the tree of `digest` lives; the digest is checked since it becomes a path.
    fn tree_path(&self, digest: &Digest) -> Result<PathBuf, LayerError> {
        Digest::parse(&digest.0)?;
        Ok(self.dir.join(&digest.0))
    }
}
