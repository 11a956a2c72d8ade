//! Vitest suites, on tests/fixtures/suite-vitest with the node_modules of tests/frameworks (as
//! a user's checkout after `npm ci`): through `cluster-action local --tests vitest` as a user
//! runs them, and batch by batch through `cluster_action::suite` for what a whole run cannot
//! show (which tests a batch ran, a batch killed part-way, a file that fails to load on a
//! worker). The fixture has two Vitest projects: tests/shared.test.mjs runs in both.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use cluster_action::history::local_file;
use cluster_action::suite::{
    ATTEMPT_ENV, Framework, Listing, REPORT_ENV, Suite, TestCase, TestKey, TestStatus,
};

mod common;
use common::await_some;
use common::framework::assert_refused;
use common::local::{
    alone, available, fixture_copy, js_fixture_with_only, junit_counts, local, local_manifest,
    spawn_batch_held, tools_path,
};

/// The fixture's tests: id, final status and attempts with one retry.
const EXPECTED: [(&str, &str, u64); 13] = [
    (
        "[shared] tests/shared.test.mjs > in every project",
        "passed",
        1,
    ),
    (
        "[unit] tests/shared.test.mjs > in every project",
        "passed",
        1,
    ),
    (
        "[unit] tests/math.test.mjs > math > adding > adds two and two",
        "passed",
        1,
    ),
    (
        "[unit] tests/math.test.mjs > math > adding > add(1, 1) -> 2",
        "passed",
        1,
    ),
    (
        "[unit] tests/math.test.mjs > math > adding > add(2, 3) -> 5",
        "passed",
        1,
    ),
    ("[unit] tests/math.test.mjs > math > fails", "failed", 2),
    ("[unit] tests/slow.test.mjs > slow", "passed", 1),
    (
        "[unit] tests/math.test.mjs > math > skipped for now",
        "skipped",
        1,
    ),
    ("[unit] tests/math.test.mjs > math > some day", "skipped", 1),
    (
        "[unit] tests/math.test.mjs > names: 'single' \"double\" [brackets] #hash $dollar \
         ünïcødé ✓ > with spaces, (parens) and {braces}",
        "passed",
        1,
    ),
    ("[unit] tests/math.test.mjs > outer > inner x", "passed", 1),
    ("[unit] tests/math.test.mjs > outer inner > x", "passed", 1),
    ("[unit] tests/math.test.mjs > flaky", "flaky", 2),
];

/// Whether node runs (see [`available`]).
fn have_node() -> bool {
    available("node", &["--version"])
}

/// A copy of the fixture with its node_modules, when node and the packages are there.
fn fixture() -> Option<tempfile::TempDir> {
    if !have_node() {
        return None;
    }
    js_fixture_with_only("suite-vitest", "vitest")
}

/// `(tests, failures, errors, skipped)` of Vitest alone on the whole of `dir`, from its own
/// JUnit, with `CLUSTER_ATTEMPT=2` (the flaky test passes).
fn vitest_alone(dir: &Path) -> (usize, usize, usize, usize) {
    let out = alone(
        dir,
        "node_modules/.bin/vitest",
        &["run", "--reporter=junit", "--outputFile=alone.xml"],
        &[(ATTEMPT_ENV, "2")],
    );
    let xml = std::fs::read_to_string(dir.join("alone.xml"))
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    junit_counts(&xml)
}

