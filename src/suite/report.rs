//! Reading a framework's report back into one result per test of a batch, with the rules
//! that keep a test from being lost: a complete report that does not mention a test makes it
//! an error, an incomplete one (or none) leaves it not run, and one that names a test twice
//! gives it the worse outcome, never the first. A batch its per-test watchdog stopped
//! ([`super::watchdog`]) leaves the test that was running `timed_out`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use super::result::{NOT_REPORTED, NOT_RUN};
use super::watchdog;
use super::{TestCase, TestResult, TestStatus};

/// What a report says about one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReportedCase {
    /// How it ended.
    pub status: TestStatus,
    /// Its run time.
    pub duration_ms: u64,
    /// The reason of a failure.
    pub message: Option<String>,
    /// Its output.
    pub output: String,
}

/// The tests a report mentions, by the framework's key, and whether it is whole.
#[derive(Debug, Default)]
pub(super) struct Reported {
    /// Each reported test by key.
    pub cases: HashMap<String, ReportedCase>,
    /// Whether the framework finished writing it: only then is a missing test an error.
    pub complete: bool,
    /// Tests its progress says started and did not finish.
    pub running: HashSet<String>,
    /// The per-test timeout, in seconds, when the batch's watchdog stopped it there.
    pub timed_out: Option<u64>,
    /// For a test reported under several keys (a JUnit test case's name and its class name
    /// joined to it), each further key and the first: one test, however many keys.
    pub aliases: HashMap<String, String>,
}

impl Reported {
    /// Records `case` under `key`. A key reported more than once (a tool that re-reports, two
    /// JUnit test cases one key stands for) keeps its worst report ([`severity`]); of equally
    /// bad ones, the first.
    pub fn insert(&mut self, key: String, case: ReportedCase) {
        match self.cases.entry(key) {
            Entry::Occupied(mut kept) => {
                if severity(case.status) > severity(kept.get().status) {
                    kept.insert(case);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(case);
            }
        }
    }

    /// Makes each of `keys` the report does not mention an error, with `text` (what the
    /// framework said went wrong outside any test: a file that failed to load) as its output
    /// and its first line as its message.
    pub fn error_unreported<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>, text: &str) {
        let message = text.lines().map(str::trim).find(|l| !l.is_empty());
        for key in keys {
            self.cases
                .entry(key.to_owned())
                .or_insert_with(|| ReportedCase {
                    status: TestStatus::Error,
                    duration_ms: 0,
                    message: message.map(str::to_owned),
                    output: text.to_owned(),
                });
        }
    }

    /// The tests the report mentions that none of `asked` (the batch's keys) names, each once
    /// by its first key, sorted: a framework that ran more than it was given (a name filter
    /// that also matches a neighbour). They are ignored; the runner says so.
    pub fn unasked(&self, asked: &HashSet<String>) -> Vec<String> {
        let first = |key: &String| self.aliases.get(key).unwrap_or(key).clone();
        let named: HashSet<String> = asked
            .iter()
            .filter(|key| self.cases.contains_key(*key))
            .map(first)
            .collect();
        let mut unasked: Vec<String> = (self.cases.keys().map(first))
            .filter(|key| !named.contains(key))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        unasked.sort();
        unasked
    }

    /// One result per test of `batch`, found by `key_of`; tests of the batch that share a key
    /// (the report cannot tell them apart) each get its report.
    pub fn results(
        self,
        batch: &[TestCase],
        key_of: impl Fn(&TestCase) -> String,
    ) -> Vec<TestResult> {
        batch
            .iter()
            .map(|case| (case, key_of(case)))
            .map(|(case, key)| match self.cases.get(&key).cloned() {
                Some(found) => TestResult {
                    case: case.clone(),
                    status: found.status,
                    duration_ms: found.duration_ms,
                    message: found.message,
                    output: found.output,
                    worker: None,
                },
                None => {
                    let (status, message, duration_ms) = match self.timed_out {
                        Some(seconds) if self.running.contains(&key) => (
                            TestStatus::TimedOut,
                            format!(
                                "timed out: still running after {seconds}s, the suite's \
                                 per-test timeout"
                            ),
                            seconds.saturating_mul(1000),
                        ),
                        _ if self.complete => (TestStatus::Error, NOT_REPORTED.to_owned(), 0),
                        _ => (TestStatus::NotRun, NOT_RUN.to_owned(), 0),
                    };
                    TestResult {
                        case: case.clone(),
                        status,
                        duration_ms,
                        message: Some(message),
                        output: String::new(),
                        worker: None,
                    }
                }
            })
            .collect()
    }
}

/// How bad an outcome is, for a test reported more than once in one attempt: an error beats a
/// failure (both say the test is broken; an error also says it could not run as written), a
/// failure beats a pass (a report that also says "failed" is never a pass), a pass beats a skip
/// (it did run), and a skip beats "not run".
fn severity(status: TestStatus) -> u8 {
    match status {
        TestStatus::NotRun => 0,
        TestStatus::Skipped => 1,
        TestStatus::Passed => 2,
        TestStatus::Failed => 3,
        TestStatus::TimedOut => 4,
        TestStatus::Error => 5,
    }
}

