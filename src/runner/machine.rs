//! The runner's decisions, as a pure state machine: what to submit and in which batches, what
//! each broker message means for progress and the report, when to give up waiting for
//! workers (or go on alone on the runner's own slots), how a cancel ends, what a lost broker
//! leaves in the report, when a failed outputs fetch is tried again, and the final report.
//!
//! It does no I/O. Each event returns the [`Effect`]s the shell in `runner::session` carries
//! out, as `broker::scheduler` does for the broker; the shell sleeps until
//! [`Machine::deadline`].
//!
//! Time: an `std::time::Instant` the shell hands in with each event that needs it; no clock is
//! read here (the convention of every state machine, see `broker::scheduler`).
//!
//! Memory: a job's spec is given away at submission; what stays is its compact report entry,
//! and of a passed or cancelled job no captured output (no report shows it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::report::{JobReport, RunReport, last_lines};
use super::suite_run::{QUOTED_LINES, SuiteRun, TestEnded, TestFinished};
use crate::dir_name::dir_name;
use crate::layer::Digest;
use crate::notice::Notice;
use crate::proto::{BrokerToRunner, JobIndex, JobOutcome, JobStatus, RunnerMsg};
use crate::proto::{JobDefaults, Submission};
use crate::retry::RetryPolicy;

/// Most jobs per `Submit` message.
const SUBMIT_BATCH: usize = 500;
/// Most bytes of jobs per `Submit` message: well under the 64 MiB a stream message may have,
/// so that a manifest of large jobs (big `env` values of their own) still travels; what they
/// inherit from `defaults:` travels once, apart ([`RunnerMsg::Defaults`]).
pub const SUBMIT_BATCH_BYTES: usize = 8 << 20;
/// How long a cancelled run waits for workers to confirm their jobs were killed.
pub const CANCEL_GRACE: Duration = Duration::from_secs(30);
/// Fetches of one job's outputs layer before its outputs count as lost (pauses of 1, 2 and
/// 4 s): a transient store failure is the infrastructure's, not the job's.
pub const OUTPUTS_FETCH: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(4),
};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every job has a final outcome.
    Completed,
    /// Cancelled by a signal.
    Cancelled,
    /// No worker was there for `worker_wait`; `not_run` jobs never ran.
    NoWorkers {
        /// Jobs without an outcome.
        not_run: usize,
    },
    /// The broker went away before every job had an outcome; the report keeps what had
    /// finished, and the rest are errors with `reason`.
    BrokerLost {
        /// What happened to the broker.
        reason: String,
        /// Jobs without an outcome.
        not_run: usize,
    },
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this message to the broker.
    Send(RunnerMsg),
    /// Show the number of connected workers.
    Workers(u32),
    /// Show that an attempt started.
    Started {
        /// The job's name.
        name: String,
        /// The attempt number.
        attempt: u32,
        /// The worker's name.
        worker: String,
    },
    /// Show a job's final result (its outputs may still be on their way).
    Finished(Box<JobReport>),
    /// Show the tests of a suite batch whose report was read: each attempt that ended.
    TestsEnded(Vec<TestEnded>),
    /// Show the tests a suite batch reported finished: while it runs, and at its end those
    /// not shown before.
    TestsFinished(Vec<TestFinished>),
    /// Tell the user (a warning: on the terminal and in the CI log).
    Notice(Notice),
    /// Fetch the outputs layer of a job into the directory named `dir` under the outputs
    /// directory, after waiting `after`, then report with [`Machine::outputs_fetched`].
    FetchOutputs {
        /// The job.
        index: JobIndex,
        /// The directory name (the job's name, made safe).
        dir: String,
        /// The layer.
        layer: Digest,
        /// How long to wait first (zero for the first fetch).
        after: Duration,
        /// The directory of the layer holding this job's outputs (the whole layer: `None`).
        path: Option<String>,
    },
    /// Fetch the outputs layer of suite batch `index` (none when it brought none back), read
    /// its report file ([`super::suite_run::REPORT_FILE`]) and hand it to
    /// [`Machine::report_fetched`].
    FetchReport {
        /// The batch.
        index: JobIndex,
        /// Its outputs layer.
        layer: Option<Digest>,
        /// The directory of the layer holding its outputs (the whole layer: `None`).
        path: Option<String>,
    },
    /// The run is over.
    End(RunEnd),
    /// The broker refused this runner: the run fails.
    Refused(String),
}

/// A timer the shell runs for the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// No worker has been connected for `worker_wait`.
    WorkerWait,
    /// No worker but the runner's own joined within `worker_wait`.
    Alone,
    /// Workers did not confirm a cancel within [`CANCEL_GRACE`].
    CancelGrace,
}

/// Where the run stands. Every run starts `Running`; the transitions:
///
/// | from | event | to |
/// |---|---|---|
/// | `Running` | a signal ([`Machine::cancel`]) | `Cancelling` (`Cancel` sent) |
/// | `Running` | no worker for `worker_wait` ([`Timer::WorkerWait`]) | `Ended` (`Cancel` sent) |
/// | `Running`, `Cancelling` | `AllDone` | `Ended` |
/// | `Cancelling` | no confirmation within [`CANCEL_GRACE`] | `Ended` |
/// | `Running`, `Cancelling` | the broker's stream ends ([`Machine::broker_gone`]) | `Ended` with the broker lost |
///
/// Nothing leaves `Ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Jobs are submitted and run.
    Running {
        /// The worker-wait clock, while it runs: without slots of its own, since when no
        /// worker has been connected; with some, since when the runner's own worker may be
        /// the only one (said once at the deadline, then `None` for good).
        waiting_since: Option<Instant>,
        /// `EndOfSubmission` was sent.
        submitted_all: bool,
    },
    /// A cancel was sent at `since`; the broker confirms with `AllDone`.
    Cancelling {
        /// When the cancel was sent.
        since: Instant,
        /// `EndOfSubmission` was sent.
        submitted_all: bool,
    },
    /// The run is over; nothing more is sent, and to a lost broker not even the stop.
    Ended {
        /// The broker went away before the end.
        broker_lost: bool,
    },
}

/// What the runner knows of one job.
#[derive(Debug)]
struct Entry {
    /// Its report: a not-run skeleton until the broker reports its outcome.
    report: JobReport,
    /// Whether the broker reported its final outcome.
    finished: bool,
    /// Its outputs layer (and its directory in it) while it is being fetched, and the
    /// fetches made.
    fetching: Option<(Digest, Option<String>, u32)>,
}

/// The runner's state: every job of the manifest and what is known of it.
#[derive(Debug)]
pub struct Machine {
    jobs: BTreeMap<JobIndex, Entry>,
    /// The specs until [`Machine::submit`] gives them away.
    unsent: Vec<Submission>,
    /// What the manifest's jobs and suites share, until it is sent once before them (none:
    /// nothing shared).
    defaults: Option<JobDefaults>,
    /// The defaults once sent: what every later job and batch inherits.
    shared: Option<JobDefaults>,
    fetch_outputs: bool,
    stop_cluster: bool,
    worker_wait: Duration,
    own_slots: u32,
    phase: Phase,
    suites: SuiteRun,
    /// Slots known before the broker says (`local` starts its workers itself), else 0.
    slots_hint: usize,
    /// Workers the cluster is to have (`run --expect-workers`), else 0: suites are planned for
    /// that many of the first workers' size, however many have joined when the first does.
    expected_workers: u32,
}

