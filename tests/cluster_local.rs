//! End-to-end tests of `cluster-action local`, a whole cluster on one machine: a mixed
//! manifest's statuses, reports and outputs, a commands file, the layer cache a job cannot
//! change for the next, 100 MB of output cut to its tail, the README's quickstart, and
//! cancelling a run (SIGTERM, Ctrl-C, `--timeout`).
//!
//! Each test drives the binary as a user does and waits for events (files appearing, log
//! lines, process exits), never for time; every process a test starts is killed when the
//! test ends, also when it fails. The tests of a file run one at a time ([`serial`]).

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use common::cluster::{BIN, JobPids, Proc, Scratch, await_gone, children, cmdline, serial};
use common::manifest::{defaults_env, manifest, write_data_layer};
use common::report::{read_report, with_status};
use common::{await_some, files_under, names_ending};

/// What a generated job of the mixed manifest does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pass,
    /// Fails its first two attempts, passes the third (`retries: 2`).
    Flaky,
    Fail,
    Timeout,
    Outputs,
    Layer,
}

impl Kind {
    fn of(index: usize) -> Kind {
        match index % 10 {
            0..=2 => Kind::Pass,
            3 => Kind::Flaky,
            4 | 5 => Kind::Fail,
            6 => Kind::Timeout,
            7 | 8 => Kind::Outputs,
            _ => Kind::Layer,
        }
    }

    fn name(index: usize) -> String {
        let label = format!("{:?}", Kind::of(index)).to_lowercase();
        format!("{label}-{index:02}")
    }
}

/// The files job `index` of the mixed manifest brings back. An output job writes
/// `out/<name>.txt` (the `printf` below) and `out/seq.txt` (`seq 1 <index * 1000>`); a failing
/// job explains itself in `out/why.txt` (test reports matter most when tests fail).
fn expected_outputs(index: usize) -> BTreeMap<String, Vec<u8>> {
    let name = Kind::name(index);
    match Kind::of(index) {
        Kind::Outputs => {
            let mut own = format!("job {name}\n").into_bytes();
            own.extend_from_slice(b"\x00\x01\xff end");
            let seq: String = (1..=index * 1000).map(|n| format!("{n}\n")).collect();
            BTreeMap::from([
                (format!("out/{name}.txt"), own),
                ("out/seq.txt".to_string(), seq.into_bytes()),
            ])
        }
        Kind::Fail => BTreeMap::from([("out/why.txt".to_string(), b"failing\n".to_vec())]),
        _ => BTreeMap::new(),
    }
}

/// Runs `cluster-action <args>` (a `local` run writing its report to `report.json`) in
/// `scratch` to its end, which must be exit status `code`: the process (for its stderr), the
/// report and its jobs by name.
fn run_local(scratch: &Scratch, args: &str, code: i32) -> (Proc, Value, BTreeMap<String, Value>) {
    let mut local = scratch.start("local", args);
    local.expect_exit(code);
    let (report, jobs) = read_report(&scratch.path().join("report.json"));
    (local, report, jobs)
}

/// The JUnit report a run in `scratch` wrote to `junit.xml`.
fn junit_xml(scratch: &Scratch) -> String {
    fs::read_to_string(scratch.path().join("junit.xml")).unwrap()
}

