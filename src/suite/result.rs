//! The per-test result model: how one test ended in one attempt ([`TestResult`], from the
//! framework's report of its batch), and everything known about it over all its attempts
//! ([`TestRecord`], folded into one [`FinalStatus`]), as the reports and the history read it.

use serde::Serialize;

use super::TestCase;

/// The message of a test a complete report does not mention.
pub(super) const NOT_REPORTED: &str =
    "not reported: the framework's report does not mention this test";

/// The message of a test a batch stopped before reporting.
pub(super) const NOT_RUN: &str = "not run: the batch stopped before reporting this test";

/// How one test ended in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestStatus {
    /// It passed.
    Passed,
    /// It failed.
    Failed,
    /// The framework skipped it.
    Skipped,
    /// It could not run, or the report does not say what happened to it.
    Error,
    /// It was still running at the suite's per-test timeout and was stopped.
    TimedOut,
    /// The batch stopped before it finished: it should run again.
    NotRun,
}

impl TestStatus {
    /// The status as the JSON report and messages name it.
    pub fn name(self) -> &'static str {
        match self {
            TestStatus::Passed => "passed",
            TestStatus::Failed => "failed",
            TestStatus::Skipped => "skipped",
            TestStatus::Error => "error",
            TestStatus::TimedOut => "timed_out",
            TestStatus::NotRun => "not_run",
        }
    }
}

/// The result of one test in one attempt, from the framework's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test.
    pub case: TestCase,
    /// How it ended.
    pub status: TestStatus,
    /// Its run time as the framework measured it.
    pub duration_ms: u64,
    /// The one-line reason of a failure or error.
    pub message: Option<String>,
    /// Its captured output (failure details, stdout, stderr).
    pub output: String,
    /// The worker that ran it, once the runner has recorded it (a report does not say).
    pub worker: Option<String>,
}

impl TestResult {
    /// Whether the framework said nothing of this test: its batch's report does not mention
    /// it (whole or cut short), so only what the batch printed can say why.
    pub fn is_unreported(&self) -> bool {
        matches!(
            (self.status, self.message.as_deref()),
            (TestStatus::Error, Some(NOT_REPORTED)) | (TestStatus::NotRun, Some(NOT_RUN))
        )
    }

    /// `case` ended with `status` for the reason `message`, with no run time or output of its
    /// own (what a report leaves out, or a report that could not be read).
    pub fn without_report(case: TestCase, status: TestStatus, message: &str) -> Self {
        Self {
            case,
            status,
            duration_ms: 0,
            message: Some(message.to_owned()),
            output: String::new(),
            worker: None,
        }
    }
}

/// Everything known about one test of a run: its attempts, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    /// The suite it belongs to.
    pub suite: String,
    /// The test.
    pub case: TestCase,
    /// Its results, first attempt first (attempts left not run included).
    pub attempts: Vec<TestResult>,
}

/// How a test ended over all its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinalStatus {
    /// Its last attempt passed, and no earlier one failed.
    Passed,
    /// It failed on every attempt.
    Failed,
    /// It failed, then passed on a retry; or, run several times as a new test, its outcomes
    /// disagreed.
    Flaky,
    /// The framework skipped it.
    Skipped,
    /// It could not run, was not reported, or every attempt stopped before finishing it (a
    /// test that crashes its batch each time must not pass for skipped).
    Error,
    /// Its last attempt ran past the suite's per-test timeout.
    TimedOut,
    /// No attempt was made (the run was cancelled first).
    NotRun,
}

impl FinalStatus {
    /// The status as the JSON report names it.
    pub fn name(self) -> &'static str {
        match self {
            FinalStatus::Passed => "passed",
            FinalStatus::Failed => "failed",
            FinalStatus::Flaky => "flaky",
            FinalStatus::Skipped => "skipped",
            FinalStatus::Error => "error",
            FinalStatus::TimedOut => "timed_out",
            FinalStatus::NotRun => "not_run",
        }
    }
}

/// One test in the JSON report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestEntry {
    /// Its suite.
    pub suite: String,
    /// Its id in the suite.
    pub id: String,
    /// `passed`, `failed`, `flaky`, `skipped`, `error`, `timed_out` or `not_run`.
    pub status: &'static str,
    /// Attempts that ran it to an end.
    pub attempts: usize,
    /// Run time of its last attempt.
    pub duration_ms: u64,
    /// Why its last attempt failed, when it did.
    pub message: Option<String>,
    /// The worker of each attempt that ran it to an end, in order (a retry runs on another
    /// worker where there is one).
    pub workers: Vec<String>,
}

