//! The outputs of many jobs in one layer, so that a worker running thousands of jobs stays
//! within GitHub's 500 artifacts per job (see [`crate::budget`]).
//!
//! When an attempt's process has ended, its matching files are hard-linked (or copied) out of
//! its job directory into the packer's tree, under a directory numbered for it (`stage`); the
//! job directory can go, and the attempt's slot is free. Its upload (`upload`) waits for a
//! flush. One task flushes: it takes every
//! attempt waiting (after waiting up to [`budget::outputs_linger`] for
//! [`budget::pending_uploads_max`] of them), packs their directories of the tree as one layer,
//! publishes it and hands every attempt the same digest. While one flush uploads, the
//! attempts finishing meanwhile queue for the next. A failed flush leaves the staged files in
//! place, so that each attempt can ask again; a `Staged` removes its files when dropped.
//! Each attempt's directory in the layer travels with its outcome
//! ([`crate::proto::JobOutcome::outputs_path`]); the runner brings back just that directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::budget;
use crate::layer::{self, Digest, LayerError};
use crate::seal::LayerSeal;
use crate::store::ArtifactStore;

/// The directory of an outputs layer holding the attempts' trees.
const OUTPUTS_ROOT: &str = ".cluster-action-outputs";

/// Where the outputs of the `n`th attempt this worker staged are inside its layer.
fn job_dir(n: u64) -> String {
    format!("{OUTPUTS_ROOT}/{n}")
}

/// Why an upload of staged outputs failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadError {
    /// What went wrong, for the job's report.
    pub message: String,
    /// Asking again cannot help (the budget is spent, the store refused the layer): the
    /// attempt fails now instead of after the retries' pauses.
    pub permanent: bool,
}

impl UploadError {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }
}

/// One attempt's outputs, staged in the packer's tree until they are uploaded; dropping it
/// removes them.
#[derive(Debug)]
pub(crate) struct Staged {
    /// Its directory, relative to the tree (and inside the layer).
    rel: String,
    /// The same, absolute.
    abs: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.abs);
    }
}

/// One upload waiting for a flush: its staged directory, and who to tell.
struct Waiting {
    rel: String,
    done: oneshot::Sender<Result<Digest, UploadError>>,
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
        std::fs::create_dir_all(staging.path().join(TREE).join(OUTPUTS_ROOT))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let full = budget::pending_uploads_max(slots);
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

    /// Stages `files` (relative to `dir`) of one attempt: after this, `dir` may go.
    pub(crate) async fn stage(&self, dir: &Path, files: Vec<PathBuf>) -> Result<Staged, String> {
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        let rel = job_dir(n);
        let staged = Staged {
            abs: self.staging.path().join(TREE).join(&rel),
            rel,
        };
        let (from, to) = (dir.to_path_buf(), staged.abs.clone());
        tokio::task::spawn_blocking(move || stage(&from, &files, &to))
            .await
            .map_err(|e| format!("output staging task failed: {e}"))?
            .map_err(|e| format!("cannot stage the outputs: {e}"))?;
        Ok(staged)
    }

    /// Waits for the flush that publishes `staged`; returns the digest of the layer holding it
    /// and its directory in it. After a failure `staged` is still there to ask again.
    pub(crate) async fn upload(&self, staged: &Staged) -> Result<(Digest, String), UploadError> {
        let (done, result) = oneshot::channel();
        let waiting = Waiting {
            rel: staged.rel.clone(),
            done,
        };
        let stopping = || UploadError {
            message: "the worker stopped before the outputs were uploaded".into(),
            permanent: true,
        };
        self.tx.send(waiting).map_err(|_| stopping())?;
        let digest = result.await.map_err(|_| stopping())??;
        Ok((digest, staged.rel.clone()))
    }
}

/// The staging directory's tree of staged attempts, the root of every outputs layer.
const TREE: &str = "tree";

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
            None => Err(UploadError {
                message: format!(
                    "this worker has uploaded {} outputs layers, all that GitHub's limit of {} \
                     artifacts per job leaves it beside its stream: give the cluster more \
                     workers, or fewer jobs with outputs",
                    budget::OUTPUTS_BUDGET,
                    budget::ARTIFACTS_PER_JOB
                ),
                permanent: true,
            }),
            Some(_) => {
                flushes += 1;
                let archive = staging.join(format!("batch-{flushes}.tar.gz"));
                flush(&store, seal.as_ref(), &staging.join(TREE), &archive, &batch).await
            }
        };
        tracing::debug!(jobs = batch.len(), flushes, "outputs flushed");
        for waiting in batch {
            let _ = waiting.done.send(result.clone());
        }
    }
}

/// Packs the staged directories of `batch` in `tree` into `archive`, one layer, and
/// publishes it.
async fn flush(
    store: &ArtifactStore,
    seal: Option<&LayerSeal>,
    tree: &Path,
    archive: &Path,
    batch: &[Waiting],
) -> Result<Digest, UploadError> {
    let paths: Vec<PathBuf> = batch.iter().map(|w| PathBuf::from(&w.rel)).collect();
    let (root, out) = (tree.to_path_buf(), archive.to_path_buf());
    let packed = tokio::task::spawn_blocking(move || layer::pack(&root, &paths, &out))
        .await
        .map_err(|e| UploadError::transient(format!("output packing task failed: {e}")))?
        .map_err(|e| UploadError::transient(e.to_string()))?;
    let published = layer::publish(store, seal, archive, &packed).await;
    let _ = tokio::fs::remove_file(archive).await;
    published.map(|p| p.digest).map_err(|e| match &e {
        LayerError::Store(store) if store.is_refusal() => UploadError {
            message: format!(
                "{e}: the store refused the outputs layer, so it is not tried again (when that \
                 is GitHub's limit of {} artifacts per job, this worker's job has made all the \
                 artifacts it may: give the cluster more workers)",
                budget::ARTIFACTS_PER_JOB
            ),
            permanent: true,
        },
        _ => UploadError::transient(e.to_string()),
    })
}
