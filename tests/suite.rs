//! Real test frameworks through `cluster_action::suite`, on the fixtures in tests/fixtures/:
//! list on the "runner", split into batches, run each batch command with bash in its own job
//! directory (a copy of the fixture plus the shipped files, as layers would make it), parse
//! the framework's report, retry what failed with `CLUSTER_ATTEMPT=2`, and check that every
//! test is reported exactly once with the right status and that the merged JUnit counts what
//! the framework counts when it runs the whole suite alone.
//!
//! Tools: `cargo-nextest`, `go` and a `python` with pytest are looked up on PATH, after the
//! directories in `CLUSTER_TEST_TOOLS` (colon-separated; scripts/test.sh sets it to the test
//! virtualenv's `bin`). Outside CI a missing tool skips its tests with a message; under
//! `CI=true` it fails them.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use cluster_action::suite::junit::merged;
use cluster_action::suite::{
    ATTEMPT_ENV, Framework, Listing, Split, Suite, SuiteError, TestCase, TestResult, TestStatus,
};
use cluster_action::suite::{FinalStatus, TestRecord};

mod common;
use common::await_some;
use common::local::{
    LocalRun, alone, available, copy_of, fixture, fixture_target_dir, junit_counts, local,
    local_in_copy, spawn_batch, spawn_batch_held, tools_path,
};

/// Sets up the environment every framework here runs in, once per test process: the tool
/// directories first on PATH, the cargo fixture's builds in this build's temporary directory,
/// no bytecode written into the fixtures.
fn environment() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let (path, target) = (tools_path(), fixture_target_dir());
        // SAFETY: runs before any test of this process starts a child or reads these
        // variables (every test calls it first; Once makes the others wait), and only Rust code
        // touches the environment here, through std's lock.
        unsafe {
            std::env::set_var("PATH", path);
            std::env::set_var("CARGO_TARGET_DIR", target);
            std::env::set_var("PYTHONDONTWRITEBYTECODE", "1");
        }
    });
}

/// Whether `program` (with `probe` arguments) runs; a missing tool fails the test under CI.
fn have(program: &str, probe: &[&str]) -> bool {
    environment();
    available(program, probe)
}

/// The fixture of `framework` listed with `args`, or `None` when the framework's tool is
/// missing (outside CI; under CI that fails the test). Builds go to a temporary directory.
fn listed(framework: Framework, args: &[&str]) -> Option<Fixture> {
    let (name, probe): (&str, &[&str]) = match framework {
        Framework::Nextest => ("suite-cargo", &["cargo-nextest", "nextest", "--version"]),
        Framework::Pytest => ("suite-pytest", &["python", "-m", "pytest", "--version"]),
        Framework::Go => ("suite-go", &["go", "version"]),
        Framework::Rspec => ("suite-rspec", &["rspec", "--version"]),
        Framework::Minitest => ("suite-minitest", &["ruby", "-e", "require 'minitest'"]),
        Framework::Command { .. } => unreachable!("command suites have no fixture"),
        Framework::Jest => unreachable!("tests/suite_jest.rs runs the jest fixture"),
        Framework::Vitest => unreachable!("tests/suite_vitest.rs runs the vitest fixture"),
        Framework::Playwright => unreachable!("tests/suite_playwright.rs runs playwright"),
    };
    if !have(probe[0], &probe[1..]) {
        return None;
    }
    let source = fixture(name);
    let work = tempfile::tempdir().unwrap();
    let listing = suite(framework.name(), framework, args)
        .list(&source, work.path())
        .unwrap_or_else(|e| panic!("{e}"));
    Some(Fixture {
        source,
        listing,
        _work: work,
    })
}

/// A listed fixture.
struct Fixture {
    source: PathBuf,
    listing: Listing,
    _work: tempfile::TempDir,
}

fn suite(name: &str, framework: Framework, args: &[&str]) -> Suite {
    Suite {
        name: name.into(),
        framework,
        args: args.iter().map(|a| a.to_string()).collect(),
    }
}

/// A job directory for one batch: the fixture (the suite's layer) and the shipped files.
fn job_dir(listing: &Listing, source: &Path) -> tempfile::TempDir {
    let dir = copy_of(source);
    for file in &listing.ship {
        let dest = dir.path().join(&file.dest);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&file.source, dest).unwrap();
    }
    dir
}

/// The batch command of `batch` as a worker would start it: bash in a fresh job directory,
/// in its own process group, with the report path and attempt in its environment.
fn start_batch(listing: &Listing, source: &Path, batch: &[TestCase], attempt: u32) -> Batch {
    let dir = job_dir(listing, source);
    let report = dir.path().join("report.out");
    let child = spawn_batch(dir.path(), &listing.batch_command(batch), &report, attempt);
    Batch {
        _dir: dir,
        report,
        child,
    }
}

/// A running batch.
struct Batch {
    _dir: tempfile::TempDir,
    report: PathBuf,
    child: std::process::Child,
}