/// The test cases of a JUnit XML report, each under the keys `key(classname, name)` gives;
/// `None` when it is not well-formed XML (a batch killed before its framework wrote it).
pub(super) fn junit(bytes: &[u8], key: fn(&str, &str) -> Vec<String>) -> Option<Reported> {
    let text = std::str::from_utf8(bytes).ok()?;
    let doc = roxmltree::Document::parse(text).ok()?;
    let mut reported = Reported {
        complete: true,
        ..Reported::default()
    };
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let name = case.attribute("name").unwrap_or_default();
        let classname = case.attribute("classname").unwrap_or_default();
        let found = junit_case(case);
        let keys = key(classname, name);
        for k in &keys {
            reported.insert(k.clone(), found.clone());
            if k != &keys[0] {
                reported.aliases.insert(k.clone(), keys[0].clone());
            }
        }
    }
    Some(reported)
}

/// A framework's progress lines, which a batch leaves as its report when it is killed before
/// the framework writes JUnit: `line` reads one into a key, a status and a run time, and
/// `started` the key of a test a line says started. Such a report is never complete, so the
/// tests it does not mention run again, except the one that was running when the batch's
/// watchdog stopped it at the per-test timeout.
pub(super) fn progress(
    bytes: &[u8],
    line: fn(&str) -> Option<(String, TestStatus, u64)>,
    started: fn(&str) -> Option<String>,
) -> Reported {
    let mut reported = Reported::default();
    let text = String::from_utf8_lossy(bytes);
    for text_line in text.lines() {
        if let Some(seconds) = watchdog::stopped_after(text_line) {
            reported.timed_out = Some(seconds);
        } else if let Some(key) = started(text_line) {
            reported.running.insert(key);
        }
    }
    for (key, status, duration_ms) in text.lines().filter_map(line) {
        let message = (status != TestStatus::Passed)
            .then(|| format!("{}; the batch was stopped before its report", status.name()));
        let case = ReportedCase {
            status,
            duration_ms,
            message,
            output: String::new(),
        };
        reported.insert(key, case);
    }
    let finished = &reported.cases;
    reported.running.retain(|key| !finished.contains_key(key));
    reported
}

/// What one line of a report of JSON lines says (the lines RSpec's and Minitest's runners
/// write as tests start and end).
pub(super) enum Event {
    /// A test started.
    Started(String),
    /// A test ended.
    Finished(String, ReportedCase),
    /// Something went wrong outside any test (a file that failed to load).
    Outside(String),
    /// The framework is done: the report is whole.
    Done,
}

/// The tests a report of lines says ended, `read` turning each line into what it says: whole
/// once a line says [`Event::Done`]; the tests that started and did not end are running, and
/// the one of them the batch's watchdog stopped is timed out. What went wrong outside tests
/// comes beside it, in the report's order.
pub(super) fn events(bytes: &[u8], read: fn(&str) -> Option<Event>) -> (Reported, Vec<String>) {
    let mut reported = Reported::default();
    let mut outside = Vec::new();
    for line in String::from_utf8_lossy(bytes).lines() {
        if let Some(seconds) = watchdog::stopped_after(line) {
            reported.timed_out = Some(seconds);
            continue;
        }
        match read(line) {
            Some(Event::Started(key)) => {
                reported.running.insert(key);
            }
            Some(Event::Finished(key, case)) => reported.insert(key, case),
            Some(Event::Outside(text)) => outside.push(text),
            Some(Event::Done) => reported.complete = true,
            None => {}
        }
    }
    let finished = &reported.cases;
    reported.running.retain(|key| !finished.contains_key(key));
    (reported, outside)
}

/// What one `<testcase>` says.
fn junit_case(case: roxmltree::Node) -> ReportedCase {
    let child = |tag: &str| case.children().find(|c| c.has_tag_name(tag));
    let text = |tag: &str| child(tag).and_then(|c| c.text()).unwrap_or_default();
    let (status, outcome) = if let Some(failure) = child("failure") {
        (TestStatus::Failed, Some(failure))
    } else if let Some(error) = child("error") {
        (TestStatus::Error, Some(error))
    } else if let Some(skipped) = child("skipped") {
        (TestStatus::Skipped, Some(skipped))
    } else {
        (TestStatus::Passed, None)
    };
    let body = outcome.and_then(|n| n.text()).unwrap_or_default();
    let message = outcome.and_then(|n| {
        n.attribute("message")
            .map(str::to_owned)
            .or_else(|| body.lines().next().map(str::to_owned))
    });
    let output = [body, text("system-out"), text("system-err")]
        .iter()
        .map(|part| part.trim_end())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    ReportedCase {
        status,
        duration_ms: case
            .attribute("time")
            .and_then(|t| t.trim().parse::<f64>().ok())
            .map_or(0, seconds_to_ms),
        message,
        output,
    }
}

