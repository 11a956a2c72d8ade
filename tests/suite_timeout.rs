//! A suite's `timeout` is per test: a test that hangs is stopped within about that time (not
//! the batch's), ends `timed_out` and is retried like a failure, while the tests its batch
//! finished keep their results and the rest run again. Real pytest through `cluster-action
//! local`; without pytest these tests are skipped outside CI and fail under `CI=true`.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::local::{have_pytest, local};

#[test]
fn a_hanging_test_times_out_alone_within_its_per_test_timeout() {
    if !have_pytest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tests = "import time\n\
        def test_a():\n    pass\n\
        def test_hang():\n    time.sleep(10**6)\n\
        def test_b():\n    pass\n\
        def test_c():\n    pass\n";
    std::fs::write(dir.path().join("test_slow.py"), tests).unwrap();
    // One file in one batch (`split: file`): the hanging test's neighbours share its batch.
    let manifest = "\
layers:
  checkout: { paths: [test_slow.py] }
suites:
  - name: py
    framework: pytest
    layers: [checkout]
    split: file
    timeout: 3s
    retries: 1
";
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let started = Instant::now();
    let run = local(dir.path())
        .args(&["cluster.yml"])
        .within(Duration::from_secs(60))
        .run();
    let (code, report, stderr) = (run.code, &run.report, &run.stderr);
    let took = started.elapsed();
    let got = run.outcomes();
    let want: BTreeMap<&str, (&str, u64)> = [
        ("test_slow.py::test_a", ("passed", 1)),
        ("test_slow.py::test_hang", ("timed_out", 2)),
        ("test_slow.py::test_b", ("passed", 1)),
        ("test_slow.py::test_c", ("passed", 1)),
    ]
    .into();
    assert_eq!(got, want, "{report}\n{stderr}");
    let hang = &report["tests"][1];
    let message = hang["message"].as_str().unwrap();
    assert!(
        message.contains("timed out") && message.contains("3s"),
        "{message}"
    );
    assert_eq!(code, 1, "a timed-out test fails the run: {stderr}");
    // Two attempts of 3 s each and the batches around them, far from any batch timeout.
    assert!(took < Duration::from_secs(40), "took {took:?}");
}
