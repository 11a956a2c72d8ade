//! Files the runner reads or writes on a user's word, handed something other than a plain
//! file: a symbolic link, a device, a FIFO, a file far too large. Each run is bounded in time
//! by `timeout(1)`, so a run that hangs on its input fails the test rather than blocking it.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_cluster-action");

/// Exit code for bad input.
const BAD_INPUT: i32 = 2;

/// Longest a run here may take: a refusal takes milliseconds, a small suite seconds.
const DEADLINE_SECS: &str = "120";

/// Runs the binary with `args` in `dir`, outside any GitHub run, killed at [`DEADLINE_SECS`]:
/// its exit code and standard error. A run killed for its time fails the test.
fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("timeout")
        .args(["--kill-after=5", DEADLINE_SECS, BIN])
        .args(args)
        .current_dir(dir)
        .env_remove("ACTIONS_RESULTS_URL")
        .env_remove("ACTIONS_RUNTIME_TOKEN")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_RUN_ID")
        .env_remove("GITHUB_REPOSITORY")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("CLUSTER_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        ![124, 137, -1].contains(&code),
        "the run hung (killed after {DEADLINE_SECS} s):\n{stderr}"
    );
    (code, stderr)
}

/// A FIFO at `path`.
fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// A manifest in `dir` of one `command` suite of tests `a` and `b`, each passing.
fn suite_manifest(dir: &Path) {
    let manifest = "suites:\n  - name: r\n    framework: command\n    list: printf 'a\\nb\\n'\n    run: |\n      { echo '<testsuite>'; for t in \"$@\"; do echo \"<testcase name='$t'/>\"; done; echo '</testsuite>'; } > \"$CLUSTER_JUNIT\"\n";
    std::fs::write(dir.join("cluster.yml"), manifest).unwrap();
}

/// [`run`]s the manifest of [`suite_manifest`] in `dir` on one local worker, with `flags`.
fn run_suite(dir: &Path, flags: &[&str]) -> (i32, String) {
    let mut args = vec!["local", "--workers", "1", "cluster.yml"];
    args.extend_from_slice(flags);
    run(dir, &args)
}

#[test]
fn write_timings_through_a_link_updates_its_target_and_leaves_a_partial_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    suite_manifest(dir.path());
    std::fs::create_dir(dir.path().join("kept")).unwrap();
    std::fs::write(dir.path().join("kept/timings.json"), "{}").unwrap();
    std::os::unix::fs::symlink("kept/timings.json", dir.path().join("timings.json")).unwrap();
    // What the old writer took for its own temporary file.
    std::fs::write(dir.path().join("timings.partial"), "the user's").unwrap();
    let (code, stderr) = run_suite(dir.path(), &["--write-timings", "timings.json"]);
    assert_eq!(code, 0, "{stderr}");
    let link = dir.path().join("timings.json");
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "the link was replaced by a file"
    );
    let written = std::fs::read_to_string(dir.path().join("kept/timings.json")).unwrap();
    assert!(
        written.contains("\"id\": \"a\"") && written.contains("\"id\": \"b\""),
        "{written}"
    );
    let partial = std::fs::read_to_string(dir.path().join("timings.partial")).unwrap();
    assert_eq!(partial, "the user's");
}

#[test]
fn write_timings_to_a_device_or_a_fifo_is_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    suite_manifest(dir.path());
    mkfifo(&dir.path().join("fifo"));
    // `/dev/full` through a link: a writer that renames over the path (as one did) replaces
    // the link, never the machine's device.
    std::os::unix::fs::symlink("/dev/full", dir.path().join("full")).unwrap();
    for (path, kind) in [("full", "character device"), ("fifo", "FIFO")] {
        let (code, stderr) = run_suite(dir.path(), &["--write-timings", path]);
        assert_eq!(code, BAD_INPUT, "{stderr}");
        let expected = format!("--write-timings {path} is a {kind}");
        assert!(
            stderr.contains(&expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
    let fifo = dir.path().join("fifo").symlink_metadata().unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
}
