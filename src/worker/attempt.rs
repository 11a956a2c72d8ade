//! One attempt of one job on this worker: layers → job directory → launch under the lease →
//! process → outputs (found by `layer::select`, which never follows a symlink and is bounded
//! by the job's timeout, and staged for the worker's outputs packer) → [`upload`], which runs
//! after the attempt gave its slot back.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::Shared;
use super::exec;
use super::machine::{Assignment, not_run, outputs_lost};
use super::outputs_pack::Staged;
use super::progress;
use crate::layer::{self, Digest};
use crate::proto::{AttemptRef, JobId, JobOutcome, JobSpec, JobStatus};
use crate::retry::RetryPolicy;
use crate::suite::{Framework, SESSION_ENV};

/// An attempt asking to launch: its job, and where to send the end of the lease it may
/// launch under.
pub(crate) type LaunchRequest = (JobId, oneshot::Sender<Instant>);

/// The last check before an attempt spawns its process: the worker's machine lets it launch
/// only under a lease ([`super::machine::Machine::ready`]).
pub(crate) struct Gate {
    id: JobId,
    ask: mpsc::UnboundedSender<LaunchRequest>,
}

impl Gate {
    /// The gate of job `id`'s attempt, asking through `ask`.
    pub(crate) fn new(id: JobId, ask: mpsc::UnboundedSender<LaunchRequest>) -> Self {
        Self { id, ask }
    }

    /// Completes when the attempt may spawn its process now, checked against the clock at the
    /// last moment: the caller spawns without yielding in between. A permission that arrives
    /// after its lease ran out (the worker was stalled in between) is asked for again. Never
    /// completes once the worker is going away.
    async fn open(&self) {
        loop {
            let (answer, permission) = oneshot::channel();
            let until = match self.ask.send((self.id, answer)) {
                Ok(()) => permission.await.ok(),
                Err(_) => None,
            };
            match until {
                Some(until) if Instant::now() < until => return,
                Some(_) => {}
                None => std::future::pending().await,
            }
        }
    }
}

/// An attempt whose process ended.
#[derive(Debug)]
pub(crate) struct Ran {
    /// How it ended (without its outputs layer).
    pub outcome: JobOutcome,
    /// Its outputs, staged for upload, when it has any.
    pub staged: Option<Staged>,
}

/// Runs one attempt until its process ended and its outputs are staged; never fails:
/// problems become `Error` outcomes.
pub(crate) async fn run(
    shared: Arc<Shared>,
    assignment: Assignment,
    gate: Gate,
    mut cancel: watch::Receiver<bool>,
) -> Ran {
    let started = Instant::now();
    let name = &shared.cfg.name;
    let Assignment {
        id,
        attempt,
        job: spec,
    } = assignment;
    let key = AttemptRef { id, attempt };
    let dir = shared.cfg.work_dir.join(format!("{id}-{attempt}"));
    let env = job_env(&shared, &spec, attempt);
    // A batch handed to a session needs no copy of the layers: the session has its own.
    let session = spec
        .session
        .as_ref()
        .filter(|_| Framework::sessions_allowed(spec.isolation));
    let prepared = match session {
        Some(_) => tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("cannot make the job directory {}: {e}", dir.display())),
        None => prepare(&shared, &spec, &dir).await,
    };
    let mut ran = match prepared {
        Err(e) => Ran {
            outcome: not_run(name, attempt, JobStatus::Error, Some(e)),
            staged: None,
        },
        Ok(()) => {
            let launched = tokio::select! {
                () = gate.open() => true,
                () = cancelled(&mut cancel) => false,
            };
            if !launched {
                Ran {
                    outcome: not_run(name, attempt, JobStatus::Cancelled, None),
                    staged: None,
                }
            } else if let Some(start) = session {
                in_session(&shared, &spec, key, &dir, env, start, cancel).await
            } else {
                execute(&shared, &spec, key, &dir, env, cancel).await
            }
        }
    };
    ran.outcome.duration_ms = started.elapsed().as_millis() as u64;
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove job directory {}: {e}", dir.display());
    }
    ran
}

/// Fetches the job's layers and assembles its directory (later layers win).
async fn prepare(shared: &Shared, spec: &JobSpec, dir: &Path) -> Result<(), String> {
    shared
        .cache
        .assemble(&shared.store, &spec.layers, dir)
        .await
        .map_err(|e| format!("cannot prepare the job directory {}: {e}", dir.display()))
}

/// Runs the attempt of a batch with a session command: handed a session of this worker's
/// (leased, then given back or stopped), or, when none can be started, as any job (with its
/// layers in its directory, the batch running its framework itself).
async fn in_session(
    shared: &Shared,
    spec: &JobSpec,
    key: AttemptRef,
    dir: &Path,
    mut env: Vec<(String, String)>,
    start: &str,
    cancel: watch::Receiver<bool>,
) -> Ran {
    let lease = match shared.sessions.lease(shared, spec, start, &env).await {
        Ok(lease) => lease,
        Err(e) => {
            tracing::warn!(job = %spec.name, "{e}: the batch runs its framework itself");
            if let Err(e) = prepare(shared, spec, dir).await {
                let outcome = not_run(&shared.cfg.name, key.attempt, JobStatus::Error, Some(e));
                return Ran {
                    outcome,
                    staged: None,
                };
            }
            return execute(shared, spec, key, dir, env, cancel).await;
        }
    };
    env.push((
        SESSION_ENV.to_owned(),
        lease.control().display().to_string(),
    ));
    let ran = execute(shared, spec, key, dir, env, cancel).await;
    let grace = shared.cfg.limits.kill_grace;
    shared.sessions.release(lease, grace).await;
    ran
}

