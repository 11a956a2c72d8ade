//! Warm framework sessions: a suite batch whose job carries a session command
//! ([`JobSpec::session`]) is handed to a framework process this worker keeps up across the
//! batches it runs, so that a batch costs its tests and not a start and a collection.
//!
//! A session belongs to the worker, not to a job: it runs in a directory of its own, made
//! from the job's layers once and kept while it lives (`tree/`, beside its control directory
//! `control/`, which the job gets in [`SESSION_ENV`]). Sessions are kept per key (the
//! command, the layers and the environment but what changes per batch), at most one per slot
//! in all: a batch takes an idle session of its key or starts one, evicting the oldest idle
//! sessions beyond that. A session goes back to the pool only when the batch's side says it
//! served the whole batch (the file `served` in its control directory); after a batch that
//! was stopped (a test hung, the batch's time limit, a cancel) or a session that died, it is
//! stopped and the next batch starts another. Each is contained as a job is ([`contain`]):
//! its own process group and mark, killed with the worker.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::Shared;
use super::contain;
use super::exec::Group;
use crate::layer::Digest;
use crate::proto::{Isolation, JobSpec};
use crate::suite::{ATTEMPT_ENV, REPORT_ENV, SESSION_ENV};

/// The variables that change from one batch to the next: not part of a session's key, and
/// passed to the session with each batch by its client.
const PER_BATCH: [&str; 3] = [ATTEMPT_ENV, REPORT_ENV, "CLUSTER_JOB_NAME"];

/// How long a starting session has to say it is ready (it does before loading its
/// framework's plugins and the project's configuration, which a batch then waits for).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The file a batch's side leaves in the control directory once the session served it.
const SERVED: &str = "served";

/// What makes two batches able to share a session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    start: String,
    layers: Vec<Digest>,
    env: Vec<(String, String)>,
    isolation: Isolation,
}

/// A running session.
struct Warm {
    key: Key,
    /// Its directory: `tree/` where it runs, `control/` for its socket, log and marks.
    dir: PathBuf,
    group: Group,
    /// Keeps the processes it starts from being taken for a finished job's leftovers until
    /// it stops.
    mark: Option<contain::Mark>,
}

impl Warm {
    fn control(&self) -> PathBuf {
        self.dir.join("control")
    }

    /// Whether it still runs.
    fn alive(&self) -> bool {
        matches!(self.group.has_exited(), Ok(false))
    }

