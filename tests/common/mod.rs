//! Helpers shared by the integration tests: a bound on every async test, the local artifact
//! service's clients as one job of one workflow run, whether a process still runs, the files
//! and names under a directory, and a job as the runner submits it.

// Each test crate compiles this module and uses the part it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster_action::proto::JobSpec;

use cluster_action::serve::{ServeConfig, ServeHandle};
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

/// The local artifact service with `cfg`.
pub async fn start_service(cfg: ServeConfig) -> ServeHandle {
    cluster_action::serve::start(cfg).await.unwrap()
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

/// Makes a named pipe at `path`.
pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo {}", path.display());
}

/// Copies the tree at `from` to `to`, leaving out build output and caches.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["target", "__pycache__", ".pytest_cache"].contains(&name.to_str().unwrap()) {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// Every file under `dir` (recursively), by its path relative to `dir`, with its bytes.
pub fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                out.insert(rel.into_owned(), fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The names of the entries of `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Names of the files in `dir` ending with `suffix`, sorted.
pub fn names_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names = entries(dir);
    names.retain(|n| n.ends_with(suffix));
    names
}

/// Job `name` running `run` as the runner submits it, everything else as a manifest leaves it
/// by default (30 minutes, no retries, no layers, outputs or environment): a test sets what
/// it is about with `JobSpec { field, ..job_spec(name, run) }`.
pub fn job_spec(name: &str, run: &str) -> JobSpec {
    JobSpec::new(name, run, 30 * 60 * 1000)
}

/// `cluster-action` processes in a scratch directory, the `serve` service, `Cluster` (a
/// service, broker and workers started as jobs of one run) and job processes
/// (tests/cluster_*.rs and others).
pub mod cluster;

/// What the tests of one framework's suites share (tests/suite_rspec.rs and others).
pub mod framework;

/// `cluster-action local` in a directory with the test tools on PATH, whether a tool is
/// installed, and fixture copies (tests/suite*.rs and others).
pub mod local;

/// Manifest text and the `data` layer's files for the end-to-end tests.
pub mod manifest;

/// The JSON report, read and checked against its schema.
pub mod report;
