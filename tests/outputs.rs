//! What a job's outputs and inputs can reach, end to end through `cluster-action local`:
//! collecting outputs never follows a symlink (a loop or a link to `/` cannot hang the worker,
//! a link out of the job's directory brings nothing back from outside), each job's outputs
//! land in a directory of its own, and a layer reaches outside the manifest's directory only
//! when it says `allow-outside: true`.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::fs;

use serde_json::Value;

mod common;
use common::cluster::Scratch;
use common::report::read_report_of;

/// Runs `manifest` (written to `cluster.yml` in `scratch`) with `local`, one worker, reports
/// and outputs in `scratch`; returns the exit code and the JSON report. A run that hangs fails
/// the test, and its processes are killed.
fn local(scratch: &Scratch, manifest: &str) -> (i32, Value) {
    scratch.write("cluster.yml", manifest);
    let args = "local cluster.yml --workers 1 --slots 2 --report-json report.json \
                --outputs-dir out";
    let mut local = scratch.start("local", args);
    let status = local.wait();
    let (report, _) = read_report_of(&scratch.path().join("report.json"), &local.stderr());
    (status.code().unwrap_or(-1), report)
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
    let scratch = Scratch::new();
    let (code, report) = local(
        &scratch,
        "jobs:\n  - name: loops\n    run: mkdir -p r && echo x > r/t.xml && ln -s . a && \
         ln -s . b && ln -s / root\n    outputs: ['**/*.xml']\n",
    );
    let loops = job(&report, "loops");
    assert_eq!(code, 0, "{report}");
    assert_eq!(loops["outputs"], serde_json::json!(["r/t.xml"]), "{loops}");
    assert_eq!(
        fs::read_to_string(scratch.path().join("out/loops/r/t.xml")).unwrap(),
        "x\n"
    );
}

#[test]
fn a_symlink_out_of_the_job_directory_is_left_out_not_followed() {
    let scratch = Scratch::new();
    let (code, report) = local(
        &scratch,
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
    let out = scratch.path().join("out/escape/r");
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
    let scratch = Scratch::new();
    let (code, report) = local(&scratch, &manifest);
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
        let file = scratch
            .path()
            .join("out")
            .join(outputs_dir)
            .join("r/name.txt");
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
    let scratch = Scratch::new();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::create_dir(elsewhere.path().join("lib")).unwrap();
    fs::write(elsewhere.path().join("lib/data.txt"), "from outside").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), scratch.path().join("vendor")).unwrap();
    let (code, report) = local(
        &scratch,
        "layers:\n  v:\n    paths: [vendor]\n    allow-outside: true\njobs:\n  - name: reads\n    \
         layers: [v]\n    run: test -d vendor && test ! -L vendor && mkdir r && \
         cp vendor/lib/data.txt r/\n    outputs: [r]\n",
    );
    assert_eq!(code, 0, "{report}");
    let copied = scratch.path().join("out/reads/r/data.txt");
    assert_eq!(fs::read_to_string(copied).unwrap(), "from outside");
}
