//! Test ids as they reach a framework and come back from its report: a batch of any size starts
//! (ids travel in a file, never as one huge argument), ids with spaces, quotes, brackets, `$`,
//! `#` and unicode survive listing, the batch and the report, options that rename tests in
//! pytest's JUnit do not hide them, and an id no process can be given is refused alone.
//! Driven as a user drives it, through `cluster-action local`.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use serde_json::Value;

use common::local::{LocalRun, have_pytest, local};
use common::manifest::REPORT_EACH_PASSED;

/// Runs `local` on the manifest `manifest` (as JSON, written as `cluster.yml` in `dir`).
fn run_manifest(dir: &Path, manifest: &Value) -> LocalRun {
    let text = serde_yaml::to_string(manifest).unwrap();
    std::fs::write(dir.join("cluster.yml"), text).unwrap();
    local(dir).args(&["cluster.yml"]).run()
}

/// Checks that a run passed each of its `count` tests and exited 0.
fn all_passed(run: LocalRun, count: usize) {
    assert_eq!(
        counts(&run),
        [("passed", count)].into(),
        "{}\n{}",
        first_problem(run.tests()),
        run.stderr
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// How many tests have each status.
fn counts(run: &LocalRun) -> std::collections::BTreeMap<&str, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (_, status) in run.statuses_in_order() {
        *counts.entry(status).or_default() += 1;
    }
    counts
}

/// The first message of a test that did not pass, to explain a failed assertion.
fn first_problem(tests: &[Value]) -> String {
    tests
        .iter()
        .find(|t| t["status"] != "passed")
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// 20,000 trivial tests with long ids (about 1.6 MB of ids, far over the 128 KiB the kernel
/// allows one argument) in one file, run as one batch (`split: file`): every one passes.
#[test]
fn a_batch_of_twenty_thousand_long_ids_starts_and_every_test_passes() {
    if !have_pytest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tests = "import pytest\n\n\
                 @pytest.mark.parametrize('n', range(20000), ids=lambda n: \
                 f'an-id-long-enough-that-twenty-thousand-exceed-any-argument-{n:05}')\n\
                 def test_many(n):\n    pass\n";
    std::fs::write(dir.path().join("test_many.py"), tests).unwrap();
    let manifest = serde_json::json!({
        "suites": [{"name": "many", "framework": "pytest", "args": ["test_many.py"],
                    "split": "file", "layers": ["code"]}],
        "layers": {"code": {"paths": ["test_many.py"]}},
    });
    all_passed(run_manifest(dir.path(), &manifest), 20_000);
}

/// A `command` suite's batch of 20,000 long ids (one batch: `split: file`): `run` gets them as
/// its arguments and, one a line, in the file `CLUSTER_TESTS_FILE` names; every test passes.
#[test]
fn a_command_suite_gets_twenty_thousand_ids_as_arguments_and_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = r#"printf '%s\n' "$@" | cmp - "$CLUSTER_TESTS_FILE" || exit 1
{ echo '<testsuite name="c">'; while IFS= read -r t; do echo "<testcase name=\"$t\"/>"; done < "$CLUSTER_TESTS_FILE"; echo '</testsuite>'; } > "$CLUSTER_JUNIT"
"#;
    let manifest = serde_json::json!({
        "suites": [{
            "name": "c",
            "framework": "command",
            "list": "seq -f 'an-id-long-enough-that-twenty-thousand-exceed-any-argument-%05g' 0 19999",
            "run": run,
            "split": "file",
        }]
    });
    all_passed(run_manifest(dir.path(), &manifest), 20_000);
}

/// `--junit-prefix` renames every test in pytest's JUnit, `--junitxml` moves it: the batches
/// still write their own, and results map to their tests.
#[test]
fn pytests_junit_prefix_or_junitxml_does_not_hide_the_results() {
    if !have_pytest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tests =
        "def test_passes():\n    pass\n\n\ndef test_fails():\n    assert False, 'as meant'\n";
    std::fs::write(dir.path().join("test_p.py"), tests).unwrap();
    for option in [
        "--junit-prefix=pre",
        "--junitprefix=pre",
        "--junitxml=mine.xml",
    ] {
        let run = local(dir.path())
            .args(&["--pytest", option, "test_p.py"])
            .run();
        assert_eq!(
            run.statuses_in_order(),
            [
                ("test_p.py::test_passes", "passed"),
                ("test_p.py::test_fails", "failed")
            ],
            "{option}: {:?}\n{}",
            run.tests(),
            run.stderr
        );
        assert_eq!(run.code, 1, "{}", run.stderr);
    }
}

/// An id holding a NUL cannot be given to any program: that test is an error of its own,
/// saying why, and the other tests of what would have been its batch pass.
#[test]
fn an_id_holding_a_nul_is_an_error_alone() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = serde_json::json!({
        "suites": [{
            "name": "c",
            "framework": "command",
            "list": "printf 'a\\nb\\0c\\nd\\n'",
            "run": REPORT_EACH_PASSED,
            "split": "file",
        }]
    });
    let run = run_manifest(dir.path(), &manifest);
    let (tests, stderr) = (run.tests(), &run.stderr);
    assert_eq!(
        run.statuses_in_order(),
        [("a", "passed"), ("b\0c", "error"), ("d", "passed")],
        "{tests:?}\n{stderr}"
    );
    let message = tests[1]["message"].as_str().unwrap();
    assert!(message.contains("NUL"), "{message}");
    assert_eq!(run.code, 1, "{stderr}");
}

