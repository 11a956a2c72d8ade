//! Tests whose names or ids are unusual for their framework but valid in it: each is listed,
//! run and reported with its own result, as the framework alone would report it.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;
use common::local::{available, local};

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
    let run = local(dir.path()).args(&["--go-test"]).run();
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

#[test]
fn a_pytest_id_holding_a_carriage_return_runs_as_itself() {
    if !available("python", &["-m", "pytest", "--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("test_cr.py"),
        "import pytest\n\n\
         @pytest.mark.parametrize('x', ['a\\rb', 'plain'])\n\
         def test_u(x):\n    assert x != 'a\\rb', 'cr fails'\n",
    )
    .unwrap();
    // Raw ids: pytest would otherwise write the carriage return as `\r`.
    let raw = "-odisable_test_id_escaping_and_forfeit_all_rights_to_community_support=true";
    let run = local(dir.path())
        .args(&["--pytest", raw, "test_cr.py"])
        .run();
    let statuses = run.statuses();
    let cr = "test_cr.py::test_u[a\rb]";
    assert_eq!(
        statuses.get(cr).map(String::as_str),
        Some("failed"),
        "{statuses:?}\n{}",
        run.stderr
    );
    assert!(run.message(cr).contains("cr fails"), "{}", run.message(cr));
    assert_eq!(
        statuses
            .get("test_cr.py::test_u[plain]")
            .map(String::as_str),
        Some("passed")
    );
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
}
