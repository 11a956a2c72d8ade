//! go test suites through `cluster-action local --go-test`, as a user runs them: which
//! packages a suite without patterns covers, and results that come from go's structured
//! events rather than from text a test can print.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;
use common::suite::{available, fixture_copy, local};

#[test]
fn go_test_without_packages_runs_every_package_of_the_module() {
    if !available("go", &["version"]) {
        return;
    }
    let dir = fixture_copy("suite-go-nested");
    let run = local(dir.path(), &["--go-test"]);
    let statuses = run.statuses();
    assert_eq!(
        statuses
            .get("example.com/nested/sub TestSubFails")
            .map(String::as_str),
        Some("failed"),
        "the subpackage's test runs, as in `go test ./...`: {statuses:?}\n{}",
        run.stderr
    );
    assert_eq!(
        statuses
            .get("example.com/nested TestRoot")
            .map(String::as_str),
        Some("passed")
    );
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
}