#[test]
fn local_runs_a_mixed_manifest_and_reports_every_job() {
    let _serial = serial();
    let scratch = Scratch::new();
    let sha = write_data_layer(&scratch);
    let count = 60;
    let jobs: Vec<(String, String, String)> = (0..count)
        .map(|i| {
            let (run, extra) = match Kind::of(i) {
                Kind::Pass => ("echo passing".to_string(), ""),
                Kind::Flaky => ("test $CLUSTER_ATTEMPT = 3".to_string(), "retries: 2"),
                Kind::Fail => (
                    "mkdir out && echo failing | tee out/why.txt; exit 1".to_string(),
                    "outputs: [out/*.txt]",
                ),
                Kind::Timeout => ("sleep 30".to_string(), "timeout: 1s"),
                Kind::Outputs => (
                    format!(
                        "mkdir -p out/nested && \
                         printf 'job %s\\n\\000\\001\\377 end' $CLUSTER_JOB_NAME > out/$CLUSTER_JOB_NAME.txt && \
                         seq 1 {} > out/seq.txt && echo stays > out/nested/deep.txt && echo stays > out/run.log",
                        i * 1000
                    ),
                    "outputs: [out/*.txt]",
                ),
                Kind::Layer => (format!("./data/check.sh {} {sha}", i % 10), "layers: [data]"),
            };
            (Kind::name(i), run, extra.to_string())
        })
        .collect();
    let head = "defaults: { timeout: 30s, retries: 0 }\nlayers:\n  data: { paths: [data] }\n";
    scratch.write("cluster.yml", manifest(head, &jobs));

    let (_, report, jobs) = run_local(
        &scratch,
        "local --workers 3 --slots 2 cluster.yml --report-json report.json \
         --report-junit junit.xml --outputs-dir outputs",
        1,
    );
    assert_eq!(jobs.len(), count, "every job appears exactly once");
    for i in 0..count {
        let name = Kind::name(i);
        let job = &jobs[&name];
        let (status, exit_code) = match Kind::of(i) {
            Kind::Pass | Kind::Flaky | Kind::Outputs | Kind::Layer => ("passed", Value::from(0)),
            Kind::Fail => ("failed", Value::from(1)),
            Kind::Timeout => ("timed_out", Value::Null),
        };
        let attempts = if Kind::of(i) == Kind::Flaky { 3 } else { 1 };
        assert_eq!(
            (&job["status"], &job["exit_code"]),
            (&status.into(), &exit_code),
            "{job}"
        );
        assert_eq!(job["attempts"], attempts, "{job}");
        assert!(["worker-0", "worker-1", "worker-2"].contains(&job["worker"].as_str().unwrap()));
        let dir = scratch.path().join("outputs").join(&name);
        // Exactly the files matching the globs, byte for byte, under <outputs-dir>/<job>/.
        let expected = expected_outputs(i);
        let listed: Vec<&str> = expected.keys().map(String::as_str).collect();
        assert_eq!(job["outputs"], json!(listed), "{job}");
        if expected.is_empty() {
            assert!(!dir.exists(), "{name} brought back no outputs");
        } else {
            assert!(files_under(&dir) == expected, "{name}: outputs differ");
        }
    }
    let summary = &report["summary"];
    let counts = [
        "total",
        "passed",
        "failed",
        "timed_out",
        "errors",
        "cancelled",
    ]
    .map(|k| &summary[k]);
    assert_eq!(counts, [60, 42, 12, 6, 0, 0].map(Value::from).each_ref());

    // The JUnit file parses and agrees with the JSON report.
    let xml = junit_xml(&scratch);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    let attr = |name: &str| Value::from(suite.attribute(name).unwrap().parse::<u64>().unwrap());
    let failed_or_timed_out =
        summary["failed"].as_u64().unwrap() + summary["timed_out"].as_u64().unwrap();
    assert_eq!(attr("tests"), summary["total"]);
    assert_eq!(attr("failures"), failed_or_timed_out);
    assert_eq!(attr("errors"), summary["errors"]);
    assert_eq!(attr("skipped"), summary["cancelled"]);
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: BTreeSet<String> = cases
        .iter()
        .map(|c| c.attribute("name").unwrap().into())
        .collect();
    assert_eq!(cases.len(), count);
    assert_eq!(names, jobs.keys().cloned().collect());
    let failures_of_type = |kind: &str| -> BTreeSet<String> {
        let failed = cases.iter().filter(|c| {
            c.children()
                .any(|f| f.has_tag_name("failure") && f.attribute("type") == Some(kind))
        });
        failed
            .map(|c| c.attribute("name").unwrap().to_string())
            .collect()
    };
    assert_eq!(failures_of_type("failed"), with_status(&jobs, "failed"));
    assert_eq!(
        failures_of_type("timed_out"),
        with_status(&jobs, "timed_out")
    );

    scratch.assert_tmp_empty();
}