impl Batch {
    /// Waits for the batch to end and returns its report, if it wrote one.
    fn finish(mut self) -> Option<Vec<u8>> {
        let mut out = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out).unwrap();
        self.child.wait().unwrap();
        std::fs::read(&self.report).ok()
    }
}

/// Runs `batch` and parses its report.
fn run_batch(
    listing: &Listing,
    source: &Path,
    batch: &[TestCase],
    attempt: u32,
) -> Vec<TestResult> {
    let report = start_batch(listing, source, batch, attempt).finish();
    listing.parse_report(report.as_deref(), batch)
}

/// Deals the listing's units into `n` batches, round robin.
fn batches(listing: &Listing, split: Split, n: usize) -> Vec<Vec<TestCase>> {
    let mut batches = vec![Vec::new(); n];
    for (i, unit) in listing.units(split).into_iter().enumerate() {
        batches[i % n].extend(unit);
    }
    batches.retain(|b| !b.is_empty());
    batches
}

/// The whole cluster's part, on one machine: 3 batches at attempt 1, then one retry batch of
/// everything that failed at attempt 2. Returns the record of every test.
fn run_suite(listing: &Listing, source: &Path, split: Split) -> Vec<TestRecord> {
    let mut records: BTreeMap<String, TestRecord> = BTreeMap::new();
    let mut add = |result: TestResult| {
        records
            .entry(result.case.id.clone())
            .or_insert_with(|| TestRecord {
                suite: listing.suite.name.clone(),
                case: result.case.clone(),
                attempts: Vec::new(),
            })
            .attempts
            .push(result);
    };
    let mut failed = Vec::new();
    let mut reported = 0;
    for batch in batches(listing, split, 3) {
        let results = run_batch(listing, source, &batch, 1);
        assert_eq!(results.len(), batch.len());
        reported += results.len();
        for result in results {
            if matches!(result.status, TestStatus::Failed | TestStatus::Error) {
                failed.push(result.case.clone());
            }
            add(result);
        }
    }
    assert_eq!(reported, listing.tests.len(), "every test ran exactly once");
    for result in run_batch(listing, source, &failed, 2) {
        add(result);
    }
    records.into_values().collect()
}

/// Checks the records against the expected final status of every test id, and the merged
/// JUnit against itself and against `alone`, the framework's counts for the whole suite
/// run on one machine with `CLUSTER_ATTEMPT=2`.
fn check(
    records: &[TestRecord],
    expected: &[(&str, FinalStatus)],
    alone: (usize, usize, usize, usize),
) {
    let got: BTreeMap<&str, FinalStatus> = records
        .iter()
        .map(|r| (r.case.id.as_str(), r.status()))
        .collect();
    let want: BTreeMap<&str, FinalStatus> = expected.iter().copied().collect();
    assert_eq!(got, want);
    let flaky = records
        .iter()
        .find(|r| r.status() == FinalStatus::Flaky)
        .unwrap();
    assert_eq!(flaky.entry().attempts, 2);
    let xml = merged(records, |_| false);
    let counts = junit_counts(&xml);
    assert_eq!(
        counts, alone,
        "merged JUnit against the framework alone:\n{xml}"
    );
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("tests"), Some(counts.0.to_string().as_str()));
    assert_eq!(
        root.attribute("failures"),
        Some(counts.1.to_string().as_str())
    );
    let flaky_case = doc
        .descendants()
        .find(|n| n.has_tag_name("flakyFailure"))
        .expect("the flaky test carries a flakyFailure")
        .parent()
        .unwrap();
    assert_eq!(flaky_case.attribute("name"), Some(flaky.case.name.as_str()));
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert!(
        failure
            .text()
            .unwrap_or_default()
            .contains("two and two make"),
        "a failure carries the test's own message: {xml}"
    );
}

/// Runs `program args` in a copy of `source` with `CLUSTER_ATTEMPT=2` and returns its output.
fn run_alone(source: &Path, program: &str, args: &[&str]) -> (tempfile::TempDir, String) {
    let dir = copy_of(source);
    let out = alone(dir.path(), program, args, &[(ATTEMPT_ENV, "2")]);
    (dir, String::from_utf8_lossy(&out.stdout).into_owned())
}

use FinalStatus::{Failed, Flaky, Passed};

/// The nextest fixture's tests and how each ends (with a retry).
const NEXTEST_EXPECTED: [(&str, FinalStatus); 6] = [
    ("suite-fixture tests::adds", Passed),
    ("suite-fixture tests::slow", Passed),
    ("suite-fixture tests::fails", Failed),
    ("suite-fixture tests::flaky", Flaky),
    ("suite-fixture::more adds", Passed),
    ("suite-fixture::more also_passes", Passed),
];

