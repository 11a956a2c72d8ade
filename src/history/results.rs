//! `ca-results-<cluster>-<attempt>`: every test's final status at the end of one run attempt, written by
//! the runner so that a re-run ("Re-run failed jobs" bumps `GITHUB_RUN_ATTEMPT`) can run only
//! what failed or never ran. An attempt's results are complete for the run: a test a re-run
//! skipped keeps the status it had, so the newest attempt's artifact is all a later one reads.
//! It also carries the timings the attempt ended with, the first source of estimates for the
//! next attempt.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::document::ArtifactDocument;
use super::timings::{Timings, check_version};
use crate::suite::{FinalStatus, TestKey, TestRecord};

/// The format version this build writes and reads.
pub const RESULTS_VERSION: u32 = 1;
/// The artifact's name prefix; [`results_artifact_name`] adds the cluster and the attempt.
pub const RESULTS_ARTIFACT: &str = "ca-results";
/// The file inside the artifact's zip.
pub const RESULTS_FILE: &str = "ca-results.json";

/// The results artifact of `cluster` in run attempt `attempt`: `ca-results-<cluster>-<attempt>`
/// (artifact names are unique within a run across all its attempts, and several clusters can
/// share a run, so each needs its own).
pub fn results_artifact_name(cluster: &str, attempt: u32) -> String {
    format!("{RESULTS_ARTIFACT}-{cluster}-{attempt}")
}

/// How a test ended in the attempt that last ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestStatus {
    /// Passed the first time.
    Passed,
    /// Failed, then passed on a retry.
    Flaky,
    /// Failed every try.
    Failed,
    /// Ran out of time.
    TimedOut,
    /// Was planned but never reported (cancelled, lost with its worker, batch crashed first).
    NotRun,
}

impl TestStatus {
    /// Whether a re-run must run the test again: it did not pass, or nobody knows.
    pub fn needs_rerun(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut | Self::NotRun)
    }
}

/// A test's final result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestOutcome {
    /// How it ended.
    pub status: TestStatus,
    /// How long its last try took, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The run attempt that produced this outcome.
    pub attempt: u32,
}

/// The results of a run as of the end of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ResultsWire", into = "ResultsWire")]
pub struct AttemptResults {
    /// `GITHUB_RUN_ID`.
    pub run_id: u64,
    /// `GITHUB_RUN_ATTEMPT` of the attempt that wrote this.
    pub attempt: u32,
    /// Every test of the run and how it ended.
    pub tests: BTreeMap<TestKey, TestOutcome>,
    /// The timings the attempt ended with.
    pub timings: Timings,
}

/// The JSON shape: `{"version": 1, "run_id", "attempt", "tests": [{"suite", "id", "status",
/// "duration_ms", "attempt"}], "timings": {…ca-timings…}}`.
#[derive(Serialize, Deserialize)]
struct ResultsWire {
    version: u32,
    run_id: u64,
    attempt: u32,
    tests: Vec<ResultsEntry>,
    timings: Timings,
}

/// One test's line in the JSON.
#[derive(Serialize, Deserialize)]
struct ResultsEntry {
    suite: String,
    id: String,
    #[serde(flatten)]
    outcome: TestOutcome,
}

impl TryFrom<ResultsWire> for AttemptResults {
    type Error = String;

    fn try_from(wire: ResultsWire) -> Result<Self, String> {
        check_version(
            "ca-results",
            wire.version,
            RESULTS_VERSION..=RESULTS_VERSION,
        )?;
        Ok(Self {
            run_id: wire.run_id,
            attempt: wire.attempt,
            tests: wire
                .tests
                .into_iter()
                .map(|e| (TestKey::new(e.suite, e.id), e.outcome))
                .collect(),
            timings: wire.timings,
        })
    }
}

