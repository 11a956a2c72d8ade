//! Tests whose names or ids are unusual for their framework but valid in it: each is listed,
//! run and reported with its own result, as the framework alone would report it.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;
use common::suite::{available, local};

#[test]
fn a_go_test_named_with_unicode_letters_is_listed_and_its_failure_reported() {
    if !available("go", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("go.mod"),
        "module example.com/u\n\ngo 1.19\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("u_test.go"),
        "package u\n\nimport \"testing\"\n\n\
         func TestÄpfel(t *testing.T) { t.Fatal(\"Äpfel fails\") }\n\n\
         func TestPlain(t *testing.T) {}\n",
    )
    .unwrap();
    let run = local(dir.path(), &["--go-test"]);
    let statuses = run.statuses();
    assert_eq!(
        statuses.get("example.com/u TestÄpfel").map(String::as_str),
        Some("failed"),
        "{statuses:?}\n{}",
        run.stderr
    );
    assert_eq!(
        statuses.get("example.com/u TestPlain").map(String::as_str),
        Some("passed")
    );
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
}
