//! Minitest suites through `cluster-action local --tests minitest`, as a user runs them, on
//! the fixture tests/fixtures/suite-minitest (Minitest::Test classes, one in a module, methods
//! made in a loop, nested `describe` blocks with names holding spaces, quotes, brackets, `#`,
//! `$` and unicode, a slow, a failing, an erroring, a skipped and a flaky test): every test
//! once plus retries under Minitest's own `Class#method`, counts equal to Minitest's alone, ids
//! that stay the same from run to run (timing history, a workflow run's attempt 2 that
//! re-runs only what failed), a batch running exactly its tests, a lost worker losing no test,
//! and the words a user needs when Minitest cannot list.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use cluster_action::suite::{ATTEMPT_ENV, Framework, REPORT_ENV, Suite, TestStatus};

mod common;
use common::framework::{
    assert_a_hung_test_times_out_alone, assert_a_killed_worker_loses_no_test,
    assert_attempt_2_reruns_only, assert_local_refused, assert_refused_without_ruby_or_its_gem,
    assert_second_run_adds_to_the_history, ruby_killing_its_worker_once,
};
use common::local::{alone, available, fixture_copy, junit_counts, local, tools_path};

/// Whether a Ruby with Minitest runs (see [`available`]).
fn have_minitest() -> bool {
    available("ruby", &["-e", "require 'minitest'"])
}

/// The fixture's tests: id and final status with one retry.
const EXPECTED: [(&str, &str); 14] = [
    ("Calc::AdderTest#test_adds_in_a_module", "passed"),
    ("MathTest#test_adds", "passed"),
    ("MathTest#test_doubles_1", "passed"),
    ("MathTest#test_doubles_2", "passed"),
    ("MathTest#test_doubles_3", "passed"),
    ("MathTest#test_fails", "failed"),
    ("MathTest#test_flaky", "flaky"),
    ("MathTest#test_raises", "error"),
    ("MathTest#test_skipped", "skipped"),
    ("MathTest#test_slow", "passed"),
    (
        "Names#test_0001_has spaces, 'quotes' and \"double quotes\"",
        "passed",
    ),
    ("Names#test_0002_has [brackets] and #hash $dollar", "passed"),
    ("Names#test_0003_has unicode: grüße 🚀", "passed"),
    ("Names::in a nested context#test_0001_still runs", "passed"),
];

/// Loads every test file of the fixture the way `rake test` does, for Minitest alone.
const LOAD_ALL: &str = "Dir.glob(['test/**/*_test.rb', 'test/**/test_*.rb']).sort.each { |f| require File.expand_path(f) }";

/// `(tests, failures, errors, skipped)` of Minitest alone on a copy of the fixture with
/// `CLUSTER_ATTEMPT=2` (the flaky test passes), from its summary line (`14 runs, 13
/// assertions, 1 failures, 1 errors, 1 skips`).
fn minitest_alone() -> (usize, usize, usize, usize) {
    let dir = fixture_copy("suite-minitest");
    let out = alone(
        dir.path(),
        "ruby",
        &["-Ilib", "-Itest", "-e", LOAD_ALL],
        &[("CLUSTER_ATTEMPT", "2")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.contains(" runs, "))
        .unwrap_or_else(|| panic!("Minitest's summary line:\n{stdout}"));
    let count = |word: &str| -> usize {
        let before = summary.split(&format!(" {word}")).next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    (
        count("runs"),
        count("failures"),
        count("errors"),
        count("skips"),
    )
}

#[test]
fn every_test_runs_once_plus_retries_under_its_own_id_from_run_to_run() {
    if !have_minitest() {
        return;
    }
    let dir = fixture_copy("suite-minitest");
    let history = tempfile::tempdir().unwrap();
    let timings = history.path().join("timings.json");
    let run = local(dir.path())
        .workers(2)
        .args(&[
            "--test-retries",
            "1",
            "--write-timings",
            timings.to_str().unwrap(),
        ])
        .args(&["--tests", "minitest"])
        .run();
    let want: BTreeMap<&str, (&str, u64)> = EXPECTED
        .iter()
        .map(|(id, status)| {
            let retried = ["failed", "flaky", "error"].contains(status);
            (*id, (*status, if retried { 2 } else { 1 }))
        })
        .collect();
    assert_eq!(run.outcomes(), want, "{}", run.stderr);
    assert_eq!(run.message("MathTest#test_fails"), "two and two make four.");
    assert_eq!(
        run.message("MathTest#test_raises"),
        "ArgumentError: an unexpected error"
    );
    assert_eq!(run.message("MathTest#test_skipped"), "not on this machine");
    assert_eq!(run.report["test_summary"]["flaky"], 1, "{}", run.report);
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
    // The merged JUnit: a test case per test, named by its method in the group of its class,
    // counted as Minitest counts alone.
    assert_eq!(junit_counts(&run.junit), minitest_alone(), "{}", run.junit);
    let doc = roxmltree::Document::parse(&run.junit).unwrap();
    let ids: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| {
            let class = n.attribute("classname").unwrap();
            format!("{class}#{}", n.attribute("name").unwrap())
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, EXPECTED.map(|(id, _)| id), "{}", run.junit);
    // Attempt 2 of the workflow run runs only what failed.
    assert_attempt_2_reruns_only(
        dir.path(),
        &run,
        "minitest",
        &["MathTest#test_fails", "MathTest#test_raises"],
    );
    // The history knows the tests by id: a second run finds each there and adds to it.
    let args = ["--tests", "minitest"];
    assert_second_run_adds_to_the_history(dir.path(), &timings, "MathTest#test_slow", &args);
}

#[test]
fn a_batch_runs_exactly_its_tests_one_at_a_time() {
    if !have_minitest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("test")).unwrap();
    // `-n test_a` or `-n /test_a/` would run `test_ab` too.
    std::fs::write(
        dir.path().join("test/prefix_test.rb"),
        "require 'minitest/autorun'\n\nclass PrefixTest < Minitest::Test\n  \
         def test_a\n  end\n\n  def test_ab\n  end\nend\n",
    )
    .unwrap();
    // `parallelize_me!` tests would run in a thread per processor: each fails when another
    // runs beside it.
    std::fs::write(
        dir.path().join("test/parallel_test.rb"),
        "require 'minitest/autorun'\n\nclass ParallelTest < Minitest::Test\n  \
         parallelize_me!\n  LOCK = Mutex.new\n  @@running = 0\n\n  \
         def alone\n    LOCK.synchronize { @@running += 1 }\n    sleep 0.3\n    \
         LOCK.synchronize { @@running }\n  ensure\n    LOCK.synchronize { @@running -= 1 }\n  end\n\n  \
         def test_1\n    assert_equal 1, alone\n  end\n\n  \
         def test_2\n    assert_equal 1, alone\n  end\nend\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let suite = Suite {
        name: "minitest".into(),
        framework: Framework::Minitest,
        args: Vec::new(),
    };
    let listing = suite.list(dir.path(), work.path()).unwrap();
    let ids: Vec<&str> = listing.tests.iter().map(|t| t.id.as_str()).collect();
    let want = [
        "ParallelTest#test_1",
        "ParallelTest#test_2",
        "PrefixTest#test_a",
        "PrefixTest#test_ab",
    ];
    assert_eq!(ids, want);
    for file in &listing.ship {
        let dest = dir.path().join(&file.dest);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&file.source, dest).unwrap();
    }
    let batch = &listing.tests[..3];
    let report = dir.path().join("report");
    let status = Command::new("bash")
        .arg("-c")
        .arg(listing.batch_command(batch))
        .current_dir(dir.path())
        .env("PATH", tools_path())
        .env_remove("MT_CPU")
        .env(REPORT_ENV, &report)
        .env(ATTEMPT_ENV, "1")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let report = std::fs::read(&report).unwrap();
    let text = String::from_utf8_lossy(&report);
    assert!(status.success(), "{text}");
    assert!(!text.contains("test_ab"), "test_ab ran: {text}");
    let results = listing.parse_report(Some(&report), batch);
    let statuses: Vec<TestStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [TestStatus::Passed; 3], "{text}");
}