/// The fixture in `dir` listed as the suite `vitest`, with its listing's work directory.
fn listed(dir: &Path, args: &[&str]) -> (Listing, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let suite = Suite {
        name: "vitest".into(),
        framework: Framework::Vitest,
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    let listing = suite
        .list(dir, work.path())
        .unwrap_or_else(|e| panic!("{e}"));
    (listing, work)
}

#[test]
fn vitest_through_local_runs_every_test_once_plus_retries_and_records_its_timings() {
    let Some(dir) = fixture() else {
        return;
    };
    let history = tempfile::tempdir().unwrap();
    let timings = history.path().join("timings.json");
    let run = local(dir.path())
        .workers(2)
        .args(&["--test-retries", "1", "--write-timings"])
        .args(&[timings.to_str().unwrap(), "--tests", "vitest"])
        .run();
    let want: BTreeMap<&str, (&str, u64)> = EXPECTED
        .iter()
        .map(|(id, status, attempts)| (*id, (*status, *attempts)))
        .collect();
    assert_eq!(run.outcomes(), want, "{}", run.stderr);
    assert_eq!(run.report["test_summary"]["flaky"], 1, "{}", run.report);
    let message = run.message("[unit] tests/math.test.mjs > math > fails");
    assert!(
        message.starts_with("AssertionError: two and two make four: expected 4 to be 5"),
        "Vitest's own words: {message}"
    );
    assert!(
        run.junit.contains("about to fail"),
        "a failure carries the test's console output:\n{}",
        run.junit
    );
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
    assert_eq!(junit_counts(&run.junit), vitest_alone(dir.path()));

    // The next run lists the same ids, and finds the time of each test that passed in the
    // history (whose keys a re-run's selection uses too): the slow test measured longest.
    let timings = local_file::read(&timings).unwrap().unwrap();
    let (listing, _work) = listed(dir.path(), &[]);
    let ids: Vec<&str> = listing.tests.iter().map(|t| t.id.as_str()).collect();
    let mut want_ids: Vec<&str> = EXPECTED.iter().map(|(id, _, _)| *id).collect();
    want_ids.sort_unstable();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, want_ids);
    let estimate = |id: &str| timings.estimate_ms(&TestKey::new("vitest", id));
    let slow = "[unit] tests/slow.test.mjs > slow";
    let passed = EXPECTED.iter().filter(|(_, status, _)| *status == "passed");
    for (id, _, _) in passed {
        let ms = estimate(id).unwrap_or_else(|| panic!("no time for {id}"));
        if *id != slow {
            assert!(ms < estimate(slow).unwrap(), "{id}: {ms} ms");
        }
    }
    assert!(estimate(slow).unwrap() >= 900, "{:?}", estimate(slow));
}

/// A job directory for batches of `listing`: a copy of `dir` with the shipped files in place.
fn job_dir(listing: &Listing, dir: &Path) -> tempfile::TempDir {
    let job = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.display()))
        .arg(job.path())
        .status()
        .unwrap();
    assert!(status.success());
    for file in &listing.ship {
        let dest = job.path().join(&file.dest);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&file.source, dest).unwrap();
    }
    job
}

/// The tests of `listing` whose ids end with `names`, in that order.
fn batch_of(listing: &Listing, names: &[&str]) -> Vec<TestCase> {
    names
        .iter()
        .map(|name| {
            let found = listing.tests.iter().find(|t| t.id.ends_with(name));
            found.unwrap_or_else(|| panic!("{name}")).clone()
        })
        .collect()
}

