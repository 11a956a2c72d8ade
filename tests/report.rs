//! Reports as their readers get them: the JSON shape scripts rely on, JUnit XML that parsers
//! accept whatever the jobs printed, a bounded job summary, CI log lines, annotations and log
//! groups that job output cannot break out of.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use cluster_action::proto::{JobOutcome, JobSpec, JobStatus};
use cluster_action::runner::report::{
    JobReport, RunReport, Summary, TestSummary, annotation, ci_line, fenced, group,
    output_file_text, status_name, step_outputs, test_line,
};
use cluster_action::runner::suite_run::TestEnded;
use cluster_action::suite::{FinalStatus, TestRecord};
use cluster_action::suite::{TestCase, TestResult, TestStatus};
use serde_json::json;

mod common;
use common::job_spec;

fn job(name: &str, status: JobStatus) -> JobReport {
    JobReport {
        name: name.to_owned(),
        status,
        exit_code: match status {
            JobStatus::Passed => Some(0),
            JobStatus::Failed => Some(1),
            _ => None,
        },
        attempts: 1,
        max_attempts: 1,
        duration_ms: 1_200,
        timeout_ms: 600_000,
        worker: "w-1".to_owned(),
        outputs: Vec::new(),
        output: format!("output of {name}\n"),
        error: None,
    }
}

/// [`job`] `name`, ended with `status` on its second and last attempt.
fn retried(name: &str, status: JobStatus) -> JobReport {
    JobReport {
        attempts: 2,
        max_attempts: 2,
        ..job(name, status)
    }
}

/// A run of `jobs` that took `wall_ms` milliseconds.
fn run_of(jobs: Vec<JobReport>, wall_ms: u64) -> RunReport {
    RunReport {
        jobs,
        wall_ms,
        ..RunReport::default()
    }
}

/// `xml` parsed; a parse error fails the test showing the XML.
fn parse(xml: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"))
}

/// One job of each outcome, plus a flaky one that passed on its second attempt.
fn sample() -> RunReport {
    let mut passed = job("unit-1", JobStatus::Passed);
    passed.outputs = vec!["reports/unit-1.xml".to_owned()];
    let flaky = JobReport {
        worker: "w-2".to_owned(),
        ..retried("unit-2", JobStatus::Passed)
    };
    let failed = JobReport {
        duration_ms: 300,
        output: "running 3 tests\nassertion failed: left == right\n".to_owned(),
        ..retried("unit-3", JobStatus::Failed)
    };
    let timed_out = JobReport {
        duration_ms: 600_000,
        ..job("slow", JobStatus::TimedOut)
    };
    let error = JobReport {
        error: Some("layer ab12 is not in the artifact store".to_owned()),
        output: String::new(),
        ..job("broken", JobStatus::Error)
    };
    let cancelled = JobReport {
        attempts: 0,
        duration_ms: 0,
        worker: String::new(),
        output: String::new(),
        exit_code: None,
        ..job("late", JobStatus::Cancelled)
    };
    run_of(
        vec![passed, flaky, failed, timed_out, error, cancelled],
        61_500,
    )
}

#[test]
fn json_has_the_documented_shape() {
    let report = run_of(
        vec![
            JobReport {
                outputs: vec!["reports/a.xml".to_owned()],
                ..job("a", JobStatus::Passed)
            },
            job("b", JobStatus::TimedOut),
        ],
        2_000,
    );
    assert_eq!(
        report.to_json(),
        json!({
            "summary": {"total": 2, "passed": 1, "failed": 0, "timed_out": 1, "errors": 0,
                        "cancelled": 0, "wall_ms": 2000},
            "jobs": [
                {"name": "a", "status": "passed", "exit_code": 0, "attempts": 1,
                 "duration_ms": 1200, "worker": "w-1", "outputs": ["reports/a.xml"],
                 "outputs_dir": "a", "error": null},
                {"name": "b", "status": "timed_out", "exit_code": null, "attempts": 1,
                 "duration_ms": 1200, "worker": "w-1", "outputs": [], "outputs_dir": null,
                 "error": null},
            ]
        })
    );
}

#[test]
fn json_counts_every_status() {
    let value = sample().to_json();
    assert_eq!(
        value["summary"],
        json!({"total": 6, "passed": 2, "failed": 1, "timed_out": 1, "errors": 1,
               "cancelled": 1, "wall_ms": 61500})
    );
    let statuses: Vec<&str> = value["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "passed",
            "passed",
            "failed",
            "timed_out",
            "error",
            "cancelled"
        ]
    );
    assert_eq!(status_name(JobStatus::TimedOut), "timed_out");
}

