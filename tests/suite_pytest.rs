//! pytest suites through `cluster-action local --pytest`, as a user runs them: a project's
//! own pytest configuration (`addopts`) decides what is collected, as it does for `pytest`
//! alone, and changes nothing of how cluster-action lists and reads back the tests.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;
use common::local::{LocalRun, alone, fixture_copy, have_pytest, junit_counts, local, statuses_of};

/// `(tests, failures, errors, skipped)` of pytest alone on a copy of `fixture`, from its own
/// JUnit (its configuration applies; the JUnit path is this test's).
fn pytest_alone(fixture: &str) -> (usize, usize, usize, usize) {
    let dir = fixture_copy(fixture);
    let xml = dir.path().join("alone.xml");
    let junit = format!("--junitxml={}", xml.display());
    alone(
        dir.path(),
        "python",
        &["-m", "pytest", "-p", "no:cacheprovider", &junit],
        &[],
    );
    junit_counts(&std::fs::read_to_string(&xml).unwrap())
}

/// The same counts from a `local` run's JSON report.
fn counts(run: &LocalRun) -> (usize, usize, usize, usize) {
    let summary = &run.report["test_summary"];
    let count = |key: &str| usize::try_from(summary[key].as_u64().unwrap()).unwrap();
    (
        count("total"),
        count("failed"),
        count("errors"),
        count("skipped"),
    )
}

#[test]
fn pytest_addopts_quiet_and_junit_options_change_nothing() {
    if !have_pytest() {
        return;
    }
    let dir = fixture_copy("suite-pytest-addopts");
    let run = local(dir.path()).args(&["--pytest"]).run();
    let want = statuses_of(&[
        ("test_a.py::test_passes", "passed"),
        ("test_a.py::test_fails", "failed"),
        ("test_a.py::test_param[1]", "passed"),
        ("test_a.py::test_param[2]", "passed"),
        ("test_b.py::TestGroup::test_method", "passed"),
        ("test_b.py::test_skipped", "skipped"),
    ]);
    assert_eq!(run.statuses(), want, "{}", run.stderr);
    assert!(
        run.message("test_a.py::test_fails")
            .contains("two and two make four"),
        "{}",
        run.report
    );
    assert_eq!(counts(&run), pytest_alone("suite-pytest-addopts"));
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
}

#[test]
fn pytest_addopts_markers_select_what_is_listed_and_run() {
    if !have_pytest() {
        return;
    }
    let dir = fixture_copy("suite-pytest-markers");
    // The general form of the shorthand, `--tests FRAMEWORK [ARGS]`, names the framework.
    let run = local(dir.path()).args(&["--tests", "pytest"]).run();
    let want = statuses_of(&[
        ("test_marked.py::test_fast", "passed"),
        ("test_marked.py::test_also_fast", "passed"),
    ]);
    assert_eq!(run.statuses(), want, "{}", run.stderr);
    assert_eq!(counts(&run), pytest_alone("suite-pytest-markers"));
    assert_eq!(run.code, 0, "the slow test is deselected: {}", run.stderr);
}

#[test]
fn a_junitxml_among_the_suites_arguments_does_not_replace_the_batchs_own() {
    if !have_pytest() {
        return;
    }
    let dir = fixture_copy("suite-pytest-markers");
    let run = local(dir.path())
        .args(&["--pytest", "--junitxml=mine.xml", "-rA"])
        .run();
    let want = statuses_of(&[
        ("test_marked.py::test_fast", "passed"),
        ("test_marked.py::test_also_fast", "passed"),
    ]);
    assert_eq!(run.statuses(), want, "{}", run.stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
}