#[test]
fn local_runs_a_commands_file() {
    let _serial = serial();
    let scratch = Scratch::new();
    // One job per command line; blank lines and comments are skipped. Each runs in a fresh,
    // empty directory (a commands file has no layers).
    scratch.write(
        "commands.txt",
        "echo one\n\n# a comment\nexit 3\ntest -z \"$(ls -A)\"\n",
    );
    let args = "local --workers 1 --commands commands.txt --report-json report.json";
    let (local, _, jobs) = run_local(&scratch, args, 1);
    // An ordinary end of the cluster is no warning.
    let stderr = local.stderr();
    assert!(!stderr.contains("WARN"), "{stderr}");
    let outcomes: BTreeMap<&str, Value> = jobs
        .iter()
        .map(|(name, job)| (name.as_str(), json!([job["status"], job["exit_code"]])))
        .collect();
    let expected = BTreeMap::from([
        ("L1: echo one", json!(["passed", 0])),
        ("L4: exit 3", json!(["failed", 3])),
        ("L5: test -z \"$(ls -A)\"", json!(["passed", 0])),
    ]);
    assert_eq!(outcomes, expected);
}

/// A job that writes into the worker's layer cache (by the relative path from its directory,
/// and through a hard link it makes into the cache) and into its own copy changes nothing the
/// next job on that worker sees.
#[test]
fn a_job_writing_into_the_layer_cache_leaves_the_next_job_s_files_intact() {
    let _serial = serial();
    let scratch = Scratch::new();
    scratch.write("data/data.txt", "original\n");
    // `local` lays a worker out as <worker>/cache/<digest>/ and <worker>/work/<job dir>/.
    let tamper = "set -e; shopt -s nullglob; cached=(../../cache/*/data/data.txt); \
                  test ${#cached[@]} -eq 1; echo tampered > \"${cached[0]}\"; \
                  ln \"${cached[0]}\" link; echo tampered through a link > link; \
                  echo tampered > data/data.txt";
    let check = "test \"$(cat data/data.txt)\" = original";
    let jobs = [
        ("tamper", tamper, "estimate: 60s"),
        ("check", check, "estimate: 1s"),
    ]
    .map(|(name, run, extra)| {
        let extra = format!("{extra}\nlayers: [data]");
        (name.to_string(), run.to_string(), extra)
    });
    let head = "layers:\n  data: { paths: [data] }\n";
    scratch.write("cluster.yml", manifest(head, &jobs));
    // One worker with one slot: the longest estimate runs first, then the check.
    let args = "local --workers 1 --slots 1 cluster.yml --report-json report.json";
    let (_, _, jobs) = run_local(&scratch, args, 0);
    assert_eq!(
        jobs["tamper"]["status"], "passed",
        "the tamper job reached the cache"
    );
    assert_eq!(jobs["check"]["status"], "passed", "{:?}", jobs["check"]);
}