/// Attribute `name` of `node` as an integer.
fn count(node: roxmltree::Node, name: &str) -> u64 {
    node.attribute(name).unwrap().parse().unwrap()
}

#[test]
fn junit_parses_and_agrees_with_the_json_counts() {
    let report = sample();
    let xml = report.to_junit();
    let doc = parse(&xml);
    let summary = &report.to_json()["summary"];
    let suites: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    assert_eq!(suite.attribute("name"), Some("cluster-action"));
    assert_eq!(count(suite, "tests"), summary["total"]);
    assert_eq!(
        count(suite, "failures"),
        summary["failed"].as_u64().unwrap() + summary["timed_out"].as_u64().unwrap()
    );
    assert_eq!(count(suite, "errors"), summary["errors"]);
    assert_eq!(count(suite, "skipped"), summary["cancelled"]);
    assert_eq!(suite.attribute("time"), Some("61.500"));

    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), report.jobs.len());
    let by_name: BTreeMap<&str, roxmltree::Node> = cases
        .iter()
        .map(|c| (c.attribute("name").unwrap(), *c))
        .collect();
    assert!(
        cases
            .iter()
            .all(|c| c.attribute("classname") == Some("cluster-action"))
    );
    assert_eq!(by_name["unit-1"].attribute("time"), Some("1.200"));
    assert!(by_name["unit-1"].first_element_child().is_none());

    let failure = by_name["unit-3"].first_element_child().unwrap();
    assert!(failure.has_tag_name("failure"));
    assert_eq!(
        failure.attribute("message"),
        Some("failed with exit code 1")
    );
    assert_eq!(
        failure.text(),
        Some("running 3 tests\nassertion failed: left == right\n")
    );
    let out = by_name["unit-3"]
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .unwrap();
    assert_eq!(out.text(), Some(report.jobs[2].output.as_str()));

    let timeout = by_name["slow"].first_element_child().unwrap();
    assert!(timeout.has_tag_name("failure"));
    assert_eq!(timeout.attribute("message"), Some("timed out after 10m"));

    let error = by_name["broken"].first_element_child().unwrap();
    assert!(error.has_tag_name("error"));
    assert_eq!(
        error.attribute("message"),
        Some("could not run: layer ab12 is not in the artifact store")
    );

    let skipped = by_name["late"].first_element_child().unwrap();
    assert!(skipped.has_tag_name("skipped"));
    assert_eq!(skipped.attribute("message"), Some("cancelled"));
}

#[test]
fn junit_survives_hostile_names_and_output() {
    let name = "a<b>&\"c\"'d' ]]> </testcase>";
    let output =
        "\u{1b}[31mred\u{1b}[0m\0nul\u{8}bs\u{b}vt\u{c}ff\r\n<![CDATA[x]]>\n&amp;\u{fffe}\n";
    let report = run_of(
        vec![JobReport {
            output: output.to_owned(),
            exit_code: Some(2),
            ..job(name, JobStatus::Failed)
        }],
        1,
    );
    let xml = report.to_junit();
    let doc = parse(&xml);
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase"))
        .unwrap();
    assert_eq!(case.attribute("name"), Some(name));
    let expected = "rednulbsvtff\r\n<![CDATA[x]]>\n&amp;\n";
    let failure = case.first_element_child().unwrap();
    assert_eq!(
        failure.attribute("message"),
        Some("failed with exit code 2")
    );
    assert_eq!(failure.text(), Some(expected));
}

#[test]
fn junit_failure_body_is_the_tail_and_system_out_the_whole_output() {
    let output: String = (1..=200).map(|i| format!("line {i}\n")).collect();
    let report = run_of(
        vec![JobReport {
            output: output.clone(),
            ..job("long", JobStatus::Failed)
        }],
        1,
    );
    let xml = report.to_junit();
    let doc = parse(&xml);
    let text = |tag: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.text())
            .unwrap()
            .to_owned()
    };
    let failure = text("failure");
    assert!(failure.starts_with("line 151\n") && failure.ends_with("line 200\n"));
    assert_eq!(text("system-out"), output);
}

