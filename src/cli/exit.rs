//! Exit codes, the same for every subcommand, and the one table that maps every way a command
//! ends onto them. The table is exhaustive (as nextest's `process_exit_code`): every error a
//! subcommand can meet converts into a typed variant of [`Failure`] keeping its cause chain
//! (none boxes an arbitrary error), and a new variant of `Failure`, or of the run's, worker's
//! and local cluster's errors below it, makes the compiler ask for its code here.

use cluster_action::broker::BrokerError;
use cluster_action::local::LocalError;
use cluster_action::runner::machine::RunEnd;
use cluster_action::runner::manifest::ManifestError;
use cluster_action::runner::report::Summary;
use cluster_action::runner::session::RunError;
use cluster_action::seal::SealError;
use cluster_action::selftest::TransportError;
use cluster_action::store::StoreError;
use cluster_action::stream::StreamError;
use cluster_action::worker::{WorkerEnd, WorkerError};

/// Every job passed (or the command did what it was asked).
pub const OK: i32 = 0;
/// Some job failed or timed out.
pub const JOBS_FAILED: i32 = 1;
/// Bad input: flags, manifest, environment.
pub const BAD_INPUT: i32 = 2;
/// The cluster or the infrastructure failed (artifact store, lost broker, no workers).
pub const INFRA: i32 = 3;
/// Cancelled by SIGINT or SIGTERM.
pub const CANCELLED: i32 = 130;

/// The exit code table shown at the end of `--help`.
pub const HELP: &str = "\
Exit codes:
  0    all jobs and tests passed
  1    some job failed or timed out, or some test failed
  2    bad input (flags, manifest, environment; peers with different CLUSTER_SECRETs)
  3    cluster or infrastructure failure (artifact store, broker, workers)
  130  cancelled (SIGINT/SIGTERM)";

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A flag is unusable; the message names it and the fix.
    #[error("{0}")]
    BadInput(String),
    /// The manifest or commands file was refused.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The artifact store the environment describes is unusable.
    #[error(
        "{0}\n(in a workflow, run cluster-action through its action, which passes these on; locally, use `cluster-action local`)"
    )]
    Environment(#[source] StoreError),
    /// The stream timing flags cannot work together.
    #[error("{source}\n({flags})")]
    StreamSettings {
        /// What the stream layer says.
        #[source]
        source: StreamError,
        /// The flags and the rule they break.
        flags: String,
    },
    /// The artifact store failed (after its retries).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The local artifact service (`serve`) failed.
    #[error("the artifact service failed: {0:#}")]
    Serve(anyhow::Error),
    /// `selftest transport` found the transport broken.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The worker failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The local cluster failed.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// A local file or directory.
    #[error("{what}: {source}")]
    Io {
        /// What could not be done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Failure {
    /// A bad-input failure (exit 2) with a message that names the input and the fix.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadInput(message.into())
    }

    /// A failure of a local file operation: `what` could not be done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// The exit code of this failure. Peers that do not share the cluster secret are a
    /// configuration error (exit 2), wherever in the cause chain the refusal surfaced.
    pub fn exit_code(&self) -> i32 {
        if secrets_differ(self) {
            return BAD_INPUT;
        }
        match self {
            Self::BadInput(_)
            | Self::Manifest(_)
            | Self::Environment(_)
            | Self::StreamSettings { .. } => BAD_INPUT,
            Self::Worker(e) => worker_failure(e),
            Self::Run(e) => run_failure(e),
            Self::Local(e) => match e {
                LocalError::Run(e) => run_failure(e),
                LocalError::Serve(_)
                | LocalError::Spawn { .. }
                | LocalError::Store(_)
                | LocalError::Broker(_)
                | LocalError::Io(_) => INFRA,
            },
            Self::Store(_)
            | Self::Broker(_)
            | Self::Serve(_)
            | Self::Transport(_)
            | Self::Io { .. } => INFRA,
        }
    }
}

