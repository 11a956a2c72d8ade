//! RSpec suites through `cluster-action local --tests rspec`, as a user runs them, on the
//! fixture tests/fixtures/suite-rspec (nested groups, examples made in a loop, shared examples
//! included twice, names with spaces, quotes, brackets and unicode, a slow, a failing, a
//! skipped and a flaky example): every example once plus retries, ids that are RSpec's own and
//! stay the same from run to run (timing history, a workflow run's attempt 2 that re-runs only
//! what failed), counts equal to RSpec's alone, a lost worker losing no example, and the words
//! a user needs when RSpec cannot list.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::Value;

mod common;
use common::framework::{
    assert_a_hung_test_times_out_alone, assert_a_killed_worker_loses_no_test,
    assert_attempt_2_reruns_only, assert_local_refused, assert_refused_without_ruby_or_its_gem,
    assert_second_run_adds_to_the_history, ruby_killing_its_worker_once,
};
use common::local::{alone, available, fixture_copy, junit_counts, local};

/// Whether `rspec` runs (see [`available`]).
fn have_rspec() -> bool {
    available("rspec", &["--version"])
}

/// The fixture's examples: id, full description, final status with one retry.
const EXPECTED: [(&str, &str, &str); 13] = [
    ("./spec/math_spec.rb[1:1]", "Math adds", "passed"),
    ("./spec/math_spec.rb[1:2]", "Math fails", "failed"),
    ("./spec/math_spec.rb[1:3]", "Math is slow", "passed"),
    ("./spec/math_spec.rb[1:4]", "Math is skipped", "skipped"),
    (
        "./spec/math_spec.rb[1:5:1]",
        "Math with numbers doubles 1",
        "passed",
    ),
    (
        "./spec/math_spec.rb[1:5:2]",
        "Math with numbers doubles 2",
        "passed",
    ),
    (
        "./spec/math_spec.rb[1:5:3]",
        "Math with numbers doubles 3",
        "passed",
    ),
    (
        "./spec/math_spec.rb[1:5:4:1]",
        "Math with numbers nested deeper is flaky",
        "flaky",
    ),
    (
        "./spec/names_spec.rb[1:1]",
        "Names has spaces, 'quotes' and \"double quotes\"",
        "passed",
    ),
    (
        "./spec/names_spec.rb[1:2]",
        "Names has [brackets] and #hash $dollar",
        "passed",
    ),
    (
        "./spec/names_spec.rb[1:3]",
        "Names has unicode: grüße 🚀",
        "passed",
    ),
    (
        "./spec/names_spec.rb[1:4:1:1]",
        "Names Array behaves like a collection has a size",
        "passed",
    ),
    (
        "./spec/names_spec.rb[1:5:1:1]",
        "Names Hash behaves like a collection has a size",
        "passed",
    ),
];

/// `(tests, failures, errors, skipped)` of RSpec alone on a copy of the fixture with
/// `CLUSTER_ATTEMPT=2` (the flaky example passes), from its own JSON report.
fn rspec_alone() -> (usize, usize, usize, usize) {
    let dir = fixture_copy("suite-rspec");
    let out = dir.path().join("alone.json");
    let args = ["--format", "json", "--out", out.to_str().unwrap()];
    alone(dir.path(), "rspec", &args, &[("CLUSTER_ATTEMPT", "2")]);
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let count = |key: &str| usize::try_from(report["summary"][key].as_u64().unwrap()).unwrap();
    (
        count("example_count"),
        count("failure_count"),
        count("errors_outside_of_examples_count"),
        count("pending_count"),
    )
}

#[test]
fn every_example_runs_once_plus_retries_under_its_own_id_and_name_from_run_to_run() {
    if !have_rspec() {
        return;
    }
    let dir = fixture_copy("suite-rspec");
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
        .args(&["--tests", "rspec"])
        .run();
    let want: BTreeMap<&str, (&str, u64)> = EXPECTED
        .iter()
        .map(|(id, _, status)| {
            let attempts = if ["failed", "flaky"].contains(status) {
                2
            } else {
                1
            };
            (*id, (*status, attempts))
        })
        .collect();
    assert_eq!(run.outcomes(), want, "{}", run.stderr);
    assert_eq!(
        run.message("./spec/math_spec.rb[1:2]"),
        "two and two make four"
    );
    assert_eq!(
        run.message("./spec/math_spec.rb[1:4]"),
        "not on this machine"
    );
    assert_eq!(run.report["test_summary"]["flaky"], 1, "{}", run.report);
    assert_eq!(run.code, 1, "an example failed: {}", run.stderr);
    // The merged JUnit: a test case per example, named by its full description in the group
    // of its spec file, counted as RSpec counts alone.
    assert_eq!(junit_counts(&run.junit), rspec_alone(), "{}", run.junit);
    let doc = roxmltree::Document::parse(&run.junit).unwrap();
    let names: BTreeMap<&str, &str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| {
            let name = n.attribute("name").unwrap();
            (name, n.attribute("classname").unwrap())
        })
        .collect();
    let want: BTreeMap<&str, &str> = EXPECTED
        .iter()
        .map(|(id, name, _)| (*name, &id[..id.rfind('[').unwrap()]))
        .collect();
    assert_eq!(names, want);
    // Attempt 2 of the workflow run runs only what failed.
    assert_attempt_2_reruns_only(dir.path(), &run, "rspec", &["./spec/math_spec.rb[1:2]"]);
    // The history knows the tests by id: a second run finds each there and adds to it.
    let args = ["--tests", "rspec"];
    assert_second_run_adds_to_the_history(dir.path(), &timings, "./spec/math_spec.rb[1:3]", &args);
}