#[test]
fn markdown_leads_with_the_outcome_and_lists_problems_first() {
    let md = sample().to_markdown();
    let first_line = md.lines().next().unwrap();
    assert_eq!(first_line, "## ❌ cluster-action: 3 of 6 jobs did not pass");
    assert!(md.contains(
        "✅ 2 passed · ❌ 1 failed · ⏱️ 1 timed out · 💥 1 could not run · 🚫 1 cancelled · \
         🕒 1m01s wall time"
    ));
    let problems = md.find("### Jobs that did not pass").unwrap();
    let details = md
        .find("<details><summary>All 6 jobs, slowest first</summary>")
        .unwrap();
    assert!(problems < details && md.trim_end().ends_with("</details>"));
    let problem_table = &md[problems..details];
    assert!(problem_table.contains("| unit\\-3 | ❌ failed (exit 1) | 2/2 | 300ms | w\\-1 |"));
    assert!(problem_table.contains("| slow | ⏱️ timed out (10m) | 1 | 10m | w\\-1 |"));
    assert!(problem_table.contains("💥 could not run: layer ab12 is not in the artifact store"));
    assert!(!problem_table.contains("unit\\-1") && !problem_table.contains("late"));
    let all = &md[details..];
    assert!(all.find("| slow |").unwrap() < all.find("| unit\\-1 |").unwrap());
    assert!(all.contains("| unit\\-2 | ✅ passed | 2/2 | 1.2s | w\\-2 |"));
    assert!(all.contains("| late | 🚫 cancelled | 0 | – |  |"));
}

#[test]
fn markdown_headlines_for_success_and_cancellation() {
    let passed = run_of(
        vec![job("a", JobStatus::Passed), job("b", JobStatus::Passed)],
        500,
    );
    let md = passed.to_markdown();
    assert!(md.starts_with("## ✅ cluster-action: all 2 jobs passed\n"));
    assert!(!md.contains("did not pass"));

    let cancelled = run_of(
        vec![job("a", JobStatus::Passed), job("b", JobStatus::Cancelled)],
        500,
    );
    assert!(
        cancelled
            .to_markdown()
            .starts_with("## 🚫 cluster-action: cancelled, 1 of 2 jobs did not finish\n")
    );
}

#[test]
fn markdown_stays_bounded_for_a_huge_run() {
    let jobs: Vec<JobReport> = (0..100_000)
        .map(|i| {
            let status = if i % 2 == 0 {
                JobStatus::Passed
            } else {
                JobStatus::Error
            };
            JobReport {
                name: format!("{}-{i}", "|<&>".repeat(100)),
                worker: "w|".repeat(100),
                error: Some("why".repeat(100)),
                ..job("", status)
            }
        })
        .collect();
    let md = run_of(jobs, 1).to_markdown();
    assert!(md.len() < 1024 * 1024, "{} bytes", md.len());
    assert!(md.contains("_49500 more not shown; the JSON report lists every job._"));
    assert!(md.contains("_99500 more not shown; the JSON report lists every job._"));
    let rows = md.lines().filter(|l| l.starts_with("| ")).count();
    assert_eq!(
        rows,
        2 * (2 + 500),
        "two header lines and 500 rows per table"
    );
}

#[test]
fn markdown_cells_cannot_break_the_table() {
    let report = run_of(
        vec![JobReport {
            worker: "<script>".to_owned(),
            ..job("a | b\nc", JobStatus::Passed)
        }],
        1,
    );
    let md = report.to_markdown();
    assert!(md.contains("| a \\| b c | ✅ passed | 1 | 1.2s | \\<script\\> |"));
}

#[test]
fn ci_lines_say_what_happened_in_one_line() {
    let report = sample();
    let lines: Vec<String> = report.jobs.iter().map(ci_line).collect();
    assert_eq!(
        lines,
        [
            "PASS unit-1 (1.2s, worker w-1)",
            "PASS unit-2 (attempt 2/2, 1.2s, worker w-2)",
            "FAIL unit-3 exit 1 (attempt 2/2, 300ms, worker w-1)",
            "TIMEOUT slow after 10m (10m, worker w-1)",
            "ERROR broken: layer ab12 is not in the artifact store (1.2s, worker w-1)",
            "CANCEL late",
        ]
    );
    let multi_line = JobReport {
        error: Some("first\nsecond".to_owned()),
        ..job("x", JobStatus::Error)
    };
    assert_eq!(
        ci_line(&multi_line),
        "ERROR x: first second (1.2s, worker w-1)"
    );
    let killed = JobReport {
        exit_code: None,
        ..job("k", JobStatus::Failed)
    };
    assert_eq!(
        ci_line(&killed),
        "FAIL k killed by a signal (1.2s, worker w-1)"
    );
}

