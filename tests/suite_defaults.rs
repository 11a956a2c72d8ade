//! A suite is configured like a job: `defaults:` (environment, secret environment, isolation)
//! reaches its batches, and a suite may set `env`, `secret-env`, `isolation` and `timeout` of
//! its own. Real pytest suites through `cluster-action local`; the manifest's checks of the
//! new keys.
//!
//! pytest is looked up on PATH after the directories in `CLUSTER_TEST_TOOLS` (as in
//! tests/suite.rs); without it these tests are skipped outside CI and fail under `CI=true`.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::local::{have_pytest, local};

use cluster_action::proto::Isolation;
use cluster_action::runner::manifest::{self, DEFAULT_TEST_TIMEOUT, ManifestError};

#[test]
fn defaults_env_reaches_a_suite_and_a_suites_own_env_overrides_it() {
    if !have_pytest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let test = "import os\n\
        def test_default():\n    assert os.environ['DB_URL'] == 'sqlite://default'\n\
        def test_mode():\n    assert os.environ['MODE'] == os.environ['WANT_MODE']\n";
    std::fs::write(dir.path().join("test_env.py"), test).unwrap();
    let manifest = "\
defaults:
  env: { DB_URL: 'sqlite://default', MODE: default, WANT_MODE: default }
layers:
  checkout: { paths: [test_env.py] }
suites:
  - name: plain
    framework: pytest
    layers: [checkout]
  - name: own
    framework: pytest
    layers: [checkout]
    env: { MODE: own, WANT_MODE: own }
";
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let run = local(dir.path()).args(&["cluster.yml"]).run();
    let (code, report, stderr) = (run.code, &run.report, &run.stderr);
    let want: BTreeMap<&str, &str> = ["test_env.py::test_default", "test_env.py::test_mode"]
        .iter()
        .map(|id| (*id, "passed"))
        .collect();
    let got: BTreeMap<&str, &str> = run.statuses_in_order().into_iter().collect();
    assert_eq!(got.len(), 2, "both suites' tests share ids: {report}");
    assert_eq!(got, want, "{report}\n{stderr}");
    let suites: Vec<&str> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["suite"].as_str().unwrap())
        .collect();
    assert_eq!(suites, ["plain", "plain", "own", "own"], "{report}");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn secret_env_reaches_a_suites_tests_masked_in_their_output() {
    if !have_pytest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let test = "import os\n\
        def test_secret():\n    token = os.environ['API_TOKEN']\n    print('token is', token)\n    \
        assert token == 'not-a-real-token-7f3a', token\n    assert False, 'printed ' + token\n";
    std::fs::write(dir.path().join("test_secret.py"), test).unwrap();
    let manifest = "\
layers:
  checkout: { paths: [test_secret.py] }
suites:
  - name: s
    framework: pytest
    layers: [checkout]
    secret-env: [API_TOKEN]
";
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let run = local(dir.path())
        .args(&["cluster.yml"])
        .env("CLUSTER_SECRET", "a cluster secret for this test")
        .env("API_TOKEN", "not-a-real-token-7f3a")
        .run();
    let (code, report, stderr) = (run.code, run.report, run.stderr);
    let test = &report["tests"][0];
    assert_eq!(test["status"], "failed", "{report}\n{stderr}");
    let message = test["message"].as_str().unwrap();
    // It read the value (the first assertion passed), and the value is masked.
    assert!(message.contains("printed ***"), "{message}");
    let junit = run.junit;
    assert!(junit.contains("printed ***"), "{junit}");
    for (what, text) in [
        ("report", report.to_string()),
        ("junit", junit),
        ("log", stderr),
    ] {
        assert!(!text.contains("not-a-real-token-7f3a"), "{what}: {text}");
    }
    assert_eq!(code, 1);
}

#[test]
fn a_suites_isolation_applies_to_its_batches() {
    if !have_pytest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Without a network a sandbox's only interface is the loopback.
    let test = "def interfaces():\n    \
        lines = open('/proc/net/dev').read().splitlines()[2:]\n    \
        return sorted(l.split(':')[0].strip() for l in lines)\n\
        def test_alone():\n    assert interfaces() == ['lo'], interfaces()\n";
    std::fs::write(dir.path().join("test_net.py"), test).unwrap();
    let manifest = "\
defaults:
  isolation: process
layers:
  checkout: { paths: [test_net.py] }
suites:
  - name: boxed
    framework: pytest
    layers: [checkout]
    isolation: sandbox-no-network
";
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let run = local(dir.path()).args(&["cluster.yml"]).run();
    let (code, report, stderr) = (run.code, &run.report, &run.stderr);
    assert_eq!(report["tests"][0]["status"], "passed", "{report}\n{stderr}");
    assert_eq!(code, 0, "{stderr}");
}

fn parse(yaml: &str) -> Result<manifest::Manifest, ManifestError> {
    manifest::parse(yaml, Path::new("ci.yml"), Path::new("."))
}

#[test]
fn a_suite_takes_defaults_and_its_own_settings() {
    let m = parse(
        "\
defaults:
  env: { A: a, B: b }
  timeout: 2m
  isolation: none
suites:
  - name: inherits
    framework: pytest
  - name: own
    framework: pytest
    env: { B: own }
    timeout: 30s
    isolation: sandbox
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let [inherits, own] = &m.suites[..] else {
        panic!("{:?}", m.suites)
    };
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(inherits.env, env(&[("A", "a"), ("B", "b")]));
    assert_eq!(own.env, env(&[("A", "a"), ("B", "own")]));
    assert_eq!(inherits.timeout, Duration::from_secs(120));
    assert_eq!(own.timeout, Duration::from_secs(30));
    assert_eq!(inherits.isolation, Isolation::None);
    assert_eq!(own.isolation, Isolation::Sandbox);
    let bare = parse("suites:\n  - name: t\n    framework: go\n").unwrap();
    assert_eq!(bare.suites[0].timeout, DEFAULT_TEST_TIMEOUT);
    assert_eq!(bare.suites[0].isolation, Isolation::default());
}

#[test]
fn a_suites_bad_settings_are_each_named_with_their_line() {
    let err = parse(
        "\
suites:
  - name: t
    framework: pytest
    timeout: 0s
    env: { 'A=B': x, C: null }
    secret-env: [TOKEN]
  - name: u
    framework: pytest
    timeout: soon
",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "ci.yml:4:",
        "suite 't' has a timeout of zero",
        "ci.yml:5:",
        "suite 't' has an invalid environment variable name \"A=B\"",
        "suite 't' leaves C without a value",
        "ci.yml:6:",
        "suite 't' sets secret-env, but no cluster secret is set",
        "ci.yml:9:",
        "suite 'u' has a bad timeout",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    let err = parse("suites:\n  - name: t\n    framework: pytest\n    isolation: vm\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("ci.yml:4:"), "{err}");
    assert!(err.contains("sandbox-no-network"), "{err}");
}
