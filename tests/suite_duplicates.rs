//! A report that names a test more than once: the test's outcome is the worst the framework
//! reported for it, never the first. Driven as a user drives it, through `cluster-action local`
//! and a `command` suite whose run script writes the JUnit.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use common::local::{LocalRun, local};

/// Runs `local` on a `command` suite of tests `a` and `b` whose run script writes `junit` to
/// the report.
fn run_suite(junit: &str) -> LocalRun {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("report.xml"), junit).unwrap();
    let manifest = "suites:\n  - name: dup\n    framework: command\n    list: printf 'a\\nb\\n'\n    \
                    run: cp report.xml \"$CLUSTER_JUNIT\"\n    layers: [report]\n\
                    layers:\n  report: { paths: [report.xml] }\n";
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    local(dir.path()).args(&["cluster.yml"]).run()
}

#[test]
fn a_test_passing_then_failing_in_one_report_is_failed_and_the_run_exits_1() {
    let junit = "<testsuite name='dup'>\n\
                 <testcase name='a'/>\n\
                 <testcase name='b'/>\n\
                 <testcase name='a'><failure message='a broke the second time'/></testcase>\n\
                 </testsuite>\n";
    let run = run_suite(junit);
    assert_eq!(
        run.statuses_in_order(),
        [("a", "failed"), ("b", "passed")],
        "{}",
        run.stderr
    );
    assert_eq!(run.tests()[0]["message"], "a broke the second time");
    assert_eq!(run.code, 1, "{}", run.stderr);
}