#[test]
fn annotations_escape_workflow_command_syntax() {
    let failed = JobReport {
        output: "\u{1b}[31m100% broken\u{1b}[0m\r\nsee: a, b\n".to_owned(),
        ..retried("db: a,b 50%", JobStatus::Failed)
    };
    assert_eq!(
        annotation(&failed).unwrap(),
        "::error title=db%3A a%2Cb 50%25 failed::job 'db: a,b 50%25' failed with exit code 1 \
         on worker w-1 (attempt 2/2)%0A%0A100%25 broken%0D%0Asee: a, b"
    );
    let report = sample();
    let annotated: Vec<Option<String>> = report.jobs.iter().map(annotation).collect();
    assert_eq!(annotated[0], None, "passed");
    assert_eq!(annotated[5], None, "cancelled");
    assert_eq!(
        annotated[4].as_deref(),
        Some(
            "::error title=broken could not run::job 'broken' could not run: layer ab12 is \
             not in the artifact store on worker w-1"
        )
    );
    assert!(
        annotated[3]
            .as_deref()
            .unwrap()
            .starts_with("::error title=slow timed out::job 'slow' timed out after 10m")
    );
}

/// The workflow commands GitHub would act on in `log` (in lines that start with `::` after
/// spaces), honouring `::stop-commands::`.
fn commands_seen(log: &str) -> Vec<String> {
    let mut stopped_until: Option<String> = None;
    let mut seen = Vec::new();
    for line in log.lines() {
        if let Some(end) = &stopped_until {
            if line == end {
                stopped_until = None;
            }
            continue;
        }
        let Some(command) = line.trim_start().strip_prefix("::") else {
            continue;
        };
        let (name, value) = command.split_once("::").unwrap_or((command, ""));
        if name == "stop-commands" {
            stopped_until = Some(format!("::{value}::"));
        } else {
            seen.push(name.split(' ').next().unwrap().to_owned());
        }
    }
    seen
}