/// Seconds as whole milliseconds (negative and non-finite values as 0).
pub(super) fn seconds_to_ms(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        // Saturating float-to-int conversion; rounded to the nearest millisecond.
        (seconds * 1000.0).round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str) -> TestCase {
        TestCase {
            id: id.into(),
            group: "g".into(),
            name: id.into(),
            file: None,
        }
    }

    fn by_name(_classname: &str, name: &str) -> Vec<String> {
        vec![name.to_owned()]
    }

    #[test]
    fn a_test_reported_under_several_keys_is_one_unasked_test() {
        let xml = r#"<testsuite><testcase classname="c" name="a"/><testcase classname="c" name="x"/></testsuite>"#;
        let reported = junit(xml.as_bytes(), super::super::command::junit_key).unwrap();
        let asked = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(reported.unasked(&asked(&["a"])), ["x"]);
        // Asked by another of its keys, a test is asked.
        assert_eq!(
            reported.unasked(&asked(&["c.a", "c::x"])),
            Vec::<String>::new()
        );
        assert_eq!(reported.unasked(&asked(&[])), ["a", "x"]);
    }

    const REPORT: &str = r#"<?xml version="1.0"?>
<testsuites><testsuite name="g">
  <testcase name="ok" classname="g" time="1.5"><system-out>hello</system-out></testcase>
  <testcase name="bad" classname="g" time="0.002"><failure message="boom">trace</failure></testcase>
  <testcase name="skip" classname="g"><skipped message="not here"/></testcase>
</testsuite></testsuites>"#;

    #[test]
    fn reads_statuses_times_and_output() {
        let results = junit(REPORT.as_bytes(), by_name)
            .unwrap()
            .results(&[case("ok"), case("bad"), case("skip")], |c| c.id.clone());
        let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [TestStatus::Passed, TestStatus::Failed, TestStatus::Skipped]
        );
        assert_eq!(results[0].duration_ms, 1500);
        assert_eq!(results[0].output, "hello");
        assert_eq!(results[1].message.as_deref(), Some("boom"));
        assert_eq!(results[1].output, "trace");
    }

    #[test]
    fn a_test_missing_from_a_whole_report_is_an_error() {
        let results = junit(REPORT.as_bytes(), by_name)
            .unwrap()
            .results(&[case("gone")], |c| c.id.clone());
        assert_eq!(results[0].status, TestStatus::Error);
        assert!(
            results[0]
                .message
                .as_deref()
                .unwrap()
                .contains("not reported")
        );
    }

    #[test]
    fn a_test_reported_twice_takes_the_worst_outcome() {
        let report = r#"<testsuite name="g">
  <testcase name="t" classname="g" time="1"/>
  <testcase name="t" classname="g" time="2"><failure message="second">trace</failure></testcase>
  <testcase name="u" classname="g"><error message="broke"/></testcase>
  <testcase name="u" classname="g"><failure message="failed"/></testcase>
  <testcase name="v" classname="g"><skipped/></testcase>
  <testcase name="v" classname="g"/>
  <testcase name="w" classname="g"><failure message="first"/></testcase>
  <testcase name="w" classname="g"><failure message="second"/></testcase>
</testsuite>"#;
        let results = junit(report.as_bytes(), by_name)
            .unwrap()
            .results(&[case("t"), case("u"), case("v"), case("w")], |c| {
                c.id.clone()
            });
        let outcomes: Vec<_> = results
            .iter()
            .map(|r| (r.status, r.message.as_deref()))
            .collect();
        assert_eq!(
            outcomes,
            [
                (TestStatus::Failed, Some("second")),
                (TestStatus::Error, Some("broke")),
                (TestStatus::Passed, None),
                (TestStatus::Failed, Some("first")),
            ]
        );
    }

    #[test]
    fn tests_of_a_batch_sharing_a_key_each_get_its_outcome() {
        let report = r#"<testsuite name="g">
  <testcase name="t" classname="a"/>
  <testcase name="t" classname="b"><failure message="b broke"/></testcase>
</testsuite>"#;
        let results = junit(report.as_bytes(), by_name)
            .unwrap()
            .results(&[case("a t"), case("b t")], |c| {
                c.id.split(' ').next_back().unwrap().to_owned()
            });
        let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [TestStatus::Failed, TestStatus::Failed]);
    }

    #[test]
    fn a_cut_report_is_not_junit() {
        assert!(junit(&REPORT.as_bytes()[..REPORT.len() / 2], by_name).is_none());
    }

    #[test]
    fn progress_keeps_what_finished_and_leaves_the_rest_not_run() {
        fn line(text: &str) -> Option<(String, TestStatus, u64)> {
            let (name, word) = text.split_once(' ')?;
            let status = match word {
                "ok" => TestStatus::Passed,
                "bad" => TestStatus::Failed,
                _ => return None,
            };
            Some((name.to_owned(), status, 5))
        }
        let results = progress(b"a ok\nnoise\nb bad\n", line, |_| None)
            .results(&[case("a"), case("b"), case("c")], |c| c.id.clone());
        let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [TestStatus::Passed, TestStatus::Failed, TestStatus::NotRun]
        );
        assert!(results[1].message.as_deref().unwrap().contains("stopped"));
    }
}