impl From<AttemptResults> for ResultsWire {
    fn from(results: AttemptResults) -> Self {
        ResultsWire {
            version: RESULTS_VERSION,
            run_id: results.run_id,
            attempt: results.attempt,
            tests: results
                .tests
                .into_iter()
                .map(|(key, outcome)| ResultsEntry {
                    suite: key.suite,
                    id: key.id,
                    outcome,
                })
                .collect(),
            timings: results.timings,
        }
    }
}

impl AttemptResults {
    /// The results at the end of an attempt: this attempt's outcomes over the previous
    /// attempt's, so a test this attempt did not run keeps its earlier outcome.
    pub fn after_attempt(
        previous: Option<&AttemptResults>,
        run_id: u64,
        attempt: u32,
        outcomes: BTreeMap<TestKey, TestOutcome>,
        timings: Timings,
    ) -> Self {
        let mut tests = previous.map(|p| p.tests.clone()).unwrap_or_default();
        tests.extend(outcomes);
        Self {
            run_id,
            attempt,
            tests,
            timings,
        }
    }
}

/// The outcome of each test for the timing history and the re-run of a later attempt, as of
/// run attempt `attempt`: a skipped test counts as passed without a duration, an error as a
/// failure.
pub fn outcomes(records: &[TestRecord], attempt: u32) -> BTreeMap<TestKey, TestOutcome> {
    records
        .iter()
        .map(|record| {
            let entry = record.entry();
            let (status, duration_ms) = match record.status() {
                FinalStatus::Passed => (TestStatus::Passed, Some(entry.duration_ms)),
                FinalStatus::Flaky => (TestStatus::Flaky, Some(entry.duration_ms)),
                FinalStatus::Skipped => (TestStatus::Passed, None),
                FinalStatus::Failed | FinalStatus::TimedOut | FinalStatus::Error => {
                    (TestStatus::Failed, Some(entry.duration_ms))
                }
                FinalStatus::NotRun => (TestStatus::NotRun, None),
            };
            let outcome = TestOutcome {
                status,
                duration_ms,
                attempt,
            };
            (TestKey::new(&record.suite, &record.case.id), outcome)
        })
        .collect()
}

/// `--rerun`: what an attempt above 1 runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RerunMode {
    /// Only the tests that failed or never ran (the default).
    #[default]
    Failed,
    /// Every test.
    All,
}

impl std::str::FromStr for RerunMode {
    type Err = String;

    /// `failed` or `all`, as `--rerun` takes them.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "failed" => Ok(Self::Failed),
            "all" => Ok(Self::All),
            _ => Err(format!(
                "--rerun takes `failed` (the tests that failed or never ran) or `all`, got {text:?}"
            )),
        }
    }
}

/// The tests an attempt runs, and what it leaves out, as the runner announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RerunSelection {
    /// The tests to run, in listing order.
    pub run: Vec<TestKey>,
    /// How many listed tests are left out because an earlier attempt passed them.
    pub skipped: usize,
    /// The attempt whose results the selection came from (none: everything runs).
    pub from_attempt: Option<u32>,
}

impl std::fmt::Display for RerunSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.run.len() + self.skipped;
        match self.from_attempt {
            Some(attempt) if self.skipped > 0 => write!(
                f,
                "re-run: running {} of {total} tests, those that failed or never ran up to \
                 attempt {attempt} (--rerun all runs every test)",
                self.run.len()
            ),
            Some(attempt) => write!(
                f,
                "re-run: running all {total} tests (none passed up to attempt {attempt})"
            ),
            None => write!(f, "running all {total} tests"),
        }
    }
}

