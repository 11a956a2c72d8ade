//! One attempt of one job on this worker: layers → job directory → process → outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Shared;
use super::exec;
use super::machine::{Assignment, not_run, outputs_retry};
use crate::layer::{self, Digest};
use crate::proto::{JobOutcome, JobSpec, JobStatus};

/// Runs one attempt and returns its outcome; never fails: problems become `Error` outcomes.
pub(crate) async fn run(
    shared: Arc<Shared>,
    assignment: Assignment,
    cancel: watch::Receiver<bool>,
) -> JobOutcome {
    let started = Instant::now();
    let name = &shared.cfg.name;
    let Assignment {
        id,
        attempt,
        job: spec,
    } = assignment;
    let dir = shared.cfg.work_dir.join(format!("{id}-{attempt}"));
    let mut outcome = match prepare(&shared, &spec, &dir).await {
        Err(e) => not_run(name, attempt, JobStatus::Error, Some(e)),
        Ok(()) => execute(&shared, &spec, attempt, &dir, cancel).await,
    };
    outcome.duration_ms = started.elapsed().as_millis() as u64;
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove job directory {}: {e}", dir.display());
    }
    outcome
}

/// Fetches the job's layers and assembles its directory (later layers win).
async fn prepare(shared: &Shared, spec: &JobSpec, dir: &Path) -> Result<(), String> {
    let mut trees: Vec<PathBuf> = Vec::with_capacity(spec.layers.len());
    for digest in &spec.layers {
        let tree = shared
            .cache
            .fetch(&shared.store, digest)
            .await
            .map_err(|e| format!("cannot fetch layer {}: {e}", digest.0))?;
        trees.push(tree);
    }
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create job directory {}: {e}", dir.display()))?;
        layer::materialize(&trees, &dir)
            .map_err(|e| format!("cannot assemble the job directory: {e}"))
    })
    .await
    .map_err(|e| format!("job directory task failed: {e}"))?
}

async fn execute(
    shared: &Shared,
    spec: &JobSpec,
    attempt: u32,
    dir: &Path,
    mut cancel: watch::Receiver<bool>,
) -> JobOutcome {
    let name = &shared.cfg.name;
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("CLUSTER_JOB_NAME".into(), spec.name.clone()));
    env.push(("CLUSTER_ATTEMPT".into(), attempt.to_string()));
    env.push(("CLUSTER_WORKER".into(), name.clone()));
    let timeout = Duration::from_millis(spec.timeout_ms);
    let cancelled = async move {
        if cancel.wait_for(|c| *c).await.is_err() {
            // The worker dropped the sender: it is going away and drops this task too.
            std::future::pending::<()>().await;
        }
    };
    let run = exec::run_job(
        &spec.run,
        dir,
        env,
        spec.isolation,
        timeout,
        &shared.cfg.limits,
        cancelled,
    )
    .await;
    let execution = match run {
        Ok(x) => x,
        Err(e) => {
            return not_run(
                name,
                attempt,
                JobStatus::Error,
                Some(format!("cannot start the job: {e}")),
            );
        }
    };
    let mut outcome = JobOutcome {
        attempt,
        status: execution.status,
        exit_code: execution.exit_code,
        duration_ms: 0,
        worker: name.clone(),
        output: execution.output,
        outputs_layer: None,
        error: None,
    };
    if !spec.outputs.is_empty() && outcome.status != JobStatus::Cancelled {
        match publish_outputs_retried(shared, spec, dir).await {
            Ok(layer) => outcome.outputs_layer = layer,
            Err(e) => {
                outcome.output.push_str(&format!(
                    "\n[cluster-action: outputs not brought back: {e}]"
                ));
                if outcome.status == JobStatus::Passed {
                    outcome.status = JobStatus::Error;
                    outcome.error = Some(e);
                }
            }
        }
    }
    outcome
}

/// [`publish_outputs`], tried again after a failure as [`outputs_retry`] says.
async fn publish_outputs_retried(
    shared: &Shared,
    spec: &JobSpec,
    dir: &Path,
) -> Result<Option<Digest>, String> {
    let mut failed = 0;
    loop {
        let error = match publish_outputs(shared, spec, dir).await {
            Ok(layer) => return Ok(layer),
            Err(e) => e,
        };
        failed += 1;
        let Some(pause) = outputs_retry(failed) else {
            return Err(error);
        };
        tracing::warn!(
            job = %spec.name,
            "publishing the outputs failed ({error}): again in {pause:?}"
        );
        tokio::time::sleep(pause).await;
    }
}

/// Packs the files matching the job's output globs into a layer and publishes it.
async fn publish_outputs(
    shared: &Shared,
    spec: &JobSpec,
    dir: &Path,
) -> Result<Option<Digest>, String> {
    let dir = dir.to_path_buf();
    let patterns = spec.outputs.clone();
    let packed = tokio::task::spawn_blocking(
        move || -> Result<Option<(tempfile::TempPath, Digest)>, String> {
            let files = matching_files(&dir, &patterns)?;
            if files.is_empty() {
                return Ok(None);
            }
            let archive = tempfile::NamedTempFile::new()
                .map_err(|e| format!("cannot create a temporary file: {e}"))?
                .into_temp_path();
            let digest = layer::pack(&dir, &files, &archive).map_err(|e| e.to_string())?;
            Ok(Some((archive, digest)))
        },
    )
    .await
    .map_err(|e| format!("output packing task failed: {e}"))??;
    let Some((archive, digest)) = packed else {
        return Ok(None);
    };
    layer::publish(&shared.store, &archive, &digest)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(digest))
}

/// Files (relative to `dir`) matching any of `patterns`; directories are packed whole.
fn matching_files(dir: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for pattern in patterns {
        let full = dir.join(pattern);
        let full = full
            .to_str()
            .ok_or_else(|| format!("output pattern '{pattern}' is not UTF-8"))?;
        let escaped_root = glob::Pattern::escape(&dir.to_string_lossy());
        let full = full.replacen(&*dir.to_string_lossy(), &escaped_root, 1);
        let paths =
            glob::glob(&full).map_err(|e| format!("bad output pattern '{pattern}': {e}"))?;
        for path in paths.flatten() {
            if let Ok(rel) = path.strip_prefix(dir) {
                files.push(rel.to_path_buf());
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}
