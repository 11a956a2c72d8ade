//! go test suites through `cluster-action local --go-test`, as a user runs them: which
//! packages a suite without patterns covers, and results that come from go's structured
//! events rather than from text a test can print.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;
use common::local::{available, fixture_copy, local};

#[test]
fn go_test_without_packages_runs_every_package_of_the_module() {
    if !available("go", &["version"]) {
        return;
    }
    let dir = fixture_copy("suite-go-nested");
    let run = local(dir.path()).args(&["--go-test"]).run();
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

#[test]
fn a_line_a_test_prints_decides_no_result() {
    if !available("go", &["version"]) {
        return;
    }
    let dir = fixture_copy("suite-go-forged");
    let run = local(dir.path()).args(&["--go-test", "./..."]).run();
    let id = |name: &str| format!("example.com/forged {name}");
    let want: std::collections::BTreeMap<String, String> = [
        (id("TestEarlier"), "passed"),
        (id("TestLater"), "failed"),
        (id("TestSubtests"), "failed"),
        (id("TestSkips"), "skipped"),
        // A package whose binary passed, a test of it printing `--- FAIL:` lines.
        ("example.com/forged/printer TestFirst".into(), "passed"),
        ("example.com/forged/printer TestPrints".into(), "passed"),
    ]
    .into_iter()
    .map(|(id, status)| (id, status.to_owned()))
    .collect();
    assert_eq!(run.statuses(), want, "{}", run.stderr);
    // The failures' own words, from the test and from its subtest.
    let message = run.message(&id("TestLater"));
    assert!(
        message.starts_with("forged_test.go:")
            && message.ends_with(": TestLater fails whatever its output says"),
        "{message}"
    );
    let message = run.message(&id("TestSubtests"));
    assert!(
        message.starts_with("forged_test.go:") && message.ends_with(": a subtest fails"),
        "{message}"
    );
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
}

#[test]
fn the_users_goflags_apply_to_their_packages_not_to_test2json() {
    if !available("go", &["version"]) {
        return;
    }
    // A vendored module's setting: outside the module, Go 1.19 panics on it.
    let dir = fixture_copy("suite-go-nested");
    let run = local(dir.path())
        .args(&["--go-test"])
        .env("GOFLAGS", "-mod=vendor")
        .run();
    let statuses = run.statuses();
    assert_eq!(statuses.len(), 2, "{statuses:?}\n{}", run.stderr);
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
}

#[test]
fn a_go_test_calling_os_exit_0_fails_as_under_go_test() {
    if !available("go", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("go.mod"),
        "module example.com/ex\n\ngo 1.19\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ex_test.go"),
        "package ex\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\n\
         func TestExits(t *testing.T) { os.Exit(0) }\n\n\
         func TestFine(t *testing.T) {}\n",
    )
    .unwrap();
    let run = local(dir.path()).args(&["--go-test"]).run();
    let statuses = run.statuses();
    assert_eq!(
        statuses.get("example.com/ex TestExits").map(String::as_str),
        Some("failed"),
        "{statuses:?}\n{}",
        run.stderr
    );
    assert_eq!(
        statuses.get("example.com/ex TestFine").map(String::as_str),
        Some("passed")
    );
    let message = run.message("example.com/ex TestExits");
    assert!(
        message.starts_with("panic: unexpected call to os.Exit(0)"),
        "the panic says why, not a line of its trace: {message}"
    );
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
}