    /// Stops it as a job is stopped (SIGTERM, SIGKILL after `grace`), with what it left
    /// running, and removes its directory.
    async fn stop(mut self, grace: Duration) {
        self.group.signal(libc::SIGTERM);
        if tokio::time::timeout(grace, self.group.exited())
            .await
            .is_err()
        {
            self.group.signal(libc::SIGKILL);
            let _ = self.group.exited().await;
        }
        self.group.signal(libc::SIGKILL);
        let _ = self.group.reap().await;
        let pgid = self.group.pgid;
        if let Some(mark) = self.mark {
            let _ = tokio::task::spawn_blocking(move || contain::kill_leftovers(mark, pgid)).await;
        }
        if let Err(e) = tokio::fs::remove_dir_all(&self.dir).await {
            tracing::warn!(
                "cannot remove session directory {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// The sessions of one worker.
#[derive(Clone)]
pub(crate) struct Sessions {
    state: Arc<Mutex<Pool>>,
    /// Where session directories are made.
    dir: PathBuf,
    slots: usize,
    next: Arc<AtomicU64>,
}

/// Idle sessions, oldest first, and how many are leased.
#[derive(Default)]
struct Pool {
    idle: Vec<Warm>,
    leased: usize,
}

/// A session one batch holds: its control directory goes to the batch in [`SESSION_ENV`].
/// Dropped without [`Sessions::release`] (the worker is going away), it is killed.
pub(crate) struct Lease {
    warm: Option<Warm>,
    pool: Arc<Mutex<Pool>>,
}

impl Lease {
    /// The session's control directory.
    pub(crate) fn control(&self) -> PathBuf {
        self.warm.as_ref().map(Warm::control).unwrap_or_default()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).leased -= 1;
    }
}

impl Sessions {
    /// The sessions of a worker with `slots` slots, in directories under `dir`.
    pub(crate) fn new(dir: PathBuf, slots: u32) -> Self {
        Self {
            state: Arc::default(),
            dir,
            slots: slots.max(1) as usize,
            next: Arc::default(),
        }
    }

    /// A session for `spec`'s batch, started by `start` with the job's environment `env`: an
    /// idle one of the same key, else a new one (its directory made from the job's layers).
    /// An error says why none could be started; the batch then runs without one.
    pub(crate) async fn lease(
        &self,
        shared: &Shared,
        spec: &JobSpec,
        start: &str,
        env: &[(String, String)],
    ) -> Result<Lease, String> {
        let key = Key {
            start: start.to_owned(),
            layers: spec.layers.clone(),
            env: env
                .iter()
                .filter(|(name, _)| !PER_BATCH.contains(&name.as_str()))
                .cloned()
                .collect(),
            isolation: spec.isolation,
        };
        let (found, evicted) = {
            let mut pool = self.state.lock().unwrap_or_else(|p| p.into_inner());
            pool.leased += 1;
            let mut evicted = Vec::new();
            let mut kept = Vec::new();
            let mut found = None;
            for warm in std::mem::take(&mut pool.idle) {
                if !warm.alive() {
                    evicted.push(warm);
                } else if found.is_none() && warm.key == key {
                    found = Some(warm);
                } else {
                    kept.push(warm);
                }
            }
            // Room for a new one: at most one session per slot in all.
            while found.is_none() && !kept.is_empty() && kept.len() + pool.leased > self.slots {
                evicted.push(kept.remove(0));
            }
            pool.idle = kept;
            (found, evicted)
        };
        let lease = Lease {
            warm: found,
            pool: self.state.clone(),
        };
        let grace = shared.cfg.limits.kill_grace;
        for warm in evicted {
            warm.stop(grace).await;
        }
        if lease.warm.is_some() {
            return Ok(lease);
        }
        let dir = self
            .dir
            .join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
        match self.start(shared, &dir, key).await {
            Ok(warm) => {
                let mut lease = lease;
                lease.warm = Some(warm);
                Ok(lease)
            }
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                Err(format!("cannot start a session in {}: {e}", dir.display()))
            }
        }
    }

    /// Starts a session of `key` in `dir`, once it said it is ready.
    async fn start(&self, shared: &Shared, dir: &Path, key: Key) -> Result<Warm, String> {
        let (tree, control) = (dir.join("tree"), dir.join("control"));
        shared
            .cache
            .assemble(&shared.store, &key.layers, &tree)
            .await
            .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&control).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(control.join("log")).map_err(|e| e.to_string())?;
        let mut command = Command::new("bash");
        for var in crate::credentials::HIDDEN_VARS {
            command.env_remove(var);
        }
        command
            .arg("-c")
            .arg(&key.start)
            .current_dir(&tree)
            .envs(key.env.iter().map(|(k, v)| (k, v)))
            .env(SESSION_ENV, &control)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0);
        let mark = (key.isolation != Isolation::None).then(contain::Mark::new);
        if let Some(mark) = &mark {
            contain::become_subreaper();
            command.env(contain::MARK_VAR, mark.value());
            let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(libc::pid_t::MAX);
            // SAFETY: `in_child` makes only async-signal-safe calls and does not allocate.
            unsafe { command.pre_exec(move || contain::in_child(parent)) };
        }
        let mut child = command.spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take();
        let group = Group::new(child).map_err(|e| e.to_string())?;
        contain::spawned(group.pgid);
        let warm = Warm {
            key,
            dir: dir.to_path_buf(),
            group,
            mark,
        };
        let mut line = String::new();
        let ready = match stdout {
            Some(out) => {
                let mut out = BufReader::new(out);
                tokio::time::timeout(READY_WITHIN, out.read_line(&mut line)).await
            }
            None => Ok(Ok(0)),
        };
        if !matches!(ready, Ok(Ok(_)) if line == "ready\n") {
            let log = std::fs::read_to_string(control.join("log")).unwrap_or_default();
            warm.stop(shared.cfg.limits.kill_grace).await;
            return Err(format!("it did not say it is ready: {}", log.trim_end()));
        }
        Ok(warm)
    }

    /// Gives `lease` back after its batch: to the pool when the session served the batch and
    /// still runs, else stopped.
    pub(crate) async fn release(&self, mut lease: Lease, grace: Duration) {
        let Some(warm) = lease.warm.take() else {
            return;
        };
        let served = warm.control().join(SERVED);
        let reusable = std::fs::remove_file(&served).is_ok() && warm.alive();
        drop(lease);
        if reusable {
            let mut pool = self.state.lock().unwrap_or_else(|p| p.into_inner());
            pool.idle.push(warm);
        } else {
            warm.stop(grace).await;
        }
    }

    /// Stops every idle session (the worker is leaving; leased ones die with their lease).
    pub(crate) async fn stop_all(&self, grace: Duration) {
        let idle = std::mem::take(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()).idle);
        futures_util::future::join_all(idle.into_iter().map(|warm| warm.stop(grace))).await;
    }
}
