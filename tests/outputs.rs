//! What a job's outputs and inputs can reach, end to end through `cluster-action local`:
//! collecting outputs never follows a symlink (a loop or a link to `/` cannot hang the worker,
//! a link out of the job's directory brings nothing back from outside), each job's outputs
//! land in a directory of its own, and a layer reaches outside the manifest's directory only
//! when it says `allow-outside: true`.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_cluster-action");

/// How long a run may take before the test calls it a hang (and kills it).
const PATIENCE: Duration = Duration::from_secs(90);

/// Runs `manifest` (written to `dir/cluster.yml`) with `local`, one worker, reports and
/// outputs in `dir`; returns the exit code and the JSON report. A run that outlives
/// [`PATIENCE`] is killed, with its process group, and fails the test.
fn local(dir: &Path, manifest: &str) -> (i32, Value) {
    fs::write(dir.join("cluster.yml"), manifest).unwrap();
    let child = Command::new(BIN)
        .args(["local", "cluster.yml", "--workers", "1", "--slots", "2"])
        .args(["--report-json", "report.json", "--outputs-dir", "out"])
        .current_dir(dir)
        .env_remove("GITHUB_RUN_ATTEMPT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(PATIENCE) else {
        // SAFETY: kills the process group the test started.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        panic!("`local` did not finish within {PATIENCE:?}");
    };
    let output = output.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report ({e}); stderr:\n{stderr}"));
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_str(&report).unwrap(),
    )
}

/// The report entry of job `name`.
fn job<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {report}"))
}

#[test]
fn output_globs_through_symlink_loops_finish_and_bring_back_the_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = local(
        dir.path(),
        "jobs:\n  - name: loops\n    run: mkdir -p r && echo x > r/t.xml && ln -s . a && \
         ln -s . b && ln -s / root\n    outputs: ['**/*.xml']\n",
    );
    let loops = job(&report, "loops");
    assert_eq!(code, 0, "{report}");
    assert_eq!(loops["outputs"], serde_json::json!(["r/t.xml"]), "{loops}");
    assert_eq!(
        fs::read_to_string(dir.path().join("out/loops/r/t.xml")).unwrap(),
        "x\n"
    );
}

#[test]
fn a_symlink_out_of_the_job_directory_is_left_out_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = local(
        dir.path(),
        "jobs:\n  - name: escape\n    run: mkdir r && echo ok > r/ok.xml && \
         ln -s /etc/hostname r/host.xml && ln -s ok.xml r/same.xml\n    outputs: [r]\n",
    );
    let escape = job(&report, "escape");
    assert_eq!(code, 0, "{report}");
    assert_eq!(escape["status"], "passed", "{escape}");
    assert_eq!(
        escape["outputs"],
        serde_json::json!(["r/ok.xml", "r/same.xml"]),
        "{escape}"
    );
    let out = dir.path().join("out/escape/r");
    assert!(fs::symlink_metadata(out.join("host.xml")).is_err());
    assert_eq!(fs::read_to_string(out.join("same.xml")).unwrap(), "ok\n");
}

#[test]
fn every_job_gets_its_own_bounded_outputs_directory() {
    let long = "n".repeat(300);
    // Names that shared `out/a_b/` or `out/_/` before, and two that differ only in case.
    let names = [
        "Unit", "unit", ".", "..", "ü", "é", "a:b", "a/b", "a b", "a_b", &long,
    ];
    let mut manifest = String::from("jobs:\n");
    for name in names {
        manifest.push_str(&format!(
            "  - name: '{name}'\n    run: mkdir r && printf %s \"$CLUSTER_JOB_NAME\" > r/name.txt\n    \
             outputs: [r]\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = local(dir.path(), &manifest);
    assert_eq!(code, 0, "{report}");
    let mut dirs = std::collections::BTreeSet::new();
    for name in names {
        let job = job(&report, name);
        let outputs_dir = job["outputs_dir"]
            .as_str()
            .unwrap_or_else(|| panic!("{job}"));
        assert!(outputs_dir.len() <= 64, "{outputs_dir}");
        // Distinct even on a file system that folds case.
        assert!(
            dirs.insert(outputs_dir.to_lowercase()),
            "{outputs_dir} twice"
        );
        let file = dir.path().join("out").join(outputs_dir).join("r/name.txt");
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            name,
            "{}",
            file.display()
        );
    }
}

#[test]
fn a_layer_allowed_outside_carries_what_its_symlink_points_to() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::create_dir(elsewhere.path().join("lib")).unwrap();
    fs::write(elsewhere.path().join("lib/data.txt"), "from outside").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("vendor")).unwrap();
    let (code, report) = local(
        dir.path(),
        "layers:\n  v:\n    paths: [vendor]\n    allow-outside: true\njobs:\n  - name: reads\n    \
         layers: [v]\n    run: test -d vendor && test ! -L vendor && mkdir r && \
         cp vendor/lib/data.txt r/\n    outputs: [r]\n",
    );
    assert_eq!(code, 0, "{report}");
    let copied = dir.path().join("out/reads/r/data.txt");
    assert_eq!(fs::read_to_string(copied).unwrap(), "from outside");
}