/// The pytest fixture's tests and how each ends (with a retry).
const PYTEST_EXPECTED: [(&str, FinalStatus); 7] = [
    ("test_math.py::test_adds", Passed),
    ("test_math.py::test_slow", Passed),
    ("test_math.py::test_fails", Failed),
    ("test_math.py::test_param[1]", Passed),
    ("test_math.py::test_param[2]", Passed),
    ("test_more.py::test_flaky", Flaky),
    ("test_more.py::TestGroup::test_method", Passed),
];

/// The go fixture's tests and how each ends (with a retry).
const GO_EXPECTED: [(&str, FinalStatus); 6] = [
    ("example.com/suitefix/calc TestAdd", Passed),
    ("example.com/suitefix/calc TestSlow", Passed),
    ("example.com/suitefix/calc TestFails", Failed),
    ("example.com/suitefix/calc TestFlaky", Flaky),
    ("example.com/suitefix/strs TestAdd", Passed),
    ("example.com/suitefix/strs TestUpper", Passed),
];

/// nextest's own JUnit counts for the whole fixture run alone.
fn nextest_alone(source: &Path) -> (usize, usize, usize, usize) {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("alone.toml");
    std::fs::write(
        &config,
        "[profile.alone]\nfail-fast = false\n[profile.alone.junit]\npath = \"junit.xml\"\n",
    )
    .unwrap();
    let tool = format!("alone:{}", config.display());
    let (dir, _) = run_alone(
        source,
        "cargo-nextest",
        &[
            "nextest",
            "run",
            "--tool-config-file",
            &tool,
            "--profile",
            "alone",
        ],
    );
    // nextest's store is under the workspace, whatever the target directory.
    let junit = std::fs::read_to_string(dir.path().join("target/nextest/alone/junit.xml"))
        .unwrap_or_else(|e| panic!("nextest's own JUnit in {}: {e}", dir.path().display()));
    junit_counts(&junit)
}

/// pytest's own JUnit counts for the whole fixture run alone.
fn pytest_alone(source: &Path) -> (usize, usize, usize, usize) {
    let (dir, _) = run_alone(source, "python", &["-m", "pytest", "--junitxml=alone.xml"]);
    let junit = std::fs::read_to_string(dir.path().join("alone.xml")).unwrap();
    junit_counts(&junit)
}

/// go test's counts for the whole fixture run alone (it has no JUnit: its top-level results
/// in `go test -v`).
fn go_alone(source: &Path) -> (usize, usize, usize, usize) {
    let (_dir, out) = run_alone(source, "go", &["test", "-v", "-count=1", "./..."]);
    let count = |word: &str| {
        out.lines()
            .filter(|l| l.starts_with(&format!("--- {word}: ")))
            .count()
    };
    (
        count("PASS") + count("FAIL") + count("SKIP"),
        count("FAIL"),
        0,
        count("SKIP"),
    )
}

#[test]
fn nextest_batches_report_every_test_once() {
    let Some(Fixture {
        source,
        listing,
        _work,
    }) = listed(Framework::Nextest, &[])
    else {
        return;
    };
    assert_eq!(listing.tests.len(), 6);
    assert_eq!(listing.ship.len(), 2, "the archive and cargo-nextest");
    let records = run_suite(&listing, &source, Split::Test);
    check(&records, &NEXTEST_EXPECTED, nextest_alone(&source));
}

#[test]
fn pytest_batches_report_every_test_once_keeping_files_together() {
    let Some(Fixture {
        source,
        listing,
        _work,
    }) = listed(Framework::Pytest, &["-q"])
    else {
        return;
    };
    assert_eq!(listing.tests.len(), 7);
    for batch in batches(&listing, Split::File, 3) {
        let files: std::collections::BTreeSet<_> = batch.iter().map(|t| &t.file).collect();
        assert_eq!(files.len(), 1, "split: file keeps a file in one batch");
    }
    let records = run_suite(&listing, &source, Split::File);
    check(&records, &PYTEST_EXPECTED, pytest_alone(&source));
}

#[test]
fn pytest_options_given_as_two_words_reach_the_batches_with_their_values() {
    // Each value names something that exists here: none may be taken for a path to collect.
    let args = [
        "--rootdir",
        ".",
        "-c",
        "pytest.ini",
        "--confcutdir",
        ".",
        "-p",
        "no:cacheprovider",
        "-m",
        "not slow",
        "-k",
        "test_math.py and (adds or fails)",
    ];
    let Some(Fixture {
        source,
        listing,
        _work,
    }) = listed(Framework::Pytest, &args)
    else {
        return;
    };
    let ids: Vec<&str> = listing.tests.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["test_math.py::test_adds", "test_math.py::test_fails"]);
    let results = run_batch(&listing, &source, &listing.tests, 1);
    let got: Vec<(&str, TestStatus)> = results
        .iter()
        .map(|r| (r.case.id.as_str(), r.status))
        .collect();
    assert_eq!(
        got,
        [
            ("test_math.py::test_adds", TestStatus::Passed),
            ("test_math.py::test_fails", TestStatus::Failed),
        ]
    );
}