#[test]
fn groups_fence_job_output_so_it_cannot_run_commands() {
    let hostile = JobReport {
        output: "::endgroup::\n::error::injected\n::set-output name=x::y\n::stop-commands::x\n::x::\n::add-mask::secret\nlast line without newline".to_owned(),
        ..job("unit-3", JobStatus::Failed)
    };
    let log = group(&hostile);
    assert_eq!(commands_seen(&log), ["group", "endgroup"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "::group::FAIL unit-3 exit 1 (1.2s, worker w-1)");
    let token = lines[1].strip_prefix("::stop-commands::").unwrap();
    assert!(token.len() >= 32 && !hostile.output.contains(token));
    assert_eq!(
        &lines[2..lines.len() - 2].join("\n"),
        &hostile.output,
        "output verbatim"
    );
    assert_eq!(lines[lines.len() - 2], format!("::{token}::"));
    assert_eq!(lines[lines.len() - 1], "::endgroup::");
    assert!(log.ends_with("::endgroup::\n"));

    let again = group(&hostile);
    assert_ne!(
        again.lines().nth(1),
        log.lines().nth(1),
        "a fresh token each time"
    );

    let silent = JobReport {
        output: String::new(),
        ..job("quiet", JobStatus::Passed)
    };
    assert!(group(&silent).contains("\n(no output)\n"));
}

#[test]
fn job_reports_are_built_from_the_spec_and_the_final_outcome() {
    let spec = JobSpec {
        timeout_ms: 60_000,
        retries: 2,
        outputs: vec!["reports/*".to_owned()],
        ..job_spec("unit-3", "false")
    };
    let outcome = JobOutcome {
        attempt: 3,
        status: JobStatus::Failed,
        exit_code: Some(1),
        duration_ms: 42,
        worker: "w-9".to_owned(),
        output: "boom\n".to_owned(),
        outputs_layer: None,
        outputs_path: None,
        error: None,
    };
    let report = JobReport::finished(&spec, &outcome, vec!["reports/a.xml".to_owned()]);
    assert_eq!(
        ci_line(&report),
        "FAIL unit-3 exit 1 (attempt 3/3, 42ms, worker w-9)"
    );
    assert_eq!(report.outputs, ["reports/a.xml"]);
    assert_eq!(report.output, "boom\n");
    assert_eq!(report.timeout_ms, 60_000);

    let cancelled = JobReport::cancelled(&spec);
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!((cancelled.attempts, cancelled.max_attempts), (0, 3));
    assert_eq!(ci_line(&cancelled), "CANCEL unit-3");
}

#[test]
fn step_outputs_count_jobs_and_tests_and_cancelled_jobs_are_not_failures() {
    let jobs = sample().summary();
    let none = step_outputs(&jobs, &TestSummary::default(), None, None);
    // sample(): 2 passed, 1 failed, 1 timed out, 1 error, 1 cancelled.
    assert_eq!(
        none.map(|(name, value)| format!("{name}={value}")),
        [
            "passed=2",
            "failed=3",
            "total=6",
            "report-json=",
            "report-junit="
        ]
    );
    let jobs = Summary {
        total: 1,
        passed: 1,
        ..Summary::default()
    };
    let tests = TestSummary {
        total: 9,
        passed: 5,
        failed: 1,
        flaky: 1,
        skipped: 1,
        errors: 1,
        quarantined: 0,
    };
    let json = std::path::Path::new("/tmp/r/report.json");
    let with_suites = step_outputs(&jobs, &tests, Some(json), None);
    // Flaky tests passed; skipped ones neither passed nor failed.
    assert_eq!(
        with_suites.map(|(_, value)| value),
        ["7", "2", "10", "/tmp/r/report.json", ""]
    );
}

#[test]
fn step_output_values_cannot_end_early_or_set_another_output() {
    let hostile = "a\nghadelimiter_x\nfailed<<EOF\n0\nEOF".to_owned();
    let text = output_file_text(&[("report-json", hostile.clone()), ("total", "3".to_owned())]);
    let lines: Vec<&str> = text.lines().collect();
    let (name, delimiter) = lines[0].split_once("<<").unwrap();
    assert_eq!(name, "report-json");
    assert!(delimiter.starts_with("ghadelimiter_") && !hostile.contains(delimiter));
    let end = lines.iter().rposition(|l| *l == delimiter).unwrap();
    assert_eq!(lines[1..end].join("\n"), hostile);
    assert_eq!(lines[end + 1].split_once("<<").unwrap().0, "total");
    assert_eq!(lines[end + 2], "3");
}

/// Test `id` of suite `pytest`, one attempt per `(status, message)`.
fn test(id: &str, attempts: &[(TestStatus, Option<&str>)]) -> TestRecord {
    let case = TestCase {
        id: id.to_owned(),
        group: "g".to_owned(),
        name: id.to_owned(),
        file: None,
    };
    let attempts = attempts
        .iter()
        .map(|(status, message)| TestResult {
            case: case.clone(),
            status: *status,
            duration_ms: 10,
            message: message.map(str::to_owned),
            output: String::new(),
            worker: Some("w-1".to_owned()),
        })
        .collect();
    TestRecord {
        suite: "pytest".to_owned(),
        case,
        attempts,
    }
}

/// A run of one suite alone: 4 passed, 1 failed twice with a three-line message, 1 error.
fn suites_alone() -> RunReport {
    let mut tests: Vec<TestRecord> = (0..4)
        .map(|i| test(&format!("t.py::ok{i}"), &[(TestStatus::Passed, None)]))
        .collect();
    let failure = Some("AssertionError: two and two make four\nassert (2 + 2) == 5\n\nthird");
    tests.push(test(
        "t.py::fails",
        &[(TestStatus::Failed, failure), (TestStatus::Failed, failure)],
    ));
    tests.push(test(
        "t.py::broken",
        &[(TestStatus::Error, Some("fixture 'db' not found"))],
    ));
    RunReport {
        tests,
        wall_ms: 2_000,
        ..RunReport::default()
    }
}

#[test]
fn markdown_of_a_run_of_suites_alone_counts_its_tests() {
    let md = suites_alone().to_markdown();
    assert!(
        md.starts_with(
            "## ❌ cluster-action: 2 of 6 tests did not pass\n\n\
             ✅ 4 passed · ❌ 1 failed · 💥 1 errors · 🕒 2s wall time\n"
        ),
        "{md}"
    );
    assert!(
        !md.contains("0 passed"),
        "no count of jobs it does not have: {md}"
    );
}

#[test]
fn the_end_of_the_log_lists_each_test_that_did_not_pass_with_the_first_lines_of_its_message() {
    assert_eq!(
        suites_alone().failed_tests_text().unwrap(),
        "=== tests that did not pass: 2 of 6 ===\n\
         FAILED pytest: t.py::fails (2 attempts) - AssertionError: two and two make four\n\
         \x20   assert (2 + 2) == 5\n\
         \x20   third\n\
         ERROR pytest: t.py::broken - fixture 'db' not found\n"
    );
    let green = RunReport {
        tests: vec![test("t.py::ok", &[(TestStatus::Passed, None)])],
        ..RunReport::default()
    };
    assert_eq!(green.failed_tests_text(), None);
}

#[test]
fn the_end_of_the_log_stays_bounded_for_long_messages_and_many_failures() {
    let long = format!("{}\n", "x".repeat(1_000)).repeat(50);
    let tests: Vec<TestRecord> = (0..250)
        .map(|i| test(&format!("t{i}"), &[(TestStatus::Failed, Some(&long))]))
        .collect();
    let report = RunReport {
        tests,
        ..RunReport::default()
    };
    let text = report.failed_tests_text().unwrap();
    assert_eq!(text.matches("FAILED ").count(), 100, "the first 100 tests");
    assert!(
        text.ends_with("… and 150 more: the JSON report and the job summary list every test\n")
    );
    let first: Vec<&str> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.contains("t1 "))
        .collect();
    assert_eq!(first.len(), 5, "5 lines of a message: {first:?}");
    assert!(
        first.iter().all(|l| l.chars().count() < 260),
        "each line cut"
    );
    assert!(text.len() < 150_000, "{} bytes", text.len());
}