/// The environment of the attempt's process: the job's variables and secrets, and what the
/// worker tells every job.
fn job_env(shared: &Shared, spec: &JobSpec, attempt: u32) -> Vec<(String, String)> {
    let name = &shared.cfg.name;
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(
        spec.secret_env
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env.push(("CLUSTER_JOB_NAME".into(), spec.name.clone()));
    // A suite batch sets its tests' attempt itself (a retry is a new job to the broker).
    if !spec.env.contains_key("CLUSTER_ATTEMPT") {
        env.push(("CLUSTER_ATTEMPT".into(), attempt.to_string()));
    }
    env.push(("CLUSTER_WORKER".into(), name.clone()));
    env
}

/// Runs the attempt `key` of `spec` in `dir` (prepared) with `env`, following its progress
/// file while it runs, and stages its outputs.
async fn execute(
    shared: &Shared,
    spec: &JobSpec,
    key: AttemptRef,
    dir: &Path,
    env: Vec<(String, String)>,
    mut cancel: watch::Receiver<bool>,
) -> Ran {
    let name = &shared.cfg.name;
    let attempt = key.attempt;
    let timeout = Duration::from_millis(spec.timeout_ms);
    let started = Instant::now();
    let run = exec::run_job(
        &spec.run,
        dir,
        env,
        spec.isolation,
        timeout,
        &shared.cfg.limits,
        cancelled(&mut cancel),
    );
    let run = match &spec.progress {
        Some(file) => {
            let path = dir.join(file);
            let lines = shared.progress.clone();
            let follow = progress::follow(path, key, spec.secret_env.clone(), lines);
            let mut run = std::pin::pin!(run);
            tokio::select! {
                done = &mut run => done,
                () = follow => run.await,
            }
        }
        None => run.await,
    };
    let execution = match run {
        Ok(x) => x,
        Err(e) => {
            let why = format!("cannot start the job: {e}");
            return Ran {
                outcome: not_run(name, attempt, JobStatus::Error, Some(why)),
                staged: None,
            };
        }
    };
    let mut outcome = JobOutcome {
        attempt,
        status: execution.status,
        exit_code: execution.exit_code,
        duration_ms: 0,
        worker: name.clone(),
        output: super::output::mask(execution.output, &spec.secret_env),
        outputs_layer: None,
        outputs_path: None,
        error: None,
    };
    let mut staged = None;
    if !spec.outputs.is_empty() {
        // A cancelled attempt's outputs still go back (a suite batch's report holds what its
        // framework finished before the cancel), found within the grace alone.
        let (deadline, cancel) = match outcome.status {
            JobStatus::Cancelled => (Some(Instant::now()), None),
            _ => (started.checked_add(timeout), Some(&mut cancel)),
        };
        let found = stage_outputs(shared, spec, dir, deadline, cancel, &mut outcome.output);
        match found.await {
            Ok(found) => staged = found,
            Err((status, e)) => outputs_lost(&mut outcome, status, e),
        }
    }
    Ran { outcome, staged }
}

/// Completes when the attempt is cancelled. When the worker drops the sender it is going away
/// and drops this attempt too, so that never completes.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Stages the files matching the job's output globs with the worker's outputs packer, which
/// publishes them in a layer shared with the other jobs finishing about now. Finding them gets what is left of the job's timeout
/// (at least [`OUTPUTS_GRACE`]) and stops when the job is cancelled (`cancel`, none for an
/// attempt already cancelled) or this attempt is dropped; running out of time is a timeout of the job. Matching symlinks
/// that leave the job's directory are left out, with a note in `output`.
async fn stage_outputs(
    shared: &Shared,
    spec: &JobSpec,
    dir: &Path,
    deadline: Option<Instant>,
    cancel: Option<&mut watch::Receiver<bool>>,
    output: &mut String,
) -> Result<Option<Staged>, (JobStatus, String)> {
    let error = |e: String| (JobStatus::Error, e);
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let (root, patterns, flag) = (dir.to_path_buf(), spec.outputs.clone(), stop.0.clone());
    let deadline = deadline.map(|d| d.max(Instant::now() + OUTPUTS_GRACE));
    let mut finding =
        tokio::task::spawn_blocking(move || find_outputs(&root, &patterns, deadline, &flag));
    let found = tokio::select! {
        done = &mut finding => done,
        () = async {
            match cancel {
                Some(cancel) => cancelled(cancel).await,
                None => std::future::pending().await,
            }
        } => {
            stop.0.store(true, Ordering::Relaxed);
            (&mut finding).await
        }
    };
    let found = match found.map_err(|e| error(format!("output search task failed: {e}")))? {
        Ok(found) => found,
        Err(layer::SelectError::Deadline(took)) => {
            return Err((
                JobStatus::TimedOut,
                format!(
                    "finding the outputs took longer than the {took:?} left of the job's timeout"
                ),
            ));
        }
        Err(layer::SelectError::Cancelled) => {
            let why = "cancelled while its outputs were being found".to_owned();
            return Err((JobStatus::Cancelled, why));
        }
        Err(e) => return Err(error(format!("cannot find the outputs: {e}"))),
    };
    for (path, reason) in &found.escaping_links {
        output.push_str(&format!(
            "\n[cluster-action: output '{}' left out: {reason}]",
            path.display()
        ));
    }
    if found.paths.is_empty() {
        return Ok(None);
    }
    let staged = shared
        .outputs
        .stage(dir, found.paths)
        .await
        .map_err(error)?;
    Ok(Some(staged))
}

/// Publishes of one attempt's outputs layer before the outputs count as lost (pauses of 1, 2
/// and 4 s): a transient store failure after the job ran is the infrastructure's, retried
/// here as the outputs step alone, and never costs the job one of its `retries`.
pub const OUTPUTS_PUBLISH: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(4),
};