#[test]
fn go_batches_report_every_test_once() {
    let Some(Fixture {
        source,
        listing,
        _work,
    }) = listed(Framework::Go, &["./..."])
    else {
        return;
    };
    assert_eq!(listing.tests.len(), 6);
    let binaries = listing
        .ship
        .iter()
        .filter(|file| file.dest.extension() == Some("test".as_ref()))
        .count();
    assert_eq!(binaries, 2, "one test binary per package (and test2json)");
    let records = run_suite(&listing, &source, Split::Test);
    check(&records, &GO_EXPECTED, go_alone(&source));
}

/// Runs the tests of `listing` named `names` as one batch, follows its output until a line
/// contains `marker`, then SIGKILLs the batch's process group (as a worker's loss would end
/// it) and parses what the report holds. Returns each test's status by name.
fn kill_part_way(
    listing: &Listing,
    source: &Path,
    names: &[&str],
    marker: &str,
) -> BTreeMap<String, TestStatus> {
    let batch: Vec<TestCase> = names
        .iter()
        .map(|name| {
            listing
                .tests
                .iter()
                .find(|t| t.name == *name)
                .unwrap()
                .clone()
        })
        .collect();
    let dir = job_dir(listing, source);
    let file = dir.path().join("report.out");
    // go writes progress only to its report, so follow the report itself there; nextest and
    // pytest print their progress as they write it.
    let follow_report = listing.suite.framework == Framework::Go;
    let report = if follow_report {
        PathBuf::from("/dev/stdout")
    } else {
        file.clone()
    };
    let mut child = spawn_batch_held(dir.path(), &listing.batch_command(&batch), &report);
    let mut seen = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "ended before {marker:?}"
        );
        seen.extend_from_slice(line.as_bytes());
        if line.contains(marker) {
            break;
        }
    }
    if !follow_report {
        // The batch tees its progress to stdout and to the report: the line can reach us
        // before the report, and a kill in between would lose what the test means to keep.
        await_some("the marker in the report", || {
            std::fs::read_to_string(&file)
                .is_ok_and(|text| text.contains(marker))
                .then_some(())
        });
    }
    let pgid = i32::try_from(child.id()).unwrap();
    // SAFETY: a plain syscall on the process group of the child started above.
    assert_eq!(unsafe { libc::killpg(pgid, libc::SIGKILL) }, 0);
    std::io::Read::read_to_end(lines.get_mut(), &mut seen).unwrap();
    child.wait().unwrap();
    let bytes = if follow_report {
        Some(seen)
    } else {
        std::fs::read(&file).ok()
    };
    listing
        .parse_report(bytes.as_deref(), &batch)
        .into_iter()
        .map(|r| (r.case.name, r.status))
        .collect()
}