/// How the machine is set up.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Give up when no worker is connected for this long while jobs wait.
    pub worker_wait: Duration,
    /// Bring declared outputs back.
    pub fetch_outputs: bool,
    /// Stop the cluster when the run is over.
    pub stop_cluster: bool,
    /// Slots of the worker inside this runner (0: none); with some, a run that no other
    /// worker joins goes on alone.
    pub own_slots: u32,
}

/// The slots a run plans for when the broker counts `workers` workers with `slots` slots in
/// all: `slots_hint` when known (`local`), else as many as there are, or as the
/// `expected_workers` of the first ones' size will have.
pub fn planned_slots(workers: u32, slots: u32, expected_workers: u32, slots_hint: usize) -> usize {
    let per_worker = slots.div_ceil(workers.max(1));
    let expected = expected_workers.saturating_mul(per_worker);
    slots_hint.max(slots.max(expected) as usize)
}

impl Machine {
    /// A run of `jobs` that starts at `now` (with no worker known yet).
    pub fn new(jobs: Vec<Submission>, rules: &Rules, now: Instant) -> Self {
        let entries = jobs
            .iter()
            .map(|s| {
                let entry = Entry {
                    report: JobReport::cancelled(&s.spec),
                    finished: false,
                    fetching: None,
                };
                (s.index, entry)
            })
            .collect();
        Self {
            jobs: entries,
            unsent: jobs,
            defaults: None,
            shared: None,
            fetch_outputs: rules.fetch_outputs,
            stop_cluster: rules.stop_cluster,
            worker_wait: rules.worker_wait,
            own_slots: rules.own_slots,
            phase: Phase::Running {
                waiting_since: Some(now),
                submitted_all: false,
            },
            suites: SuiteRun::new(Vec::new(), Default::default(), 0),
            slots_hint: 0,
            expected_workers: 0,
        }
    }

    /// The run also runs `suites`, planned for `slots_hint` slots when that is known (not 0),
    /// else once the broker first tells of a free slot.
    pub fn with_suites(mut self, suites: SuiteRun, slots_hint: usize) -> Self {
        self.suites = suites;
        self.slots_hint = slots_hint;
        self
    }

    /// The cluster is to have `workers` workers: the suites are planned for that many of the
    /// size of those that joined first, not for the few that did (a plan for 2 slots makes
    /// too few batches for 8).
    pub fn expecting_workers(mut self, workers: u32) -> Self {
        self.expected_workers = workers;
        self
    }

    /// The jobs were resolved with `defaults` (the manifest's `defaults:`): they are sent
    /// once, and each job carries only what it sets itself.
    pub fn with_defaults(mut self, defaults: JobDefaults) -> Self {
        self.defaults = (!defaults.is_empty()).then_some(defaults);
        self
    }

    /// Jobs in the run.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether the run has no jobs.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Tests listed in the run's suites.
    pub fn tests(&self) -> usize {
        self.suites.tests()
    }

    /// Jobs without a final outcome yet, and suite batches on their way.
    pub fn unfinished(&self) -> usize {
        self.jobs.values().filter(|e| !e.finished).count() + self.suites.in_flight()
    }

    /// What has not finished, for the user: `2 job(s)`, `40 test(s)` or both joined by `and`
    /// (the jobs of a run with jobs or without suites, the tests of a run with suites).
    fn left(&self) -> String {
        let jobs = self.jobs.values().filter(|e| !e.finished).count();
        let mut parts = Vec::new();
        if !self.jobs.is_empty() || self.suites.is_empty() {
            parts.push(format!("{jobs} job(s)"));
        }
        if !self.suites.is_empty() {
            parts.push(format!("{} test(s)", self.suites.unfinished_tests()));
        }
        parts.join(" and ")
    }

    /// The submission: the shared defaults (once), every job in batches (see `submit_all`),
    /// the suites' first batches when the slots are known, then the end of submission once the
    /// suites will submit nothing more. The specs are given away: the machine keeps only the report entries.
    pub fn submit(&mut self) -> Vec<Effect> {
        let jobs = std::mem::take(&mut self.unsent);
        let mut fx = Vec::new();
        if let Some(defaults) = self.defaults.take() {
            fx.push(Effect::Send(RunnerMsg::Defaults(defaults.clone())));
            self.shared = Some(defaults);
        }
        fx.extend(self.submit_inheriting(jobs));
        if self.slots_hint > 0 {
            fx.extend(self.plan_suites(self.slots_hint));
        }
        fx.extend(self.end_submission_when_done());
        fx
    }

    /// The suites' first batches for `slots` slots (once), after the tests none of them runs.
    fn plan_suites(&mut self, slots: usize) -> Vec<Effect> {
        let batches = self.suites.plan(slots);
        let mut fx = self.suite_news();
        fx.extend(self.submit_inheriting(batches));
        fx
    }

    /// `Submit` messages for jobs or suite batches resolved with the manifest's defaults:
    /// once the defaults were sent, each carries only what it sets itself.
    fn submit_inheriting(&self, mut jobs: Vec<Submission>) -> Vec<Effect> {
        if let Some(defaults) = &self.shared {
            for job in &mut jobs {
                defaults.factor_out(&mut job.spec);
            }
        }
        submit_all(jobs)
    }

    /// The suites' notices and the attempts that ended since they were last taken.
    fn suite_news(&mut self) -> Vec<Effect> {
        let mut fx: Vec<Effect> = (self.suites.take_notices().into_iter())
            .map(Effect::Notice)
            .collect();
        let finished = self.suites.take_finished();
        if !finished.is_empty() {
            fx.push(Effect::TestsFinished(finished));
        }
        let ended = self.suites.take_ended();
        if !ended.is_empty() {
            fx.push(Effect::TestsEnded(ended));
        }
        fx
    }

    /// `EndOfSubmission`, once, when the suites will submit nothing more.
    fn end_submission_when_done(&mut self) -> Vec<Effect> {
        let (Phase::Running { submitted_all, .. } | Phase::Cancelling { submitted_all, .. }) =
            &mut self.phase
        else {
            return Vec::new();
        };
        if *submitted_all || !self.suites.is_done() {
            return Vec::new();
        }
        *submitted_all = true;
        vec![Effect::Send(RunnerMsg::EndOfSubmission)]
    }

    /// The report of suite batch `index` was fetched (`None`: it brought none back): the
    /// suites' next batches, and the end of submission when they are done.
    pub fn report_fetched(&mut self, index: JobIndex, report: Option<Vec<u8>>) -> Vec<Effect> {
        let next = self.suites.finished(index, report.as_deref());
        self.batch_done(next)
    }

    /// The report of suite batch `index` was not read (`reason`: too large, not a file): its
    /// tests are errors saying so.
    pub fn report_unreadable(&mut self, index: JobIndex, reason: &str) -> Vec<Effect> {
        let next = self.suites.unreadable(index, reason);
        self.batch_done(next)
    }