/// Chooses what an attempt runs from the tests listed now and the previous attempt's results:
/// with [`RerunMode::Failed`], every listed test except those that passed (or were flaky)
/// before; a test the previous attempt does not know (new, or never planned) runs. Without
/// previous results, or with [`RerunMode::All`], everything runs.
pub fn select_rerun(
    listed: &[TestKey],
    previous: Option<&AttemptResults>,
    mode: RerunMode,
) -> RerunSelection {
    let Some(previous) = previous.filter(|_| mode == RerunMode::Failed) else {
        return RerunSelection {
            run: listed.to_vec(),
            skipped: 0,
            from_attempt: None,
        };
    };
    let (run, skipped): (Vec<&TestKey>, Vec<&TestKey>) = listed.iter().partition(|key| {
        previous
            .tests
            .get(*key)
            .is_none_or(|outcome| outcome.status.needs_rerun())
    });
    RerunSelection {
        run: run.into_iter().cloned().collect(),
        skipped: skipped.len(),
        from_attempt: Some(previous.attempt),
    }
}

impl ArtifactDocument for AttemptResults {
    const FILE: &'static str = RESULTS_FILE;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> TestKey {
        TestKey::new("s", id)
    }

    fn outcome(status: TestStatus, attempt: u32) -> TestOutcome {
        TestOutcome {
            status,
            duration_ms: Some(5),
            attempt,
        }
    }

    fn attempt_one() -> AttemptResults {
        let outcomes = [
            ("pass", TestStatus::Passed),
            ("flaky", TestStatus::Flaky),
            ("fail", TestStatus::Failed),
            ("slow", TestStatus::TimedOut),
            ("lost", TestStatus::NotRun),
        ]
        .into_iter()
        .map(|(id, status)| (key(id), outcome(status, 1)))
        .collect();
        AttemptResults::after_attempt(None, 42, 1, outcomes, Timings::default())
    }

    fn ids(selection: &RerunSelection) -> Vec<&str> {
        selection.run.iter().map(|k| k.id.as_str()).collect()
    }

    #[test]
    fn a_rerun_runs_what_failed_never_ran_or_is_new() {
        let listed: Vec<TestKey> = ["pass", "flaky", "fail", "slow", "lost", "new"]
            .into_iter()
            .map(key)
            .collect();
        let previous = attempt_one();
        let selection = select_rerun(&listed, Some(&previous), RerunMode::Failed);
        assert_eq!(ids(&selection), ["fail", "slow", "lost", "new"]);
        assert_eq!(selection.skipped, 2);
        assert!(
            selection.to_string().contains("running 4 of 6 tests"),
            "{selection}"
        );

        let all = select_rerun(&listed, Some(&previous), "all".parse().unwrap());
        assert_eq!(all.run, listed);
        let first = select_rerun(&listed, None, RerunMode::Failed);
        assert_eq!((first.run.len(), first.skipped), (6, 0));
    }

    #[test]
    fn rerun_modes_parse_and_a_wrong_one_is_named() {
        assert_eq!("failed".parse(), Ok(RerunMode::Failed));
        let err = "some".parse::<RerunMode>().unwrap_err();
        assert!(err.contains("--rerun") && err.contains("\"some\""), "{err}");
    }

    #[test]
    fn a_later_attempt_keeps_what_it_did_not_run() {
        let first = attempt_one();
        let second = AttemptResults::after_attempt(
            Some(&first),
            42,
            2,
            [(key("fail"), outcome(TestStatus::Passed, 2))].into(),
            Timings::default(),
        );
        assert_eq!(second.tests.len(), 5);
        assert_eq!(second.tests[&key("fail")].attempt, 2);
        assert_eq!(second.tests[&key("pass")].attempt, 1);
        let third = select_rerun(
            &[key("pass"), key("fail"), key("lost")],
            Some(&second),
            RerunMode::Failed,
        );
        assert_eq!(ids(&third), ["lost"]);
    }

    #[test]
    fn json_round_trips_and_names_match_attempts() {
        let results = attempt_one();
        assert_eq!(
            AttemptResults::from_json(&results.to_json()).unwrap(),
            results
        );
        assert!(AttemptResults::from_json(b"{}").is_err());
        let zipped = results.to_artifact_zip().unwrap();
        assert_eq!(AttemptResults::from_artifact_zip(&zipped).unwrap(), results);
        assert_eq!(results_artifact_name("default", 3), "ca-results-default-3");
    }
}
