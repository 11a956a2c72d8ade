//! JUnit XML, the format CI test-report tools read: one test suite, one test case per job.

use super::{JobReport, RunReport, last_lines, status_name, without_escapes};
use crate::proto::JobStatus;
use crate::suite::junit;
use crate::xml::{escape, seconds};

/// The name of the suite and the class name of every test case.
const SUITE: &str = "cluster-action";

/// Lines of output in a failure's body, which tools show inline; the whole captured output
/// goes to `<system-out>`.
const FAILURE_LINES: usize = 50;

impl RunReport {
    /// JUnit XML: `<testsuites>` holding one `<testsuite name="cluster-action">` with its
    /// counts and wall time in seconds, and one `<testcase>` per job. A failed or timed-out
    /// job has a `<failure>`, a job that could not run an `<error>` (both with the tail of the
    /// output, and the whole output in `<system-out>`), a cancelled job `<skipped>`.
    ///
    /// A run with suites writes the suites' merged JUnit instead ([`junit::merged`]: a
    /// `<testsuite>` per suite group, a `<testcase>` per test), with the jobs' `<testsuite>`
    /// after the suites' when it has jobs too (the top counts are then the tests'). A
    /// quarantined test keeps its failure, marked by a `quarantined` property.
    pub fn to_junit(&self) -> String {
        let jobs = self.jobs_junit();
        if self.tests.is_empty() {
            return jobs;
        }
        let mut xml = junit::merged(&self.tests, |r| self.quarantine_of(r).is_some());
        if let (false, Some(start), Some(end)) = (
            self.jobs.is_empty(),
            jobs.find("  <testsuite "),
            xml.rfind("</testsuites>"),
        ) {
            let block = jobs[start..].trim_end_matches("</testsuites>\n");
            xml.insert_str(end, block);
        }
        xml
    }

    /// The jobs' JUnit XML.
    fn jobs_junit(&self) -> String {
        let summary = self.summary();
        let counts = format!(
            r#"tests="{}" failures="{}" errors="{}" skipped="{}" time="{}""#,
            summary.total,
            summary.failed + summary.timed_out,
            summary.errors,
            summary.cancelled,
            seconds(self.wall_ms)
        );
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <testsuites name=\"{SUITE}\" {counts}>\n  <testsuite name=\"{SUITE}\" {counts}>\n"
        );
        for job in &self.jobs {
            push_testcase(&mut xml, job);
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }
}

/// Appends the `<testcase>` of `job`.
fn push_testcase(xml: &mut String, job: &JobReport) {
    xml.push_str(&format!(
        r#"    <testcase name="{}" classname="{SUITE}" time="{}""#,
        escape(&job.name, true),
        seconds(job.duration_ms)
    ));
    let element = match job.status {
        JobStatus::Passed => {
            xml.push_str("/>\n");
            return;
        }
        JobStatus::Cancelled => {
            xml.push_str(">\n      <skipped message=\"cancelled\"/>\n    </testcase>\n");
            return;
        }
        JobStatus::Failed | JobStatus::TimedOut => "failure",
        JobStatus::Error => "error",
    };
    let output = without_escapes(&job.output);
    xml.push_str(&format!(
        ">\n      <{element} message=\"{}\" type=\"{}\">{}</{element}>\n",
        escape(&job.describe(), true),
        status_name(job.status),
        escape(last_lines(&output, FAILURE_LINES), false)
    ));
    if !output.is_empty() {
        xml.push_str(&format!(
            "      <system-out>{}</system-out>\n",
            escape(&output, false)
        ));
    }
    xml.push_str("    </testcase>\n");
}