#[test]
fn huge_output_is_cut_to_its_tail_in_bounded_worker_memory() {
    let _serial = serial();
    let scratch = Scratch::new();
    let flood = "head -c 100000000 /dev/zero | tr '\\0' x";
    // One slot runs the jobs in manifest order: `memory` reads the worker's (its parent's)
    // peak resident memory after both floods were captured and reported.
    let jobs = [
        ("flood-pass", flood.to_string(), ""),
        (
            "flood-fail",
            format!("{flood}; echo; echo END-OF-JOB; exit 1"),
            "",
        ),
        (
            "memory",
            "mkdir out && grep VmHWM /proc/$PPID/status > out/hwm && \
             tr '\\0' ' ' < /proc/$PPID/cmdline > out/cmdline"
                .to_string(),
            "outputs: [out/*]",
        ),
    ]
    .map(|(n, r, x)| (n.to_string(), r, x.to_string()));
    scratch.write("cluster.yml", manifest("", &jobs));
    let (_, _, jobs) = run_local(
        &scratch,
        "local --workers 1 --slots 1 cluster.yml --report-json report.json \
         --report-junit junit.xml --outputs-dir outputs",
        1,
    );
    let statuses = ["flood-pass", "flood-fail", "memory"].map(|n| jobs[n]["status"].clone());
    assert_eq!(statuses, ["passed", "failed", "passed"].map(Value::from));

    // The kept output is the last 1 MiB, after a marker saying how much was cut.
    let xml = junit_xml(&scratch);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let case = doc
        .descendants()
        .find(|n| n.attribute("name") == Some("flood-fail"))
        .unwrap();
    let out = case
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .unwrap();
    let out = out.text().unwrap();
    let kept = 1 << 20;
    let end = "\nEND-OF-JOB\n";
    let cut = 100_000_000 + end.len() - kept;
    let expected = format!(
        "[cluster-action: {cut} bytes of output cut, the last {kept} bytes follow]\n{}{end}",
        "x".repeat(kept - end.len())
    );
    assert!(
        out == expected,
        "captured {} bytes: {:?}...",
        out.len(),
        &out[..out.len().min(100)]
    );

    let memory = scratch.path().join("outputs/memory/out");
    let cmdline = fs::read_to_string(memory.join("cmdline")).unwrap();
    assert!(cmdline.contains(" worker "), "the job's parent: {cmdline}");
    let hwm = fs::read_to_string(memory.join("hwm")).unwrap();
    let kib: u64 = hwm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect(&hwm);
    assert!(
        kib < 100 * 1024,
        "worker peak memory {kib} KiB after 200 MB of output"
    );
}

#[test]
fn the_quickstart_from_the_readme_passes() {
    let _serial = serial();
    let scratch = Scratch::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let report = scratch.path().join("report.json");
    let args = format!(
        "local examples/quickstart/cluster.yml --report-json {}",
        report.display()
    );
    scratch.spawn(root, "quickstart", &args, &[]).expect_exit(0);
    let (report, jobs) = read_report(&report);
    assert_eq!(jobs.len(), 12);
    assert_eq!(report["summary"]["passed"], 12, "{report}");
    assert_eq!(report["test_summary"]["passed"], 20, "{report}");
}