/// Parametrised ids with spaces, quotes, brackets, `#`, `$`, backquotes, `::`, a line break
/// and unicode (escaped by pytest, and raw where a suite turns the escaping off), and a fixture
/// test: each survives listing, the batch and the report, and a failure maps to its test.
#[test]
fn pytest_ids_with_shell_and_markup_characters_survive_the_round_trip() {
    if !have_pytest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let escaped = r##"import pytest

ODD = ["a b", "it's", 'say "hi"', "ü", "$HOME", "#hash", "[x]", "a\nb", "back\\slash",
       "*?", "`id`", "a::b", "<&>", "semi;colon"]


@pytest.fixture
def value():
    return 42


def test_fixture(value):
    assert value == 42


@pytest.mark.parametrize("x", ODD)
def test_x(x):
    assert x in ODD


@pytest.mark.parametrize("x", ["it's $HOME [1]"])
def test_fails(x):
    assert not x, "failed as meant"
"##;
    let raw = "import pytest\n\n\
               @pytest.mark.parametrize('x', ['ü', '日本', 'a b'])\n\
               def test_u(x):\n    assert x\n";
    std::fs::write(dir.path().join("test_ids.py"), escaped).unwrap();
    std::fs::write(dir.path().join("test_raw.py"), raw).unwrap();
    let no_escaping = "-odisable_test_id_escaping_and_forfeit_all_rights_to_community_support=true";
    let manifest = serde_json::json!({
        "suites": [
            {"name": "escaped", "framework": "pytest", "args": ["test_ids.py"], "layers": ["code"]},
            {"name": "raw", "framework": "pytest", "args": [no_escaping, "test_raw.py"],
             "layers": ["code"]},
        ],
        "layers": {"code": {"paths": ["test_ids.py", "test_raw.py"]}},
    });
    let run = run_manifest(dir.path(), &manifest);
    let (tests, stderr) = (run.tests(), &run.stderr);
    let got = run.statuses_in_order();
    for id in [
        "test_ids.py::test_fixture",
        "test_ids.py::test_x[a b]",
        "test_ids.py::test_x[it's]",
        "test_ids.py::test_x[say \"hi\"]",
        r"test_ids.py::test_x[\xfc]",
        "test_ids.py::test_x[$HOME]",
        "test_ids.py::test_x[#hash]",
        "test_ids.py::test_x[[x]]",
        r"test_ids.py::test_x[a\nb]",
        r"test_ids.py::test_x[back\\slash]",
        "test_ids.py::test_x[`id`]",
        "test_ids.py::test_x[a::b]",
        "test_ids.py::test_x[<&>]",
        "test_raw.py::test_u[ü]",
        "test_raw.py::test_u[日本]",
        "test_raw.py::test_u[a b]",
    ] {
        assert!(got.contains(&(id, "passed")), "{id}: {got:?}\n{stderr}");
    }
    let failed = "test_ids.py::test_fails[it's $HOME [1]]";
    assert!(got.contains(&(failed, "failed")), "{got:?}\n{stderr}");
    let message = tests.iter().find(|t| t["id"] == failed).unwrap()["message"].to_string();
    assert!(message.contains("failed as meant"), "{message}");
    assert_eq!(
        counts(&run),
        [("failed", 1), ("passed", 18)].into(),
        "{got:?}"
    );
    assert_eq!(run.code, 1, "{stderr}");
}