impl TestRecord {
    /// The attempts that ended (those the batch finished).
    pub(super) fn ran(&self) -> impl Iterator<Item = &TestResult> {
        self.attempts
            .iter()
            .filter(|a| a.status != TestStatus::NotRun)
    }

    /// The last attempt that ended, else the last attempt made.
    pub(super) fn last(&self) -> Option<&TestResult> {
        self.ran().last().or(self.attempts.last())
    }

    /// How the test ended over all its attempts.
    pub fn status(&self) -> FinalStatus {
        let Some(last) = self.last() else {
            return FinalStatus::NotRun;
        };
        match last.status {
            TestStatus::Passed if self.ran().any(|a| is_failure(a.status)) => FinalStatus::Flaky,
            TestStatus::Passed => FinalStatus::Passed,
            // A new test run several times that passed, then failed: outcomes that disagree.
            TestStatus::Failed | TestStatus::TimedOut | TestStatus::Error
                if self.ran().any(|a| a.status == TestStatus::Passed) =>
            {
                FinalStatus::Flaky
            }
            TestStatus::Failed => FinalStatus::Failed,
            TestStatus::Skipped => FinalStatus::Skipped,
            TestStatus::TimedOut => FinalStatus::TimedOut,
            TestStatus::Error | TestStatus::NotRun => FinalStatus::Error,
        }
    }

    /// The test's entry in the JSON report.
    pub fn entry(&self) -> TestEntry {
        let last = self.last();
        TestEntry {
            suite: self.suite.clone(),
            id: self.case.id.clone(),
            status: self.status().name(),
            attempts: self.ran().count(),
            duration_ms: last.map_or(0, |a| a.duration_ms),
            message: last
                .filter(|a| a.status != TestStatus::Passed)
                .and_then(|a| a.message.clone()),
            workers: self.ran().filter_map(|a| a.worker.clone()).collect(),
        }
    }
}

/// Whether a result is one a retry may turn around.
pub(super) fn is_failure(status: TestStatus) -> bool {
    matches!(
        status,
        TestStatus::Failed | TestStatus::Error | TestStatus::TimedOut
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record of test `name` in `group` with one attempt per status.
    pub(crate) fn record(group: &str, name: &str, statuses: &[TestStatus]) -> TestRecord {
        let case = TestCase {
            id: format!("{group} {name}"),
            group: group.into(),
            name: name.into(),
            file: None,
        };
        let attempts = statuses
            .iter()
            .map(|&status| TestResult {
                case: case.clone(),
                status,
                duration_ms: 10,
                message: (status != TestStatus::Passed).then(|| "it <broke>".to_owned()),
                output: "out & about".into(),
                worker: Some("w".into()),
            })
            .collect();
        TestRecord {
            suite: "s".into(),
            case,
            attempts,
        }
    }

    #[test]
    fn folds_attempts_into_one_status() {
        use TestStatus::*;
        let status = |s: &[TestStatus]| record("g", "t", s).status();
        assert_eq!(status(&[Passed]), FinalStatus::Passed);
        assert_eq!(status(&[Failed, Passed]), FinalStatus::Flaky);
        assert_eq!(status(&[NotRun, Passed]), FinalStatus::Passed);
        assert_eq!(status(&[Failed, Failed]), FinalStatus::Failed);
        assert_eq!(status(&[NotRun, NotRun]), FinalStatus::Error);
        assert_eq!(status(&[]), FinalStatus::NotRun);
        assert_eq!(status(&[Error]), FinalStatus::Error);
        assert_eq!(status(&[TimedOut]), FinalStatus::TimedOut);
        assert_eq!(status(&[TimedOut, Passed]), FinalStatus::Flaky);
        // A new test run several times: a failure after a pass disagrees with it.
        assert_eq!(status(&[Passed, Passed, Failed]), FinalStatus::Flaky);
        assert_eq!(status(&[Passed, NotRun, TimedOut]), FinalStatus::Flaky);
    }

    #[test]
    fn entries_name_the_final_status() {
        let entry = record("g", "t", &[TestStatus::Failed, TestStatus::Passed]).entry();
        assert_eq!((entry.status, entry.attempts), ("flaky", 2));
        assert_eq!(entry.message, None);
    }
}
