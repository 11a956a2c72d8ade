//! The merged report of suites: every attempt of every test folded into one record per test,
//! written as one JUnit XML (a `<testsuite>` per suite group: nextest binary, pytest file, go
//! package) in the form Surefire and nextest write, and as per-test entries for the JSON report.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{TestCase, TestResult, TestStatus};
use crate::runner::report::junit::{escape, seconds};

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
    /// It failed, then passed on a retry.
    Flaky,
    /// The framework skipped it.
    Skipped,
    /// It could not run, was not reported, or every attempt stopped before finishing it (a
    /// test that crashes its batch each time must not pass for skipped).
    Error,
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
    /// `passed`, `failed`, `flaky`, `skipped`, `error` or `not_run`.
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
    fn ran(&self) -> impl Iterator<Item = &TestResult> {
        self.attempts
            .iter()
            .filter(|a| a.status != TestStatus::NotRun)
    }

    /// The last attempt that ended, else the last attempt made.
    fn last(&self) -> Option<&TestResult> {
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
            TestStatus::Failed => FinalStatus::Failed,
            TestStatus::Skipped => FinalStatus::Skipped,
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
fn is_failure(status: TestStatus) -> bool {
    matches!(status, TestStatus::Failed | TestStatus::Error)
}

/// Counts of a set of records, as JUnit's attributes carry them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Tests.
    pub tests: usize,
    /// Failed tests.
    pub failures: usize,
    /// Tests with errors.
    pub errors: usize,
    /// Skipped and never-run tests.
    pub skipped: usize,
    /// Run time, milliseconds.
    pub time_ms: u64,
}

impl Counts {
    /// Counts `records`: flaky tests pass, as nextest counts them by default.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a TestRecord>) -> Self {
        let mut counts = Counts::default();
        for record in records {
            counts.tests += 1;
            match record.status() {
                FinalStatus::Failed => counts.failures += 1,
                FinalStatus::Error => counts.errors += 1,
                FinalStatus::Skipped | FinalStatus::NotRun => counts.skipped += 1,
                FinalStatus::Passed | FinalStatus::Flaky => {}
            }
            counts.time_ms += record.last().map_or(0, |a| a.duration_ms);
        }
        counts
    }

    /// The attributes `tests="…" failures="…" errors="…" skipped="…" time="…"`.
    fn attributes(self) -> String {
        format!(
            r#"tests="{}" failures="{}" errors="{}" skipped="{}" time="{}""#,
            self.tests,
            self.failures,
            self.errors,
            self.skipped,
            seconds(self.time_ms)
        )
    }
}

/// One JUnit XML of `records`: `<testsuites name="cluster-action">` with a `<testsuite>` per
/// suite and group in order of first appearance, a `<testcase>` per test. A failed test
/// carries `<failure>` (its last attempt) and a `<rerunFailure>` per earlier one; a flaky one
/// passes with a `<flakyFailure>` per failed attempt; an error (also a test whose every
/// attempt stopped before finishing it) `<error>`; a skipped test `<skipped>`, as does one
/// never attempted (message "not run").
pub fn merged(records: &[TestRecord]) -> String {
    let mut groups: Vec<((&str, &str), Vec<&TestRecord>)> = Vec::new();
    let mut index: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for record in records {
        let key = (record.suite.as_str(), record.case.group.as_str());
        let at = *index.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(record);
    }
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"cluster-action\" {}>\n",
        Counts::of(records).attributes()
    );
    for ((_, group), members) in &groups {
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" {}>\n",
            escape(group, true),
            Counts::of(members.iter().copied()).attributes()
        ));
        for record in members {
            push_testcase(&mut xml, record);
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Appends the `<testcase>` of `record`.
fn push_testcase(xml: &mut String, record: &TestRecord) {
    let last = record.last();
    xml.push_str(&format!(
        r#"    <testcase name="{}" classname="{}" time="{}""#,
        escape(&record.case.name, true),
        escape(&record.case.group, true),
        seconds(last.map_or(0, |a| a.duration_ms))
    ));
    let failed: Vec<&TestResult> = record.ran().filter(|a| is_failure(a.status)).collect();
    let mut body = String::new();
    match (record.status(), last) {
        (FinalStatus::Passed, _) => {}
        (FinalStatus::Flaky, _) => {
            for attempt in &failed {
                push_attempt(&mut body, "flakyFailure", attempt);
            }
        }
        (FinalStatus::Failed | FinalStatus::Error, Some(last)) => {
            let element = if last.status == TestStatus::Failed {
                "failure"
            } else {
                "error"
            };
            push_attempt(&mut body, element, last);
            for attempt in failed.iter().filter(|a| !std::ptr::eq(**a, last)) {
                push_attempt(&mut body, "rerunFailure", attempt);
            }
        }
        (FinalStatus::Skipped, Some(last)) => body.push_str(&format!(
            "      <skipped message=\"{}\"/>\n",
            escape(last.message.as_deref().unwrap_or("skipped"), true)
        )),
        _ => body.push_str("      <skipped message=\"not run\"/>\n"),
    }
    if body.is_empty() {
        xml.push_str("/>\n");
    } else {
        xml.push_str(&format!(">\n{body}    </testcase>\n"));
    }
}

/// An `<element>` for one attempt: its message and type, its output as the body (a
/// `<failure>` or `<error>`) or, for `<flakyFailure>` and `<rerunFailure>`, as the
/// `<stackTrace>` inside it, where Surefire keeps it.
fn push_attempt(xml: &mut String, element: &str, attempt: &TestResult) {
    let output = escape(&attempt.output, false);
    let body = match element {
        "failure" | "error" => output,
        _ => format!("<stackTrace>{output}</stackTrace>"),
    };
    xml.push_str(&format!(
        "      <{element} message=\"{}\" type=\"{}\">{body}</{element}>\n",
        escape(attempt.message.as_deref().unwrap_or(""), true),
        attempt.status.name(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(group: &str, name: &str, statuses: &[TestStatus]) -> TestRecord {
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
    }

    #[test]
    fn writes_a_testsuite_per_group_with_counts() {
        use TestStatus::*;
        let records = [
            record("a", "ok", &[Passed]),
            record("b", "flaky", &[Failed, Passed]),
            record("a", "bad", &[Failed, Failed]),
            record("b", "crashes", &[NotRun, NotRun]),
            record("b", "cancelled", &[]),
        ];
        let xml = merged(&records);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("tests"), Some("5"));
        assert_eq!(root.attribute("failures"), Some("1"));
        assert_eq!(root.attribute("errors"), Some("1"));
        assert_eq!(root.attribute("skipped"), Some("1"));
        let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
        assert_eq!(suites.len(), 2);
        assert_eq!(suites[0].attribute("name"), Some("a"));
        assert_eq!(suites[0].attribute("tests"), Some("2"));
        let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
        assert_eq!(count("flakyFailure"), 1);
        assert_eq!(count("failure"), 1);
        assert_eq!(count("rerunFailure"), 1);
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(failure.attribute("message"), Some("it <broke>"));
        assert_eq!(failure.text(), Some("out & about"));
    }

    #[test]
    fn entries_name_the_final_status() {
        let entry = record("g", "t", &[TestStatus::Failed, TestStatus::Passed]).entry();
        assert_eq!((entry.status, entry.attempts), ("flaky", 2));
        assert_eq!(entry.message, None);
    }
}
