//! Helpers shared by the integration tests: a bound on every async test, the local artifact
//! service's clients as one job of one workflow run, and whether a process still runs.

// Each test crate compiles this module and uses the part it needs.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use cluster_action::serve::ServeHandle;
use cluster_action::store::{ArtifactStore, RetryPolicy, StoreConfig};
use cluster_action::token::{BackendIds, make_token};

/// The workflow run every test's jobs belong to.
pub const RUN: &str = "run-1";

/// Upper bound on any one test, so a bug shows as a failure instead of a hang.
pub const GUARD: Duration = Duration::from_secs(120);

/// `fut`, failing the test if it takes longer than [`GUARD`].
pub async fn guarded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .expect("test did not finish in time")
}

/// The backend ids of job `job` of [`RUN`].
pub fn ids(job: &str) -> BackendIds {
    BackendIds {
        run: RUN.into(),
        job: job.into(),
    }
}

/// Quick retries; enough attempts that injected faults never exhaust them.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 20,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    }
}

/// A client of the service at `url` acting as job `job` of [`RUN`].
pub fn store_at(url: &str, job: &str, retry: RetryPolicy) -> ArtifactStore {
    let mut cfg = StoreConfig::new(url, &make_token(&ids(job))).unwrap();
    cfg.retry = retry;
    ArtifactStore::new(cfg).unwrap()
}

/// A client of `service` acting as job `job` of [`RUN`], with [`quick_retry`].
pub fn store(service: &ServeHandle, job: &str) -> ArtifactStore {
    store_at(service.url(), job, quick_retry())
}

/// Whether `pid` is a running process (a zombie has finished running).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.trim().chars().next());
    !matches!(state, Some('Z' | 'X'))
}

/// How long a test waits for a condition before giving up: only a hang reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often an awaited condition is checked.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it returns a value; panics naming `what` after [`PATIENCE`].
pub fn await_some<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    await_within(what, PATIENCE, probe)
}

/// Polls `probe` until it returns a value; panics naming `what` after `patience` (longer than
/// [`PATIENCE`] only for runs that are long by design).
pub fn await_within<T>(what: &str, patience: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// `cluster-action` processes in a scratch directory, the `serve` service, and `Cluster`:
/// a service, broker and workers started as jobs of one run (tests/cluster.rs and others).
pub mod cluster;

/// A suite fixture through `cluster-action local`, and its framework alone (tests/suite_*.rs).
pub mod suite;