    /// The outputs of suite batch `index` could not be fetched (`reason`): its tests go back
    /// to the queue, saying so.
    pub fn report_lost(&mut self, index: JobIndex, reason: &str) -> Vec<Effect> {
        let next = self.suites.report_lost(index, reason);
        self.batch_done(next)
    }

    /// After a suite batch: the suites' news, their `next` batches, and the end of
    /// submission when they are done.
    fn batch_done(&mut self, next: Vec<Submission>) -> Vec<Effect> {
        let mut fx = self.suite_news();
        fx.extend(self.submit_inheriting(next));
        fx.extend(self.end_submission_when_done());
        fx.extend(self.end_when_all_finished());
        fx
    }

    /// The run's end, once everything was submitted and has its final outcome: the broker's
    /// `AllDone` would say the same a round trip later (the `EndOfSubmission` this runner
    /// sent last travelling to the broker, and its answer back).
    fn end_when_all_finished(&mut self) -> Vec<Effect> {
        match self.phase {
            Phase::Running {
                submitted_all: true,
                ..
            } if self.unfinished() == 0 => self.end(RunEnd::Completed),
            _ => Vec::new(),
        }
    }

    /// A message from the broker, at `now`.
    pub fn message(&mut self, msg: BrokerToRunner, now: Instant) -> Vec<Effect> {
        match msg {
            BrokerToRunner::Welcome { workers, slots }
            | BrokerToRunner::Workers { workers, slots } => {
                let mut fx = self.workers(workers, now);
                let running = matches!(self.phase, Phase::Running { .. });
                if slots > 0 && !self.suites.is_planned() && running {
                    let planned =
                        planned_slots(workers, slots, self.expected_workers, self.slots_hint);
                    fx.extend(self.plan_suites(planned));
                    fx.extend(self.end_submission_when_done());
                }
                fx
            }
            BrokerToRunner::Started {
                index,
                attempt,
                worker,
            } => match self
                .jobs
                .get(&index)
                .map(|entry| entry.report.name.as_str())
                .or_else(|| self.suites.name(index))
            {
                Some(name) => vec![Effect::Started {
                    name: name.to_string(),
                    attempt,
                    worker,
                }],
                None => Vec::new(),
            },
            BrokerToRunner::Progress {
                index,
                attempt,
                lines,
            } => {
                let finished = self.suites.progress(index, attempt, &lines);
                match finished.is_empty() {
                    true => Vec::new(),
                    false => vec![Effect::TestsFinished(finished)],
                }
            }
            BrokerToRunner::Finished { index, outcome } if self.suites.owns(index) => {
                self.batch_finished(index, outcome)
            }
            BrokerToRunner::Finished { index, outcome } => {
                let mut fx = self.job_finished(index, outcome);
                fx.extend(self.end_when_all_finished());
                fx
            }
            BrokerToRunner::AllDone => match self.phase {
                Phase::Running { .. } => self.end(RunEnd::Completed),
                Phase::Cancelling { .. } => self.end(RunEnd::Cancelled),
                Phase::Ended { .. } => Vec::new(),
            },
            BrokerToRunner::Refused { reason } => vec![Effect::Refused(reason)],
        }
    }

    /// SIGINT or SIGTERM at `now`: ask the broker to cancel everything (once).
    pub fn cancel(&mut self, now: Instant) -> Vec<Effect> {
        let Phase::Running { submitted_all, .. } = self.phase else {
            return Vec::new();
        };
        self.phase = Phase::Cancelling {
            since: now,
            submitted_all,
        };
        self.suites.stop();
        let mut fx = vec![
            Effect::Notice(Notice::warn(
                "cancelling: queued jobs are dropped, running jobs are killed",
            )),
            Effect::Send(RunnerMsg::Cancel),
        ];
        fx.extend(self.end_submission_when_done());
        fx
    }

    /// The broker's stream ended, failed or could not be written (`reason`): the run ends,
    /// and the report keeps every outcome that had arrived.
    pub fn broker_gone(&mut self, reason: &str) -> Vec<Effect> {
        if self.ended() {
            return Vec::new();
        }
        let not_run = self.unfinished();
        let fx = self.end(RunEnd::BrokerLost {
            reason: reason.to_string(),
            not_run,
        });
        self.phase = Phase::Ended { broker_lost: true };
        fx
    }

    fn ended(&self) -> bool {
        matches!(self.phase, Phase::Ended { .. })
    }

    fn broker_lost(&self) -> bool {
        self.phase == Phase::Ended { broker_lost: true }
    }

    /// The next timer to run, if any.
    pub fn deadline(&self) -> Option<(Instant, Timer)> {
        match self.phase {
            Phase::Ended { .. } => None,
            Phase::Cancelling { since, .. } => Some((since + CANCEL_GRACE, Timer::CancelGrace)),
            // A runner with slots of its own is a worker itself: it never gives up for want of
            // workers, it says once that it goes on alone.
            Phase::Running { waiting_since, .. } => {
                let timer = match self.own_slots {
                    0 => Timer::WorkerWait,
                    _ => Timer::Alone,
                };
                waiting_since.map(|t| (t + self.worker_wait, timer))
            }
        }
    }

    /// `timer` ran out.
    pub fn timer(&mut self, timer: Timer) -> Vec<Effect> {
        match (timer, &mut self.phase) {
            (Timer::WorkerWait, Phase::Running { .. }) => {
                let not_run = self.unfinished();
                let mut fx = vec![
                    Effect::Notice(Notice::warn(format!(
                        "no worker connected for {:?} with {} waiting",
                        self.worker_wait,
                        self.left()
                    ))),
                    Effect::Send(RunnerMsg::Cancel),
                ];
                fx.extend(self.end(RunEnd::NoWorkers { not_run }));
                fx
            }
            (Timer::Alone, Phase::Running { waiting_since, .. }) => {
                *waiting_since = None;
                vec![Effect::Notice(Notice::warn(format!(
                    "no other worker joined within --worker-wait ({:?}): this runner goes on \
                     alone on its {} slot(s) with {} left",
                    self.worker_wait,
                    self.own_slots,
                    self.left()
                )))]
            }
            (Timer::CancelGrace, Phase::Cancelling { .. }) => {
                let mut fx = vec![Effect::Notice(Notice::warn(format!(
                    "workers did not confirm the cancellation within {CANCEL_GRACE:?}"
                )))];
                fx.extend(self.end(RunEnd::Cancelled));
                fx
            }
            _ => Vec::new(),
        }
    }