/// Uploads the staged outputs of job `id`, tried again after a transient failure as
/// [`OUTPUTS_PUBLISH`] says (the job ran, so a store failure now is the infrastructure's, not
/// one of the job's attempts); a refusal no retry helps fails at once. Returns the layer
/// holding them and their directory in it; the staged files go when this returns.
pub(crate) async fn upload(
    shared: Arc<Shared>,
    id: crate::proto::JobId,
    staged: Staged,
) -> Result<(Digest, String), String> {
    let mut failed = 0;
    loop {
        let error = match shared.outputs.upload(&staged).await {
            Ok(published) => return Ok(published),
            Err(e) if e.permanent => return Err(e.message),
            Err(e) => e.message,
        };
        failed += 1;
        let Some(pause) = OUTPUTS_PUBLISH.after_failure(failed) else {
            return Err(error);
        };
        tracing::warn!(job = %id, "uploading the outputs failed ({error}): again in {pause:?}");
        tokio::time::sleep(pause).await;
    }
}

/// The least time finding outputs gets, even when the job used up its timeout: a timed-out
/// job's partial reports are worth bringing back.
const OUTPUTS_GRACE: Duration = Duration::from_secs(5);

/// The most entries of a job's directory looked at to find its outputs.
const MAX_OUTPUT_ENTRIES: usize = 1_000_000;

/// Sets the flag when dropped: the blocking search stops when its attempt goes away.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The entries matching `patterns` in the job's directory `dir`, never following a symlink,
/// within `deadline` and until `stop` is set.
fn find_outputs(
    dir: &Path,
    patterns: &[String],
    deadline: Option<Instant>,
    stop: &AtomicBool,
) -> Result<layer::Selection, layer::SelectError> {
    let bounds = layer::Bounds {
        max_entries: MAX_OUTPUT_ENTRIES,
        deadline,
        cancel: Some(stop),
    };
    layer::select(dir, patterns, layer::Directories::Contents, bounds)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn a_failed_outputs_publish_is_retried_with_growing_pauses_then_given_up() {
        let secs: Vec<Option<u64>> = (1..=OUTPUTS_PUBLISH.max_attempts)
            .map(|failed| OUTPUTS_PUBLISH.after_failure(failed).map(|d| d.as_secs()))
            .collect();
        assert_eq!(secs, [Some(1), Some(2), Some(4), None]);
    }

    fn job_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("r")).unwrap();
        std::fs::write(dir.path().join("r/t.xml"), "x").unwrap();
        symlink(".", dir.path().join("a")).unwrap();
        symlink("/", dir.path().join("r/root.xml")).unwrap();
        dir
    }

    #[test]
    fn outputs_are_found_without_links_that_leave_the_job_directory() {
        let dir = job_dir();
        let patterns = vec!["**/*.xml".to_owned()];
        let stop = AtomicBool::new(false);
        let found = find_outputs(dir.path(), &patterns, None, &stop).unwrap();
        assert_eq!(found.paths, [Path::new("r/t.xml")]);
        let skipped: Vec<&Path> = found
            .escaping_links
            .iter()
            .map(|(p, _)| p.as_path())
            .collect();
        assert_eq!(skipped, [Path::new("r/root.xml")]);
    }

    #[test]
    fn finding_outputs_stops_at_the_deadline_and_when_stopped() {
        let dir = job_dir();
        let patterns = vec!["**/*.xml".to_owned()];
        let stop = AtomicBool::new(false);
        let late = find_outputs(dir.path(), &patterns, Some(Instant::now()), &stop);
        assert!(matches!(late, Err(layer::SelectError::Deadline(_))));
        stop.store(true, Ordering::Relaxed);
        let stopped = find_outputs(dir.path(), &patterns, None, &stop);
        assert!(matches!(stopped, Err(layer::SelectError::Cancelled)));
    }
}
