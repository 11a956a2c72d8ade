//! End-to-end tests of the `cluster-action` binary, driven as a user drives it: `local`, and
//! the separate `serve`, `broker`, `worker`, `run` and `stop` processes of a CI cluster.
//!
//! Each test asserts what a user relies on (exit codes, reports, outputs, the retry of a lost
//! worker's jobs, cancellation, bounded output capture, manifest errors refused before any
//! upload) and waits for events (files appearing, log lines, process exits), never for time.
//! Every process a test starts is killed when the test ends, also when it fails.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use common::cluster::{
    BIN, Cluster, Proc, Scratch, Service, TIMINGS, block_on, children, cmdline, token,
};
use common::{alive, await_some};

/// Each test starts several processes on a 2-core machine; one test at a time keeps the peer
/// timeouts meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Job processes

/// Job processes (from the `*.pid` files jobs write into `dir`) that must not outlive the
/// test: killed, with their process groups, on drop.
struct JobPids {
    dir: PathBuf,
}

impl JobPids {
    /// Every pid written so far.
    fn pids(&self) -> Vec<libc::pid_t> {
        fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter_map(|e| fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }

    /// Kills `pid` and its group, if it still runs a job's command.
    fn kill(pid: libc::pid_t) {
        let cmd = cmdline(pid);
        if alive(pid) && (cmd.starts_with("bash") || cmd.starts_with("sleep")) {
            // SAFETY: plain signal calls on a process of this test's jobs.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for JobPids {
    fn drop(&mut self) {
        for pid in self.pids() {
            JobPids::kill(pid);
        }
    }
}

/// A job that writes its pid to `$PIDS/<job>.pid` (whole: written aside, then renamed) and
/// runs for two minutes, longer than any test.
const PARKED: &str = "echo $$ > $PIDS/$CLUSTER_JOB_NAME.tmp; \
                      mv $PIDS/$CLUSTER_JOB_NAME.tmp $PIDS/$CLUSTER_JOB_NAME.pid; sleep 120";

/// Waits until process `pid` (`what`, for the message) is gone.
fn await_gone(what: &str, pid: libc::pid_t) {
    await_some(&format!("{what} {pid} to be gone"), || {
        (!alive(pid)).then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// Reports and files

/// Reads a JSON report and checks its documented schema: the summary's keys and counts, each
/// job's keys and value types, each job appearing once, each test's keys. Returns it and its jobs by name.
fn read_report(path: &Path) -> (Value, BTreeMap<String, Value>) {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the report {}: {e}", path.display()));
    let report: Value = serde_json::from_str(&text).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    // A run with suites adds its tests, each with its documented keys.
    match report.get("tests") {
        None => assert_eq!(keys(&report), ["jobs", "summary"]),
        Some(tests) => {
            assert_eq!(keys(&report), ["jobs", "summary", "test_summary", "tests"]);
            for test in tests.as_array().unwrap() {
                let want = [
                    "attempts",
                    "duration_ms",
                    "id",
                    "message",
                    "status",
                    "suite",
                    "workers",
                ];
                assert_eq!(keys(test), want, "{test}");
            }
        }
    }
    let summary = &report["summary"];
    let counts = ["passed", "failed", "timed_out", "errors", "cancelled"];
    let mut summary_keys = keys(summary);
    summary_keys.sort();
    let mut expected: Vec<&str> = counts.into_iter().chain(["total", "wall_ms"]).collect();
    expected.sort();
    assert_eq!(summary_keys, expected);
    assert!(summary.as_object().unwrap().values().all(Value::is_u64));

    let mut jobs = BTreeMap::new();
    let mut tally: BTreeMap<&str, u64> = BTreeMap::new();
    for job in report["jobs"].as_array().unwrap() {
        let mut job_keys = keys(job);
        job_keys.sort();
        let expected = [
            "attempts",
            "duration_ms",
            "error",
            "exit_code",
            "name",
            "outputs",
            "outputs_dir",
            "status",
            "worker",
        ];
        assert_eq!(job_keys, expected);
        let status = job["status"].as_str().unwrap();
        let count = match status {
            "error" => "errors",
            other => counts.into_iter().find(|c| *c == other).expect(other),
        };
        *tally.entry(count).or_default() += 1;
        assert!(
            job["exit_code"].is_null() || job["exit_code"].is_i64(),
            "{job}"
        );
        assert!(
            job["attempts"].is_u64() && job["duration_ms"].is_u64(),
            "{job}"
        );
        assert!(job["worker"].is_string(), "{job}");
        // Every error says why; nothing else has an error.
        assert_eq!(
            status == "error",
            job["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{job}"
        );
        let outputs = job["outputs"].as_array().unwrap();
        assert!(outputs.iter().all(Value::is_string), "{job}");
        let name = job["name"].as_str().unwrap().to_string();
        assert!(
            jobs.insert(name, job.clone()).is_none(),
            "{job} appears twice"
        );
    }
    assert_eq!(summary["total"], jobs.len());
    for count in counts {
        let n = tally.get(count).copied().unwrap_or(0);
        assert_eq!(summary[count], n, "summary.{count} against the jobs");
    }
    (report, jobs)
}

/// The names of the jobs with `status`.
fn with_status(jobs: &BTreeMap<String, Value>, status: &str) -> BTreeSet<String> {
    let named = jobs.iter().filter(|(_, j)| j["status"] == status);
    named.map(|(n, _)| n.clone()).collect()
}

/// Every file under `dir`, by relative path, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                out.insert(rel.into_owned(), fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Names of the files in `dir` ending with `suffix`.
fn names_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// `text` as a double-quoted YAML scalar (JSON's escapes are YAML's too).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// A manifest head whose `defaults` give every job `$VAR`, the directory `dir` (more
/// `defaults` keys may follow, indented by two spaces).
fn defaults_env(var: &str, dir: &Path) -> String {
    let dir = quoted(dir.to_str().unwrap());
    format!("defaults:\n  env: {{ {var}: {dir} }}\n")
}

/// A manifest: `head` (defaults, layers), then one job per `(name, run, extra keys)`.
fn manifest(head: &str, jobs: &[(String, String, String)]) -> String {
    let mut text = format!("{head}jobs:\n");
    for (name, run, extra) in jobs {
        text.push_str(&format!("  - name: {name}\n    run: {}\n", quoted(run)));
        for line in extra.lines() {
            text.push_str(&format!("    {line}\n"));
        }
    }
    text
}

// ---------------------------------------------------------------------------------------------
// 1. A mixed manifest on `local`: statuses, reports, outputs

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

/// Writes the files of the `data` layer: text files, a binary file and an executable script
/// checking them (`./data/check.sh K SHA256`); returns the binary file's SHA-256 in hex.
fn write_data_layer(scratch: &Scratch) -> String {
    for k in 0..10 {
        scratch.write(&format!("data/f{k}.txt"), format!("layer-content-{k}\n"));
    }
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    scratch.write("data/sub/bytes.bin", &bytes);
    let check = scratch.write(
        "data/check.sh",
        "#!/bin/bash\n\
         set -e\n\
         test \"$(cat data/f$1.txt)\" = \"layer-content-$1\"\n\
         test \"$(sha256sum < data/sub/bytes.bin)\" = \"$2  -\"\n",
    );
    fs::set_permissions(&check, fs::Permissions::from_mode(0o755)).unwrap();
    hex::encode(Sha256::digest(&bytes))
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

    let mut local = scratch.start(
        "local",
        "local --workers 3 --slots 2 cluster.yml --report-json report.json \
         --report-junit junit.xml --outputs-dir outputs",
    );
    local.expect_exit(1);

    let (report, jobs) = read_report(&scratch.path().join("report.json"));
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
    let xml = fs::read_to_string(scratch.path().join("junit.xml")).unwrap();
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
    let mut local = scratch.start("local", args);
    local.expect_exit(1);
    // An ordinary end of the cluster is no warning.
    let stderr = local.stderr();
    assert!(!stderr.contains("WARN"), "{stderr}");
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
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
    scratch
        .start(
            "local",
            "local --workers 1 --slots 1 cluster.yml --report-json report.json",
        )
        .expect_exit(0);
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(
        jobs["tamper"]["status"], "passed",
        "the tamper job reached the cache"
    );
    assert_eq!(jobs["check"]["status"], "passed", "{:?}", jobs["check"]);
}

// ---------------------------------------------------------------------------------------------
// 2. A lost worker: its jobs run again elsewhere

/// A runner of `cluster.yml` that logs each job's start (which worker, which attempt), stops
/// the cluster at the end and writes `report.json`.
const WATCHED_RUN: &str = "--log-level warn,cluster_action::runner::progress=debug \
                           run cluster.yml --stop-cluster --report-json report.json";

/// How the victim worker goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    /// SIGKILL, and its job with it: a machine that died. The broker notices the silence.
    Killed,
    /// SIGTERM: a cancelled CI job. The worker kills its job and says it is leaving.
    Terminated,
}

/// Two workers with one slot share six jobs; the victim runs one until it is lost. Every job
/// must pass on the survivor, the victim's started job on a second attempt; everyone else
/// exits 0 when the run stops the cluster.
fn lose_a_worker(loss: Loss) {
    let _serial = serial();
    let scratch = Scratch::new();
    let marks = scratch.mkdir("marks");
    let _job_pids = JobPids { dir: marks.clone() };
    // Each attempt records its process group and its worker; on the victim it runs until the
    // worker is killed (a machine that hangs, then dies).
    let run = "at=$MARKS/$CLUSTER_JOB_NAME.$CLUSTER_ATTEMPT; echo $$ > $at.pid; \
               echo $CLUSTER_WORKER > $at.tmp; mv $at.tmp $at.worker; \
               if [ $CLUSTER_WORKER = victim ]; then sleep 120; else sleep 0.3; fi";
    let count = 6;
    let jobs: Vec<_> = (0..count)
        .map(|i| (format!("job-{i}"), run.to_string(), String::new()))
        .collect();
    let head = format!("{}  retries: 0\n", defaults_env("MARKS", &marks));
    scratch.write("cluster.yml", manifest(&head, &jobs));

    // Both are connected before the jobs come, so both get some.
    let mut cluster = Cluster::builder("k")
        .named_workers(&["victim", "survivor"])
        .start(&scratch);
    let mut runner = cluster.start("runner", WATCHED_RUN);

    // The victim runs a job, and the broker knows it started (the runner heard of it).
    let victims_job = await_some("a job running on the victim", || {
        names_ending(&marks, ".1.worker")
            .into_iter()
            .find_map(|file| {
                let worker = fs::read_to_string(marks.join(&file)).ok()?;
                (worker.trim() == "victim").then(|| file.trim_end_matches(".1.worker").to_string())
            })
    });
    runner.await_stderr(&format!(
        "started job=\"{victims_job}\" attempt=1 worker=\"victim\""
    ));
    let victim = cluster.worker("victim");
    let pid = fs::read_to_string(marks.join(format!("{victims_job}.1.pid"))).unwrap();
    let pid: libc::pid_t = pid.trim().parse().unwrap();
    let gone = match loss {
        Loss::Killed => {
            victim.signal(libc::SIGKILL);
            JobPids::kill(pid); // the machine is gone, and its job with it
            "sent nothing for 3s: considered dead"
        }
        Loss::Terminated => {
            victim.signal(libc::SIGTERM);
            victim.expect_exit(130);
            await_gone("the victim's job", pid);
            "peer gone: it closed its stream"
        }
    };

    runner.expect_exit(0);
    cluster.broker().expect_exit(0);
    let stderr = cluster.broker().stderr();
    assert!(stderr.contains(gone), "{stderr}");
    cluster.worker("survivor").expect_exit(0);

    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(jobs.len(), count);
    for (name, job) in &jobs {
        let attempts = if *name == victims_job { 2 } else { 1 };
        assert_eq!(job["status"], "passed", "{job}");
        assert_eq!(
            (&job["worker"], &job["attempts"]),
            (&"survivor".into(), &attempts.into()),
            "{job}"
        );
    }
    let on_victim: Vec<String> = names_ending(&marks, ".worker")
        .into_iter()
        .filter(|file| fs::read_to_string(marks.join(file)).unwrap().trim() == "victim")
        .collect();
    assert_eq!(
        on_victim,
        [format!("{victims_job}.1.worker")],
        "one slot, one job started"
    );
    let second = fs::read_to_string(marks.join(format!("{victims_job}.2.worker"))).unwrap();
    assert_eq!(second.trim(), "survivor");
}

#[test]
fn a_killed_worker_s_jobs_run_again_on_another_worker() {
    lose_a_worker(Loss::Killed);
}

/// The broker learns at once that a terminated worker left, not after its peer timeout.
#[test]
fn a_terminated_worker_hands_its_jobs_back_at_once() {
    lose_a_worker(Loss::Terminated);
}

// ---------------------------------------------------------------------------------------------
// 3. A worker that joins a running run gets its work

#[test]
fn a_worker_joining_after_the_run_started_gets_the_work() {
    let _serial = serial();
    let scratch = Scratch::new();
    let cluster = Cluster::builder("late").embedded_broker().start(&scratch);
    let run = "test $CLUSTER_WORKER = late";
    let jobs: Vec<_> = (0..3)
        .map(|i| (format!("job-{i}"), run.into(), String::new()))
        .collect();
    scratch.write("cluster.yml", manifest("", &jobs));
    let mut runner = cluster.start(
        "runner",
        "--log-level info run cluster.yml --embed-broker --slots 0 --report-json report.json",
    );
    runner.await_stderr("jobs submitted");

    let mut worker = cluster.start("worker", "worker --name late --slots 2");
    runner.expect_exit(0);
    worker.expect_exit(0);
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(jobs.len(), 3);
    for job in jobs.values() {
        assert_eq!(
            (&job["status"], &job["worker"]),
            (&"passed".into(), &"late".into()),
            "{job}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. No workers, no broker; `stop`

#[test]
fn a_run_without_workers_gives_up_after_the_worker_wait() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::up(&scratch);
    let jobs: Vec<_> = ["a", "b", "c"]
        .map(|n| (n.to_string(), "true".into(), String::new()))
        .into();
    scratch.write("cluster.yml", manifest("", &jobs));
    let args = format!(
        "run cluster.yml --embed-broker --slots 0 --worker-wait 2s {TIMINGS} --report-json report.json"
    );
    let mut runner = service.start(&scratch, "runner", &args);
    runner.expect_exit(3);
    let stderr = runner.stderr();
    let message = "no worker joined the cluster within --worker-wait; 3 of 3 job(s) did not run";
    assert!(stderr.contains(message), "{stderr}");
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(with_status(&jobs, "error").len(), 3, "{jobs:?}");
}

#[test]
fn a_runner_with_slots_and_no_workers_runs_the_manifest_alone_and_says_so() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::up(&scratch);
    let jobs: Vec<_> = (0..6)
        .map(|i| {
            let run = format!("sleep 2; mkdir -p out && echo {i} > out/n.txt");
            (format!("job-{i}"), run, "outputs: [out/n.txt]".to_string())
        })
        .collect();
    scratch.write("cluster.yml", manifest("", &jobs));
    let args = format!(
        "run cluster.yml --embed-broker --slots 2 --worker-wait 2s {TIMINGS} \
         --report-json report.json --outputs-dir outputs"
    );
    let mut runner = service.start(&scratch, "runner", &args);
    runner.expect_exit(0);
    let (report, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(report["summary"]["passed"], 6, "{report}");
    for (name, job) in &jobs {
        let worker = job["worker"].as_str().unwrap();
        assert!(worker.ends_with("-runner"), "{name} ran on {worker}");
        let n = fs::read_to_string(scratch.path().join("outputs").join(name).join("out/n.txt"));
        assert_eq!(n.unwrap().trim(), name.trim_start_matches("job-"));
    }
    let stderr = runner.stderr();
    assert!(
        stderr.contains("no other worker joined within --worker-wait"),
        "{stderr}"
    );
    scratch.assert_tmp_empty();
}

#[test]
fn a_worker_without_a_broker_gives_up_after_the_broker_wait() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::up(&scratch);
    let args = format!("worker --cluster nobody --broker-wait 1s {TIMINGS}");
    let mut worker = service.start(&scratch, "worker", &args);
    worker.expect_exit(3);
    let stderr = worker.stderr();
    assert!(
        stderr.contains("no broker for cluster 'nobody' appeared"),
        "{stderr}"
    );
}

/// A job's result must fit one stream message: a worker refuses to keep more output than
/// it can report, instead of failing on the first job that prints that much.
#[test]
fn a_worker_refuses_an_output_limit_it_cannot_report() {
    let scratch = Scratch::new();
    let mut worker = scratch.start("worker", "worker --output-limit 100000000");
    worker.expect_exit(2);
    let stderr = worker.stderr();
    assert!(
        stderr.contains("'--output-limit <BYTES>': 100000000 is not in 0..=8388608"),
        "{stderr}"
    );
}

#[test]
fn stop_ends_the_cluster_and_every_worker_exits_0() {
    let _serial = serial();
    let scratch = Scratch::new();
    let mut cluster = Cluster::builder("s").workers(1).start(&scratch);
    cluster.start("stop", "stop").expect_exit(0);
    cluster.broker().expect_exit(0);
    cluster.worker("worker").expect_exit(0);
    scratch.assert_tmp_empty();
}

// ---------------------------------------------------------------------------------------------
// 5. Cancelling a `local` run

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

/// A worker nobody waits for (the action's wrapper replaced itself with it) that is SIGKILLed:
/// its guard kills what its job started outside the job's process group (a `setsid` daemon).
#[test]
fn a_sigkilled_worker_that_nobody_waits_for_leaves_no_job_process() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::up(&scratch);
    let pids = scratch.mkdir("pids");
    let run = format!(
        "setsid sh -c 'echo $$ > {d}/daemon.tmp; mv {d}/daemon.tmp {d}/daemon; exec sleep 300' & wait",
        d = pids.display()
    );
    scratch.write(
        "cluster.yml",
        manifest("", &[("daemon".into(), run, String::new())]),
    );
    let mut runner = service.start(
        &scratch,
        "runner",
        "run cluster.yml --embed-broker --slots 1 --worker-wait 1m",
    );
    let daemon: libc::pid_t = await_some("the job's daemon", || {
        fs::read_to_string(pids.join("daemon"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    assert!(alive(daemon));
    runner.signal(libc::SIGKILL);
    let _ = runner.child.wait();
    await_gone("the daemon", daemon);
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

// ---------------------------------------------------------------------------------------------
// 6. 100 MB of output

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
    let mut local = scratch.start(
        "local",
        "local --workers 1 --slots 1 cluster.yml --report-json report.json \
         --report-junit junit.xml --outputs-dir outputs",
    );
    local.expect_exit(1);
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    let statuses = ["flood-pass", "flood-fail", "memory"].map(|n| jobs[n]["status"].clone());
    assert_eq!(statuses, ["passed", "failed", "passed"].map(Value::from));

    // The kept output is the last 1 MiB, after a marker saying how much was cut.
    let xml = fs::read_to_string(scratch.path().join("junit.xml")).unwrap();
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

// ---------------------------------------------------------------------------------------------
// 7. Manifest errors: exit 2, a located message, nothing uploaded

#[test]
fn manifest_errors_exit_2_with_a_location_and_upload_nothing() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::up(&scratch);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases = [
        ("unknown-key", 6, "unknown field `comand`"),
        ("duplicate-names", 7, "job 'unit' is defined twice"),
        ("empty-run", 6, "job 'nothing' has an empty `run` command"),
        (
            "bad-duration",
            7,
            "bad timeout: invalid duration '10 minutes'",
        ),
        (
            "undefined-layer",
            8,
            "uses layer 'toolchain', which is not defined",
        ),
        (
            "path-matches-nothing",
            4,
            "'no-such-dir/*.xml' matches nothing",
        ),
    ];
    for (name, line, problem) in cases {
        let path = format!("tests/fixtures/cluster/{name}.yml");
        let args = format!("run {path} --embed-broker --worker-wait 1s");
        let mut run = service.start_in(&scratch, root, name, &args);
        run.expect_exit(2);
        let stderr = run.stderr();
        let located = stderr.contains(&format!("{path}:{line}:")) && stderr.contains(problem);
        assert!(
            located,
            "{name}: expected '{path}:{line}:' and '{problem}' in:\n{stderr}"
        );
        let stats = service.stats();
        let calls = (&stats["twirp_total"], &stats["blob_total"]);
        assert_eq!(
            calls,
            (&0.into(), &0.into()),
            "{name}: nothing may reach the store: {stats}"
        );
    }
    // The counters do see a run that gets going (it gives up without workers).
    scratch.write("fine.yml", "jobs:\n  - { name: a, run: 'true' }\n");
    let args = format!("run fine.yml --embed-broker --slots 0 --worker-wait 1s {TIMINGS}");
    service.start(&scratch, "fine", &args).expect_exit(3);
    let stats = service.stats();
    assert!(
        stats["twirp"]["CreateArtifact"].as_u64() > Some(0),
        "{stats}"
    );
}

/// A runner with `--stop-cluster` whose manifest is refused still stops its cluster: the broker
/// and the workers of the other jobs exit now, not after their 15-minute idle timeout.
#[test]
fn a_refused_manifest_with_stop_cluster_stops_the_separate_broker_and_workers() {
    let _serial = serial();
    let scratch = Scratch::new();
    let mut cluster = Cluster::builder("refused").workers(1).start(&scratch);
    scratch.write("bad.yml", "jobs:\n  - { name: a, comand: 'true' }\n");
    let mut runner = cluster.start("runner", "run bad.yml --stop-cluster");
    runner.expect_exit(2);
    cluster.worker("worker").expect_exit(0);
    let broker = cluster.broker();
    broker.expect_exit(0);
    assert!(runner.stderr().contains("unknown field `comand`"));
    assert!(
        runner
            .stderr()
            .contains("telling cluster 'refused' to stop"),
        "{}",
        runner.stderr()
    );
    assert!(
        !broker.stderr().contains("--idle-timeout"),
        "stopped by the runner, not idle: {}",
        broker.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// 8. The README's first command

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

// ---------------------------------------------------------------------------------------------
// 9. A lost broker

#[test]
fn a_lost_broker_ends_the_run_and_the_workers_with_exit_3() {
    let _serial = serial();
    let scratch = Scratch::new();
    let pids = scratch.mkdir("pids");
    let job_pids = JobPids { dir: pids.clone() };
    let head = defaults_env("PIDS", &pids);
    scratch.write(
        "cluster.yml",
        manifest(&head, &[("long".into(), PARKED.into(), String::new())]),
    );
    let mut cluster = Cluster::builder("b").workers(1).start(&scratch);
    let mut runner = cluster.start("runner", "run cluster.yml");
    await_some("the job to run", || {
        (!job_pids.pids().is_empty()).then_some(())
    });

    cluster.broker().signal(libc::SIGKILL);
    runner.expect_exit(3);
    assert!(
        runner.stderr().contains("lost the broker"),
        "{}",
        runner.stderr()
    );
    let worker = cluster.worker("worker");
    worker.expect_exit(3);
    assert!(
        worker.stderr().contains("lost the broker"),
        "{}",
        worker.stderr()
    );
    for pid in job_pids.pids() {
        await_gone("job process", pid);
    }
}

/// Twenty jobs on one worker slot: ten pass, then the broker goes away (`signal`) while the
/// eleventh runs. The runner exits 3 and still writes both reports: ten passed, ten errors
/// that say the broker was lost; the worker starts none of its prefetched jobs after that.
fn lose_the_broker_halfway(signal: libc::c_int) {
    let _serial = serial();
    let scratch = Scratch::new();
    let pids = scratch.mkdir("pids");
    let job_pids = JobPids { dir: pids.clone() };
    let jobs: Vec<_> = (0..20)
        .map(|i| {
            let run = if i < 10 { "true" } else { PARKED };
            (format!("job-{i:02}"), run.to_string(), String::new())
        })
        .collect();
    scratch.write("cluster.yml", manifest(&defaults_env("PIDS", &pids), &jobs));
    let mut cluster = Cluster::builder("b").workers(1).start(&scratch);
    let args = "run cluster.yml --report-json r/report.json --report-junit r/junit.xml";
    let mut runner = cluster.start("runner", args);
    await_some("ten jobs to pass and the eleventh to run", || {
        let passed = runner.stdout().matches("PASS").count();
        (passed == 10 && !job_pids.pids().is_empty()).then_some(())
    });

    cluster.broker().signal(signal);
    runner.expect_exit(3);
    let stderr = runner.stderr();
    assert!(
        stderr.contains("lost the broker") && stderr.contains("10 of 20 job(s) did not finish"),
        "{stderr}"
    );
    let (report, jobs) = read_report(&scratch.path().join("r/report.json"));
    assert_eq!(
        (&report["summary"]["passed"], &report["summary"]["errors"]),
        (&json!(10), &json!(10)),
        "{report}"
    );
    for name in with_status(&jobs, "error") {
        let why = jobs[&name]["error"].as_str().unwrap();
        assert!(
            why.starts_with("not finished: lost the broker"),
            "{name}: {why}"
        );
    }
    let junit = fs::read_to_string(scratch.path().join("r/junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 20, "{junit}");
    assert_eq!(junit.matches("<error ").count(), 10, "{junit}");
    cluster
        .worker("worker")
        .expect_exit(if signal == libc::SIGKILL { 3 } else { 0 });
    assert_eq!(
        job_pids.pids().len(),
        1,
        "no prefetched job started after the broker was gone"
    );
    for pid in job_pids.pids() {
        await_gone("job process", pid);
    }
}

#[test]
fn a_killed_broker_loses_no_result_the_runner_had() {
    lose_the_broker_halfway(libc::SIGKILL);
}

#[test]
fn a_terminated_broker_loses_no_result_the_runner_had() {
    lose_the_broker_halfway(libc::SIGTERM);
}

// ---------------------------------------------------------------------------------------------
// 9b. Store faults after a job ran; a large submission

/// At `serve --fail-rate 0.3`, a passing job whose outputs meet a transient store failure
/// (publishing them on the worker, fetching them on the runner) still passes: the outputs step
/// is tried again as infrastructure, and no job attempt is spent on it.
#[test]
fn transient_store_failures_around_outputs_never_fail_a_passing_job() {
    let _serial = serial();
    let scratch = Scratch::new();
    let jobs: Vec<_> = (0..12)
        .map(|i| {
            let run = format!("mkdir -p out && seq 1 {} > out/seq.txt", 1000 * (i + 1));
            (
                format!("job-{i:02}"),
                run,
                "outputs: [out/seq.txt]".to_string(),
            )
        })
        .collect();
    scratch.write("cluster.yml", manifest("", &jobs));
    // At this fault rate one request's retries can take seconds (backoff from 100 ms,
    // doubling): the peer timeout must outlast them, or a silent peer is taken for lost.
    let mut cluster = Cluster::builder("f")
        .on(Service::up_as(
            &scratch,
            "serve",
            "serve --fail-rate 0.3 --seed 7",
        ))
        .timings("--poll-max 100ms --keepalive 500ms --peer-timeout 15s")
        .embedded_broker()
        .workers(1)
        .slots(2)
        .start(&scratch);
    let args = "run cluster.yml --embed-broker --slots 0 --report-json report.json \
                --outputs-dir outputs";
    let mut runner = cluster.start("runner", args);
    runner.expect_exit(0);
    cluster.worker("worker").expect_exit(0);
    let (report, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(report["summary"]["passed"], 12, "{report}");
    for (i, (name, job)) in jobs.iter().enumerate() {
        assert_eq!(job["attempts"], 1, "{job}");
        let seq = fs::read_to_string(
            scratch
                .path()
                .join("outputs")
                .join(name)
                .join("out/seq.txt"),
        );
        assert_eq!(seq.unwrap().lines().count(), 1000 * (i + 1), "{name}");
    }
}

/// 500 jobs inheriting a 140 KB `defaults.env` were 70 MB of jobs, more than one stream
/// message may carry: the defaults now cross the store once from the runner and once to each
/// worker, and every job still sees them merged under its own `env`.
#[test]
fn shared_defaults_cross_the_store_once_not_once_per_job() {
    let _serial = serial();
    let scratch = Scratch::new();
    // Two variables of 70 KB: one environment string may not exceed 128 KiB (execve).
    let big = "x".repeat(70_000);
    // `isolation: none`: this test is about the submission, and 500 short jobs under process
    // containment meet a race between one job's leftover sweep and another's reaping (seen as
    // "cannot wait for the job's process: No child processes"), reported separately.
    let head = format!(
        "defaults:\n  isolation: none\n  env: {{ BIG1: {big}, BIG2: {big}, MODE: default }}\n"
    );
    let sizes = "test ${#BIG1} -eq 70000 && test ${#BIG2} -eq 70000";
    let jobs: Vec<_> = (0..500)
        .map(|i| match i % 100 {
            0 => (
                format!("job-{i:03}"),
                format!("{sizes} && test \"$MODE\" = own"),
                "env: { MODE: own }".to_string(),
            ),
            _ => (
                format!("job-{i:03}"),
                format!("{sizes} && test \"$MODE\" = default"),
                String::new(),
            ),
        })
        .collect();
    scratch.write("cluster.yml", manifest(&head, &jobs));
    let written = |service: &Service| service.stats()["blob_bytes_in"].as_u64().unwrap();
    let mut cluster = Cluster::builder("big")
        .timings("")
        .workers(1)
        .slots(2)
        .start(&scratch);
    let before = written(&cluster.service);
    let args = "run cluster.yml --stop-cluster --report-json report.json";
    cluster.start("runner", args).expect_exit(0);
    cluster.worker("worker").expect_exit(0);
    cluster.broker().expect_exit(0);
    let (report, _) = read_report(&scratch.path().join("report.json"));
    assert_eq!(report["summary"]["passed"], 500, "{report}");
    // One copy is 140 KB: the runner's to the broker and the broker's to the one worker, plus
    // what 500 small jobs say (submit, assign, started, finished): far from 500 copies (70 MB).
    let bytes = written(&cluster.service) - before;
    assert!(bytes < 4 * 140_000 + 500 * 1_500, "{bytes} bytes written");
}

// ---------------------------------------------------------------------------------------------
// 10. A quiet idle cluster

/// Timings of an idle cluster in seconds instead of minutes: polls slow to 2 s after 1 s
/// without a message.
const IDLE_TIMINGS: &str =
    "--poll-max 100ms --idle-poll-max 2s --idle-after 1s --keepalive 1s --peer-timeout 5s";

/// Blob reads so far (`GET` of a segment: what stream polling costs).
fn blob_reads(service: &Service) -> u64 {
    service.stats()["blob"]["get"].as_u64().unwrap_or(0)
}

#[test]
fn an_idle_cluster_polls_slowly_and_still_runs_a_late_runners_job() {
    let _serial = serial();
    let scratch = Scratch::new();
    let mut cluster = Cluster::builder("idle")
        .timings(IDLE_TIMINGS)
        .workers(1)
        .worker_args("--name w")
        .start(&scratch);

    // The idle time is the scenario, not synchronisation: past --idle-after and the backoff's
    // climb to the idle ceiling, the two streams (broker→worker, worker→broker) poll every 2 s.
    std::thread::sleep(Duration::from_secs(5));
    let before = blob_reads(&cluster.service);
    let window = Duration::from_secs(6);
    std::thread::sleep(window);
    let reads = blob_reads(&cluster.service) - before;
    // At --poll-max (100 ms) the two streams would read about 120 times in the window; at the
    // idle ceiling 3 times each, plus one for a poll in flight at either end.
    assert!(
        reads <= 2 * (6 / 2 + 1),
        "{reads} blob reads in {window:?} of idle"
    );

    // A runner arriving now still gets its job run (the worker sees it on its next poll).
    scratch.write(
        "late.yml",
        manifest("", &[("late".into(), "true".into(), String::new())]),
    );
    let args = "run late.yml --stop-cluster --report-json report.json";
    cluster.start("runner", args).expect_exit(0);
    cluster.worker("worker").expect_exit(0);
    cluster.broker().expect_exit(0);
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(jobs["late"]["status"], "passed", "{jobs:?}");
    assert_eq!(jobs["late"]["worker"], "w", "{jobs:?}");
}

// ---------------------------------------------------------------------------------------------
// 11. A restarted service

#[test]
fn a_broker_whose_service_restarted_exits_3_and_says_what_happened() {
    let _serial = serial();
    let scratch = Scratch::new();
    let data = scratch.mkdir("serve-data");
    let args = format!("serve --data-dir {}", data.display());
    let first = Service::up_as(&scratch, "serve-1", &args);
    let args = format!("--log-level info broker --cluster gone {TIMINGS}");
    let mut broker = first.start(&scratch, "broker", &args);
    broker.await_stderr("broker listening");

    // The same address and data directory, but none of the run's artifacts.
    let addr = first
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let url = first.url.clone();
    drop(first);
    let args = format!("serve --data-dir {} --addr {addr}", data.display());
    let second = Service::up_as(&scratch, "serve-2", &args);
    assert_eq!(second.url, url);

    broker.expect_exit(3);
    let stderr = broker.stderr();
    assert!(
        stderr.contains("the listen artifact 'ca.gone.1.listen' vanished from the artifact store"),
        "{stderr}"
    );
    assert!(stderr.contains("was it restarted?"), "{stderr}");
    assert!(!stderr.contains("artifact ''"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// 12. Sealing: a cluster secret, secret-env, tampering, mismatched secrets

/// The cluster secret of the sealing tests.
const SECRET: &str = "correct horse battery staple";

/// Starts `cluster-action ARGS` as job `job` with the cluster secret `secret` (none: unset).
fn start_sealed(
    service: &Service,
    scratch: &Scratch,
    job: &str,
    args: &str,
    secret: Option<&str>,
) -> Proc {
    let env: Vec<(&str, &str)> = secret.map(|s| ("CLUSTER_SECRET", s)).into_iter().collect();
    service.start_env(scratch, scratch.path(), job, args, &env)
}

/// A cluster on `service` sealed with [`SECRET`] whose runners embed the broker.
fn sealed_cluster(service: Service, scratch: &Scratch) -> Cluster<'_> {
    let sealed = Cluster::builder("sealed").on(service).secret(SECRET);
    sealed.embedded_broker().start(scratch)
}

/// Every file under `dir`, recursively, with its bytes.
fn every_file(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(every_file(&path));
        } else {
            out.push((path.clone(), fs::read(&path).unwrap()));
        }
    }
    out
}

/// The markers found in `bytes`, in plain text or in any gzip stream starting anywhere in it.
fn markers_in(bytes: &[u8], markers: &[String]) -> Vec<String> {
    use std::io::Read as _;
    let mut views = vec![bytes.to_vec()];
    for start in 0..bytes.len().saturating_sub(2) {
        if bytes[start..start + 3] == [0x1f, 0x8b, 0x08] {
            let mut inflated = Vec::new();
            // A broken stream still yields what it inflated before the damage.
            let _ = flate2::read::MultiGzDecoder::new(&bytes[start..]).read_to_end(&mut inflated);
            views.push(inflated);
        }
    }
    markers
        .iter()
        .filter(|m| {
            views
                .iter()
                .any(|v| v.windows(m.len()).any(|w| w == m.as_bytes()))
        })
        .cloned()
        .collect()
}

/// The stored blobs that are sealed layers (they start with the seal's magic).
fn sealed_layers(data: &Path) -> Vec<PathBuf> {
    every_file(data)
        .into_iter()
        .filter(|(_, bytes)| bytes.starts_with(b"ca-seal1"))
        .map(|(path, _)| path)
        .collect()
}

/// Flips a bit of byte `at` of the file at `path` in place (bytes appended meanwhile stay).
fn flip_a_bit(path: &Path, at: usize) {
    use std::os::unix::fs::FileExt as _;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at as u64).unwrap();
    byte[0] ^= 0x10;
    file.write_all_at(&byte, at as u64).unwrap();
}

/// Flips a bit in the payload of the last frame of the stream segment `bytes` (stored at
/// `path`) and fixes the frame's CRC, as a forger would: only the seal can tell.
fn forge_last_frame(path: &Path, bytes: &[u8]) {
    // Frame header: version, kind, seq (8), length (4), CRC (4) over the rest.
    let mut start = 0;
    let mut last = None;
    while start + 18 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[start + 10..start + 14].try_into().unwrap()) as usize;
        if start + 18 + len > bytes.len() {
            break;
        }
        last = Some((start, len));
        start += 18 + len;
    }
    let (start, len) = last.expect("a whole frame");
    let mut frame = bytes[start..start + 18 + len].to_vec();
    frame[18 + len / 2] ^= 0x01;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&frame[..14]);
    crc.update(&frame[18..]);
    frame[14..18].copy_from_slice(&crc.finalize().to_be_bytes());
    use std::os::unix::fs::FileExt as _;
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&frame, start as u64).unwrap();
}

/// Flips a bit in the middle of the file at `path`.
fn flip_a_middle_bit(path: &Path) {
    flip_a_bit(path, fs::metadata(path).unwrap().len() as usize / 2);
}

#[test]
fn a_sealed_run_stores_none_of_its_jobs_markers() {
    let _serial = serial();
    let scratch = Scratch::new();
    let (service, data) = Service::keeping_blobs(&scratch);
    // Each marker is written in one place only; the output ones are computed by the shell,
    // so that they appear nowhere but in the job's output and its output file. The job fails,
    // so that the JUnit report quotes its output.
    let mark = |what: &str| format!("MARKER-{what}-5c1e");
    let layer_text = format!("{}\n", mark("layer")).repeat(200);
    scratch.write("data/notes.txt", &layer_text);
    scratch.write("extra/e.txt", format!("{}\n", mark("extra")));
    let run = format!(
        "echo {cmd}; echo $ENV_MARK; echo $SECRET_MARK; cat data/notes.txt | head -1; \
         cat extra/e.txt; \
         echo MARKER-output-$((2 * 21))-5c1e; mkdir -p out; \
         echo MARKER-file-$((3 * 16))-5c1e > out/o.txt; exit 1",
        cmd = mark("command")
    );
    let head = format!(
        "defaults:\n  env: {{ ENV_MARK: {} }}\n  secret-env: [SECRET_MARK]\n\
         layers:\n  data:\n    paths: [data]\n  extra:\n    paths: [extra]\n",
        mark("env")
    );
    let extra = "layers: [data, extra]\noutputs: [out/*]".to_string();
    let jobs = [("marks".to_string(), run, extra)];
    scratch.write("cluster.yml", manifest(&head, &jobs));
    let secret_value = mark("secret");
    let cluster = sealed_cluster(service, &scratch);
    let mut runner = cluster.start_env(
        "runner",
        "run cluster.yml --embed-broker --slots 0 --stop-cluster --report-junit report.xml \
         --outputs-dir outs --keep all",
        &[("SECRET_MARK", &secret_value)],
    );
    let mut worker = cluster.start("worker", "worker");
    runner.expect_exit(1);
    worker.expect_exit(0);

    // The markers did travel: in the job's output (the secret masked) and its output file.
    let output = fs::read_to_string(scratch.path().join("report.xml")).unwrap();
    for what in ["command", "env", "layer", "extra", "output-42"] {
        assert!(output.contains(&mark(what)), "{what} missing from {output}");
    }
    assert!(
        !output.contains(&secret_value) && output.contains("***"),
        "{output}"
    );
    let outputs = files_under(&scratch.path().join("outs/marks"));
    assert_eq!(
        outputs["out/o.txt"],
        format!("{}\n", mark("file-48")).into_bytes()
    );

    // None of them is in the store, in plain text or gzip-inflated.
    let markers: Vec<String> = [
        "command",
        "env",
        "layer",
        "extra",
        "output-42",
        "file-48",
        "secret",
    ]
    .map(mark)
    .into();
    let stored = every_file(&data);
    assert!(
        stored.len() >= 8,
        "streams, the layer and the outputs layer: {stored:?}"
    );
    for (path, bytes) in &stored {
        let found = markers_in(bytes, &markers);
        assert!(found.is_empty(), "{found:?} readable in {}", path.display());
    }
    // The scan does find what a gzip stream holds, and names are keyed hashes.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, layer_text.as_bytes()).unwrap();
    assert_eq!(markers_in(&gz.finish().unwrap(), &markers), [mark("layer")]);
    assert_eq!(
        sealed_layers(&data).len(),
        3,
        "two layers and the outputs layer"
    );
}

#[test]
fn secret_env_without_a_secret_is_refused_naming_the_line() {
    let _serial = serial();
    let scratch = Scratch::new();
    let jobs = [(
        "a".to_string(),
        "true".to_string(),
        "secret-env: [TOKEN]".to_string(),
    )];
    scratch.write("cluster.yml", manifest("", &jobs));
    let mut runner = scratch.spawn(
        scratch.path(),
        "local",
        "local cluster.yml",
        &[("TOKEN", "x")],
    );
    runner.expect_exit(2);
    let stderr = runner.stderr();
    assert!(stderr.contains("cluster.yml:4"), "{stderr}");
    assert!(
        stderr.contains("sets secret-env, but no cluster secret is set"),
        "{stderr}"
    );
}

#[test]
fn peers_with_different_secrets_are_refused_at_hello_with_exit_2() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::up(&scratch);
    let jobs = [("a".to_string(), "true".to_string(), String::new())];
    scratch.write("cluster.yml", manifest("", &jobs));
    let args = format!(
        "--log-level info run cluster.yml --embed-broker --slots 0 --cluster m --worker-wait 60s {TIMINGS} \
         --report-json report.json"
    );
    let mut runner = start_sealed(&service, &scratch, "runner", &args, Some(SECRET));
    runner.await_stderr("jobs submitted");
    let worker_args = format!("worker --cluster m {TIMINGS}");
    for (name, secret, says) in [
        (
            "other",
            Some("another secret"),
            "the peer seals with another secret",
        ),
        ("none", None, "but this side has no CLUSTER_SECRET"),
    ] {
        let mut worker = start_sealed(&service, &scratch, name, &worker_args, secret);
        worker.expect_exit(2);
        let stderr = worker.stderr();
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
    let stderr = runner.stderr();
    assert!(
        stderr.contains("refusing a peer at hello: refused frame"),
        "{stderr}"
    );
    for says in [
        "the peer seals with another secret",
        "the peer sends without a secret",
    ] {
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
    // The broker carries on: a worker with the right secret runs the job.
    let mut good = start_sealed(&service, &scratch, "good", &worker_args, Some(SECRET));
    runner.expect_exit(0);
    good.expect_exit(0);

    // And a worker with a secret refuses a broker without one.
    let unsealed = format!(
        "run cluster.yml --embed-broker --slots 0 --cluster n --worker-wait 60s {TIMINGS} --log-level info"
    );
    let runner = start_sealed(&service, &scratch, "unsealed", &unsealed, None);
    runner.await_stderr("jobs submitted");
    let mut worker = start_sealed(
        &service,
        &scratch,
        "sealed",
        &format!("worker --cluster n {TIMINGS}"),
        Some(SECRET),
    );
    worker.expect_exit(2);
    let stderr = worker.stderr();
    assert!(
        stderr.contains("the peer sends without a secret, but this side has CLUSTER_SECRET"),
        "{stderr}"
    );
}

#[test]
fn a_tampered_layer_is_refused_and_its_job_never_runs() {
    let _serial = serial();
    let scratch = Scratch::new();
    let (service, data) = Service::keeping_blobs(&scratch);
    scratch.write("data/f.txt", "layer content\n");
    let ran = scratch.path().join("ran");
    let run = format!("touch {}; cat data/f.txt", ran.display());
    let jobs = [("uses-layer".to_string(), run, "layers: [data]".to_string())];
    scratch.write(
        "cluster.yml",
        manifest("layers:\n  data:\n    paths: [data]\n", &jobs),
    );
    let cluster = sealed_cluster(service, &scratch);
    let args = "--log-level info run cluster.yml --embed-broker --slots 0 --worker-wait 60s \
                --report-json report.json";
    let mut runner = cluster.start("runner", args);
    runner.await_stderr("jobs submitted");
    let layers = sealed_layers(&data);
    assert_eq!(layers.len(), 1, "{layers:?}");
    flip_a_middle_bit(&layers[0]);

    let mut worker = cluster.start("worker", "worker");
    runner.expect_exit(1);
    worker.expect_exit(0);
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(jobs["uses-layer"]["status"], "error");
    let line = "ERROR uses-layer: cannot prepare the job directory";
    let says = "refused: layer";
    let stdout = runner.stdout();
    assert!(stdout.contains(line) && stdout.contains(says), "{stdout}");
    assert!(stdout.contains("failed authentication"), "{stdout}");
    assert!(!ran.exists(), "the job ran on a tampered layer");
}

#[test]
fn a_tampered_outputs_layer_is_refused_and_nothing_is_written() {
    let _serial = serial();
    let scratch = Scratch::new();
    let (service, data) = Service::keeping_blobs(&scratch);
    let jobs = [(
        "makes-outputs".to_string(),
        "mkdir -p out; echo result > out/r.txt".to_string(),
        "outputs: [out/*]".to_string(),
    )];
    scratch.write("cluster.yml", manifest("", &jobs));
    let mut cluster = Cluster::builder("o")
        .on(service)
        .secret(SECRET)
        .start(&scratch);
    let mut worker = cluster.start("worker", "worker");
    let mut first = cluster.start("run-1", "run cluster.yml --outputs-dir outs-1");
    first.expect_exit(0);
    // A fresh worker packs the same job's outputs into the same layer as the first did.
    worker.signal(libc::SIGTERM);
    worker.expect_exit(130);
    let mut worker = cluster.start("worker-2", "worker");
    assert!(
        scratch
            .path()
            .join("outs-1/makes-outputs/out/r.txt")
            .exists()
    );
    let layers = sealed_layers(&data);
    assert_eq!(layers.len(), 1, "{layers:?}");
    flip_a_middle_bit(&layers[0]);

    // The same job makes the same sealed outputs layer, which the store has: the runner
    // fetches the tampered one.
    let mut second = cluster.start(
        "run-2",
        "run cluster.yml --outputs-dir outs-2 --report-json report.json",
    );
    second.expect_exit(1);
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(jobs["makes-outputs"]["status"], "error");
    let stderr = second.stderr();
    let says = "outputs of job 'makes-outputs' could not be brought back: layer";
    assert!(stderr.contains(says), "{stderr}");
    assert!(stderr.contains("failed authentication"), "{stderr}");
    assert!(files_under(&scratch.path().join("outs-2")).is_empty());
    cluster.start("stop", "stop").expect_exit(0);
    cluster.broker().expect_exit(0);
    worker.expect_exit(0);
}

#[test]
fn a_tampered_frame_ends_the_stream_with_exit_3() {
    let _serial = serial();
    let scratch = Scratch::new();
    let (service, data) = Service::keeping_blobs(&scratch);
    let jobs = [("a".to_string(), "true".to_string(), String::new())];
    scratch.write("cluster.yml", manifest("", &jobs));
    let cluster = Cluster::builder("f")
        .on(service)
        .secret(SECRET)
        .start(&scratch);
    let args = "--log-level info run cluster.yml --worker-wait 60s";
    let mut runner = cluster.start("runner", args);
    runner.await_stderr("jobs submitted");
    // With the runner stopped, the broker's keepalives pile up unread in the runner's
    // down-stream. A segment that grows twice is that one: an append the runner had under way
    // when it stopped can make its up-stream grow once, never twice. Forge the newest frame.
    runner.signal(libc::SIGSTOP);
    let mut last: BTreeMap<PathBuf, usize> = every_file(&data)
        .into_iter()
        .map(|(p, b)| (p, b.len()))
        .collect();
    let mut growths: BTreeMap<PathBuf, u32> = BTreeMap::new();
    let (path, bytes) = await_some("a segment growing twice", || {
        for (path, bytes) in every_file(&data) {
            let before = last.insert(path.clone(), bytes.len());
            if before.is_some_and(|n| bytes.len() > n) {
                let count = growths.entry(path.clone()).or_default();
                *count += 1;
                if *count == 2 {
                    return Some((path, bytes));
                }
            }
        }
        None
    });
    forge_last_frame(&path, &bytes);
    runner.signal(libc::SIGCONT);
    runner.expect_exit(3);
    let stderr = runner.stderr();
    assert!(stderr.contains("refused frame in"), "{stderr}");
    assert!(stderr.contains("failed authentication"), "{stderr}");
}

#[test]
fn a_public_repository_without_a_secret_gets_one_warning() {
    let _serial = serial();
    let scratch = Scratch::new();
    let jobs = [("a".to_string(), "true".to_string(), String::new())];
    scratch.write("cluster.yml", manifest("", &jobs));
    let warning = "::warning title=cluster-action: this cluster is readable by anyone::";
    for (name, private, secret, expected) in [
        ("public", false, None, 1),
        ("private", true, None, 0),
        ("sealed", false, Some(SECRET), 0),
    ] {
        let event = scratch.write(
            &format!("{name}.json"),
            json!({"repository": {"private": private}}).to_string(),
        );
        let mut env = vec![("GITHUB_EVENT_PATH", event.to_str().unwrap())];
        env.extend(secret.map(|s| ("CLUSTER_SECRET", s)));
        let mut local = scratch.spawn(scratch.path(), name, "local --workers 2 cluster.yml", &env);
        local.expect_exit(0);
        let stdout = local.stdout();
        assert_eq!(
            stdout.matches(warning).count(),
            expected,
            "{name}: {stdout}"
        );
        if expected == 1 {
            assert!(stdout.contains("secrets.CLUSTER_SECRET"), "{stdout}");
        }
    }
}

#[test]
fn secret_env_values_reach_the_job_and_are_masked_everywhere() {
    let _serial = serial();
    let scratch = Scratch::new();
    let value = "tok-3f9a-value";
    // The job fails, so that its output is shown in the log.
    let run = "test \"$TOKEN\" = tok-3f9a-value && echo \"token: $TOKEN\" && exit 1";
    let jobs = [(
        "a".to_string(),
        run.to_string(),
        "secret-env: [TOKEN]".to_string(),
    )];
    scratch.write("cluster.yml", manifest("", &jobs));
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("CLUSTER_SECRET", SECRET),
        ("TOKEN", value),
    ];
    let mut local = scratch.spawn(scratch.path(), "local", "local cluster.yml", &env);
    local.expect_exit(1);
    let stdout = local.stdout();
    let mask = format!("::add-mask::{value}");
    assert_eq!(stdout.matches(&mask).count(), 1, "{stdout}");
    assert!(stdout.contains("token: ***"), "{stdout}");
    assert_eq!(
        stdout.matches(value).count(),
        1,
        "only in the mask command: {stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// Cleanup and retention

impl Service {
    /// Every artifact the service holds, at `GET {url}_artifacts` (unfinalized and expiring
    /// ones too), by name.
    fn artifacts(&self) -> BTreeMap<String, Value> {
        let all = self.get("_artifacts");
        all["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["name"].as_str().unwrap().to_string(), a.clone()))
            .collect()
    }

    /// The names `ListArtifacts` shows job `job` of the test run.
    fn listed(&self, job: &str) -> BTreeSet<String> {
        let listed = block_on(self.store(job).list(None)).unwrap();
        listed.into_iter().map(|a| a.name).collect()
    }

    /// A store client acting as job `job` of the test run.
    fn store(&self, job: &str) -> cluster_action::store::ArtifactStore {
        let cfg = cluster_action::store::StoreConfig::new(&self.url, &token("test-run", job));
        cluster_action::store::ArtifactStore::new(cfg.unwrap()).unwrap()
    }

    /// Uploads a small artifact `name` as job `job`, kept for the repository's retention.
    fn upload(&self, scratch: &Scratch, job: &str, name: &str) {
        let file = scratch.write(&format!("uploads/{name}"), name);
        let store = self.store(job).with_retention(None);
        block_on(store.upload_file(name, &file, &"0".repeat(64))).unwrap();
    }
}

/// A service holding a report and a user's artifact, and `cluster.yml`: a manifest with a
/// layer and outputs, so a cluster makes every kind of artifact.
fn seeded_service(scratch: &Scratch) -> Service {
    let service = Service::up(scratch);
    service.upload(scratch, "earlier", "ca-timings");
    service.upload(scratch, "earlier", "user-artifact");
    write_data_layer(scratch);
    let jobs: Vec<_> = (0..4)
        .map(|i| {
            (
                format!("job-{i}"),
                format!("mkdir -p out && echo {i} > out/{i}.txt && cat data/f{i}.txt"),
                "layers: [data]\noutputs: [out/*.txt]".to_string(),
            )
        })
        .collect();
    let head = "layers:\n  data: { paths: [data] }\n";
    scratch.write("cluster.yml", manifest(head, &jobs));
    service
}

#[test]
fn a_clean_stop_deletes_what_the_cluster_made_and_keeps_reports() {
    let _serial = serial();
    let scratch = Scratch::new();
    let mut cluster = Cluster::builder("k")
        .on(seeded_service(&scratch))
        .embedded_broker()
        .workers(2)
        .slots(2)
        .start(&scratch);
    let args = "run cluster.yml --embed-broker --slots 0 --outputs-dir out";
    let mut runner = cluster.start("runner", args);
    runner.expect_exit(0);
    for worker in cluster.workers.values_mut() {
        worker.expect_exit(0);
    }
    let service = &cluster.service;
    assert_eq!(
        fs::read_to_string(scratch.path().join("out/job-3/out/3.txt")).unwrap(),
        "3\n"
    );

    // Streams, the listen marker, the data layer and the outputs layers (a worker packs the
    // outputs of jobs that end together into one) were made and are gone: every artifact
    // created but the two the test uploaded and the stopped marker. What the user asked to
    // keep stays, with the stopped marker late workers read.
    let twirp = &service.stats()["twirp"];
    let deleted = twirp["DeleteArtifact"].as_u64().unwrap_or(0);
    let created = twirp["CreateArtifact"].as_u64().unwrap_or(0);
    assert!(
        deleted >= created.saturating_sub(3) && deleted >= 8,
        "DeleteArtifact calls: {deleted}, CreateArtifact calls: {created}"
    );
    let left = service.listed("anyone");
    let expected =
        BTreeSet::from(["ca-timings", "ca.k.1.closed", "user-artifact"].map(String::from));
    assert_eq!(left, expected);
    assert_eq!(
        service.artifacts().len(),
        expected.len(),
        "{:?}",
        service.artifacts()
    );
}

#[test]
fn a_runner_still_fetching_when_another_stops_the_cluster_loses_no_result() {
    let _serial = serial();
    let scratch = Scratch::new();
    let started = scratch.path().join("started");
    let slow = format!(
        "touch {} && sleep 2 && mkdir -p out && echo result > out/r.txt",
        started.display()
    );
    let jobs = [("slow".into(), slow, "outputs: [out/r.txt]".into())];
    scratch.write("slow.yml", manifest("", &jobs));
    let jobs = [("quick".into(), "true".into(), String::new())];
    scratch.write("quick.yml", manifest("", &jobs));
    // A runner paused for seconds (a slow or busy machine) is no lost runner.
    let mut cluster = Cluster::builder("o")
        .timings("--poll-max 100ms --keepalive 300ms --peer-timeout 30s")
        .workers(1)
        .slots(2)
        .start(&scratch);
    let mut slow = cluster.start("slow-runner", "run slow.yml --outputs-dir outputs");
    await_some("the slow job to start", || started.exists().then_some(()));
    // The slow runner sleeps through its job's end; the other runner stops the cluster, which
    // the broker does once that job has finished.
    slow.signal(libc::SIGSTOP);
    let mut stopping = cluster.start("stopping-runner", "run quick.yml --stop-cluster");
    stopping.expect_exit(0);
    // The scenario, not synchronisation: the slow runner wakes up only after any grace a
    // stopping broker gives its peers, and then fetches its job's outputs.
    std::thread::sleep(cluster_action::broker::CLOSE_GRACE + Duration::from_secs(3));
    slow.signal(libc::SIGCONT);
    slow.expect_exit(0);
    assert_eq!(
        fs::read_to_string(scratch.path().join("outputs/slow/out/r.txt")).unwrap(),
        "result\n"
    );
    cluster.broker().expect_exit(0);
    cluster.worker("worker").expect_exit(0);
    // The cleanup still ran, once the runner had left.
    cluster
        .broker()
        .await_stderr("waiting for the runners to fetch their results");
    let layers: Vec<String> = cluster
        .service
        .listed("anyone")
        .into_iter()
        .filter(|name| name.starts_with("ca-layer-"))
        .collect();
    assert!(layers.is_empty(), "layers left: {layers:?}");
}

#[test]
fn a_crashed_cluster_s_leftovers_expire_and_gc_deletes_them() {
    let _serial = serial();
    let scratch = Scratch::new();
    let mut cluster = Cluster::builder("x")
        .on(seeded_service(&scratch))
        .workers(1)
        .slots(2)
        .worker_args("--retention 3")
        .start(&scratch);
    let before = std::time::SystemTime::now();
    // Jobs that never end: the broker dies with the cluster busy.
    let pids = scratch.mkdir("pids");
    let job_pids = JobPids { dir: pids.clone() };
    let jobs: Vec<_> = (0..2)
        .map(|i| {
            (
                format!("long-{i}"),
                PARKED.to_string(),
                "layers: [data]".to_string(),
            )
        })
        .collect();
    let head = format!(
        "{}layers:\n  data: {{ paths: [data] }}\n",
        defaults_env("PIDS", &pids)
    );
    scratch.write("long.yml", manifest(&head, &jobs));
    let mut runner = cluster.start("runner", "run long.yml");
    await_some("both jobs to run", || {
        (job_pids.pids().len() == 2).then_some(())
    });
    cluster.broker().signal(libc::SIGKILL);
    runner.expect_exit(3);
    cluster.worker("worker").expect_exit(3);
    let service = &cluster.service;

    let day = 86_400.0;
    let all = service.artifacts();
    let made: Vec<_> = all
        .iter()
        .filter(|(n, _)| n.starts_with("ca.") || n.starts_with("ca-layer-"))
        .collect();
    assert!(made.len() >= 5, "{made:?}");
    for (name, artifact) in made {
        let expires = artifact["expiresAt"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {artifact}"));
        let at = humantime::parse_rfc3339(expires).unwrap();
        let days = at.duration_since(before).unwrap().as_secs_f64() / day;
        // The worker asked for 3 days, the others have the default day.
        let wanted = if artifact["workflowJobRunBackendId"] == "worker" {
            3.0
        } else {
            1.0
        };
        assert!(
            (days - wanted).abs() < 0.01,
            "{name} expires in {days} days: {artifact}"
        );
    }
    assert!(all["user-artifact"]["expiresAt"].is_null());

    let mut gc = service.start(&scratch, "gc", "gc");
    gc.expect_exit(0);
    assert!(gc.stderr().contains("gc: deleted"), "{}", gc.stderr());
    let expected = BTreeSet::from(["ca-timings", "user-artifact"].map(String::from));
    assert_eq!(service.listed("anyone"), expected);
}

// ---------------------------------------------------------------------------------------------
// The 500-artifact budget

#[test]
fn a_manifest_needing_600_layer_artifacts_is_refused_before_any_upload() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::up(&scratch);
    let mut head = String::from("layers:\n");
    let mut jobs = Vec::new();
    for i in 0..600 {
        scratch.write(&format!("l/{i}.txt"), format!("{i}"));
        head.push_str(&format!("  l{i}: {{ paths: [l/{i}.txt] }}\n"));
        jobs.push((
            format!("j{i}"),
            "true".to_string(),
            format!("layers: [l{i}]"),
        ));
    }
    scratch.write("cluster.yml", manifest(&head, &jobs));
    let args = format!("run cluster.yml --cluster b --embed-broker {TIMINGS}");
    let mut runner = service.start(&scratch, "runner", &args);
    runner.expect_exit(2);
    let stderr = runner.stderr();
    assert!(
        stderr.contains("600 layers") && stderr.contains("limit of 500 artifacts per job"),
        "{stderr}"
    );
    assert_eq!(service.stats()["twirp_total"], 0, "{}", service.stats());
}

/// Runs `count` jobs that each write one output file on `local --workers W --slots S` (as
/// `workers_slots` says), expects every job to pass, and returns the scratch directory
/// holding the outputs brought back under `back/`. The jobs run with the default isolation
/// (`process`, with its leftover sweep), as a user's jobs do.
fn run_jobs_with_outputs(count: usize, workers_slots: (u32, u32)) -> Scratch {
    let scratch = Scratch::new();
    let jobs: Vec<_> = (0..count)
        .map(|i| {
            (
                format!("o{i}"),
                format!("mkdir -p out && echo {i} > out/{i}.txt"),
                "outputs: [out/*.txt]".to_string(),
            )
        })
        .collect();
    scratch.write("cluster.yml", manifest("", &jobs));
    let (workers, slots) = workers_slots;
    let args = format!(
        "local --workers {workers} --slots {slots} cluster.yml --outputs-dir back \
         --report-json report.json"
    );
    let mut local = scratch.start("local", &args);
    local.wait_within(Duration::from_secs(600));
    let (summary, jobs) = read_report(&scratch.path().join("report.json"));
    let errors: Vec<&Value> = jobs
        .values()
        .filter(|j| j["status"] != "passed")
        .take(2)
        .collect();
    assert_eq!(local.code, Some(0), "{errors:?}\n{}", local.stderr());
    assert_eq!(summary["summary"]["passed"], count);
    scratch
}

/// Asserts that job `o{i}`'s output came back whole.
fn output_back(scratch: &Scratch, i: usize) {
    let file = scratch.path().join(format!("back/o{i}/out/{i}.txt"));
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("{i}\n"),
        "{file:?}"
    );
}

#[test]
fn five_thousand_jobs_with_outputs_stay_within_500_artifacts_per_worker() {
    let _serial = serial();
    // Each worker runs about 1,700 jobs with outputs: one outputs layer per job would take
    // more than the 500 artifacts the in-process service allows each worker's job.
    let scratch = run_jobs_with_outputs(5000, (3, 8));
    for i in [0, 1234, 4999] {
        output_back(&scratch, i);
    }
}

#[test]
fn a_one_slot_worker_runs_800_jobs_with_outputs_within_its_500_artifacts() {
    let _serial = serial();
    // One slot: a job gives it back when its process ends, and its outputs wait for the next
    // flush, so a flush packs the outputs of every job that ended while the last one uploaded.
    // Were a job to hold its slot until its outputs were uploaded, each flush would carry one
    // job and the worker would run out of its 500 artifacts (which the service enforces)
    // after some 480 jobs.
    let scratch = run_jobs_with_outputs(800, (1, 1));
    for i in 0..800 {
        output_back(&scratch, i);
    }
}

#[test]
fn outputs_refused_by_the_artifact_limit_fail_at_once_naming_it() {
    let _serial = serial();
    let scratch = Scratch::new();
    // Each job's job-id has 20 artifacts: the worker's stream takes a few, then its outputs
    // layers (one per job: each job outlasts a flush's wait) reach the limit.
    let service = Service::up_as(&scratch, "serve", "serve --max-artifacts-per-job 20");
    let cluster = Cluster::builder("lim")
        .on(service)
        .embedded_broker()
        .start(&scratch);
    let count = 30;
    let jobs: Vec<_> = (0..count)
        .map(|i| {
            (
                format!("o{i}"),
                format!("sleep 0.2; mkdir -p out && echo {i} > out/{i}.txt"),
                "outputs: [out/*.txt]".to_string(),
            )
        })
        .collect();
    scratch.write(
        "cluster.yml",
        manifest("defaults:\n  isolation: none\n", &jobs),
    );
    let mut runner = cluster.start(
        "runner",
        "run cluster.yml --embed-broker --stop-cluster --slots 0 --report-json report.json",
    );
    let mut worker = cluster.start_worker("w", 1);
    runner.expect_exit(1);
    worker.expect_exit(0);
    let (_, report) = read_report(&scratch.path().join("report.json"));
    let refused: Vec<&Value> = report.values().filter(|j| j["status"] == "error").collect();
    assert!(!refused.is_empty(), "some outputs must hit the limit");
    assert!(report.values().any(|j| j["status"] == "passed"));
    for job in &refused {
        let error = job["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("limit of 20 artifacts per job")
                && error.contains("not tried again")
                && error.contains("500 artifacts per job"),
            "{job}"
        );
    }
    // A refusal is not a transient failure: never asked again.
    let log = worker.stderr();
    assert!(!log.contains("uploading the outputs failed"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Fencing: a stalled worker starts nothing the broker has given to others

/// A job command that appends `worker attempt nanoseconds` to `$MARKS/<job>.starts` when it
/// starts (one line per start, written in one `write`), then runs `rest`.
fn recording_starts(rest: &str) -> String {
    format!(
        "echo \"$CLUSTER_WORKER $CLUSTER_ATTEMPT $(date +%s%N)\" >> \"$MARKS/$CLUSTER_JOB_NAME.starts\"; {rest}"
    )
}

/// Every recorded start: job name → (worker, attempt, wall-clock nanoseconds).
fn starts(marks: &Path) -> BTreeMap<String, Vec<(String, u64, u128)>> {
    names_ending(marks, ".starts")
        .into_iter()
        .map(|file| {
            let text = fs::read_to_string(marks.join(&file)).unwrap();
            let lines = text
                .lines()
                .map(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    (
                        f[0].to_string(),
                        f[1].parse().unwrap(),
                        f[2].parse().unwrap(),
                    )
                })
                .collect();
            (file.trim_end_matches(".starts").to_string(), lines)
        })
        .collect()
}

/// Nanoseconds since the epoch, as `date +%s%N` prints them.
fn wall_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Asserts that no attempt of any job started twice and that nothing started on `fenced`
/// after `fenced_at`; returns the number of starts of each job.
fn assert_no_start_after_fence(
    marks: &Path,
    fenced: &str,
    fenced_at: u128,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (job, lines) in starts(marks) {
        let attempts: BTreeSet<u64> = lines.iter().map(|l| l.1).collect();
        assert_eq!(
            attempts.len(),
            lines.len(),
            "{job}: an attempt started twice: {lines:?}"
        );
        for (worker, attempt, at) in &lines {
            assert!(
                worker != fenced || *at < fenced_at,
                "{job} attempt {attempt} started on {fenced} after it was stopped: {lines:?}"
            );
        }
        counts.insert(job, lines.len());
    }
    counts
}

#[test]
fn a_stalled_worker_starts_nothing_it_was_given_before_it_was_declared_lost() {
    let _serial = serial();
    let scratch = Scratch::new();
    let marks = scratch.mkdir("marks");
    let count = 20;
    let jobs: Vec<_> = (0..count)
        .map(|i| {
            (
                format!("job-{i}"),
                recording_starts("sleep 0.5"),
                String::new(),
            )
        })
        .collect();
    let head = format!("{}  retries: 0\n", defaults_env("MARKS", &marks));
    scratch.write("cluster.yml", manifest(&head, &jobs));
    let mut cluster = Cluster::builder("f")
        .named_workers(&["stalled", "steady"])
        .start(&scratch);
    let mut runner = cluster.start("runner", WATCHED_RUN);
    // The stalled worker runs a job (it holds prefetched ones behind it) when it is stopped.
    await_some("a job started on the stalled worker", || {
        starts(&marks)
            .values()
            .flatten()
            .any(|l| l.0 == "stalled")
            .then_some(())
    });
    runner.await_stderr("worker=\"stalled\"");
    cluster.worker("stalled").signal(libc::SIGSTOP);
    let stopped_at = wall_nanos();
    cluster
        .broker()
        .await_stderr("sent nothing for 3s: considered dead");
    let stalled = cluster.worker("stalled");
    stalled.signal(libc::SIGCONT);
    // Its job ended while it was stopped; its lease ran out, so the prefetched ones wait.
    stalled.await_stderr("lease ran out");

    runner.expect_exit(0);
    cluster.broker().expect_exit(0);
    let (_, report) = read_report(&scratch.path().join("report.json"));
    let counts = assert_no_start_after_fence(&marks, "stalled", stopped_at);
    assert_eq!(report.len(), count);
    for (name, job) in &report {
        assert_eq!(job["status"], "passed", "{job}");
        assert_eq!(
            job["attempts"], counts[name],
            "{name}: every start counted: {job}"
        );
    }
    // Never renewed, it gives up on the broker it lost.
    let stalled = cluster.worker("stalled");
    stalled.expect_exit(3);
    assert!(
        stalled.stderr().contains("lost the broker"),
        "{}",
        stalled.stderr()
    );
}

/// Stream timings of the soak: faults make requests slow (retries), so a peer is declared lost
/// after a longer silence than [`TIMINGS`] allows.
const SOAK_TIMINGS: &str = "--poll-max 100ms --keepalive 500ms --peer-timeout 5s";

/// The soak's manifest: `count` short jobs recording their starts (and pids) in `marks`; every
/// 25th fails by design. `retries: 2`: a job may be lost on both the stopped and the killed
/// worker and still gets the attempt that reports it as a fault-free run would.
fn soak_manifest(scratch: &Scratch, file: &str, marks: &Path, count: usize) {
    let jobs: Vec<_> = (0..count)
        .map(|i| {
            let end = if i % 25 == 0 { "exit 1" } else { "sleep 0.05" };
            let run = recording_starts(&format!(
                "echo $$ > \"$MARKS/$CLUSTER_JOB_NAME.$CLUSTER_ATTEMPT.$CLUSTER_WORKER.pid\"; {end}"
            ));
            (format!("job-{i}"), run, String::new())
        })
        .collect();
    let head = format!("{}  retries: 2\n", defaults_env("MARKS", marks));
    scratch.write(file, manifest(&head, &jobs));
}

/// How long after its worker launched it a job may record its start.
const LAUNCH_GRACE: Duration = Duration::from_secs(1);

/// Each job's status in a report.
fn statuses(report: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    report
        .iter()
        .map(|(name, job)| (name.clone(), job["status"].as_str().unwrap().to_string()))
        .collect()
}

/// 500 jobs under injected store faults (20 % failed requests, 5 % throttled), one worker
/// stopped until it is declared lost and then resumed, another killed: every job is reported
/// once with the status a fault-free run gives it, nothing starts on the stopped worker once it
/// was stopped, and no job process is left.
#[test]
fn soak_500_jobs_under_faults_with_a_stalled_and_a_killed_worker() {
    let _serial = serial();
    let scratch = Scratch::new();
    let count = 500;
    // The fault-free reference.
    let clean_marks = scratch.mkdir("clean-marks");
    soak_manifest(&scratch, "clean.yml", &clean_marks, count);
    let args = "local --workers 2 clean.yml --report-json clean.json";
    scratch.start("local", args).expect_exit(1);
    let (_, clean) = read_report(&scratch.path().join("clean.json"));

    let service = Service::up_as(
        &scratch,
        "serve",
        "serve --fail-rate 0.2 --throttle-rate 0.05 --seed 12",
    );
    let marks = scratch.mkdir("marks");
    let _job_pids = JobPids { dir: marks.clone() };
    soak_manifest(&scratch, "soak.yml", &marks, count);
    let mut cluster = Cluster::builder("soak")
        .on(service)
        .timings(SOAK_TIMINGS)
        .named_workers(&["steady-1", "steady-2", "stalled", "killed"])
        .slots(2)
        .start(&scratch);
    let args = "run soak.yml --stop-cluster --report-json report.json";
    let mut runner = cluster.start("runner", args);
    let started_on = |worker: &str| {
        let worker = worker.to_string();
        let marks = marks.clone();
        move || {
            let n = starts(&marks)
                .values()
                .flatten()
                .filter(|l| l.0 == worker)
                .count();
            (n >= 3).then_some(())
        }
    };
    await_some("jobs started on the worker to stop", started_on("stalled"));
    cluster.worker("stalled").signal(libc::SIGSTOP);
    let stopped_at = wall_nanos();
    cluster.broker().await_stderr("considered dead");
    let stalled = cluster.worker("stalled");
    stalled.signal(libc::SIGCONT);
    stalled.await_stderr("lease ran out");
    await_some("jobs started on the worker to kill", started_on("killed"));
    cluster.worker("killed").signal(libc::SIGKILL);

    runner.expect_exit(1);
    cluster.broker().expect_exit(0);
    for name in ["steady-1", "steady-2"] {
        cluster.worker(name).expect_exit(0);
    }
    // The resumed worker gives up on the broker it lost, or exits with the cluster.
    let stalled = cluster.worker("stalled");
    let code = stalled.wait();
    assert!(
        matches!(stalled.code, Some(0 | 3)),
        "{code}: {}",
        stalled.stderr()
    );

    let (_, report) = read_report(&scratch.path().join("report.json"));
    assert_eq!(report.len(), count, "every job reported once");
    let clean = statuses(&clean);
    let differ: Vec<_> = statuses(&report)
        .into_iter()
        .filter(|(name, status)| clean.get(name) != Some(status))
        .map(|(name, _)| (clean.get(&name).cloned(), report[&name].clone()))
        .collect();
    assert!(differ.is_empty(), "not as in a fault-free run: {differ:?}");
    assert_soak_starts(&marks, stopped_at);
    let left: Vec<_> = _job_pids
        .pids()
        .into_iter()
        .filter(|&p| alive(p) && ["bash", "sleep"].iter().any(|c| cmdline(p).starts_with(c)))
        .collect();
    assert!(left.is_empty(), "job processes left behind: {left:?}");
}

/// Nothing started on the stalled worker once it was stopped (at `stopped_at`; a job it had
/// launched just before may write its line a little later, within [`LAUNCH_GRACE`]: the
/// resume comes only after the peer timeout), and no attempt started twice on the workers that
/// were never lost.
fn assert_soak_starts(marks: &Path, stopped_at: u128) {
    let limit = stopped_at + LAUNCH_GRACE.as_nanos();
    for (job, lines) in starts(marks) {
        for (worker, attempt, at) in &lines {
            assert!(
                worker != "stalled" || *at < limit,
                "{job} attempt {attempt} started on the stalled worker {} ms after it was stopped: {lines:?}",
                (at - stopped_at) / 1_000_000
            );
        }
        // Only a worker that was lost (stopped or killed) may have started an attempt the
        // broker never heard of, which then ran again elsewhere under the same number.
        let kept: Vec<_> = lines.iter().filter(|l| l.0.starts_with("steady")).collect();
        let attempts: BTreeSet<u64> = kept.iter().map(|l| l.1).collect();
        assert_eq!(attempts.len(), kept.len(), "{job}: {lines:?}");
    }
}