#[test]
fn a_hanging_test_times_out_alone_within_its_per_test_timeout() {
    if !have_minitest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("test")).unwrap();
    // In the defined order (Minitest shuffles otherwise): a, hang, b, c.
    let test = "require 'minitest/autorun'\n\nclass HangTest < Minitest::Test\n  \
                i_suck_and_my_tests_are_order_dependent!\n\n  def test_1_a; end\n\n  \
                def test_2_hangs\n    sleep\n  end\n\n  def test_3_b; end\n\n  \
                def test_4_c; end\nend\n";
    std::fs::write(dir.path().join("test/hang_test.rb"), test).unwrap();
    let ids = [
        "HangTest#test_1_a",
        "HangTest#test_2_hangs",
        "HangTest#test_3_b",
        "HangTest#test_4_c",
    ];
    assert_a_hung_test_times_out_alone(dir.path(), "minitest", &["test"], ids);
}

#[test]
fn a_worker_killed_mid_batch_loses_no_test() {
    if !have_minitest() {
        return;
    }
    let dir = fixture_copy("suite-minitest");
    let marker = dir.path().join("killed");
    // On its first run, this test SIGKILLs the worker running it (the first `cluster-action`
    // among its ancestors) mid-batch.
    let test = format!(
        "require \"minitest/autorun\"\n\nclass LostWorkerTest < Minitest::Test\n  \
         def test_is_killed_once\n{}  end\nend\n",
        ruby_killing_its_worker_once(&marker)
    );
    std::fs::write(dir.path().join("test/lost_test.rb"), test).unwrap();
    let mut ids: Vec<&str> = EXPECTED[10..].iter().map(|(id, _)| *id).collect();
    ids.push("LostWorkerTest#test_is_killed_once");
    let args = [
        "--tests",
        "minitest",
        "test/lost_test.rb",
        "test/names_test.rb",
    ];
    assert_a_killed_worker_loses_no_test(dir.path(), &marker, &args, &ids);
}

#[test]
fn minitest_missing_failing_to_list_or_listing_nothing_exits_2_saying_why() {
    if !have_minitest() {
        return;
    }
    let dir = fixture_copy("suite-minitest");
    assert_refused_without_ruby_or_its_gem(dir.path(), "minitest", &["--tests", "minitest"]);
    assert_local_refused(
        dir.path(),
        &["--tests", "minitest", "-n", "/no_test_is_named_this/"],
        &["suite 'minitest': no tests match", "no_test_is_named_this"],
    );
    std::fs::write(
        dir.path().join("test/broken_test.rb"),
        "raise 'this test file is broken'\n",
    )
    .unwrap();
    assert_local_refused(
        dir.path(),
        &["--tests", "minitest"],
        &[
            "cluster_action_minitest.rb list",
            "cannot load test/broken_test.rb: RuntimeError: this test file is broken",
        ],
    );
}
