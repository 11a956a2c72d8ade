//! Files the runner reads or writes on a user's word, handed something other than a plain
//! file: a symbolic link, a device, a FIFO, a file far too large. Each run is bounded in time
//! by `timeout(1)` and in memory by `prlimit(1)`, so a run that hangs on its input or grows
//! without bound fails the test rather than blocking it or exhausting the machine.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::cluster::{BIN, SCRUBBED_ENV};
use common::manifest::{REPORT_EACH_PASSED, command_suite};
use common::mkfifo;

/// Exit code for bad input.
const BAD_INPUT: i32 = 2;

/// Longest a run here may take: a refusal takes milliseconds, a small suite seconds.
const DEADLINE_SECS: &str = "60";

/// The address space a run here may take (its worker processes each as much): far above what
/// it needs, far below what an endless input would take.
const MEMORY_CAP: &str = "--as=4294967296";

/// Runs the binary with `args` in `dir`, outside any GitHub run, killed at [`DEADLINE_SECS`]
/// and capped at [`MEMORY_CAP`]: its exit code, standard output and standard error. A run
/// killed for its time fails the test.
fn run_out(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new("prlimit");
    command
        .args([MEMORY_CAP, "timeout", "--kill-after=5", DEADLINE_SECS, BIN])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        ![124, 137, -1].contains(&code),
        "the run hung (killed after {DEADLINE_SECS} s):\n{stderr}"
    );
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// [`run_out`] without its standard output.
fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = run_out(dir, args);
    (code, stderr)
}

/// Asserts that `(code, stderr)` is a refusal of bad input saying each of `expected`.
fn assert_refused((code, stderr): (i32, String), expected: &[&str]) {
    assert_eq!(code, BAD_INPUT, "{stderr}");
    for part in expected {
        assert!(stderr.contains(part), "expected {part:?} in:\n{stderr}");
    }
}

/// A manifest in `dir` of one `command` suite of tests `a` and `b`, each passing.
fn suite_manifest(dir: &Path) {
    suite_manifest_doing(dir, "true");
}

/// [`suite_manifest`], its batches running the shell command `first` first.
fn suite_manifest_doing(dir: &Path, first: &str) {
    let manifest = command_suite(&["a", "b"], &format!("{first}\n{REPORT_EACH_PASSED}"));
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
    let history: serde_json::Value = serde_json::from_str(&written).unwrap();
    let ids: Vec<&str> = (history["tests"].as_array().unwrap().iter())
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, ["a", "b"], "{written}");
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
        let expected = format!("--write-timings {path} is a {kind}");
        assert_refused(
            run_suite(dir.path(), &["--write-timings", path]),
            &[&expected],
        );
    }
    let fifo = dir.path().join("fifo").symlink_metadata().unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
}

#[test]
fn a_history_that_cannot_be_written_exits_3_after_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    std::fs::create_dir(&gone).unwrap();
    // The directory is there when the run starts; the batch removes it.
    suite_manifest_doing(dir.path(), &format!("rm -rf '{}'", gone.display()));
    let history = gone.join("timings.json");
    let flags = [
        "--write-timings",
        history.to_str().unwrap(),
        "--report-json",
        "report.json",
    ];
    let (code, stderr) = run_suite(dir.path(), &flags);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot write --write-timings {}",
            history.display()
        )),
        "{stderr}"
    );
    let report = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert!(report.contains("\"passed\""), "{report}");
}

#[test]
fn an_endless_manifest_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let refused = run(dir.path(), &["local", "--workers", "1", "/dev/zero"]);
    assert_refused(refused, &["cannot read /dev/zero", "character device"]);
    let refused = run(
        dir.path(),
        &["local", "--workers", "1", "--commands", "/dev/zero"],
    );
    assert_refused(
        refused,
        &["cannot read --commands /dev/zero", "character device"],
    );
}

#[test]
fn a_fifo_as_commands_or_timings_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    suite_manifest(dir.path());
    mkfifo(&dir.path().join("fifo"));
    let refused = run(
        dir.path(),
        &["local", "--workers", "1", "--commands", "fifo"],
    );
    assert_refused(refused, &["cannot read --commands fifo", "FIFO"]);
    let refused = run_suite(dir.path(), &["--timings", "fifo"]);
    assert_refused(refused, &["--timings fifo: it is a FIFO"]);
}

#[test]
fn a_fifo_as_a_report_is_refused_before_the_run_and_stdout_is_not() {
    let dir = tempfile::tempdir().unwrap();
    suite_manifest(dir.path());
    mkfifo(&dir.path().join("fifo"));
    for flag in ["--report-json", "--report-junit"] {
        let refused = run_suite(dir.path(), &[flag, "fifo"]);
        assert_refused(refused, &[&format!("{flag} fifo is a FIFO")]);
    }
    // The test's standard output is a pipe, as in a workflow's step.
    let (code, stdout, stderr) = run_out(
        dir.path(),
        &[
            "local",
            "--workers",
            "1",
            "cluster.yml",
            "--report-json",
            "/dev/stdout",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // The run's progress lines share standard output with the report.
    let start = stdout.find("\n{").map_or(0, |at| at + 1);
    let report: serde_json::Value = serde_json::Deserializer::from_str(&stdout[start..])
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no report in: {stdout}"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["tests"].as_array().unwrap().len(), 2, "{report}");
}

#[test]
fn a_batch_report_over_the_bound_makes_its_tests_errors_naming_it() {
    let bound =
        cluster_action::input_file::shown_size(cluster_action::runner::session::MAX_REPORT_BYTES);
    let dir = tempfile::tempdir().unwrap();
    // A JUnit of two passing tests padded past the bound by a comment.
    let pad = cluster_action::runner::session::MAX_REPORT_BYTES + 1;
    let run = format!(
        "{{ echo '<testsuite>'; for t in \"$@\"; do echo \"<testcase name='$t'/>\"; done; \
         echo '<!--'; head -c {pad} /dev/zero | tr '\\0' x; echo '-->'; echo '</testsuite>'; }} \
         > \"$CLUSTER_JUNIT\""
    );
    let manifest = command_suite(&["a", "b"], &run);
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let (code, stderr) = run_suite(dir.path(), &["--report-json", "report.json"]);
    assert_eq!(code, 1, "{stderr}");
    let report = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let tests = report["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 2, "{report}");
    for test in tests {
        assert_eq!(test["status"], "error", "{test}");
        let message = test["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("larger than {bound}")),
            "{message}"
        );
    }
}

#[test]
fn a_history_not_written_is_said_when_a_report_fails_too() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    std::fs::create_dir(&gone).unwrap();
    // Both destinations can be written when the run starts; the batch removes the history's
    // directory and leaves a directory where the report goes.
    let report = dir.path().join("report.json");
    suite_manifest_doing(
        dir.path(),
        &format!(
            "rm -rf '{gone}' && mkdir -p '{report}'",
            gone = gone.display(),
            report = report.display()
        ),
    );
    let history = gone.join("timings.json");
    let flags = [
        "--write-timings",
        history.to_str().unwrap(),
        "--report-json",
        report.to_str().unwrap(),
    ];
    let (code, stderr) = run_suite(dir.path(), &flags);
    assert_eq!(code, 3, "{stderr}");
    for lost in [
        format!("cannot write {}", report.display()),
        format!("cannot write --write-timings {}", history.display()),
    ] {
        assert!(stderr.contains(&lost), "expected {lost:?} in:\n{stderr}");
    }
}