/// `names` with `status` each, for comparing with [`kill_part_way`].
fn statuses(names: &[(&str, TestStatus)]) -> BTreeMap<String, TestStatus> {
    names.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

#[test]
fn a_go_batch_killed_part_way_keeps_what_finished() {
    let Some(Fixture {
        source,
        listing,
        _work,
    }) = listed(Framework::Go, &["./calc"])
    else {
        return;
    };
    let names = ["TestAdd", "TestSlow", "TestFails", "TestFlaky"];
    let got = kill_part_way(&listing, &source, &names, "=== RUN   TestSlow");
    use TestStatus::*;
    let want = [
        ("TestAdd", Passed),
        ("TestSlow", NotRun),
        ("TestFails", NotRun),
        ("TestFlaky", NotRun),
    ];
    assert_eq!(got, statuses(&want));
}

#[test]
fn a_pytest_batch_killed_part_way_keeps_what_finished() {
    let Some(Fixture {
        source,
        listing,
        _work,
    }) = listed(Framework::Pytest, &[])
    else {
        return;
    };
    let names = ["test_adds", "test_slow", "test_fails"];
    let got = kill_part_way(&listing, &source, &names, "test_adds PASSED");
    use TestStatus::*;
    let want = [
        ("test_adds", Passed),
        ("test_slow", NotRun),
        ("test_fails", NotRun),
    ];
    assert_eq!(got, statuses(&want));
}

#[test]
fn a_nextest_batch_killed_part_way_keeps_what_finished() {
    let Some(Fixture {
        source,
        listing,
        _work,
    }) = listed(Framework::Nextest, &["--lib"])
    else {
        return;
    };
    let names = ["tests::adds", "tests::slow"];
    let got = kill_part_way(&listing, &source, &names, "suite-fixture tests::adds");
    use TestStatus::*;
    let want = [("tests::adds", Passed), ("tests::slow", NotRun)];
    assert_eq!(got, statuses(&want));
}

#[test]
fn a_command_suite_reports_unreported_tests_as_errors() {
    environment();
    let dir = tempfile::tempdir().unwrap();
    // The run command writes JUnit for every id it gets except `c`.
    let run = r#"{ echo '<testsuite name="s">'; for id in "$@"; do [ "$id" = c ] || echo "<testcase classname=\"s\" name=\"$id\"/>"; done; echo '</testsuite>'; } > "$CLUSTER_JUNIT""#;
    let framework = Framework::Command {
        list: "printf 'a\\nb b\\n\\nc\\n'".into(),
        run: run.into(),
    };
    let listing = suite("cmd", framework, &[])
        .list(dir.path(), dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = listing.tests.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a", "b b", "c"]);
    let results = run_batch(&listing, dir.path(), &listing.tests, 1);
    let status: Vec<TestStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        status,
        [TestStatus::Passed, TestStatus::Passed, TestStatus::Error]
    );
    assert!(
        results[2]
            .message
            .as_deref()
            .unwrap()
            .contains("not reported")
    );
    let killed = listing.parse_report(None, &listing.tests);
    assert!(killed.iter().all(|r| r.status == TestStatus::NotRun));
}

#[test]
fn listing_problems_are_the_users_to_fix() {
    environment();
    let dir = tempfile::tempdir().unwrap();
    let failing = Framework::Command {
        list: "echo listing >&2; echo 'no such suite' >&2; exit 3".into(),
        run: "true".into(),
    };
    let err = suite("cmd", failing, &[])
        .list(dir.path(), dir.path())
        .unwrap_err();
    assert!(matches!(err, SuiteError::ListFailed { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(message.ends_with("listing\nno such suite"), "{message}");
    let empty = Framework::Command {
        list: "true".into(),
        run: "true".into(),
    };
    let err = suite("cmd", empty, &[])
        .list(dir.path(), dir.path())
        .unwrap_err();
    assert!(matches!(err, SuiteError::NoTests { .. }), "{err}");
    assert!(err.to_string().contains("no tests match"), "{err}");
}

#[test]
fn pytest_listing_problems_name_their_cause() {
    if !have("python", &["-m", "pytest", "--version"]) {
        return;
    }
    let source = fixture("suite-pytest");
    let work = tempfile::tempdir().unwrap();
    let err = suite("py", Framework::Pytest, &["-k", "no_test_is_called_this"])
        .list(&source, work.path())
        .unwrap_err();
    assert!(matches!(err, SuiteError::NoTests { .. }), "{err}");
    let err = suite("py", Framework::Pytest, &["missing_dir/"])
        .list(&source, work.path())
        .unwrap_err();
    assert!(matches!(err, SuiteError::ListFailed { .. }), "{err}");
    assert!(err.to_string().contains("missing_dir"), "{err}");
}

// Through `cluster-action local`: the runner lists, plans, ships and retries; workers run the
// batches; the reports come back per test.

/// `cluster-action local` on `workers` workers in a copy of `source`, one retry per test,
/// with `args` (shorthands).
fn retried(source: &Path, workers: u32, args: &[&str]) -> LocalRun {
    let local = local_in_copy(source).workers(workers);
    local.args(&["--test-retries", "1"]).args(args).run()
}

/// Checks a `local` run: every expected test reported once, with its status; attempts are 1
/// for a pass, 2 (one retry) for a failure or a flaky test; the merged JUnit counts equal the
/// framework's alone; the flaky test makes no failure (`--flaky-result pass`), the failing one
/// exit 1.
fn check_local(
    run: LocalRun,
    expected: &[(&str, FinalStatus)],
    alone: (usize, usize, usize, usize),
) {
    let (code, report, xml) = (run.code, &run.report, &run.junit);
    let tests = run.tests();
    let got = run.outcomes();
    assert_eq!(got.len(), tests.len(), "each test once: {report}");
    let want: BTreeMap<&str, (&str, u64)> = expected
        .iter()
        .map(|(id, status)| {
            let attempts = if *status == Passed { 1 } else { 2 };
            (*id, (status.name(), attempts))
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(junit_counts(xml), alone, "merged JUnit:\n{xml}");
    assert_eq!(report["test_summary"]["flaky"], 1);
    assert_eq!(code, 1, "a test failed");
}

#[test]
fn pytest_through_local_runs_every_test_once_plus_retries() {
    let Some(fixture) = listed(Framework::Pytest, &[]) else {
        return;
    };
    let run = retried(&fixture.source, 2, &["--pytest"]);
    check_local(run, &PYTEST_EXPECTED, pytest_alone(&fixture.source));
}

#[test]
fn a_failing_test_is_named_with_its_message_as_it_fails_and_in_the_list_at_the_end() {
    let Some(fixture) = listed(Framework::Pytest, &[]) else {
        return;
    };
    let run = local_in_copy(&fixture.source)
        .workers(2)
        .args(&["--test-retries", "1", "--pytest"])
        .env("CI", "true")
        .run();
    let stdout = &run.stdout;
    assert_eq!(run.code, 1, "a test failed:\n{stdout}");
    let (live, end) = stdout
        .split_once("=== tests that did not pass: 1 of 7 ===\n")
        .unwrap_or_else(|| panic!("a list of the tests that did not pass:\n{stdout}"));
    let failure = "pytest: test_math.py::test_fails";
    let message = "AssertionError: two and two make four";
    let lines: Vec<&str> = live.lines().collect();
    let first = format!("RETRY {failure} (attempt 1) - {message}");
    let at = lines
        .iter()
        .position(|l| *l == first)
        .unwrap_or_else(|| panic!("`{first}` as it failed:\n{stdout}"));
    let counts = lines[at..]
        .iter()
        .find(|l| l.contains(" tests: "))
        .unwrap_or_else(|| panic!("a line of counts after its batch:\n{stdout}"));
    assert!(
        !counts.starts_with("7/7 "),
        "shown while tests were still to run: {counts}"
    );
    let last = format!("FAILED {failure} (attempt 2) - {message}");
    assert!(lines.contains(&last.as_str()), "`{last}`:\n{stdout}");
    assert!(
        live.contains("7/7 tests: 5 passed, 1 not passed, 1 flaky"),
        "every test counted:\n{stdout}"
    );
    assert_eq!(
        end,
        format!("FAILED {failure} (2 attempts) - {message}\n    assert (2 + 2) == 5\n")
    );
}

#[test]
fn a_pytest_suite_in_a_subdirectory_runs_from_the_checkout_root() {
    let Some(fixture) = listed(Framework::Pytest, &[]) else {
        return;
    };
    // The fixture's pytest.ini would make its own directory the rootdir, and node ids
    // relative to it name no file from the checkout root, where the batches run.
    let checkout = tempfile::tempdir().unwrap();
    common::copy_tree(&fixture.source, &checkout.path().join("sub"));
    let expected: Vec<(String, FinalStatus)> = PYTEST_EXPECTED
        .iter()
        .map(|(id, status)| (format!("sub/{id}"), *status))
        .collect();
    let expected: Vec<(&str, FinalStatus)> =
        expected.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    let run = retried(checkout.path(), 1, &["--pytest", "sub"]);
    check_local(run, &expected, pytest_alone(&fixture.source));
}

#[test]
fn go_through_local_runs_every_test_once_plus_retries() {
    let Some(fixture) = listed(Framework::Go, &["./..."]) else {
        return;
    };
    let run = retried(&fixture.source, 2, &["--go-test", "./..."]);
    check_local(run, &GO_EXPECTED, go_alone(&fixture.source));
}

#[test]
fn nextest_through_local_runs_every_test_once_plus_retries() {
    let Some(fixture) = listed(Framework::Nextest, &[]) else {
        return;
    };
    let run = retried(&fixture.source, 2, &["--nextest"]);
    check_local(run, &NEXTEST_EXPECTED, nextest_alone(&fixture.source));
}

#[test]
fn a_clean_run_whose_retry_reaches_a_worker_idle_past_its_lease_prints_no_warning() {
    if !have("python", &["-m", "pytest", "--version"]) {
        return;
    }
    // A test that fails once after outliving the lease (half the peer timeout: 1 s) on one
    // worker, while the other worker, done with its only test, sits idle: the retry goes to
    // the idle worker (away from the one it failed on), whose lease lapsed meanwhile. That
    // lapse is normal and must not read as trouble.
    let source = tempfile::tempdir().unwrap();
    std::fs::write(
        source.path().join("test_slow.py"),
        "import os, time\n\ndef test_slow_then_flaky():\n    time.sleep(3)\n    \
         assert os.environ.get('CLUSTER_ATTEMPT') != '1'\n",
    )
    .unwrap();
    std::fs::write(
        source.path().join("test_ok.py"),
        "def test_ok():\n    pass\n",
    )
    .unwrap();
    let args = ["--slots", "1", "--peer-timeout", "2s", "--pytest"];
    let run = retried(source.path(), 2, &args);
    let (code, report, stderr) = (run.code, &run.report, &run.stderr);
    assert_eq!(code, 0, "a flaky test passes the run: {stderr}");
    assert_eq!(
        report["test_summary"]["flaky"], 1,
        "the retry ran: {report}"
    );
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings.is_empty(),
        "a clean run warns of nothing: {warnings:#?}"
    );
}

#[test]
fn a_worker_killed_mid_batch_loses_no_test() {
    environment();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("killed");
    // `t2`, on its first run, SIGKILLs the worker that runs it (the first `cluster-action`
    // among its ancestors) mid-batch; every test must still end passed.
    let run = format!(
        r#"for t in "$@"; do
  if [ "$t" = t2 ] && mkdir {marker} 2>/dev/null; then
    p=$$
    while [ "$p" -gt 1 ]; do
      p=$(awk '{{print $4}}' /proc/$p/stat)
      if [ "$(cat /proc/$p/comm)" = cluster-action ]; then kill -9 "$p"; sleep 5; fi
    done
  fi
done
{{ echo '<testsuite name="k">'; for t in "$@"; do echo "<testcase name=\"$t\"/>"; done; echo '</testsuite>'; }} > "$CLUSTER_JUNIT"
"#,
        marker = marker.display()
    );
    let manifest = serde_yaml::to_string(&serde_json::json!({
        "suites": [{
            "name": "k",
            "framework": "command",
            "list": "printf 't1\\nt2\\nt3\\nt4\\n'",
            "run": run,
        }]
    }))
    .unwrap();
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let run = retried(dir.path(), 2, &["cluster.yml", "--peer-timeout", "3s"]);
    let (code, report) = (run.code, &run.report);
    assert!(marker.exists(), "a worker was killed");
    let statuses: BTreeMap<&str, &str> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    let want: BTreeMap<&str, &str> = ["t1", "t2", "t3", "t4"].map(|t| (t, "passed")).into();
    assert_eq!(statuses, want, "{report}");
    assert_eq!(code, 0);
}

#[test]
fn a_failed_test_is_retried_on_another_worker() {
    environment();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first-worker");
    // `machine` fails on the worker it first ran on (as a test does whose machine is broken)
    // and passes anywhere else. `slow` keeps the other worker busy meanwhile: a retry that
    // took the free slot would fail again on the same worker.
    let run = format!(
        r#"for t in "$@"; do
  if [ "$t" = machine ]; then
    [ -e {first} ] || echo "$CLUSTER_WORKER" > {first}
    [ "$(cat {first})" = "$CLUSTER_WORKER" ] && failed=1
  else
    sleep 3
  fi
done
{{ echo '<testsuite name="m">'
for t in "$@"; do
  if [ "$t" = machine ] && [ -n "$failed" ]; then
    echo "<testcase name=\"$t\"><failure message=\"broken on $CLUSTER_WORKER\"/></testcase>"
  else
    echo "<testcase name=\"$t\"/>"
  fi
done
echo '</testsuite>'; }} > "$CLUSTER_JUNIT"
"#,
        first = first.display()
    );
    let manifest = serde_yaml::to_string(&serde_json::json!({
        "suites": [{
            "name": "m",
            "framework": "command",
            "list": "printf 'machine\\nslow\\n'",
            "run": run,
            "retries": 2,
        }]
    }))
    .unwrap();
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let run = retried(
        dir.path(),
        2,
        &["--slots", "1", "--prefetch", "0", "cluster.yml"],
    );
    let (code, report, xml) = (run.code, &run.report, &run.junit);
    let tests = report["tests"].as_array().unwrap();
    let machine = tests.iter().find(|t| t["id"] == "machine").unwrap();
    let first = std::fs::read_to_string(&first).unwrap();
    let workers: Vec<&str> = machine["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(
        (machine["status"].as_str(), machine["attempts"].as_u64()),
        (Some("flaky"), Some(2)),
        "{report}"
    );
    assert_eq!(workers.len(), 2, "{report}");
    assert_eq!(workers[0], first.trim(), "it failed where it first ran");
    assert_ne!(workers[1], workers[0], "the retry ran on the other worker");
    assert!(xml.contains(&format!("broken on {}", workers[0])), "{xml}");
    for t in tests.iter().filter(|t| t["id"] != "machine") {
        assert_eq!(t["status"], "passed", "{report}");
        assert_eq!(t["workers"].as_array().unwrap().len(), 1, "{report}");
    }
    assert_eq!(code, 0, "flaky passes");
}

/// `cluster-action local` with `args` in `dir` with PATH `path`: its exit code and standard
/// error.
fn local_error(dir: &Path, path: &str, args: &[&str]) -> (i32, String) {
    let run = local(dir).env("PATH", path).args(args).run();
    (run.code, run.stderr)
}

/// Asserts that a `local` run was refused as bad input (exit 2) with every one of `words` in
/// its one error message, and no warning beside it: its workers, which start while the runner
/// lists, find the cluster stopped when the listing fails, and that is no news for the user.
fn assert_bad_input((code, err): (i32, String), words: &[&str]) {
    assert_eq!(code, 2, "{err}");
    for word in words {
        assert!(err.contains(word), "{word:?} not in:\n{err}");
    }
    assert_eq!(err.matches(words[0]).count(), 1, "said twice:\n{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(warnings.is_empty(), "warnings beside the error:\n{err}");
}

#[test]
fn a_missing_framework_exits_2_naming_the_command_and_how_to_install_it() {
    environment();
    let dir = tempfile::tempdir().unwrap();
    let none = "/nonexistent";
    assert_bad_input(
        local_error(dir.path(), none, &["--go-test"]),
        &["`go` is not installed", "apt-get install golang-go"],
    );
    assert_bad_input(
        local_error(dir.path(), none, &["--nextest"]),
        &[
            "`cargo-nextest` is not installed",
            "cargo install --locked cargo-nextest",
        ],
    );
    assert_bad_input(
        local_error(dir.path(), none, &["--pytest"]),
        &["`python3` is not installed", "python -m pip install pytest"],
    );
    // A Python without pytest (a fresh virtual environment): pytest is what is missing.
    let venv = dir.path().join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !have("python3", &["-m", "venv", "--help"]) || !made {
        return;
    }
    let bin = venv.join("bin");
    assert_bad_input(
        local_error(dir.path(), bin.to_str().unwrap(), &["--pytest"]),
        &[
            "`pytest` is not installed",
            "python -m pytest`: no module named pytest",
            "install it into the Python on PATH: `python -m pip install pytest`",
        ],
    );
}

#[test]
fn a_failing_listing_exits_2_with_the_command_and_the_tail_of_its_stderr() {
    environment();
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var("PATH").unwrap();
    // 30 lines on stderr: the last ones are shown, not the first.
    let manifest = "suites:\n  - name: c\n    framework: command\n    list: 'for i in $(seq 1 30); do echo \"listing line $i\" >&2; done; echo no list here >&2; exit 4'\n    run: 'true'\n";
    std::fs::write(dir.path().join("bad.yml"), manifest).unwrap();
    let (code, err) = local_error(dir.path(), &path, &["bad.yml"]);
    assert_bad_input(
        (code, err.clone()),
        &[
            "suite 'c': `bash -c ",
            "failed (exit status: 4)",
            "listing line 30\nno list here",
        ],
    );
    assert!(!err.contains("listing line 5\n"), "only the tail:\n{err}");
}

#[test]
fn a_suite_with_no_tests_exits_2() {
    environment();
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var("PATH").unwrap();
    let manifest =
        "suites:\n  - name: c\n    framework: command\n    list: 'true'\n    run: 'true'\n";
    std::fs::write(dir.path().join("empty.yml"), manifest).unwrap();
    assert_bad_input(
        local_error(dir.path(), &path, &["empty.yml"]),
        &["suite 'c': no tests match", "check the suite's `args:`"],
    );
    // pytest selecting nothing, as nextest refuses to run no tests.
    let Some(fixture) = listed(Framework::Pytest, &[]) else {
        return;
    };
    let work = copy_of(&fixture.source);
    assert_bad_input(
        local_error(
            work.path(),
            &path,
            &["--pytest", "-k", "no_test_is_called_this"],
        ),
        &["suite 'pytest': no tests match", "no_test_is_called_this"],
    );
}

#[test]
fn a_listing_that_fails_after_the_runner_joined_ends_the_run_at_once() {
    // pytest's listing takes long enough for the runner to join the embedded broker first.
    // The runner leaves at once: its broker does not wait a peer timeout (60 s here) for it.
    environment();
    let Some(fixture) = listed(Framework::Pytest, &[]) else {
        return;
    };
    let work = copy_of(&fixture.source);
    let path = std::env::var("PATH").unwrap();
    let run = local(work.path())
        .env("PATH", &path)
        .args(&[
            "--peer-timeout",
            "60s",
            "--pytest",
            "-k",
            "no_test_is_called_this",
        ])
        .within(std::time::Duration::from_secs(30))
        .run();
    assert_bad_input(
        (run.code, run.stderr),
        &["suite 'pytest': no tests match", "no_test_is_called_this"],
    );
}

#[test]
fn a_second_run_plans_from_the_first_runs_timings_longest_first() {
    environment();
    let dir = tempfile::tempdir().unwrap();
    let order = dir.path().join("order");
    // Test `tN` sleeps N×0.1s; it appends its id to `order` as it runs.
    let run = format!(
        r#"for t in "$@"; do echo "$t" >> {order}; sleep "0.${{t#t}}"; done
{{ echo '<testsuite name="h">'; for t in "$@"; do echo "<testcase name=\"$t\" time=\"0.${{t#t}}\"/>"; done; echo '</testsuite>'; }} > "$CLUSTER_JUNIT"
"#,
        order = order.display()
    );
    let manifest = serde_yaml::to_string(&serde_json::json!({
        "suites": [{
            "name": "h",
            "framework": "command",
            "list": "printf 't1\\nt3\\nt2\\nt5\\nt4\\n'",
            "run": run,
        }]
    }))
    .unwrap();
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let timings = dir.path().join("timings.json");
    let timings = timings.to_str().unwrap();
    let ran = |args: &[&str]| {
        let _ = std::fs::remove_file(&order);
        let mut all = vec!["cluster.yml", "--slots", "1"];
        all.extend(args);
        let run = retried(dir.path(), 1, &all);
        assert_eq!(run.code, 0);
        std::fs::read_to_string(&order).unwrap()
    };
    ran(&["--write-timings", timings]);
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(timings).unwrap()).unwrap();
    assert_eq!(history["tests"].as_array().unwrap().len(), 5, "{history}");
    let second = ran(&["--timings", timings]);
    assert_eq!(
        second.lines().collect::<Vec<_>>(),
        ["t5", "t4", "t3", "t2", "t1"],
        "measured tests run longest first"
    );
}