/// Starts `batch` as a worker does, in `job` (its own process group), on attempt 1.
fn start(listing: &Listing, job: &Path, batch: &[TestCase]) -> Child {
    Command::new("bash")
        .arg("-c")
        .arg(listing.batch_command(batch))
        .current_dir(job)
        .env("PATH", tools_path())
        .env(REPORT_ENV, "report.out")
        .env(ATTEMPT_ENV, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// Runs `batch` to its end in `job`: each test's status and message by id, and the ids of
/// every test the report says ran.
fn run_batch(
    listing: &Listing,
    job: &Path,
    batch: &[TestCase],
) -> (BTreeMap<String, (TestStatus, String)>, Vec<String>) {
    let out = start(listing, job, batch).wait_with_output().unwrap();
    let report = std::fs::read(job.join("report.out"))
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let ran = String::from_utf8_lossy(&report)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| line["id"].as_str().map(str::to_owned))
        .collect();
    let results = listing.parse_report(Some(&report), batch);
    let results = results.into_iter().map(|r| {
        let message = r.message.unwrap_or_default();
        (r.case.id, (r.status, message))
    });
    (results.collect(), ran)
}

#[test]
fn a_batch_runs_exactly_its_tests_and_a_file_that_fails_to_load_makes_its_tests_errors() {
    let Some(dir) = fixture() else {
        return;
    };
    let (listing, _work) = listed(dir.path(), &[]);
    // `outer > inner x` and `outer inner > x` are both "outer inner x" to a name pattern.
    let job = job_dir(&listing, dir.path());
    let batch = batch_of(
        &listing,
        &[
            "> outer > inner x",
            "[unit] tests/shared.test.mjs > in every project",
        ],
    );
    let (results, ran) = run_batch(&listing, job.path(), &batch);
    let ids: Vec<&str> = batch.iter().map(|t| t.id.as_str()).collect();
    let mut ran_sorted: Vec<&str> = ran.iter().map(String::as_str).collect();
    ran_sorted.sort_unstable();
    let mut asked = ids.clone();
    asked.sort_unstable();
    assert_eq!(ran_sorted, asked, "the batch ran its tests, and no other");
    assert!(
        results.values().all(|(s, _)| *s == TestStatus::Passed),
        "{results:?}"
    );

    // A file that loads on the runner and not on the worker: its tests are errors with
    // Vitest's words, the other file's tests run.
    let job = job_dir(&listing, dir.path());
    let shared = job.path().join("tests/shared.test.mjs");
    let source = std::fs::read_to_string(&shared).unwrap();
    std::fs::write(
        &shared,
        format!("throw new Error(\"cannot load here\");\n{source}"),
    )
    .unwrap();
    let batch = batch_of(
        &listing,
        &[
            "[unit] tests/shared.test.mjs > in every project",
            "[shared] tests/shared.test.mjs > in every project",
            "> outer inner > x",
        ],
    );
    let (results, _) = run_batch(&listing, job.path(), &batch);
    for (id, (status, message)) in &results {
        if id.contains("shared.test.mjs") {
            assert_eq!(*status, TestStatus::Error, "{id}: {message}");
            assert!(message.contains("cannot load here"), "{id}: {message}");
        } else {
            assert_eq!(*status, TestStatus::Passed, "{id}: {message}");
        }
    }
    assert_eq!(results.len(), 3);

    // A file that declares one more test on the worker than where it was listed: Vitest's
    // ids, positions in the file, now name other tests. Those run, and are not taken for the
    // asked one, which is an error.
    let job = job_dir(&listing, dir.path());
    let math = job.path().join("tests/math.test.mjs");
    let source = std::fs::read_to_string(&math).unwrap();
    let (imports, rest) = source.split_once("\ndescribe(\"math\"").unwrap();
    let shifted =
        format!("{imports}\ntest(\"declared here only\", () => {{}});\ndescribe(\"math\"{rest}");
    std::fs::write(&math, shifted).unwrap();
    let batch = batch_of(&listing, &["> outer > inner x"]);
    let (results, ran) = run_batch(&listing, job.path(), &batch);
    let (status, message) = &results[&batch[0].id];
    assert_eq!(*status, TestStatus::Error, "{message}");
    assert!(message.contains("not reported"), "{message}");
    assert!(
        ran.len() == 1 && ran[0].ends_with("> with spaces, (parens) and {braces}"),
        "the test at its place ran instead: {ran:?}"
    );
}

#[test]
fn a_vitest_batch_killed_part_way_keeps_what_finished() {
    let Some(dir) = fixture() else {
        return;
    };
    let (listing, _work) = listed(dir.path(), &[]);
    let job = job_dir(&listing, dir.path());
    let names = [
        "> adds two and two",
        "> math > fails",
        "slow.test.mjs > slow",
    ];
    let batch = batch_of(&listing, &names);
    let report = job.path().join("report.out");
    // `slow`, in a file Vitest runs after the larger math file, is held until the kill; the end
    // of math's file delivers its results to the report (see tests/slow.test.mjs).
    let mut child = spawn_batch_held(job.path(), &listing.batch_command(&batch), &report);
    await_some("the failure in the report", || {
        std::fs::read_to_string(&report)
            .is_ok_and(|text| text.contains("math > fails\""))
            .then_some(())
    });
    let pgid = i32::try_from(child.id()).unwrap();
    // SAFETY: a plain syscall on the process group of the child started above.
    assert_eq!(unsafe { libc::killpg(pgid, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    let bytes = std::fs::read(&report).unwrap();
    let got: Vec<TestStatus> = listing
        .parse_report(Some(&bytes), &batch)
        .into_iter()
        .map(|r| r.status)
        .collect();
    use TestStatus::*;
    assert_eq!(got, [Passed, Failed, NotRun]);
}

/// Asserts that a `local` run in `dir` with `path` and `args` was refused as bad input (exit 2)
/// with every one of `words` in its error.
fn assert_bad_input(dir: &Path, path: &str, args: &[&str], words: &[&str]) {
    assert_refused(&local(dir).env("PATH", path).args(args).run(), words);
}

#[test]
fn vitest_bad_input_exits_2_with_the_words_a_user_needs() {
    let Some(dir) = fixture() else {
        return;
    };
    let tools = tools_path();
    assert_bad_input(
        dir.path(),
        "/nonexistent",
        &["--tests", "vitest"],
        &["`node` is not installed", "actions/setup-node"],
    );
    let bare = fixture_copy("suite-vitest");
    assert_bad_input(
        bare.path(),
        &tools,
        &["--tests", "vitest"],
        &[
            "`vitest` is not installed",
            "`vitest/node` does not resolve",
            "npm install --save-dev vitest",
        ],
    );
    assert_bad_input(
        dir.path(),
        &tools,
        &["--tests", "vitest", "-t", "no_test_is_called_this"],
        &["suite 'vitest': no tests match", "no_test_is_called_this"],
    );
    std::fs::write(
        dir.path().join("tests/broken.test.mjs"),
        "throw new Error(\"broken at import\");\n",
    )
    .unwrap();
    assert_bad_input(
        dir.path(),
        &tools,
        &["--tests", "vitest", "--project", "unit"],
        &[
            "suite 'vitest': `vitest list --project unit` failed",
            "broken at import",
        ],
    );
}

#[test]
fn a_vitest_session_runs_its_slots_batches_in_one_vitest_with_their_own_attempts() {
    let Some(dir) = fixture() else {
        return;
    };
    // Six files of two tests, each logging the Vitest it ran under (its parent process, the
    // pool's forks' parent) and its attempt; each file's second test fails on its first one.
    let generated = dir.path().join("tests/gen");
    std::fs::create_dir_all(&generated).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("ran");
    for f in 1..=6 {
        let body = format!(
            "import {{ appendFileSync }} from 'node:fs';\n\
             import {{ describe, test, expect }} from 'vitest';\n\
             const ran = (name) => appendFileSync({log:?}, \
             `${{name}} ${{process.env.CLUSTER_ATTEMPT}} ${{process.ppid}}\\n`);\n\
             describe('f{f}', () => {{\n\
             \x20 test('t1', () => ran('f{f} t1'));\n\
             \x20 test('t2', () => {{ ran('f{f} t2'); expect(process.env.CLUSTER_ATTEMPT).toBe('2'); }});\n\
             }});\n"
        );
        std::fs::write(generated.join(format!("f{f}.test.mjs")), body).unwrap();
    }
    let manifest = "layers:\n  checkout: {paths: [.]}\nsuites:\n  - name: js\n    \
                    framework: vitest\n    layers: [checkout]\n    args: [tests/gen]\n    \
                    batch: 2s\n    retries: 1\n";
    let run = local_manifest(dir.path(), manifest).run();
    let want: BTreeMap<String, String> = (1..=6)
        .flat_map(|f| {
            [("t1", "passed"), ("t2", "flaky")].map(|(t, status)| {
                (
                    format!("[unit] tests/gen/f{f}.test.mjs > f{f} > {t}"),
                    status.to_owned(),
                )
            })
        })
        .collect();
    assert_eq!(run.statuses(), want, "{}", run.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    // Each t1 once on attempt 1, each t2 on attempts 1 and 2: each batch's own variables
    // reached its tests.
    for f in 1..=6 {
        let attempts = |t: &str| -> Vec<&str> {
            let name = format!("f{f}");
            let mut found: Vec<&str> = (lines.iter())
                .filter(|l| l[0] == name && l[1] == t)
                .map(|l| l[2])
                .collect();
            found.sort_unstable();
            found
        };
        assert_eq!(attempts("t1"), ["1"], "{text}");
        assert_eq!(attempts("t2"), ["1", "2"], "{text}");
    }
    // Twelve batches or more (six files, then six retries), one Vitest.
    let parents: std::collections::BTreeSet<&str> = lines.iter().map(|l| l[3]).collect();
    assert_eq!(parents.len(), 1, "{text}");
}