/// Runs four long jobs on `local` (two workers with one slot each), interrupts it with
/// `interrupt` once both slots run a job, and checks the cancellation: exit 130, every job
/// reported cancelled (the started ones by the worker that ran them), the workers exited 0,
/// and no job process is left.
fn cancel_a_local_run(interrupt: impl FnOnce(&Proc)) {
    let _serial = serial();
    let scratch = Scratch::new();
    let pids = scratch.mkdir("pids");
    let job_pids = JobPids { dir: pids.clone() };
    // The shell and a background child: both must be gone after the cancellation.
    let run = "at=$PIDS/$CLUSTER_JOB_NAME; echo $$ > $at.sh.pid; \
               sleep 300 & echo $! > $at.tmp; mv $at.tmp $at.sleep.pid; wait";
    let jobs: Vec<_> = (0..4)
        .map(|i| (format!("long-{i}"), run.into(), String::new()))
        .collect();
    scratch.write("cluster.yml", manifest(&defaults_env("PIDS", &pids), &jobs));
    let mut local = scratch.start(
        "local",
        "local --workers 2 --slots 1 cluster.yml --report-json report.json",
    );
    await_some("both slots running a job", || {
        (names_ending(&pids, ".sleep.pid").len() == 2).then_some(())
    });
    let workers = children(local.pid());
    assert_eq!(workers.len(), 2, "local's worker processes");
    assert!(workers.iter().all(|&w| cmdline(w).contains(" worker ")));

    interrupt(&local);
    local.expect_exit(130);
    let stderr = local.stderr();
    let clean = !stderr.contains("exited with") && !stderr.contains("did not exit");
    assert!(clean, "the workers exited 0 in time: {stderr}");
    for pid in workers.into_iter().chain(job_pids.pids()) {
        await_gone("process", pid);
    }
    let (report, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(report["summary"]["cancelled"], 4, "{report}");
    let started: Vec<&Value> = jobs.values().filter(|j| j["attempts"] == 1).collect();
    assert!(started.len() >= 2, "{report}");
    for job in started {
        assert!(
            job["worker"] == "worker-0" || job["worker"] == "worker-1",
            "{job}"
        );
    }
}

#[test]
fn sigterm_cancels_a_local_run_and_leaves_no_job_running() {
    cancel_a_local_run(|local| local.signal(libc::SIGTERM));
}

/// What a terminal's Ctrl-C does: SIGINT to the whole foreground process group.
#[test]
fn ctrl_c_cancels_a_local_run_cleanly() {
    cancel_a_local_run(|local| {
        // SAFETY: killpg has no memory-safety preconditions; `local` leads its group.
        assert_eq!(unsafe { libc::killpg(local.pid(), libc::SIGINT) }, 0);
    });
}

/// `--timeout` (the action's `timeout` input) stops a run as SIGTERM does: its jobs cancelled,
/// its report and step outputs written, exit 130.
#[test]
fn the_timeout_cancels_a_local_run_and_still_writes_its_report_and_step_outputs() {
    let _serial = serial();
    let scratch = Scratch::new();
    let jobs: Vec<_> = (0..3)
        .map(|i| (format!("long-{i}"), "sleep 300".to_string(), String::new()))
        .collect();
    scratch.write("cluster.yml", manifest("", &jobs));
    let outputs = scratch.path().join("github-output");
    let mut local = scratch.spawn(
        scratch.path(),
        "local",
        "--timeout 3s local --workers 1 --slots 1 cluster.yml --report-json report.json --step-outputs",
        &[("GITHUB_OUTPUT", outputs.to_str().unwrap())],
    );
    local.expect_exit(130);
    assert!(
        local
            .stderr()
            .contains("error: cluster-action ran longer than its --timeout (3s): stopping it"),
        "{}",
        local.stderr()
    );
    let (report, _) = read_report(&scratch.path().join("report.json"));
    assert_eq!(report["summary"]["cancelled"], 3, "{report}");
    let text = fs::read_to_string(&outputs).unwrap();
    let values: BTreeMap<&str, &str> = text
        .split("\n")
        .collect::<Vec<_>>()
        .chunks(3)
        .filter(|entry| entry.len() == 3)
        .map(|entry| (entry[0].split_once("<<").unwrap().0, entry[1]))
        .collect();
    assert_eq!(values["passed"], "0", "{text}");
    assert_eq!(
        values["failed"], "0",
        "cancelled jobs are not failures: {text}"
    );
    assert_eq!(values["total"], "3", "{text}");
    assert_eq!(values["report-json"], "report.json", "{text}");
    assert_eq!(values["report-junit"], "", "{text}");
}

/// A process that does not stop on the timeout's SIGTERM (here: it has SIGTERM blocked) is
/// killed --kill-grace later.
#[test]
fn the_timeout_kills_a_process_that_does_not_stop_after_the_grace() {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--timeout",
        "300ms",
        "--kill-grace",
        "300ms",
        "serve",
        "--addr",
        "127.0.0.1:0",
    ])
    .env_remove("GITHUB_ACTIONS")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: sigprocmask on a local set is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{:?}", out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "ran longer than its --timeout (300ms): stopping it (SIGTERM, then SIGKILL after 300ms)"
        ),
        "{stderr}"
    );
}
