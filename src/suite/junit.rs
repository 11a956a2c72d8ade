//! The merged JUnit of suites: every test's record ([`TestRecord`]) written as one JUnit XML
//! (a `<testsuite>` per suite group: nextest binary, pytest file, go package) in the form
//! Surefire and nextest write.

use std::collections::BTreeMap;

use super::result::is_failure;
use super::{FinalStatus, TestRecord, TestResult, TestStatus};
use crate::xml::{escape, seconds};

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
                FinalStatus::Failed | FinalStatus::TimedOut => counts.failures += 1,
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
pub fn merged(records: &[TestRecord], quarantined: impl Fn(&TestRecord) -> bool) -> String {
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
            push_testcase(&mut xml, record, quarantined(record));
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Appends the `<testcase>` of `record`; a quarantined one keeps its failure and says it is
/// quarantined in a property (`<property name="quarantined" value="true"/>`).
fn push_testcase(xml: &mut String, record: &TestRecord, quarantined: bool) {
    let last = record.last();
    xml.push_str(&format!(
        r#"    <testcase name="{}" classname="{}" time="{}""#,
        escape(&record.case.name, true),
        escape(&record.case.group, true),
        seconds(last.map_or(0, |a| a.duration_ms))
    ));
    let failed: Vec<&TestResult> = record.ran().filter(|a| is_failure(a.status)).collect();
    let mut body = String::new();
    if quarantined {
        body.push_str(
            "      <properties>\n        <property name=\"quarantined\" value=\"true\"/>\n      </properties>\n",
        );
    }
    match (record.status(), last) {
        (FinalStatus::Passed, _) => {}
        (FinalStatus::Flaky, _) => {
            for attempt in &failed {
                push_attempt(&mut body, "flakyFailure", attempt);
            }
        }
        (FinalStatus::Failed | FinalStatus::TimedOut | FinalStatus::Error, Some(last)) => {
            let element = if matches!(last.status, TestStatus::Failed | TestStatus::TimedOut) {
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
    use crate::suite::result::tests::record;

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
        let xml = merged(&records, |_| false);
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
}
