//! Warm-up jobs: while the runner lists a suite whose batches run in warm sessions (pytest),
//! the cluster's slots start the suite's session and have it collect the suite, as each
//! process of `pytest -n` does. A listing imports every test file, which takes seconds on a
//! large suite; without warm-ups the slots wait for it idle, then import the same files again
//! for their first batches. The job ends as soon as its session has the request: the session
//! collects in its idle time, and the first batch that connects stops it after the file being
//! imported (what was imported stays), so a warm-up never holds a slot a batch could use.
//!
//! Only a listing that takes a while ([`AFTER`]) gets warm-ups. A warm-up is a job of the
//! run that no report shows: the run's machine ignores the broker's
//! messages about jobs it did not submit, and a warm-up that fails costs only its time (the
//! batches then start their sessions as they would have). A manifest with several suites that
//! keep sessions gets none: a worker keeps one session per slot in all, and one suite's
//! warm-ups would evict the other's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::layer::Digest;
use crate::link::RunnerLink;
use crate::proto::{JobIndex, JobSpec, RunnerMsg, Submission};
use crate::stream::StreamError;
use crate::suite::Framework;

use super::manifest::SuiteDef;
use super::suite_run::batch_env;

/// Warm-ups start once a listing has taken this long. A shorter listing means a collection
/// cheap enough that the slots lose little collecting for their batches, while warming them
/// would compete with the listing for the processors wherever they share a machine (`local`,
/// or several workers on one host): on 2 cores, eight sessions starting and collecting beside
/// a 0.3 s listing made a 65 s run 3 to 5 s longer (BENCHMARKS.md).
pub const AFTER: Duration = Duration::from_secs(2);

/// Warm-ups are numbered from here: far above any index of the run's own jobs and batches.
const FIRST_INDEX: u64 = 1 << 48;

/// How long a warm-up job may take: it starts a session and hands it a request.
const TIME_LIMIT: Duration = Duration::from_secs(5 * 60);

/// The warm-ups of one run: a job to submit once per slot the run plans for.
#[derive(Debug)]
pub struct WarmUps {
    /// The job, or `None` when the run has nothing to warm.
    spec: Option<JobSpec>,
    /// How many were submitted.
    submitted: u64,
}

impl WarmUps {
    /// The warm-ups of `suites` listed in `dir`, whose layers were published as `digests`:
    /// none unless exactly one suite keeps sessions.
    pub fn new(suites: &[SuiteDef], dir: &Path, digests: &BTreeMap<String, Digest>) -> Self {
        let warm: Vec<&SuiteDef> = suites
            .iter()
            .filter(|def| def.session && Framework::sessions_allowed(def.isolation))
            .collect();
        let spec = match warm.as_slice() {
            [def] => def.suite.warm_up(dir).map(|warm_up| JobSpec {
                name: format!("{} warm-up", def.suite.name),
                run: warm_up.run,
                env: batch_env(def, 1),
                // The suite's own layers: pytest ships no files of its own.
                layers: super::session::suite_layers(def, digests),
                timeout_ms: TIME_LIMIT.as_millis() as u64,
                retries: 0,
                outputs: Vec::new(),
                estimate_ms: None,
                expected_ms: None,
                isolation: def.isolation,
                secret_env: def.secret_env.clone(),
                inherits: false,
                avoid_workers: Vec::new(),
                session: Some(warm_up.session),
                progress: None,
            }),
            _ => None,
        };
        Self { spec, submitted: 0 }
    }

    /// No warm-ups.
    pub fn none() -> Self {
        Self {
            spec: None,
            submitted: 0,
        }
    }

    /// Whether there is anything to warm.
    pub fn wanted(&self) -> bool {
        self.spec.is_some()
    }

    /// Submits warm-ups through `link` until there is one for each of `slots`.
    pub async fn top_up(&mut self, link: &RunnerLink, slots: usize) -> Result<(), StreamError> {
        let Some(spec) = &self.spec else {
            return Ok(());
        };
        let jobs: Vec<Submission> = (self.submitted..slots as u64)
            .map(|n| Submission {
                index: JobIndex(FIRST_INDEX + n),
                spec: spec.clone(),
            })
            .collect();
        if jobs.is_empty() {
            return Ok(());
        }
        self.submitted += jobs.len() as u64;
        link.send(&RunnerMsg::Submit { jobs }).await
    }
}