    /// The outputs of job `index` were brought back (their relative paths), or could not be:
    /// then the fetch is tried again as [`OUTPUTS_FETCH`] says; after the last,
    /// the job's result stands, but a passed job becomes an error, said loudly.
    pub fn outputs_fetched(
        &mut self,
        index: JobIndex,
        fetched: Result<Vec<String>, String>,
    ) -> Vec<Effect> {
        let Some(entry) = self.jobs.get_mut(&index) else {
            return Vec::new();
        };
        let Some((layer, path, tries)) = entry.fetching.take() else {
            return Vec::new();
        };
        let error = match fetched {
            Ok(files) => {
                entry.report.outputs = files;
                return Vec::new();
            }
            Err(e) => e,
        };
        let name = &entry.report.name;
        if let Some(after) = OUTPUTS_FETCH.after_failure(tries)
            && self.phase != (Phase::Ended { broker_lost: true })
        {
            let notice = Notice::warn(format!(
                "outputs of job '{name}' could not be brought back ({error}): again in {after:?}"
            ));
            let dir = dir_name(name);
            entry.fetching = Some((layer.clone(), path.clone(), tries + 1));
            return vec![
                Effect::Notice(notice),
                Effect::FetchOutputs {
                    index,
                    dir,
                    layer,
                    path,
                    after,
                },
            ];
        }
        let warning = format!("outputs of job '{name}' could not be brought back: {error}");
        if entry.report.status == JobStatus::Passed {
            entry.report.status = JobStatus::Error;
            entry.report.error = Some(format!("outputs could not be brought back: {error}"));
        }
        vec![Effect::Notice(Notice::warn(warning))]
    }

    /// What to send once the run is over, before the stream is closed (nothing to a lost
    /// broker).
    pub fn closing(&self) -> Vec<Effect> {
        match self.stop_cluster && !self.broker_lost() {
            true => vec![Effect::Send(RunnerMsg::StopCluster)],
            false => Vec::new(),
        }
    }

    /// The report: every job in manifest order; a job without an outcome did not run. The
    /// entries become the report (no copy).
    pub fn into_report(self, end: &RunEnd, wall_ms: u64) -> RunReport {
        let jobs = self
            .jobs
            .into_values()
            .map(|entry| match entry.finished {
                true => entry.report,
                false => not_run_report(entry.report, end),
            })
            .collect();
        RunReport {
            jobs,
            tests: self.suites.records(),
            suite_failures: self.suites.failures(),
            batch_samples: self.suites.batch_samples(),
            wall_ms,
            history: None,
            new_tests: self.suites.new_tests(),
        }
    }

    /// The number of workers changed.
    fn workers(&mut self, workers: u32, now: Instant) -> Vec<Effect> {
        if let Phase::Running { waiting_since, .. } = &mut self.phase {
            *waiting_since = match (self.own_slots, workers) {
                (0, 0) => waiting_since.or(Some(now)),
                (0, _) => None,
                // Another worker beside the runner's own: the run is not alone (and never
                // says so).
                (_, 2..) => None,
                (_, _) => *waiting_since,
            };
        }
        vec![Effect::Workers(workers)]
    }

    /// Suite batch `index` ended: its report is fetched (its exit code decides nothing), and
    /// the user is told why when it brought none back.
    fn batch_finished(&mut self, index: JobIndex, outcome: JobOutcome) -> Vec<Effect> {
        self.suites.ended_on(index, &outcome);
        if outcome.status == JobStatus::TimedOut {
            self.suites.timed_out(index);
        }
        let mut fx = Vec::new();
        let name = self.suites.name(index).unwrap_or("?");
        if let Some(error) = outcome.error.as_deref() {
            fx.push(Effect::Notice(Notice::warn(format!(
                "suite batch '{name}': {error}"
            ))));
        } else if outcome.outputs_layer.is_none()
            && outcome.exit_code.is_none()
            && outcome.status != JobStatus::Cancelled
        {
            // A batch that exited by itself is explained with its tests
            // (`SuiteRun::take_notices`).
            let tail = last_lines(&outcome.output, QUOTED_LINES).trim_end();
            fx.push(Effect::Notice(Notice::warn(format!(
                "suite batch '{name}' wrote no report; the end of its output:\n{tail}"
            ))));
        }
        fx.push(Effect::FetchReport {
            index,
            layer: outcome.outputs_layer,
            path: outcome.outputs_path,
        });
        fx
    }

    /// Job `index` has its final outcome: shown, kept for the report, its outputs fetched.
    fn job_finished(&mut self, index: JobIndex, mut outcome: JobOutcome) -> Vec<Effect> {
        let Some(entry) = self.jobs.get_mut(&index) else {
            return Vec::new();
        };
        let mut fx = Vec::new();
        // A cancelled job's outputs came back for suite batches' reports; none is fetched.
        let fetch = self.fetch_outputs && outcome.status != JobStatus::Cancelled;
        if let (true, Some(layer)) = (fetch, outcome.outputs_layer.take()) {
            let path = outcome.outputs_path.take();
            entry.fetching = Some((layer.clone(), path.clone(), 1));
            fx.push(Effect::FetchOutputs {
                index,
                dir: dir_name(&entry.report.name),
                layer,
                path,
                after: Duration::ZERO,
            });
        }
        let mut report = finished_report(&entry.report, outcome);
        fx.push(Effect::Finished(Box::new(report.clone())));
        // No report shows what a passed or cancelled job printed: it is not kept.
        if matches!(report.status, JobStatus::Passed | JobStatus::Cancelled) {
            report.output = String::new();
        }
        entry.report = report;
        entry.finished = true;
        fx
    }

    /// The run ends: no suite batch is submitted any more, and the reports still on their
    /// way end their tests.
    fn end(&mut self, end: RunEnd) -> Vec<Effect> {
        self.phase = Phase::Ended { broker_lost: false };
        self.suites.stop();
        vec![Effect::End(end)]
    }
}

/// `Submit` messages for `jobs`, in batches of at most [`SUBMIT_BATCH`] jobs and
/// [`SUBMIT_BATCH_BYTES`] bytes (a job larger than that travels alone).
fn submit_all(jobs: Vec<Submission>) -> Vec<Effect> {
    let mut fx = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for job in jobs {
        let size = serde_json::to_vec(&job).map_or(0, |v| v.len());
        if !batch.is_empty() && (batch.len() == SUBMIT_BATCH || bytes + size > SUBMIT_BATCH_BYTES) {
            let jobs = std::mem::take(&mut batch);
            fx.push(Effect::Send(RunnerMsg::Submit { jobs }));
            bytes = 0;
        }
        bytes += size;
        batch.push(job);
    }
    if !batch.is_empty() {
        fx.push(Effect::Send(RunnerMsg::Submit { jobs: batch }));
    }
    fx
}

/// The report of a job from its not-run skeleton and its final outcome.
fn finished_report(skeleton: &JobReport, outcome: JobOutcome) -> JobReport {
    JobReport {
        name: skeleton.name.clone(),
        status: outcome.status,
        exit_code: outcome.exit_code,
        attempts: outcome.attempt,
        max_attempts: skeleton.max_attempts,
        duration_ms: outcome.duration_ms,
        timeout_ms: skeleton.timeout_ms,
        worker: outcome.worker,
        outputs: Vec::new(),
        output: outcome.output,
        error: outcome.error,
    }
}

