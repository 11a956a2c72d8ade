//! The runner's decisions, as a pure state machine: what to submit, what each broker message
//! means for progress and the report, when to give up waiting for workers, how a cancel ends,
//! what a failed outputs fetch does to a job's result, and the final report.
//!
//! It does no I/O. Each event returns the [`Effect`]s the shell in `runner::session` carries
//! out, as `broker::scheduler` does for the broker; time comes in as arguments, and the shell
//! sleeps until [`Machine::deadline`].

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::outputs_dir;
use super::report::{JobReport, RunReport};
use super::suites::SuiteRun;
use crate::layer::Digest;
use crate::proto::Submission;
use crate::proto::{BrokerToRunner, JobIndex, JobOutcome, JobSpec, JobStatus, RunnerMsg};

/// Jobs per `Submit` message.
const SUBMIT_BATCH: usize = 500;
/// How long a cancelled run waits for workers to confirm their jobs were killed.
pub const CANCEL_GRACE: Duration = Duration::from_secs(30);

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
    /// Warn the user (on the terminal and in the CI log).
    Warn(String),
    /// Fetch the outputs layer of a job into the directory named `dir` under the outputs
    /// directory, then report with [`Machine::outputs_fetched`].
    FetchOutputs {
        /// The job.
        index: JobIndex,
        /// The directory name (the job's name, made safe).
        dir: String,
        /// The layer.
        layer: Digest,
        /// The directory of the layer holding this job's outputs (the whole layer: `None`).
        path: Option<String>,
    },
    /// Fetch the outputs layer of suite batch `index` (none when it brought none back), read
    /// its report file ([`super::suites::REPORT_FILE`]) and hand it to
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
    /// The broker went away before the run was over: the run fails.
    BrokerLost,
}

/// A timer the shell runs for the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// No worker has been connected for `worker_wait`.
    WorkerWait,
    /// Workers did not confirm a cancel within [`CANCEL_GRACE`].
    CancelGrace,
}

/// The runner's state: every job of the manifest and what is known of it.
#[derive(Debug)]
pub struct Machine {
    jobs: BTreeMap<JobIndex, JobSpec>,
    outcomes: BTreeMap<JobIndex, JobOutcome>,
    outputs: BTreeMap<JobIndex, Vec<String>>,
    fetch_outputs: bool,
    stop_cluster: bool,
    worker_wait: Duration,
    no_workers_since: Option<Instant>,
    cancelled_at: Option<Instant>,
    ended: bool,
    suites: SuiteRun,
    /// Slots known before the broker says (`local` starts its workers itself), else 0.
    slots_hint: usize,
    /// `EndOfSubmission` was sent.
    submitted_all: bool,
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
}

impl Machine {
    /// A run of `jobs` that starts at `now` (with no worker known yet).
    pub fn new(jobs: Vec<Submission>, rules: &Rules, now: Instant) -> Self {
        Self {
            jobs: jobs.into_iter().map(|s| (s.index, s.spec)).collect(),
            outcomes: BTreeMap::new(),
            outputs: BTreeMap::new(),
            fetch_outputs: rules.fetch_outputs,
            stop_cluster: rules.stop_cluster,
            worker_wait: rules.worker_wait,
            no_workers_since: Some(now),
            cancelled_at: None,
            ended: false,
            suites: SuiteRun::new(Vec::new(), Default::default(), 0),
            slots_hint: 0,
            submitted_all: false,
        }
    }