/// Whether a refusal for a different (or missing) cluster secret is among `err`'s causes.
fn secrets_differ(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<SealError>()
            .is_some_and(SealError::is_mismatch)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The exit code of each way a worker fails.
fn worker_failure(e: &WorkerError) -> i32 {
    match e {
        // The cache directory is the user's --cache-dir.
        WorkerError::Layer(_) => BAD_INPUT,
        WorkerError::Join(_)
        | WorkerError::BrokerLost(_)
        | WorkerError::BrokerClosed
        | WorkerError::Refused(_)
        | WorkerError::Stream(_) => INFRA,
    }
}

/// The exit code of each way a run fails.
fn run_failure(e: &RunError) -> i32 {
    match e {
        RunError::Layer { .. }
        | RunError::Join(_)
        | RunError::ClusterStopped(_)
        | RunError::Refused(_)
        | RunError::BrokerLost(_)
        | RunError::Stream(_)
        | RunError::Io { .. }
        | RunError::Task { .. } => INFRA,
        // Every suite listing problem is the user's to fix.
        RunError::Suite(_) => BAD_INPUT,
    }
}

/// The exit code of a run that ended: a cancelled run is incomplete whatever else happened, a
/// run without workers is an infrastructure failure, a completed run follows its worst job and
/// its worst test (`failing_tests`: those that fail the run under `--flaky-result`).
pub fn run_ended(end: &RunEnd, summary: &Summary, failing_tests: usize) -> i32 {
    match end {
        RunEnd::Cancelled => CANCELLED,
        RunEnd::NoWorkers { .. } | RunEnd::BrokerLost { .. } => INFRA,
        RunEnd::Completed if summary.not_passed() + failing_tests > 0 => JOBS_FAILED,
        RunEnd::Completed => OK,
    }
}

/// The exit code of a worker that ended.
pub fn worker_ended(end: WorkerEnd) -> i32 {
    match end {
        WorkerEnd::Exited | WorkerEnd::ClusterStopped => OK,
        WorkerEnd::Interrupted => CANCELLED,
    }
}

/// Prints `failure` with its causes (each once) and returns its exit code.
pub fn report(failure: &Failure) -> i32 {
    print(failure);
    failure.exit_code()
}

/// Prints `failure` with its causes (each once): one of several, beside the one that decides
/// the exit code.
pub fn print(failure: &Failure) {
    eprintln!("error: {}", with_causes(failure));
}

/// The message of `err` followed by each cause its message does not already contain.
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let line = e.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_action::proto::JobStatus;
    use cluster_action::runner::report::{JobReport, RunReport};

    fn job(status: JobStatus) -> JobReport {
        JobReport {
            name: "j".into(),
            status,
            exit_code: None,
            attempts: 1,
            max_attempts: 1,
            duration_ms: 0,
            timeout_ms: 1000,
            worker: "w".into(),
            outputs: Vec::new(),
            output: String::new(),
            error: None,
        }
    }

    fn run(statuses: &[JobStatus]) -> RunReport {
        RunReport {
            jobs: statuses.iter().map(|s| job(*s)).collect(),
            ..RunReport::default()
        }
    }

    #[test]
    fn exit_codes_follow_the_worst_outcome() {
        let completed = |r: &RunReport| run_ended(&RunEnd::Completed, &r.summary(), 0);
        let passed = run(&[JobStatus::Passed, JobStatus::Passed]);
        assert_eq!(
            (
                completed(&passed),
                passed.summary().not_passed() > 0,
                passed.summary().cancelled > 0
            ),
            (0, false, false)
        );
        for failing in [JobStatus::Failed, JobStatus::TimedOut, JobStatus::Error] {
            let report = run(&[JobStatus::Passed, failing]);
            assert_eq!(
                (completed(&report), report.summary().not_passed() > 0),
                (1, true)
            );
        }
        let cancelled = run(&[JobStatus::Failed, JobStatus::Cancelled]);
        assert_eq!(
            (
                run_ended(&RunEnd::Cancelled, &cancelled.summary(), 0),
                cancelled.summary().not_passed() > 0,
                cancelled.summary().cancelled > 0
            ),
            (130, true, true)
        );
        assert_eq!(completed(&run(&[])), 0);
        let none = RunEnd::NoWorkers { not_run: 1 };
        assert_eq!(run_ended(&none, &run(&[JobStatus::Error]).summary(), 0), 3);
        let lost = RunEnd::BrokerLost {
            reason: "closed".into(),
            not_run: 1,
        };
        let some_passed = run(&[JobStatus::Passed, JobStatus::Error]);
        assert_eq!(
            run_ended(&lost, &some_passed.summary(), 0),
            3,
            "a lost broker"
        );
    }

    #[test]
    fn workers_exit_0_when_told_and_130_when_interrupted() {
        assert_eq!(worker_ended(WorkerEnd::Exited), OK);
        assert_eq!(
            worker_ended(WorkerEnd::ClusterStopped),
            OK,
            "nothing left to do"
        );
        assert_eq!(worker_ended(WorkerEnd::Interrupted), CANCELLED);
    }

    /// The row of the table `failure` falls under. Exhaustive, so a new variant of
    /// [`Failure`] does not compile until [`one_of_each_failure`] has an example of it.
    fn variant(failure: &Failure) -> &'static str {
        match failure {
            Failure::BadInput(_) => "bad input",
            Failure::Manifest(_) => "manifest",
            Failure::Environment(_) => "environment",
            Failure::StreamSettings { .. } => "stream settings",
            Failure::Store(_) => "store",
            Failure::Broker(_) => "broker",
            Failure::Serve(_) => "serve",
            Failure::Transport(_) => "transport",
            Failure::Worker(_) => "worker",
            Failure::Run(_) => "run",
            Failure::Local(_) => "local",
            Failure::Io { .. } => "io",
        }
    }

    /// A stream refused for another cluster secret, somewhere below whatever carries it.
    fn other_secret() -> StreamError {
        StreamError::Refused {
            artifact: "ca.c.1.s".into(),
            offset: 0,
            source: SealError::OtherSecret {
                ours: "a".into(),
                theirs: "b".into(),
            },
        }
    }

    /// An example of each kind of failure, with the exit code `HELP` documents for it.
    fn one_of_each_failure() -> Vec<(Failure, i32)> {
        let io = || std::io::Error::other("denied");
        let suite = || {
            RunError::Suite(cluster_action::suite::SuiteError::ToolMissing {
                suite: "s".into(),
                command: "pytest".into(),
                looked: "not found on PATH".into(),
                install: "install it",
            })
        };
        let store = || StoreError::NotFound("a".into());
        vec![
            (Failure::bad_input("--slots 0"), BAD_INPUT),
            (
                Failure::from(ManifestError::Read {
                    path: "m.yml".into(),
                    flag: None,
                    source: io().into(),
                }),
                BAD_INPUT,
            ),
            (
                Failure::Environment(StoreError::Config("no URL".into())),
                BAD_INPUT,
            ),
            (
                Failure::StreamSettings {
                    source: StreamError::from(store()),
                    flags: "--keepalive".into(),
                },
                BAD_INPUT,
            ),
            (Failure::from(store()), INFRA),
            (
                Failure::from(BrokerError::Listener(StreamError::from(store()))),
                INFRA,
            ),
            (Failure::Serve(anyhow::anyhow!("cannot bind")), INFRA),
            (
                Failure::from(TransportError::NoPeer(std::time::Duration::from_secs(1))),
                INFRA,
            ),
            (Failure::from(WorkerError::BrokerClosed), INFRA),
            (
                Failure::from(WorkerError::Layer(cluster_action::layer::LayerError::Io {
                    context: "--cache-dir".into(),
                    source: io(),
                })),
                BAD_INPUT,
            ),
            (Failure::from(RunError::ClusterStopped("c".into())), INFRA),
            (Failure::from(suite()), BAD_INPUT),
            (Failure::from(LocalError::Io(io())), INFRA),
            (Failure::from(LocalError::Run(suite())), BAD_INPUT),
            (Failure::io("cannot write r.json")(io()), INFRA),
            // Another cluster secret is bad input wherever it surfaces.
            (Failure::from(RunError::Stream(other_secret())), BAD_INPUT),
            (
                Failure::from(BrokerError::Listener(other_secret())),
                BAD_INPUT,
            ),
        ]
    }

    #[test]
    fn every_kind_of_failure_exits_with_its_documented_code() {
        let cases = one_of_each_failure();
        let covered: std::collections::BTreeSet<_> =
            cases.iter().map(|(f, _)| variant(f)).collect();
        assert_eq!(covered.len(), 12, "an example of each variant: {covered:?}");
        for (failure, code) in &cases {
            assert_eq!(
                failure.exit_code(),
                *code,
                "{} ({failure})",
                variant(failure)
            );
            assert!(
                HELP.contains(&format!("\n  {code} ")),
                "exit {code} is documented"
            );
        }
        let codes: std::collections::BTreeSet<i32> = cases.iter().map(|(_, c)| *c).collect();
        assert_eq!(
            codes,
            [BAD_INPUT, INFRA].into(),
            "failures never exit 0, 1 or 130"
        );
    }

    #[test]
    fn every_documented_code_is_reached() {
        let documented: Vec<i32> = HELP
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        assert_eq!(documented, [OK, JOBS_FAILED, BAD_INPUT, INFRA, CANCELLED]);
        let passed = run(&[JobStatus::Passed]).summary();
        let failed = run(&[JobStatus::Failed]).summary();
        let lost = RunEnd::NoWorkers { not_run: 1 };
        let reached = [
            run_ended(&RunEnd::Completed, &passed, 0),
            run_ended(&RunEnd::Completed, &passed, 1),
            Failure::bad_input("x").exit_code(),
            run_ended(&lost, &failed, 0),
            run_ended(&RunEnd::Cancelled, &passed, 0),
        ];
        assert_eq!(reached.as_slice(), documented.as_slice());
    }

    #[test]
    fn causes_are_shown_once() {
        let io = std::io::Error::other("disk full");
        let failure = Failure::io("cannot write r.json")(io);
        assert_eq!(with_causes(&failure), "cannot write r.json: disk full");
        let outer = RunError::Io {
            what: "cannot create outputs directory o".into(),
            source: std::io::Error::other("denied"),
        };
        assert_eq!(
            with_causes(&Failure::from(outer)),
            "cannot create outputs directory o: denied"
        );
    }
}