#[test]
fn a_test_that_ends_is_named_with_the_first_line_of_its_message() {
    let ended = |attempt, status, message: Option<&str>, outcome| TestEnded {
        suite: "pytest".to_owned(),
        id: "t.py::fails".to_owned(),
        attempt,
        status,
        message: message.map(str::to_owned),
        outcome,
    };
    let message = Some("\u{1b}[31mAssertionError\u{1b}[0m: two\nassert 4 == 5");
    let lines = [
        ended(1, TestStatus::Failed, message, None),
        ended(2, TestStatus::Failed, message, Some(FinalStatus::Failed)),
        ended(1, TestStatus::Error, None, Some(FinalStatus::Error)),
        ended(2, TestStatus::Passed, None, Some(FinalStatus::Flaky)),
        ended(0, TestStatus::NotRun, None, Some(FinalStatus::Error)),
    ]
    .map(|e| test_line(&e).unwrap());
    assert_eq!(
        lines,
        [
            "RETRY pytest: t.py::fails (attempt 1) - AssertionError: two",
            "FAILED pytest: t.py::fails (attempt 2) - AssertionError: two",
            "ERROR pytest: t.py::fails",
            "FLAKY pytest: t.py::fails (passed on attempt 2)",
            "ERROR pytest: t.py::fails - its batch stopped before it finished",
        ]
    );
    let passed = ended(1, TestStatus::Passed, None, Some(FinalStatus::Passed));
    assert_eq!(test_line(&passed), None, "a pass is only counted");
}

#[test]
fn a_run_cut_short_counts_the_jobs_and_the_tests_that_did_not_run() {
    let never = JobReport {
        attempts: 0,
        ..job("never", JobStatus::Error)
    };
    let jobs = RunReport {
        jobs: vec![job("ran", JobStatus::Passed), never.clone()],
        ..RunReport::default()
    };
    assert_eq!(jobs.unfinished_counts(), "1 of 2 job(s)");
    let mut tests = suites_alone();
    tests.tests.push(test("t.py::queued", &[]));
    tests
        .tests
        .push(test("t.py::lost", &[(TestStatus::NotRun, None)]));
    assert_eq!(tests.unfinished_counts(), "2 of 8 test(s)");
    tests.jobs = vec![never];
    assert_eq!(
        tests.unfinished_counts(),
        "1 of 1 job(s) and 2 of 8 test(s)"
    );
}

#[test]
fn the_fenced_list_of_tests_that_did_not_pass_runs_no_workflow_command() {
    let hostile = "boom\n  ::add-mask::secret\n::error::injected\n::endgroup::";
    let report = RunReport {
        tests: vec![test(
            "::warning::id",
            &[(TestStatus::Failed, Some(hostile))],
        )],
        ..RunReport::default()
    };
    let text = report.failed_tests_text().unwrap();
    assert_eq!(
        commands_seen(&text),
        ["add-mask", "error", "endgroup"],
        "unfenced, the message's lines would be commands"
    );
    let log = fenced(&text);
    assert_eq!(commands_seen(&log), Vec::<String>::new(), "{log}");
    assert!(log.contains(&text), "the list verbatim: {log}");
}