#[test]
fn a_hanging_example_times_out_alone_within_its_per_test_timeout() {
    if !have_rspec() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("spec")).unwrap();
    let spec = "RSpec.describe \"Hang\" do\n  it(\"a\") {}\n  it(\"hangs\") { sleep }\n  \
                it(\"b\") {}\n  it(\"c\") {}\nend\n";
    std::fs::write(dir.path().join("spec/hang_spec.rb"), spec).unwrap();
    let id = |n: u32| format!("./spec/hang_spec.rb[1:{n}]");
    let ids = [id(1), id(2), id(3), id(4)];
    let ids = [ids[0].as_str(), &ids[1], &ids[2], &ids[3]];
    assert_a_hung_test_times_out_alone(dir.path(), "rspec", &["spec"], ids);
}

#[test]
fn a_worker_killed_mid_batch_loses_no_example_of_a_bundled_project() {
    if !have_rspec() {
        return;
    }
    let dir = fixture_copy("suite-rspec");
    // The project has a bundle (rspec, from the gems installed here): the listing and the
    // batches set it up, as `bundle exec rspec` does.
    std::fs::write(
        dir.path().join("Gemfile"),
        "source 'https://rubygems.org'\ngem 'rspec'\n",
    )
    .unwrap();
    let marker = dir.path().join("killed");
    // On its first run, this example SIGKILLs the worker running it (the first
    // `cluster-action` among its ancestors) mid-batch.
    let spec = format!(
        "RSpec.describe \"A lost worker\" do\n  it \"is killed once\" do\n{}  end\nend\n",
        ruby_killing_its_worker_once(&marker)
    );
    std::fs::write(dir.path().join("spec/lost_spec.rb"), spec).unwrap();
    let mut ids: Vec<&str> = EXPECTED[8..].iter().map(|(id, _, _)| *id).collect();
    ids.push("./spec/lost_spec.rb[1:1]");
    let args = [
        "--tests",
        "rspec",
        "spec/lost_spec.rb",
        "spec/names_spec.rb",
    ];
    assert_a_killed_worker_loses_no_test(dir.path(), &marker, &args, &ids);
}

#[test]
fn rspec_missing_failing_to_list_or_listing_nothing_exits_2_saying_why() {
    if !have_rspec() {
        return;
    }
    let dir = fixture_copy("suite-rspec");
    assert_refused_without_ruby_or_its_gem(dir.path(), "rspec", &["--tests", "rspec"]);
    assert_local_refused(
        dir.path(),
        &["--tests", "rspec", "--tag", "no_example_is_tagged_this"],
        &["suite 'rspec': no tests match", "no_example_is_tagged_this"],
    );
    std::fs::write(
        dir.path().join("spec/broken_spec.rb"),
        "raise 'this spec file is broken'\n",
    )
    .unwrap();
    assert_local_refused(
        dir.path(),
        &["--tests", "rspec"],
        &[
            "`rspec --dry-run` failed",
            "An error occurred while loading ./spec/broken_spec.rb.",
            "this spec file is broken",
        ],
    );
    // A bundle that cannot be set up says why in its last line.
    std::fs::remove_file(dir.path().join("spec/broken_spec.rb")).unwrap();
    std::fs::write(
        dir.path().join("Gemfile"),
        "source 'https://rubygems.org'\ngem 'no_gem_is_called_this'\n",
    )
    .unwrap();
    assert_local_refused(
        dir.path(),
        &["--tests", "rspec"],
        &[
            "cluster-action: cannot set up the bundle of Gemfile",
            "no_gem_is_called_this",
        ],
    );
}