    /// The run also runs `suites`, planned for `slots_hint` slots when that is known (not 0),
    /// else once the broker first tells of a free slot.
    pub fn with_suites(mut self, suites: SuiteRun, slots_hint: usize) -> Self {
        self.suites = suites;
        self.slots_hint = slots_hint;
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

    /// Jobs without a final outcome yet, and suite batches on their way.
    pub fn unfinished(&self) -> usize {
        self.jobs.len() - self.outcomes.len() + self.suites.in_flight()
    }

    /// The submission: every job in batches, the suites' first batches when the slots are
    /// known, then the end of submission once the suites will submit nothing more.
    pub fn submit(&mut self) -> Vec<Effect> {
        let all: Vec<Submission> = self
            .jobs
            .iter()
            .map(|(&index, spec)| Submission {
                index,
                spec: spec.clone(),
            })
            .collect();
        let mut fx = submit_all(all);
        if self.slots_hint > 0 {
            fx.extend(self.plan_suites(self.slots_hint));
        }
        fx.extend(self.end_submission_when_done());
        fx
    }

    /// The suites' first batches for `slots` slots (once).
    fn plan_suites(&mut self, slots: usize) -> Vec<Effect> {
        submit_all(self.suites.plan(slots))
    }

    /// `EndOfSubmission`, once, when the suites will submit nothing more.
    fn end_submission_when_done(&mut self) -> Vec<Effect> {
        if self.submitted_all || !self.suites.is_done() {
            return Vec::new();
        }
        self.submitted_all = true;
        vec![Effect::Send(RunnerMsg::EndOfSubmission)]
    }

    /// The report of suite batch `index` was fetched (`None`: it brought none back): the
    /// suites' next batches, and the end of submission when they are done.
    pub fn report_fetched(&mut self, index: JobIndex, report: Option<Vec<u8>>) -> Vec<Effect> {
        let mut fx = submit_all(self.suites.finished(index, report.as_deref()));
        fx.extend(self.end_submission_when_done());
        fx
    }

    /// A message from the broker, at `now`.
    pub fn message(&mut self, msg: BrokerToRunner, now: Instant) -> Vec<Effect> {
        match msg {
            BrokerToRunner::Welcome { workers, slots }
            | BrokerToRunner::Workers { workers, slots } => {
                self.no_workers_since = match workers {
                    0 => self.no_workers_since.or(Some(now)),
                    _ => None,
                };
                let mut fx = vec![Effect::Workers(workers)];
                if slots > 0 && !self.suites.is_planned() && self.cancelled_at.is_none() {
                    fx.extend(self.plan_suites(self.slots_hint.max(slots as usize)));
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
                .map(|spec| spec.name.as_str())
                .or_else(|| self.suites.name(index))
            {
                Some(name) => vec![Effect::Started {
                    name: name.to_string(),
                    attempt,
                    worker,
                }],
                None => Vec::new(),
            },
            BrokerToRunner::Finished { index, outcome } => self.finished(index, outcome),
            BrokerToRunner::AllDone => {
                let end = match self.cancelled_at {
                    Some(_) => RunEnd::Cancelled,
                    None => RunEnd::Completed,
                };
                self.end(end)
            }
            BrokerToRunner::Refused { reason } => vec![Effect::Refused(reason)],
        }
    }

    /// SIGINT or SIGTERM at `now`: ask the broker to cancel everything (once).
    pub fn cancel(&mut self, now: Instant) -> Vec<Effect> {
        if self.cancelled_at.is_some() || self.ended {
            return Vec::new();
        }
        warn!("cancelling: queued jobs are dropped, running jobs are killed");
        self.cancelled_at = Some(now);
        self.suites.stop();
        let mut fx = vec![Effect::Send(RunnerMsg::Cancel)];
        fx.extend(self.end_submission_when_done());
        fx
    }

    /// The broker's stream ended or failed.
    pub fn broker_gone(&mut self) -> Vec<Effect> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        vec![Effect::BrokerLost]
    }

    /// The next timer to run, if any.
    pub fn deadline(&self) -> Option<(Instant, Timer)> {
        if self.ended {
            return None;
        }
        match (self.cancelled_at, self.no_workers_since) {
            (Some(at), _) => Some((at + CANCEL_GRACE, Timer::CancelGrace)),
            (None, Some(since)) => Some((since + self.worker_wait, Timer::WorkerWait)),
            (None, None) => None,
        }
    }

    /// `timer` ran out.
    pub fn timer(&mut self, timer: Timer) -> Vec<Effect> {
        if self.ended {
            return Vec::new();
        }
        match timer {
            Timer::WorkerWait => {
                let not_run = self.unfinished();
                warn!(
                    "no worker connected for {:?} with {not_run} job(s) waiting",
                    self.worker_wait
                );
                self.suites.stop();
                let mut fx = vec![Effect::Send(RunnerMsg::Cancel)];
                fx.extend(self.end(RunEnd::NoWorkers { not_run }));
                fx
            }
            Timer::CancelGrace => {
                warn!("workers did not confirm the cancellation within {CANCEL_GRACE:?}");
                self.end(RunEnd::Cancelled)
            }
        }
    }

    /// The outputs of job `index` were brought back (their relative paths), or could not be:
    /// then the job's result stands, but a passed job becomes an error, said loudly.
    pub fn outputs_fetched(
        &mut self,
        index: JobIndex,
        fetched: Result<Vec<String>, String>,
    ) -> Vec<Effect> {
        let error = match fetched {
            Ok(files) => {
                self.outputs.insert(index, files);
                return Vec::new();
            }
            Err(e) => e,
        };
        let name = self.jobs.get(&index).map_or("?", |s| s.name.as_str());
        let warning = format!("outputs of job '{name}' could not be brought back: {error}");
        if let Some(o) = self.outcomes.get_mut(&index)
            && o.status == JobStatus::Passed
        {
            o.status = JobStatus::Error;
            o.error = Some(format!("outputs could not be brought back: {error}"));
        }
        vec![Effect::Warn(warning)]
    }

    /// What to send once the run is over, before the stream is closed.
    pub fn closing(&self) -> Vec<Effect> {
        match self.stop_cluster {
            true => vec![Effect::Send(RunnerMsg::StopCluster)],
            false => Vec::new(),
        }
    }

    /// The report: every job in manifest order; a job without an outcome did not run.
    pub fn report(&self, end: &RunEnd, wall_ms: u64) -> RunReport {
        let jobs = self
            .jobs
            .iter()
            .map(|(index, spec)| match self.outcomes.get(index) {
                Some(o) => {
                    let outputs = self.outputs.get(index).cloned().unwrap_or_default();
                    JobReport::finished(spec, o, outputs)
                }
                None => not_run_report(spec, end),
            })
            .collect();
        RunReport {
            jobs,
            tests: self.suites.records(),
            wall_ms,
        }
    }

    fn finished(&mut self, index: JobIndex, outcome: JobOutcome) -> Vec<Effect> {
        if self.suites.owns(index) {
            let mut fx = Vec::new();
            let name = self.suites.name(index).unwrap_or("?");
            if let Some(error) = outcome.error.as_deref() {
                fx.push(Effect::Warn(format!("suite batch '{name}': {error}")));
            } else if outcome.outputs_layer.is_none() && outcome.status != JobStatus::Cancelled {
                let tail: Vec<&str> = outcome.output.lines().rev().take(10).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                fx.push(Effect::Warn(format!(
                    "suite batch '{name}' wrote no report; the end of its output:\n{}",
                    tail.join("\n")
                )));
            }
            fx.push(Effect::FetchReport {
                index,
                layer: outcome.outputs_layer,
                path: outcome.outputs_path,
            });
            return fx;
        }
        let Some(spec) = self.jobs.get(&index) else {
            return Vec::new();
        };
        let mut fx = Vec::new();
        if let (true, Some(layer)) = (self.fetch_outputs, outcome.outputs_layer.clone()) {
            fx.push(Effect::FetchOutputs {
                index,
                dir: outputs_dir::dir_name(&spec.name),
                layer,
                path: outcome.outputs_path.clone(),
            });
        }
        let report = JobReport::finished(spec, &outcome, Vec::new());
        fx.push(Effect::Finished(Box::new(report)));
        self.outcomes.insert(index, outcome);
        fx
    }

    fn end(&mut self, end: RunEnd) -> Vec<Effect> {
        self.ended = true;
        vec![Effect::End(end)]
    }
}

/// `Submit` messages for `jobs`, in batches.
fn submit_all(jobs: Vec<Submission>) -> Vec<Effect> {
    jobs.chunks(SUBMIT_BATCH)
        .map(|batch| {
            Effect::Send(RunnerMsg::Submit {
                jobs: batch.to_vec(),
            })
        })
        .collect()
}

/// The report of a job that never got an outcome from the broker.
fn not_run_report(spec: &JobSpec, end: &RunEnd) -> JobReport {
    let mut report = JobReport::cancelled(spec);
    if let RunEnd::NoWorkers { .. } = end {
        report.status = JobStatus::Error;
        report.error = Some("not run: no worker was available".into());
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(60);

    fn jobs(n: u64) -> Vec<Submission> {
        (0..n)
            .map(|i| Submission {
                index: JobIndex(i),
                spec: JobSpec {
                    name: format!("job {i}"),
                    run: "true".into(),
                    env: BTreeMap::new(),
                    layers: Vec::new(),
                    timeout_ms: 1000,
                    retries: 2,
                    outputs: vec!["out/*".into()],
                    estimate_ms: None,
                    isolation: Default::default(),
                    secret_env: Default::default(),
                },
            })
            .collect()
    }

    fn machine(n: u64, now: Instant) -> Machine {
        let rules = Rules {
            worker_wait: WAIT,
            fetch_outputs: true,
            stop_cluster: false,
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
        let report = m.report(&RunEnd::Completed, 9);
        assert_eq!(report.jobs.len(), 1);
        assert_eq!(
            (report.jobs[0].attempts, report.jobs[0].max_attempts),
            (2, 3)
        );
        assert_eq!(report.jobs[0].status, JobStatus::Passed);
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
                Effect::Send(RunnerMsg::Cancel),
                Effect::End(RunEnd::NoWorkers { not_run: 2 })
            ]
        );
        let report = m.report(&RunEnd::NoWorkers { not_run: 2 }, 0);
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
        assert_eq!(m.cancel(now), [Effect::Send(RunnerMsg::Cancel)]);
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
        let report = m.report(&RunEnd::Cancelled, 0);
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
            [Effect::End(RunEnd::Cancelled)]
        );
        assert_eq!(m.deadline(), None);
        assert!(m.cancel(now).is_empty(), "over already");
    }

    #[test]
    fn a_broker_gone_before_the_end_loses_the_run() {
        let now = Instant::now();
        let mut m = machine(2, now);
        m.message(finished(0, outcome(1, JobStatus::Passed, None)), now);
        assert_eq!(m.broker_gone(), [Effect::BrokerLost]);
        assert_eq!(m.unfinished(), 1);
        assert_eq!(m.deadline(), None, "no timer outlives the broker");
        assert!(m.timer(Timer::WorkerWait).is_empty());
    }

    #[test]
    fn a_broker_gone_after_the_end_changes_nothing() {
        let now = Instant::now();
        let mut m = machine(0, now);
        m.message(BrokerToRunner::AllDone, now);
        assert!(m.broker_gone().is_empty());
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
                dir: outputs_dir::dir_name("job 0"),
                layer: Digest("ab".into()),
                path: None,
            }
        );
        assert!(matches!(&fx[1], Effect::Finished(r) if r.status == JobStatus::Failed));
        assert!(
            m.outputs_fetched(JobIndex(0), Ok(vec!["out/a".into()]))
                .is_empty()
        );
        let report = m.report(&RunEnd::Completed, 0);
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
        };
        let mut m = Machine::new(jobs(2), &rules, now);
        let fx = m.message(finished(0, outcome(1, JobStatus::Passed, Some("ab"))), now);
        assert!(!fx.iter().any(|e| matches!(e, Effect::FetchOutputs { .. })));
        let mut m = machine(1, now);
        let fx = m.message(finished(0, outcome(1, JobStatus::Passed, None)), now);
        assert!(!fx.iter().any(|e| matches!(e, Effect::FetchOutputs { .. })));
    }

    #[test]
    fn outputs_that_cannot_be_brought_back_turn_a_pass_into_an_error() {
        let now = Instant::now();
        let mut m = machine(2, now);
        m.message(finished(0, outcome(1, JobStatus::Passed, Some("aa"))), now);
        m.message(finished(1, outcome(1, JobStatus::Failed, Some("bb"))), now);
        let fx = m.outputs_fetched(JobIndex(0), Err("gone".into()));
        assert_eq!(
            fx,
            [Effect::Warn(
                "outputs of job 'job 0' could not be brought back: gone".into()
            )]
        );
        m.outputs_fetched(JobIndex(1), Err("gone".into()));
        let report = m.report(&RunEnd::Completed, 0);
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
    fn the_cluster_is_stopped_at_the_end_only_when_asked() {
        let now = Instant::now();
        assert!(machine(1, now).closing().is_empty());
        let rules = Rules {
            worker_wait: WAIT,
            fetch_outputs: false,
            stop_cluster: true,
        };
        let m = Machine::new(jobs(1), &rules, now);
        assert_eq!(m.closing(), [Effect::Send(RunnerMsg::StopCluster)]);
    }

    fn suite_machine(now: Instant, retries: u32) -> Machine {
        use crate::runner::suites::{SuiteRun, tests::listed};
        let suites = SuiteRun::new(
            vec![listed("s", &["a", "b"], retries)],
            Default::default(),
            0,
        );
        let rules = Rules {
            worker_wait: WAIT,
            fetch_outputs: false,
            stop_cluster: false,
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
    fn suites_are_planned_once_the_first_slot_is_known_and_submission_ends_when_they_are_done() {
        use crate::runner::suites::tests::junit;
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
        assert_eq!(
            m.report_fetched(batches[0], Some(report)),
            [Effect::Send(RunnerMsg::EndOfSubmission)]
        );
        let report = m.report(&RunEnd::Completed, 1);
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
        assert_eq!(m.cancel(now), [Effect::Send(RunnerMsg::Cancel)]);
        assert_eq!(
            m.report_fetched(first, None),
            [Effect::Send(RunnerMsg::EndOfSubmission)]
        );
    }
}
