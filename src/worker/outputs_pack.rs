//! The outputs of many jobs in one layer, so that a worker running thousands of jobs stays
//! within GitHub's 500 artifacts per job (see [`crate::budget`]).
//!
//! Each attempt with outputs hard-links (or copies) its matching files out of its job
//! directory into a staging area and waits for a flush. One task flushes: it takes every
//! attempt waiting (after waiting up to [`budget::outputs_linger`] for one per slot), moves
//! each one's files under [`job_dir`] of a fresh tree, packs the tree as one layer, publishes
//! it and hands every attempt the same digest. While one flush uploads, the attempts finishing
//! meanwhile queue for the next.
//! Each attempt's directory in the layer travels with its outcome
//! ([`crate::proto::JobOutcome::outputs_path`]); the runner brings back just that directory.

use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, oneshot};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::budget;
use crate::layer::{self, Digest};
use crate::seal::LayerSeal;
use crate::store::ArtifactStore;

/// The directory of an outputs layer holding the attempts' trees.
const OUTPUTS_ROOT: &str = ".cluster-action-outputs";

/// Where the outputs of the `n`th attempt this worker published are inside its layer.
fn job_dir(n: u64) -> String {
    format!("{OUTPUTS_ROOT}/{n}")
}

/// One attempt waiting for a flush: its staged files, and who to tell.
struct Waiting {
    staged: PathBuf,
    key: String,
    done: oneshot::Sender<Result<Digest, String>>,
}

/// The worker's outputs packer (one per worker; its flush task ends when it is dropped).
#[derive(Debug)]
pub(crate) struct OutputsPacker {
    staging: tempfile::TempDir,
    tx: mpsc::UnboundedSender<Waiting>,
    /// Attempts staged so far: names their directories.
    staged: AtomicU64,
}

impl OutputsPacker {
    /// A packer for a worker with `slots`, staging files in a fresh directory under
    /// `work_dir` (so that hard links work); `seal` seals the layers it publishes.
    pub(crate) fn new(
        store: ArtifactStore,
        seal: Option<LayerSeal>,
        work_dir: &Path,
        slots: u32,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(work_dir)?;
        let staging = tempfile::Builder::new()
            .prefix(".outputs-")
            .tempdir_in(work_dir)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let full = usize::try_from(slots).unwrap_or(usize::MAX).max(1);
        tokio::spawn(flush_loop(
            store,
            seal,
            staging.path().to_path_buf(),
            full,
            rx,
        ));
        Ok(Self {
            staging,
            tx,
            staged: AtomicU64::new(0),
        })
    }

    /// Stages `files` (relative to `dir`) of one attempt and waits for the flush that
    /// publishes them; returns the digest of the layer holding them and their directory in it.
    pub(crate) async fn publish(
        &self,
        dir: &Path,
        files: Vec<PathBuf>,
    ) -> Result<(Digest, String), String> {
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        let staged = self.staging.path().join(format!("pending-{n}"));
        let (from, to) = (dir.to_path_buf(), staged.clone());
        tokio::task::spawn_blocking(move || stage(&from, &files, &to))
            .await
            .map_err(|e| format!("output staging task failed: {e}"))?
            .map_err(|e| format!("cannot stage the outputs: {e}"))?;
        let (done, result) = oneshot::channel();
        let key = job_dir(n);
        let waiting = Waiting {
            staged,
            key: key.clone(),
            done,
        };
        self.tx
            .send(waiting)
            .map_err(|_| "the worker is stopping".to_string())?;
        let digest = result
            .await
            .map_err(|_| "the worker stopped before the outputs were uploaded".to_string())??;
        Ok((digest, key))
    }
}

/// Links (or, across file systems, copies) `files` of `dir` into `to`, keeping their paths;
/// directories are staged whole, symbolic links as links.
fn stage(dir: &Path, files: &[PathBuf], to: &Path) -> std::io::Result<()> {
    for rel in files {
        stage_entry(&dir.join(rel), &to.join(rel))?;
    }
    Ok(())
}

fn stage_entry(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let kind = std::fs::symlink_metadata(from)?.file_type();
    if kind.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if kind.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            stage_entry(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map(|_| ())
    } else {
        Ok(())
    }
}

/// Flushes until the packer is dropped: every attempt waiting goes into the next layer.
async fn flush_loop(
    store: ArtifactStore,
    seal: Option<LayerSeal>,
    staging: PathBuf,
    full: usize,
    mut rx: mpsc::UnboundedReceiver<Waiting>,
) {
    let mut flushes = 0u32;
    while let Some(first) = rx.recv().await {
        let linger = budget::outputs_linger(flushes);
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger.unwrap_or_default();
        while batch.len() < full {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(more)) => batch.push(more),
                Ok(None) | Err(_) => break,
            }
        }
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = match linger {
            None => Err(format!(
                "this worker has uploaded {} outputs layers, all that GitHub's limit of {} \
                 artifacts per job leaves it beside its stream",
                budget::OUTPUTS_BUDGET,
                budget::ARTIFACTS_PER_JOB
            )),
            Some(_) => {
                flushes += 1;
                let root = staging.join(format!("batch-{flushes}"));
                flush(&store, seal.as_ref(), &root, &batch).await
            }
        };
        tracing::debug!(jobs = batch.len(), flushes, "outputs flushed");
        for waiting in batch {
            let _ = tokio::fs::remove_dir_all(&waiting.staged).await;
            let _ = waiting.done.send(result.clone());
        }
    }
}

/// Packs the staged trees of `batch` under `root` into one layer and publishes it.
async fn flush(
    store: &ArtifactStore,
    seal: Option<&LayerSeal>,
    root: &Path,
    batch: &[Waiting],
) -> Result<Digest, String> {
    let moves: Vec<(PathBuf, PathBuf)> = batch
        .iter()
        .map(|w| (w.staged.clone(), root.join(&w.key)))
        .collect();
    let tree = root.to_path_buf();
    let packed = tokio::task::spawn_blocking(move || -> Result<_, String> {
        for (from, to) in &moves {
            let parent = to.parent().unwrap_or(to);
            std::fs::create_dir_all(parent)
                .and_then(|()| std::fs::rename(from, to))
                .map_err(|e| format!("cannot gather the outputs: {e}"))?;
        }
        let archive = tree.with_extension("tar.gz");
        let digest = layer::pack(&tree, &[PathBuf::from(OUTPUTS_ROOT)], &archive)
            .map_err(|e| e.to_string())?;
        Ok((archive, digest))
    })
    .await
    .map_err(|e| format!("output packing task failed: {e}"))?;
    let result = match packed {
        Ok((archive, digest)) => {
            let published = layer::publish(store, seal, &archive, &digest).await;
            let _ = tokio::fs::remove_file(&archive).await;
            published.map(|p| p.digest).map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_dir_all(root).await;
    result
}