/// The report of a job that never got an outcome from the broker.
fn not_run_report(skeleton: JobReport, end: &RunEnd) -> JobReport {
    let mut report = skeleton;
    let why = match end {
        RunEnd::NoWorkers { .. } => "not run: no worker was available".to_string(),
        RunEnd::BrokerLost { reason, .. } => format!("not finished: lost the broker: {reason}"),
        RunEnd::Completed | RunEnd::Cancelled => return report,
    };
    report.status = JobStatus::Error;
    report.error = Some(why);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::JobSpec;

    const WAIT: Duration = Duration::from_secs(60);

    fn jobs(n: u64) -> Vec<Submission> {
        (0..n)
            .map(|i| Submission {
                index: JobIndex(i),
                spec: JobSpec {
                    retries: 2,
                    outputs: vec!["out/*".into()],
                    ..JobSpec::new(format!("job {i}"), "true", 1000)
                },
            })
            .collect()
    }

    fn machine(n: u64, now: Instant) -> Machine {
        let rules = Rules {
            worker_wait: WAIT,
            fetch_outputs: true,
            stop_cluster: false,
            own_slots: 0,
        };
        Machine::new(jobs(n), &rules, now)
    }

    fn outcome(attempt: u32, status: JobStatus, layer: Option<&str>) -> JobOutcome {
        JobOutcome {
            attempt,
            status,
            exit_code: Some(i32::from(status != JobStatus::Passed)),
            duration_ms: 5,
            worker: "w".into(),
            output: String::new(),
            outputs_layer: layer.map(|l| Digest(l.into())),
            outputs_path: None,
            error: None,
        }
    }

    fn finished(index: u64, outcome: JobOutcome) -> BrokerToRunner {
        BrokerToRunner::Finished {
            index: JobIndex(index),
            outcome,
        }
    }

    /// What a first cancel does: says so, and asks the broker.
    fn cancelling() -> [Effect; 2] {
        [
            Effect::Notice(Notice::warn(
                "cancelling: queued jobs are dropped, running jobs are killed",
            )),
            Effect::Send(RunnerMsg::Cancel),
        ]
    }

    fn workers(n: u32) -> BrokerToRunner {
        BrokerToRunner::Workers {
            workers: n,
            slots: n,
        }
    }

    #[test]
    fn jobs_are_submitted_in_batches_then_the_end_of_submission() {
        let now = Instant::now();
        let fx = machine(1201, now).submit();
        let sizes: Vec<usize> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Send(RunnerMsg::Submit { jobs }) => Some(jobs.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [500, 500, 201]);
        assert_eq!(fx.last(), Some(&Effect::Send(RunnerMsg::EndOfSubmission)));
        let Effect::Send(RunnerMsg::Submit { jobs }) = &fx[1] else {
            panic!("a batch");
        };
        assert_eq!(jobs[0].index, JobIndex(500), "manifest order");
    }

    #[test]
    fn a_retried_job_is_reported_once_with_its_last_attempt() {
        let now = Instant::now();
        let mut m = machine(1, now);
        for attempt in [1, 2] {
            let started = BrokerToRunner::Started {
                index: JobIndex(0),
                attempt,
                worker: "w".into(),
            };
            assert_eq!(
                m.message(started, now),
                [Effect::Started {
                    name: "job 0".into(),
                    attempt,
                    worker: "w".into()
                }]
            );
        }
        m.message(finished(0, outcome(2, JobStatus::Passed, None)), now);
        assert_eq!(
            m.message(BrokerToRunner::AllDone, now),
            [Effect::End(RunEnd::Completed)]
        );
        let report = m.into_report(&RunEnd::Completed, 9);
        assert_eq!(report.jobs.len(), 1);
        assert_eq!(
            (report.jobs[0].attempts, report.jobs[0].max_attempts),
            (2, 3)
        );
        assert_eq!(report.jobs[0].status, JobStatus::Passed);
    }

    #[test]
    fn the_run_ends_with_its_last_outcome_not_a_round_trip_later() {
        let now = Instant::now();
        let mut m = machine(2, now);
        let fx = m.submit();
        assert_eq!(fx.last(), Some(&Effect::Send(RunnerMsg::EndOfSubmission)));
        let fx = m.message(finished(0, outcome(1, JobStatus::Passed, None)), now);
        assert!(!fx.iter().any(|e| matches!(e, Effect::End(_))), "{fx:?}");
        let fx = m.message(finished(1, outcome(1, JobStatus::Failed, None)), now);
        assert_eq!(fx.last(), Some(&Effect::End(RunEnd::Completed)));
        // The broker's `AllDone`, when it comes, changes nothing.
        assert!(m.message(BrokerToRunner::AllDone, now).is_empty());
    }

    #[test]
    fn messages_about_unknown_jobs_are_ignored() {
        let now = Instant::now();
        let mut m = machine(1, now);
        assert!(
            m.message(finished(7, outcome(1, JobStatus::Passed, None)), now)
                .is_empty()
        );
        assert_eq!(m.unfinished(), 1);
    }

    #[test]
    fn without_workers_for_the_worker_wait_the_run_cancels_and_ends() {
        let start = Instant::now();
        let mut m = machine(3, start);
        assert_eq!(m.deadline(), Some((start + WAIT, Timer::WorkerWait)));
        m.message(workers(1), start + WAIT / 2);
        assert_eq!(m.deadline(), None, "a worker is there");
        m.message(finished(0, outcome(1, JobStatus::Passed, None)), start);
        let later = start + WAIT;
        m.message(workers(0), later);
        m.message(workers(0), later + WAIT / 2);
        assert_eq!(
            m.deadline(),
            Some((later + WAIT, Timer::WorkerWait)),
            "counted from when the last worker left"
        );
        let fx = m.timer(Timer::WorkerWait);
        assert_eq!(
            fx,
            [
                Effect::Notice(Notice::warn(
                    "no worker connected for 60s with 2 job(s) waiting"
                )),
                Effect::Send(RunnerMsg::Cancel),
                Effect::End(RunEnd::NoWorkers { not_run: 2 })
            ]
        );
        let report = m.into_report(&RunEnd::NoWorkers { not_run: 2 }, 0);
        let statuses: Vec<JobStatus> = report.jobs.iter().map(|j| j.status).collect();
        assert_eq!(
            statuses,
            [JobStatus::Passed, JobStatus::Error, JobStatus::Error]
        );
        assert_eq!(
            report.jobs[1].error.as_deref(),
            Some("not run: no worker was available")
        );
    }

    #[test]
    fn cancel_is_sent_once_and_the_run_ends_cancelled_when_the_broker_confirms() {
        let now = Instant::now();
        let mut m = machine(2, now);
        m.submit();
        assert_eq!(m.cancel(now), cancelling());
        assert!(
            m.cancel(now).is_empty(),
            "a second signal sends nothing more"
        );
        assert_eq!(m.deadline(), Some((now + CANCEL_GRACE, Timer::CancelGrace)));
        let cancelled = outcome(1, JobStatus::Cancelled, None);
        m.message(finished(1, cancelled), now);
        assert_eq!(
            m.message(BrokerToRunner::AllDone, now),
            [Effect::End(RunEnd::Cancelled)]
        );
        let report = m.into_report(&RunEnd::Cancelled, 0);
        assert_eq!(report.jobs[0].status, JobStatus::Cancelled, "never ran");
        assert_eq!(report.jobs[0].attempts, 0);
        assert_eq!(
            report.jobs[1].worker, "w",
            "cancelled by the worker that ran it"
        );
    }

    #[test]
    fn a_cancel_the_workers_never_confirm_ends_after_the_grace() {
        let now = Instant::now();
        let mut m = machine(1, now);
        m.cancel(now);
        assert_eq!(
            m.timer(Timer::CancelGrace),
            [
                Effect::Notice(Notice::warn(
                    "workers did not confirm the cancellation within 30s"
                )),
                Effect::End(RunEnd::Cancelled)
            ]
        );
        assert_eq!(m.deadline(), None);
        assert!(m.cancel(now).is_empty(), "over already");
    }

    #[test]
    fn a_broker_gone_before_the_end_reports_what_finished_and_the_rest_as_errors() {
        let now = Instant::now();
        let mut m = machine(2, now);
        m.message(finished(0, outcome(1, JobStatus::Passed, None)), now);
        let lost = RunEnd::BrokerLost {
            reason: "it stopped answering".into(),
            not_run: 1,
        };
        assert_eq!(
            m.broker_gone("it stopped answering"),
            [Effect::End(lost.clone())]
        );
        assert_eq!(m.deadline(), None, "no timer outlives the broker");
        assert!(m.timer(Timer::WorkerWait).is_empty());
        assert!(m.closing().is_empty(), "nothing is sent to a lost broker");
        let report = m.into_report(&lost, 0);
        assert_eq!(report.jobs[0].status, JobStatus::Passed);
        assert_eq!(report.jobs[1].status, JobStatus::Error);
        assert_eq!(
            report.jobs[1].error.as_deref(),
            Some("not finished: lost the broker: it stopped answering")
        );
    }

    #[test]
    fn a_broker_gone_after_the_end_changes_nothing() {
        let now = Instant::now();
        let mut m = machine(0, now);
        m.message(BrokerToRunner::AllDone, now);
        assert!(m.broker_gone("closed").is_empty());
    }

    #[test]
    fn a_refusal_fails_the_run() {
        let now = Instant::now();
        let refused = BrokerToRunner::Refused {
            reason: "version".into(),
        };
        assert_eq!(
            machine(1, now).message(refused, now),
            [Effect::Refused("version".into())]
        );
    }

    #[test]
    fn outputs_are_fetched_into_a_safe_directory_and_listed_in_the_report() {
        let now = Instant::now();
        let mut m = machine(1, now);
        let fx = m.message(finished(0, outcome(1, JobStatus::Failed, Some("ab"))), now);
        assert_eq!(
            fx[0],
            Effect::FetchOutputs {
                index: JobIndex(0),
                dir: dir_name("job 0"),
                layer: Digest("ab".into()),
                path: None,
                after: Duration::ZERO,
            }
        );
        assert!(matches!(&fx[1], Effect::Finished(r) if r.status == JobStatus::Failed));
        assert!(
            m.outputs_fetched(JobIndex(0), Ok(vec!["out/a".into()]))
                .is_empty()
        );
        let report = m.into_report(&RunEnd::Completed, 0);
        assert_eq!(report.jobs[0].outputs, ["out/a"]);
        assert_eq!(report.jobs[0].status, JobStatus::Failed);
    }

    #[test]
    fn outputs_are_not_fetched_without_an_outputs_dir_or_a_layer() {
        let now = Instant::now();
        let rules = Rules {
            worker_wait: WAIT,
            fetch_outputs: false,
            stop_cluster: false,
            own_slots: 0,
        };
        let mut m = Machine::new(jobs(2), &rules, now);
        let fx = m.message(finished(0, outcome(1, JobStatus::Passed, Some("ab"))), now);
        assert!(!fx.iter().any(|e| matches!(e, Effect::FetchOutputs { .. })));
        let mut m = machine(1, now);
        let fx = m.message(finished(0, outcome(1, JobStatus::Passed, None)), now);
        assert!(!fx.iter().any(|e| matches!(e, Effect::FetchOutputs { .. })));
    }

    /// Fails every fetch of job `index`'s outputs until the machine gives up.
    fn fail_every_fetch(m: &mut Machine, index: u64) -> Vec<Effect> {
        for _ in 1..OUTPUTS_FETCH.max_attempts {
            let fx = m.outputs_fetched(JobIndex(index), Err("gone".into()));
            assert!(
                matches!(fx[..], [Effect::Notice(_), Effect::FetchOutputs { .. }]),
                "{fx:?}"
            );
        }
        m.outputs_fetched(JobIndex(index), Err("gone".into()))
    }

    #[test]
    fn a_failed_outputs_fetch_is_tried_again_with_growing_pauses() {
        let now = Instant::now();
        let mut m = machine(1, now);
        m.message(finished(0, outcome(1, JobStatus::Passed, Some("aa"))), now);
        let pauses: Vec<Duration> = (1..OUTPUTS_FETCH.max_attempts)
            .map(
                |_| match &m.outputs_fetched(JobIndex(0), Err("503".into()))[..] {
                    [Effect::Notice(n), Effect::FetchOutputs { after, layer, .. }] => {
                        assert_eq!(layer, &Digest("aa".into()));
                        assert_eq!(
                            n.text,
                            format!(
                                "outputs of job 'job 0' could not be brought back (503): \
                                 again in {after:?}"
                            )
                        );
                        *after
                    }
                    other => panic!("unexpected {other:?}"),
                },
            )
            .collect();
        assert_eq!(pauses, [1, 2, 4].map(Duration::from_secs));
        m.outputs_fetched(JobIndex(0), Ok(vec!["out/a".into()]));
        let report = m.into_report(&RunEnd::Completed, 0);
        assert_eq!(
            report.jobs[0].status,
            JobStatus::Passed,
            "the store's fault"
        );
        assert_eq!(report.jobs[0].outputs, ["out/a"]);
    }

    #[test]
    fn outputs_that_cannot_be_brought_back_turn_a_pass_into_an_error() {
        let now = Instant::now();
        let mut m = machine(2, now);
        m.message(finished(0, outcome(1, JobStatus::Passed, Some("aa"))), now);
        m.message(finished(1, outcome(1, JobStatus::Failed, Some("bb"))), now);
        let fx = fail_every_fetch(&mut m, 0);
        assert_eq!(
            fx,
            [Effect::Notice(Notice::warn(
                "outputs of job 'job 0' could not be brought back: gone"
            ))]
        );
        fail_every_fetch(&mut m, 1);
        assert!(
            m.outputs_fetched(JobIndex(0), Err("late".into()))
                .is_empty(),
            "no fetch is outstanding"
        );
        let report = m.into_report(&RunEnd::Completed, 0);
        assert_eq!(report.jobs[0].status, JobStatus::Error);
        assert_eq!(
            report.jobs[0].error.as_deref(),
            Some("outputs could not be brought back: gone")
        );
        assert_eq!(
            report.jobs[1].status,
            JobStatus::Failed,
            "a failure stays a failure"
        );
    }

    #[test]
    fn large_jobs_are_submitted_in_batches_under_the_byte_limit() {
        let now = Instant::now();
        let big = "x".repeat(140 << 10);
        let mut all = jobs(500);
        for job in &mut all {
            job.spec.env.insert("BIG".into(), big.clone());
        }
        let mut m = Machine::new(all, &rules(0), now);
        let fx = m.submit();
        let mut indices = Vec::new();
        for effect in &fx[..fx.len() - 1] {
            let Effect::Send(msg @ RunnerMsg::Submit { jobs }) = effect else {
                panic!("a batch: {effect:?}");
            };
            let bytes = serde_json::to_vec(msg).unwrap().len();
            assert!(bytes <= SUBMIT_BATCH_BYTES + 4096, "{bytes} bytes");
            indices.extend(jobs.iter().map(|j| j.index.0));
        }
        assert!(fx.len() > 9, "500 × 140 KB needs several batches");
        assert_eq!(
            indices,
            (0..500).collect::<Vec<_>>(),
            "every job once, in order"
        );
    }

    #[test]
    fn shared_defaults_are_sent_once_before_the_jobs_that_carry_only_their_own_env() {
        let now = Instant::now();
        let defaults = JobDefaults {
            env: BTreeMap::from([
                ("BIG".to_string(), "x".repeat(140 << 10)),
                ("MODE".to_string(), "default".to_string()),
            ]),
            secret_env: Default::default(),
        };
        let mut all = jobs(500);
        for job in &mut all {
            // As the manifest resolves them: the defaults merged under the job's own.
            job.spec.env.insert("MODE".into(), "own".into());
            defaults.merge_into(&mut job.spec.env, &mut job.spec.secret_env);
        }
        let resolved = all[0].spec.clone();
        let mut m = Machine::new(all, &rules(0), now).with_defaults(defaults.clone());
        let fx = m.submit();
        assert_eq!(fx[0], Effect::Send(RunnerMsg::Defaults(defaults.clone())));
        let Effect::Send(submit @ RunnerMsg::Submit { jobs }) = &fx[1] else {
            panic!("one batch: {fx:?}");
        };
        assert_eq!(jobs.len(), 500, "small jobs: one batch");
        assert!(serde_json::to_vec(submit).unwrap().len() < 140 << 10);
        let mut sent = jobs[0].spec.clone();
        assert!(sent.inherits);
        assert_eq!(sent.env, BTreeMap::from([("MODE".into(), "own".into())]));
        // What a worker runs: the defaults merged back by the same rule.
        defaults.merge_into(&mut sent.env, &mut sent.secret_env);
        assert_eq!(
            (sent.env, sent.secret_env),
            (resolved.env, resolved.secret_env)
        );
    }

    #[test]
    fn a_passed_job_s_output_is_shown_but_not_kept() {
        let now = Instant::now();
        let mut m = machine(2, now);
        let mut pass = outcome(1, JobStatus::Passed, None);
        pass.output = "ok\n".into();
        let mut fail = outcome(1, JobStatus::Failed, None);
        fail.output = "boom\n".into();
        let fx = m.message(finished(0, pass), now);
        assert!(matches!(&fx[..], [Effect::Finished(r)] if r.output == "ok\n"));
        m.message(finished(1, fail), now);
        let report = m.into_report(&RunEnd::Completed, 0);
        assert_eq!(report.jobs[0].output, "");
        assert_eq!(
            report.jobs[1].output, "boom\n",
            "a failure keeps its output"
        );
    }

    fn rules(own_slots: u32) -> Rules {
        Rules {
            worker_wait: WAIT,
            fetch_outputs: false,
            stop_cluster: false,
            own_slots,
        }
    }

    #[test]
    fn a_runner_with_slots_and_no_other_worker_goes_on_alone_and_says_so() {
        let start = Instant::now();
        let mut m = Machine::new(jobs(2), &rules(2), start);
        m.message(workers(1), start);
        assert_eq!(m.deadline(), Some((start + WAIT, Timer::Alone)));
        let fx = m.timer(Timer::Alone);
        assert!(
            matches!(&fx[..], [Effect::Notice(n)] if n.text.contains("goes on alone on its 2 slot(s)")),
            "{fx:?}"
        );
        assert_eq!(m.deadline(), None, "said once, and the run goes on");
        m.message(finished(0, outcome(1, JobStatus::Passed, None)), start);
        m.message(finished(1, outcome(1, JobStatus::Passed, None)), start);
        assert_eq!(
            m.message(BrokerToRunner::AllDone, start),
            [Effect::End(RunEnd::Completed)]
        );
    }

    #[test]
    fn a_runner_with_slots_never_gives_up_for_want_of_workers() {
        let start = Instant::now();
        let mut m = Machine::new(jobs(1), &rules(1), start);
        m.message(workers(0), start);
        assert_eq!(m.deadline(), Some((start + WAIT, Timer::Alone)));
        m.timer(Timer::Alone);
        assert_eq!(m.deadline(), None, "its own worker may still be joining");
    }

    #[test]
    fn a_runner_with_slots_joined_by_another_worker_never_says_it_is_alone() {
        let start = Instant::now();
        let mut m = Machine::new(jobs(1), &rules(2), start);
        m.message(workers(2), start);
        assert_eq!(m.deadline(), None);
    }

    #[test]
    fn a_runner_without_slots_and_without_workers_still_gives_up() {
        let start = Instant::now();
        let mut m = Machine::new(jobs(1), &rules(0), start);
        assert_eq!(m.deadline(), Some((start + WAIT, Timer::WorkerWait)));
        m.message(workers(1), start);
        assert_eq!(m.deadline(), None, "one worker is another worker");
    }

    #[test]
    fn the_cluster_is_stopped_at_the_end_only_when_asked() {
        let now = Instant::now();
        assert!(machine(1, now).closing().is_empty());
        let rules = Rules {
            worker_wait: WAIT,
            fetch_outputs: false,
            stop_cluster: true,
            own_slots: 0,
        };
        let m = Machine::new(jobs(1), &rules, now);
        assert_eq!(m.closing(), [Effect::Send(RunnerMsg::StopCluster)]);
    }

    fn suite_machine(now: Instant, retries: u32) -> Machine {
        use crate::runner::suite_run::{SuiteRun, tests::listed};
        let suites = SuiteRun::new(
            vec![listed("s", &["a", "b"], retries)],
            Default::default(),
            0,
        );
        let rules = Rules {
            worker_wait: WAIT,
            fetch_outputs: false,
            stop_cluster: false,
            own_slots: 0,
        };
        Machine::new(Vec::new(), &rules, now).with_suites(suites, 0)
    }

    fn submitted(fx: &[Effect]) -> Vec<JobIndex> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send(RunnerMsg::Submit { jobs }) => Some(jobs.iter().map(|j| j.index)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn suite_batches_inherit_the_shared_defaults_once_they_are_sent() {
        use crate::runner::suite_run::{SuiteRun, tests::listed};
        let now = Instant::now();
        let defaults = JobDefaults {
            env: BTreeMap::from([("DB_URL".to_string(), "sqlite://".to_string())]),
            secret_env: Default::default(),
        };
        let mut suite = listed("s", &["a"], 0);
        suite.def.env = BTreeMap::from([("MODE".to_string(), "own".to_string())]);
        defaults.merge_into(&mut suite.def.env, &mut suite.def.secret_env);
        let suites = SuiteRun::new(vec![suite], Default::default(), 0);
        let mut m = Machine::new(Vec::new(), &rules(0), now)
            .with_defaults(defaults.clone())
            .with_suites(suites, 1);
        let fx = m.submit();
        assert_eq!(fx[0], Effect::Send(RunnerMsg::Defaults(defaults.clone())));
        let Effect::Send(RunnerMsg::Submit { jobs }) = &fx[1] else {
            panic!("the batch after the defaults: {fx:?}");
        };
        let mut sent = jobs[0].spec.clone();
        assert!(sent.inherits);
        assert!(!sent.env.contains_key("DB_URL"), "{:?}", sent.env);
        defaults.merge_into(&mut sent.env, &mut sent.secret_env);
        assert_eq!(sent.env["DB_URL"], "sqlite://");
        assert_eq!(sent.env["MODE"], "own");
    }

    #[test]
    fn suites_are_planned_for_the_workers_expected_not_the_first_to_join() {
        let now = Instant::now();
        // One worker of one slot: one batch of both tests.
        let mut alone = suite_machine(now, 0);
        alone.submit();
        assert_eq!(submitted(&alone.message(workers(1), now)).len(), 1);
        // The same first worker of four expected: a batch a test, for four slots.
        let mut m = suite_machine(now, 0).expecting_workers(4);
        m.submit();
        assert_eq!(submitted(&m.message(workers(1), now)).len(), 2);
    }

    #[test]
    fn suites_are_planned_once_the_first_slot_is_known_and_submission_ends_when_they_are_done() {
        use crate::runner::suite_run::tests::junit;
        let now = Instant::now();
        let mut m = suite_machine(now, 0);
        assert!(m.submit().is_empty(), "no slots known: nothing yet");
        let fx = m.message(workers(1), now);
        let batches = submitted(&fx);
        assert_eq!(batches.len(), 1);
        assert!(!fx.contains(&Effect::Send(RunnerMsg::EndOfSubmission)));
        assert!(
            submitted(&m.message(workers(2), now)).is_empty(),
            "planned once"
        );
        let fx = m.message(
            finished(batches[0].0, outcome(1, JobStatus::Failed, Some("l"))),
            now,
        );
        assert_eq!(
            fx,
            [Effect::FetchReport {
                index: batches[0],
                layer: Some(Digest("l".into())),
                path: None,
            }],
            "a batch's exit code decides nothing: its report is fetched"
        );
        let report = junit(&[("a", "pass"), ("b", "fail")]);
        let fx = m.report_fetched(batches[0], Some(report));
        let [
            Effect::TestsFinished(finished),
            Effect::TestsEnded(ended),
            submitted_all,
            end,
        ] = &fx[..]
        else {
            panic!("the tests, the end of submission, the run's end: {fx:?}");
        };
        assert_eq!(submitted_all, &Effect::Send(RunnerMsg::EndOfSubmission));
        // Everything has its outcome: the run ends without waiting for the broker's
        // `AllDone`, a round trip later.
        assert_eq!(end, &Effect::End(RunEnd::Completed));
        let ids: Vec<&str> = finished.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            ["a", "b"],
            "each test is a line (no progress showed them)"
        );
        let ids: Vec<&str> = ended.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "each test's attempt is shown");
        let report = m.into_report(&RunEnd::Completed, 1);
        assert_eq!(report.jobs.len(), 0, "batches are not jobs");
        assert_eq!(report.tests.len(), 2);
    }

    #[test]
    fn a_lost_batch_is_submitted_again_before_the_submission_ends() {
        let now = Instant::now();
        let mut m = suite_machine(now, 0);
        let first = submitted(&m.message(workers(1), now))[0];
        let fx = m.report_fetched(first, None);
        assert_eq!(submitted(&fx).len(), 1);
        assert!(!fx.contains(&Effect::Send(RunnerMsg::EndOfSubmission)));
    }

    #[test]
    fn a_cancel_ends_the_submission_and_submits_no_more_batches() {
        let now = Instant::now();
        let mut m = suite_machine(now, 2);
        let first = submitted(&m.message(workers(1), now))[0];
        assert_eq!(m.cancel(now), cancelling());
        let fx = m.report_fetched(first, None);
        assert!(
            matches!(&fx[..], [Effect::TestsEnded(ended), Effect::Send(RunnerMsg::EndOfSubmission)]
                if ended.iter().all(|e| e.outcome.is_some())),
            "the stopped batch's tests end there: {fx:?}"
        );
    }

    #[test]
    fn progress_of_a_running_batch_shows_the_tests_it_finished() {
        use crate::runner::suite_run::tests::junit;
        let now = Instant::now();
        let mut m = suite_machine(now, 0);
        let first = submitted(&m.message(workers(1), now))[0];
        let progress = |index: JobIndex| BrokerToRunner::Progress {
            index,
            attempt: 1,
            lines: String::from_utf8(junit(&[("a", "pass")])).unwrap() + "\n",
        };
        let fx = m.message(progress(first), now);
        let [Effect::TestsFinished(finished)] = &fx[..] else {
            panic!("{fx:?}");
        };
        assert_eq!(finished[0].id, "a");
        assert!(m.message(progress(first), now).is_empty(), "shown once");
        assert!(m.message(progress(JobIndex(77)), now).is_empty());
    }

    #[test]
    fn a_report_fetched_after_the_broker_was_lost_submits_nothing_and_ends_its_tests() {
        use crate::runner::suite_run::tests::junit;
        let now = Instant::now();
        let mut m = suite_machine(now, 2);
        let first = submitted(&m.message(workers(1), now))[0];
        m.broker_gone("it closed the stream");
        let fx = m.report_fetched(first, Some(junit(&[("a", "pass"), ("b", "fail")])));
        assert!(
            matches!(&fx[..], [Effect::TestsFinished(_), Effect::TestsEnded(ended)]
                if ended.iter().all(|e| e.outcome.is_some())),
            "no retry for a lost broker; each test ends there: {fx:?}"
        );
    }

    #[test]
    fn a_batch_stopped_without_a_report_is_said_with_the_end_of_its_output() {
        let now = Instant::now();
        let mut m = suite_machine(now, 0);
        let first = submitted(&m.message(workers(1), now))[0];
        let mut stopped = outcome(1, JobStatus::TimedOut, None);
        stopped.exit_code = None;
        stopped.output = (1..=12).map(|n| format!("line {n}\n")).collect();
        let fx = m.message(finished(first.0, stopped), now);
        let [Effect::Notice(notice), Effect::FetchReport { .. }] = &fx[..] else {
            panic!("a notice, then the fetch: {fx:?}");
        };
        let quoted: Vec<String> = (3..=12).map(|n| format!("line {n}")).collect();
        assert_eq!(
            notice.text,
            format!(
                "suite batch 's batch 1 (2 tests)' wrote no report; the end of its output:\n{}",
                quoted.join("\n")
            )
        );
    }

    #[test]
    fn giving_up_for_want_of_workers_counts_the_tests_waiting() {
        let now = Instant::now();
        let mut m = suite_machine(now, 0);
        m.submit();
        let fx = m.timer(Timer::WorkerWait);
        assert_eq!(
            fx[0],
            Effect::Notice(Notice::warn(
                "no worker connected for 60s with 2 test(s) waiting"
            ))
        );
    }
}
