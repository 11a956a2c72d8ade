//! End-to-end tests of the `cluster-action` binary, driven as a user drives it: `local`, and
//! the separate `serve`, `broker`, `worker` and `run` processes of a CI cluster.
//!
//! Each test asserts what a user relies on (exit codes, reports, outputs, the retry of a lost
//! worker's jobs, cancellation, bounded output capture, manifest errors refused before any
//! upload) and waits for events (files appearing, log lines, process exits), never for time.
//! Every process a test starts is killed when the test ends, also when it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_cluster-action");

/// How long anything may take before a test gives up: only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);

/// How often an awaited condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// Stream timings of the separate-process clusters: a lost worker is noticed after 3 s, and a
/// keepalive every 300 ms leaves room for a loaded machine.
const TIMINGS: [&str; 6] = [
    "--poll-max",
    "100ms",
    "--keepalive",
    "300ms",
    "--peer-timeout",
    "3s",
];

/// Variables of the caller's environment that would change what the binary does.
const SCRUBBED_ENV: [&str; 11] = [
    "ACTIONS_RESULTS_URL",
    "ACTIONS_RUNTIME_TOKEN",
    "CLUSTER_ACTION_CLUSTER",
    "GITHUB_ACTIONS",
    "GITHUB_JOB",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_STEP_SUMMARY",
    "RUST_LOG",
    "CLUSTER_JOB_NAME",
    "CLUSTER_ATTEMPT",
    "CLUSTER_WORKER",
];

/// Each test starts several processes on a 2-core machine; one at a time keeps the peer
/// timeouts meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A `cluster-action` process with its stdout and stderr in files, leading its own process
/// group. Dropping it before it exited kills it, its group and its `cluster-action` children
/// (`local`'s workers).
struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    code: Option<i32>,
}

impl Proc {
    /// Starts `cluster-action ARGS` in `cwd`, with `TMPDIR` set to `tmp` and `env` added to a
    /// scrubbed environment; its output goes to `logs/<name>.out` and `logs/<name>.err`.
    fn start(
        name: &str,
        logs: &Path,
        cwd: &Path,
        tmp: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        fs::create_dir_all(logs).unwrap();
        fs::create_dir_all(tmp).unwrap();
        let stdout = logs.join(format!("{name}.out"));
        let stderr = logs.join(format!("{name}.err"));
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(cwd)
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .process_group(0);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            code: None,
        }
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends `signal` to this process only (not its group).
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet.
        assert_eq!(
            unsafe { libc::kill(self.pid(), signal) },
            0,
            "kill {}",
            self.name
        );
    }

    /// Waits for the process to exit and returns its exit code (panics on a signal death or
    /// a hang, showing its stderr).
    fn wait(&mut self) -> i32 {
        if let Some(code) = self.code {
            return code;
        }
        let status = await_some(&format!("{} to exit", self.name), || {
            self.child.try_wait().unwrap()
        });
        let code = status.code().unwrap_or_else(|| {
            panic!(
                "{} was killed ({status}); stderr:\n{}",
                self.name,
                self.stderr()
            )
        });
        self.code = Some(code);
        code
    }

    /// Waits for the exit and asserts its code.
    fn expect_exit(&mut self, expected: i32) {
        let code = self.wait();
        assert_eq!(
            code,
            expected,
            "exit code of {}; stderr:\n{}\nstdout (first 4000 bytes):\n{}",
            self.name,
            self.stderr(),
            self.stdout().chars().take(4000).collect::<String>()
        );
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stdout).unwrap_or_default()).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    /// Waits until the process's stderr contains `text`.
    fn await_stderr(&self, text: &str) {
        await_some(&format!("'{text}' in the stderr of {}", self.name), || {
            self.stderr().contains(text).then_some(())
        });
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.code.is_some() {
            return; // exited and reaped: its workers were its own business
        }
        // The workers `local` starts lead their own process groups.
        for child in children(self.pid()) {
            if cmdline(child).starts_with(BIN) {
                // SAFETY: killpg has no memory-safety preconditions; the child is not reaped.
                unsafe { libc::killpg(child, libc::SIGKILL) };
            }
        }
        // SAFETY: as above; the group is the one this process leads.
        unsafe { libc::killpg(self.pid(), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Polls `probe` until it returns a value; panics naming `what` after [`PATIENCE`].
fn await_some<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// Whether `pid` is a live process (a zombie is not: it has exited).
fn alive(pid: libc::pid_t) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// The command line of `pid`, arguments separated by spaces.
fn cmdline(pid: libc::pid_t) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// The live children of `parent`.
fn children(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        if ppid == Some(parent) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Job processes (by pid files the jobs write) that must not outlive the test; killed on drop.
struct JobPids {
    dir: PathBuf,
}

impl JobPids {
    /// Every pid written to a `*.pid` file in the directory so far.
    fn pids(&self) -> Vec<libc::pid_t> {
        let mut pids = Vec::new();
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "pid")
                && let Some(pid) = fs::read_to_string(entry.path())
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Kills the process `pid` and its group, if it still runs a job's command.
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

// ---------------------------------------------------------------------------------------------
// A test's directory, the artifact service, tokens

/// A test's scratch directory: `logs/` for process output, `tmp/` as the processes' TMPDIR.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("cluster-test-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn tmp(&self) -> PathBuf {
        self.path().join("tmp")
    }

    /// Starts `cluster-action ARGS` in this directory.
    fn start(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        self.start_in(self.path(), name, args, env)
    }

    /// Starts `cluster-action ARGS` in `cwd`.
    fn start_in(&self, cwd: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::start(name, &self.path().join("logs"), cwd, &self.tmp(), args, env)
    }

    fn write(&self, rel: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }
}

/// A `cluster-action serve` process and its URL.
struct Service {
    proc: Proc,
    url: String,
}

impl Service {
    /// Starts the service and waits for its `ACTIONS_RESULTS_URL=` line.
    fn start(scratch: &Scratch) -> Service {
        let proc = scratch.start("serve", &["serve"], &[]);
        let url = await_some("the service's URL", || {
            let out = proc.stdout();
            let line = out.lines().next().filter(|_| out.contains('\n'))?;
            Some(
                line.strip_prefix("ACTIONS_RESULTS_URL=")
                    .unwrap_or_else(|| panic!("unexpected first line of serve: {line}"))
                    .to_string(),
            )
        });
        assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'));
        Service { proc, url }
    }

    /// The environment of a cluster process acting as job `job` of run `run`.
    fn env(&self, job: &str) -> Vec<(&'static str, String)> {
        vec![
            ("ACTIONS_RESULTS_URL", self.url.clone()),
            ("ACTIONS_RUNTIME_TOKEN", token("test-run", job)),
        ]
    }

    /// The request counters at `GET {url}_stats`.
    fn stats(&self) -> Value {
        let url = format!("{}_stats", self.url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = reqwest::get(&url).await.unwrap();
            assert!(response.status().is_success(), "GET {url}");
            response.json::<Value>().await.unwrap()
        })
    }
}

/// A runtime token for the local service, from `cluster-action token`.
fn token(run: &str, job: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--run", run, "--job", job])
        .output()
        .unwrap();
    assert!(out.status.success(), "token: {out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!token.is_empty());
    token
}

/// `env` as the borrowed pairs [`Proc::start`] takes.
fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

// ---------------------------------------------------------------------------------------------
// Reports

/// Reads a JSON report and checks its documented schema: the summary's keys and counts, and
/// each job's keys and value types. Returns the jobs by name, checking each appears once.
fn read_report(path: &Path) -> (Value, BTreeMap<String, Value>) {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the report {}: {e}", path.display()));
    let report: Value = serde_json::from_str(&text).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&report), ["jobs", "summary"]);
    let summary = &report["summary"];
    assert_eq!(
        keys(summary),
        [
            "cancelled",
            "errors",
            "failed",
            "passed",
            "timed_out",
            "total",
            "wall_ms"
        ]
    );
    for (key, value) in summary.as_object().unwrap() {
        assert!(value.is_u64(), "summary.{key} is {value}");
    }
    let mut jobs = BTreeMap::new();
    let mut tally: BTreeMap<String, u64> = BTreeMap::new();
    for job in report["jobs"].as_array().unwrap() {
        assert_eq!(
            keys(job),
            [
                "attempts",
                "duration_ms",
                "exit_code",
                "name",
                "outputs",
                "status",
                "worker"
            ]
        );
        let name = job["name"].as_str().unwrap().to_string();
        let status = job["status"].as_str().unwrap();
        assert!(
            ["passed", "failed", "timed_out", "error", "cancelled"].contains(&status),
            "status {status}"
        );
        assert!(job["exit_code"].is_null() || job["exit_code"].is_i64());
        assert!(job["attempts"].is_u64() && job["duration_ms"].is_u64());
        assert!(job["worker"].is_string());
        assert!(
            job["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_string)
        );
        *tally
            .entry(
                match status {
                    "error" => "errors",
                    other => other,
                }
                .to_string(),
            )
            .or_default() += 1;
        assert!(
            jobs.insert(name.clone(), job.clone()).is_none(),
            "job {name} appears twice"
        );
    }
    assert_eq!(summary["total"], jobs.len());
    for key in ["passed", "failed", "timed_out", "errors", "cancelled"] {
        assert_eq!(
            summary[key].as_u64(),
            Some(tally.get(key).copied().unwrap_or(0)),
            "summary.{key} against the jobs"
        );
    }
    (report, jobs)
}

/// The names of the jobs with `status`.
fn with_status(jobs: &BTreeMap<String, Value>, status: &str) -> BTreeSet<String> {
    jobs.iter()
        .filter(|(_, j)| j["status"] == status)
        .map(|(n, _)| n.clone())
        .collect()
}

/// Every file under `dir`, relative, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A manifest `run:` value: a double-quoted YAML scalar (JSON's escapes are YAML's too).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. A mixed manifest on `local`: statuses, reports, outputs

/// What a generated job of the mixed manifest does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pass,
    Fail,
    Timeout,
    Outputs,
    Layer,
}

impl Kind {
    fn of(index: usize) -> Kind {
        match index % 10 {
            0..=3 => Kind::Pass,
            4 | 5 => Kind::Fail,
            6 => Kind::Timeout,
            7 | 8 => Kind::Outputs,
            _ => Kind::Layer,
        }
    }

    fn name(self, index: usize) -> String {
        let label = match self {
            Kind::Pass => "pass",
            Kind::Fail => "fail",
            Kind::Timeout => "timeout",
            Kind::Outputs => "outputs",
            Kind::Layer => "layer",
        };
        format!("{label}-{index:02}")
    }
}

/// The bytes output job `name` writes to `out/<name>.txt` (`printf` below), and to
/// `out/seq.txt` (`seq 1 lines`).
fn expected_outputs(name: &str, lines: usize) -> BTreeMap<String, Vec<u8>> {
    let mut own = format!("job {name}\n").into_bytes();
    own.extend_from_slice(b"\x00\x01\xff end");
    let seq: String = (1..=lines).map(|n| format!("{n}\n")).collect();
    BTreeMap::from([
        (format!("out/{name}.txt"), own),
        ("out/seq.txt".to_string(), seq.into_bytes()),
    ])
}

/// Sets up the files of the mixed manifest's `data` layer; returns the SHA-256 (hex) of the
/// binary file in it.
fn write_data_layer(scratch: &Scratch) -> String {
    for k in 0..10 {
        scratch.write(&format!("data/f{k}.txt"), format!("layer-content-{k}\n"));
    }
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    scratch.write("data/sub/bytes.bin", &bytes);
    let check = scratch.write(
        "data/check.sh",
        "#!/bin/bash\n\
         # Checks the layer's files arrived intact: ./data/check.sh K SHA256\n\
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
    let mut manifest = String::from(
        "defaults:\n  timeout: 30s\n  retries: 0\n\
         layers:\n  data:\n    paths: [data]\n\
         jobs:\n",
    );
    let count = 60;
    for i in 0..count {
        let kind = Kind::of(i);
        let name = kind.name(i);
        manifest.push_str(&format!("  - name: {name}\n"));
        let run = match kind {
            Kind::Pass => "echo passing".to_string(),
            Kind::Fail => "echo failing; exit 1".to_string(),
            Kind::Timeout => {
                manifest.push_str("    timeout: 1s\n");
                "sleep 30".to_string()
            }
            Kind::Outputs => {
                manifest.push_str("    outputs: [out/*.txt]\n");
                format!(
                    "mkdir -p out/nested && \
                     printf 'job %s\\n\\000\\001\\377 end' \"$CLUSTER_JOB_NAME\" > out/$CLUSTER_JOB_NAME.txt && \
                     seq 1 {} > out/seq.txt && echo kept here > out/nested/deep.txt && echo log > out/run.log",
                    i * 1000
                )
            }
            Kind::Layer => {
                manifest.push_str("    layers: [data]\n");
                format!("./data/check.sh {} {sha}", i % 10)
            }
        };
        manifest.push_str(&format!("    run: {}\n", quoted(&run)));
    }
    scratch.write("cluster.yml", &manifest);

    let mut local = scratch.start(
        "local",
        &[
            "local",
            "--workers",
            "3",
            "--slots",
            "2",
            "cluster.yml",
            "--report-json",
            "report.json",
            "--report-junit",
            "junit.xml",
            "--outputs-dir",
            "outputs",
        ],
        &[],
    );
    local.expect_exit(1);

    let (report, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(jobs.len(), count, "every job appears exactly once");
    let workers: BTreeSet<&str> = ["worker-0", "worker-1", "worker-2"].into();
    for i in 0..count {
        let kind = Kind::of(i);
        let name = kind.name(i);
        let job = &jobs[&name];
        let (status, exit_code) = match kind {
            Kind::Pass | Kind::Outputs | Kind::Layer => ("passed", Value::from(0)),
            Kind::Fail => ("failed", Value::from(1)),
            Kind::Timeout => ("timed_out", Value::Null),
        };
        assert_eq!(job["status"], status, "{name}: {job}");
        assert_eq!(job["exit_code"], exit_code, "{name}: {job}");
        assert_eq!(job["attempts"], 1, "{name}: retries: 0");
        assert!(
            workers.contains(job["worker"].as_str().unwrap()),
            "{name}: {job}"
        );
        let dir = scratch.path().join("outputs").join(&name);
        if kind == Kind::Outputs {
            let expected = expected_outputs(&name, i * 1000);
            let listed: Vec<&str> = job["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(
                listed,
                expected.keys().map(String::as_str).collect::<Vec<_>>(),
                "{name}"
            );
            // Exactly the files matching the globs, byte for byte, under <outputs-dir>/<job>/.
            assert!(files_under(&dir) == expected, "{name}: outputs differ");
        } else {
            assert_eq!(job["outputs"], Value::Array(Vec::new()), "{name}");
            assert!(!dir.exists(), "{name} declared no outputs");
        }
    }
    let summary = &report["summary"];
    assert_eq!(
        (
            &summary["total"],
            &summary["passed"],
            &summary["failed"],
            &summary["timed_out"]
        ),
        (&60.into(), &42.into(), &12.into(), &6.into())
    );
    assert_eq!(
        (&summary["errors"], &summary["cancelled"]),
        (&0.into(), &0.into())
    );

    // The JUnit file parses, and agrees with the JSON report.
    let xml = fs::read_to_string(scratch.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    let attr = |name: &str| suite.attribute(name).unwrap().parse::<u64>().unwrap();
    assert_eq!(attr("tests"), summary["total"].as_u64().unwrap());
    assert_eq!(
        attr("failures"),
        summary["failed"].as_u64().unwrap() + summary["timed_out"].as_u64().unwrap()
    );
    assert_eq!(attr("errors"), 0);
    assert_eq!(attr("skipped"), 0);
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: BTreeSet<String> = cases
        .iter()
        .map(|c| c.attribute("name").unwrap().to_string())
        .collect();
    assert_eq!(cases.len(), count);
    assert_eq!(names, jobs.keys().cloned().collect());
    let failure_of = |status: &str| -> BTreeSet<String> {
        cases
            .iter()
            .filter(|c| {
                c.children()
                    .any(|f| f.has_tag_name("failure") && f.attribute("type") == Some(status))
            })
            .map(|c| c.attribute("name").unwrap().to_string())
            .collect()
    };
    assert_eq!(failure_of("failed"), with_status(&jobs, "failed"));
    assert_eq!(failure_of("timed_out"), with_status(&jobs, "timed_out"));

    // Nothing is left behind in the temporary directory.
    let left: Vec<_> = fs::read_dir(scratch.tmp()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// 2. A worker killed with SIGKILL: its jobs run again elsewhere

#[test]
fn a_killed_worker_s_jobs_run_again_on_another_worker() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::start(&scratch);
    let marks = scratch.path().join("marks");
    fs::create_dir_all(&marks).unwrap();
    let _job_pids = JobPids { dir: marks.clone() };
    // Each attempt records its process group and its worker; on the victim it runs until the
    // worker is killed (a machine that hangs, then dies).
    let run = "echo $$ > \"$MARKS/$CLUSTER_JOB_NAME.$CLUSTER_ATTEMPT.pid\"; \
               echo \"$CLUSTER_WORKER\" > \"$MARKS/$CLUSTER_JOB_NAME.$CLUSTER_ATTEMPT.tmp\"; \
               mv \"$MARKS/$CLUSTER_JOB_NAME.$CLUSTER_ATTEMPT.tmp\" \"$MARKS/$CLUSTER_JOB_NAME.$CLUSTER_ATTEMPT.worker\"; \
               if [ \"$CLUSTER_WORKER\" = victim ]; then sleep 120; else sleep 0.3; fi";
    let mut manifest = format!(
        "defaults:\n  retries: 0\n  timeout: 5m\n  env: {{ MARKS: {} }}\njobs:\n",
        quoted(marks.to_str().unwrap())
    );
    let count = 6;
    for i in 0..count {
        manifest.push_str(&format!("  - name: job-{i}\n    run: {}\n", quoted(run)));
    }
    scratch.write("cluster.yml", &manifest);

    let cluster = |role: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec![role.into(), "--cluster".into(), "kill".into()];
        args.extend(TIMINGS.iter().map(|s| s.to_string()));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let start = |name: &str, args: Vec<String>, log: &str| -> Proc {
        let args: Vec<&str> = std::iter::once("--log-level")
            .chain(std::iter::once(log))
            .chain(args.iter().map(String::as_str))
            .collect();
        scratch.start(name, &args, &pairs(&service.env(name)))
    };
    let mut broker = start("broker", cluster("broker", &[]), "warn");
    let mut workers = BTreeMap::new();
    for name in ["victim", "survivor"] {
        let dir = scratch.path().join(name);
        let args = cluster(
            "worker",
            &[
                "--name",
                name,
                "--slots",
                "1",
                "--cache-dir",
                dir.join("cache").to_str().unwrap(),
                "--work-dir",
                dir.join("work").to_str().unwrap(),
            ],
        );
        workers.insert(name, start(name, args, "info"));
    }
    // Both are connected before the jobs come, so both get some.
    for worker in workers.values() {
        worker.await_stderr("worker connected");
    }
    let mut runner = start(
        "runner",
        cluster(
            "run",
            &[
                "cluster.yml",
                "--stop-cluster",
                "--report-json",
                "report.json",
            ],
        ),
        "warn,cluster_action::runner::progress=debug",
    );

    // The victim runs a job, and the broker knows it started (the runner heard of it).
    let victims_job = await_some("a job running on the victim", || {
        fs::read_dir(&marks).unwrap().flatten().find_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let job = name.strip_suffix(".1.worker")?;
            (fs::read_to_string(e.path()).ok()?.trim() == "victim").then(|| job.to_string())
        })
    });
    runner.await_stderr(&format!(
        "started job=\"{victims_job}\" attempt=1 worker=\"victim\""
    ));
    workers.get("victim").unwrap().signal(libc::SIGKILL);
    // The machine is gone, and its job with it.
    let victim_pid: libc::pid_t = fs::read_to_string(marks.join(format!("{victims_job}.1.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    JobPids::kill(victim_pid);

    runner.expect_exit(0);
    broker.expect_exit(0);
    workers.get_mut("survivor").unwrap().expect_exit(0);

    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(jobs.len(), count);
    for (name, job) in &jobs {
        assert_eq!(job["status"], "passed", "{name}: {job}");
        assert_eq!(job["worker"], "survivor", "{name}: {job}");
        let expected_attempts = if *name == victims_job { 2 } else { 1 };
        assert_eq!(job["attempts"], expected_attempts, "{name}: {job}");
    }
    let second = fs::read_to_string(marks.join(format!("{victims_job}.2.worker"))).unwrap();
    assert_eq!(second.trim(), "survivor");
    let on_victim: Vec<String> = fs::read_dir(&marks)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".worker"))
        .filter(|e| fs::read_to_string(e.path()).unwrap().trim() == "victim")
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        on_victim,
        [format!("{victims_job}.1.worker")],
        "one slot: one job started on the victim"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A worker that joins a running run gets its work

#[test]
fn a_worker_joining_after_the_run_started_gets_the_work() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::start(&scratch);
    let mut manifest = String::from("jobs:\n");
    for i in 0..3 {
        manifest.push_str(&format!(
            "  - name: job-{i}\n    run: test \"$CLUSTER_WORKER\" = late\n"
        ));
    }
    scratch.write("cluster.yml", &manifest);
    let mut args = vec![
        "--log-level",
        "info",
        "run",
        "cluster.yml",
        "--embed-broker",
    ];
    args.extend(TIMINGS);
    args.extend(["--cluster", "late", "--report-json", "report.json"]);
    let mut runner = scratch.start("runner", &args, &pairs(&service.env("runner")));
    runner.await_stderr("jobs submitted");

    let mut args = vec![
        "worker",
        "--name",
        "late",
        "--slots",
        "2",
        "--cluster",
        "late",
    ];
    args.extend(TIMINGS);
    let mut worker = scratch.start("worker", &args, &pairs(&service.env("worker")));
    runner.expect_exit(0);
    worker.expect_exit(0);
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(jobs.len(), 3);
    for (name, job) in &jobs {
        assert_eq!(
            (&job["status"], &job["worker"]),
            (&"passed".into(), &"late".into()),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. No workers at all

#[test]
fn a_run_without_workers_gives_up_after_the_worker_wait() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::start(&scratch);
    scratch.write(
        "cluster.yml",
        "jobs:\n  - { name: a, run: 'true' }\n  - { name: b, run: 'true' }\n  - { name: c, run: 'true' }\n",
    );
    let mut args = vec![
        "run",
        "cluster.yml",
        "--embed-broker",
        "--worker-wait",
        "2s",
        "--report-json",
        "report.json",
    ];
    args.extend(TIMINGS);
    let mut runner = scratch.start("runner", &args, &pairs(&service.env("runner")));
    runner.expect_exit(3);
    let stderr = runner.stderr();
    assert!(
        stderr.contains(
            "no worker joined the cluster within --worker-wait; 3 of 3 job(s) did not run"
        ),
        "{stderr}"
    );
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(with_status(&jobs, "error").len(), 3, "{jobs:?}");
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM cancels a `local` run

/// Runs four long jobs on `local` (two workers with one slot each), interrupts it with
/// `interrupt` once both slots run a job, and checks the cancellation: exit 130, every job
/// reported cancelled (the started ones by the worker that ran them), the workers exited 0,
/// and no job process is left.
fn cancel_a_local_run(interrupt: impl FnOnce(&Proc)) {
    let _serial = serial();
    let scratch = Scratch::new();
    let pids = scratch.path().join("pids");
    fs::create_dir_all(&pids).unwrap();
    let job_pids = JobPids { dir: pids.clone() };
    // The shell and a background child: both must be gone after the cancellation.
    let run = "echo $$ > \"$PIDS/$CLUSTER_JOB_NAME.sh.pid\"; \
               sleep 300 & echo $! > \"$PIDS/$CLUSTER_JOB_NAME.tmp\"; \
               mv \"$PIDS/$CLUSTER_JOB_NAME.tmp\" \"$PIDS/$CLUSTER_JOB_NAME.sleep.pid\"; wait";
    let mut manifest = format!(
        "defaults:\n  timeout: 10m\n  env: {{ PIDS: {} }}\njobs:\n",
        quoted(pids.to_str().unwrap())
    );
    for i in 0..4 {
        manifest.push_str(&format!("  - name: long-{i}\n    run: {}\n", quoted(run)));
    }
    scratch.write("cluster.yml", &manifest);
    let mut local = scratch.start(
        "local",
        &[
            "local",
            "--workers",
            "2",
            "--slots",
            "1",
            "cluster.yml",
            "--report-json",
            "report.json",
        ],
        &[],
    );
    // Both slots run a job.
    await_some("two running jobs", || {
        let running = fs::read_dir(&pids)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".sleep.pid"))
            .count();
        (running == 2).then_some(())
    });
    let workers = children(local.pid());
    assert_eq!(workers.len(), 2, "worker processes of local");
    assert!(workers.iter().all(|&w| cmdline(w).contains(" worker ")));

    interrupt(&local);
    local.expect_exit(130);
    let stderr = local.stderr();
    assert!(
        !stderr.contains("exited with") && !stderr.contains("did not exit"),
        "the workers exited 0 in time: {stderr}"
    );
    for pid in workers.iter().copied().chain(job_pids.pids()) {
        await_some(&format!("process {pid} to be gone"), || {
            (!alive(pid)).then_some(())
        });
    }
    let (report, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(report["summary"]["cancelled"], 4, "{report}");
    assert_eq!(with_status(&jobs, "cancelled").len(), 4);
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

// ---------------------------------------------------------------------------------------------
// 6. 100 MB of output

#[test]
fn huge_output_is_cut_to_its_tail_in_bounded_worker_memory() {
    let _serial = serial();
    let scratch = Scratch::new();
    let flood = "head -c 100000000 /dev/zero | tr '\\0' x";
    // Jobs run in manifest order on the one slot: `memory` reads the worker's peak resident
    // memory (its parent's VmHWM) after both floods were captured and reported.
    let manifest = format!(
        "jobs:\n\
         \x20 - name: flood-pass\n    run: {}\n\
         \x20 - name: flood-fail\n    run: {}\n\
         \x20 - name: memory\n    run: {}\n    outputs: [out/*]\n",
        quoted(flood),
        quoted(&format!("{flood}; echo; echo END-OF-JOB; exit 1")),
        quoted(
            "mkdir out && grep VmHWM /proc/$PPID/status > out/hwm && tr '\\0' ' ' < /proc/$PPID/cmdline > out/cmdline"
        ),
    );
    scratch.write("cluster.yml", &manifest);
    let mut local = scratch.start(
        "local",
        &[
            "local",
            "--workers",
            "1",
            "--slots",
            "1",
            "cluster.yml",
            "--report-json",
            "report.json",
            "--report-junit",
            "junit.xml",
            "--outputs-dir",
            "outputs",
        ],
        &[],
    );
    local.expect_exit(1);
    let (_, jobs) = read_report(&scratch.path().join("report.json"));
    assert_eq!(jobs["flood-pass"]["status"], "passed");
    assert_eq!(jobs["flood-fail"]["status"], "failed");
    assert_eq!(jobs["memory"]["status"], "passed");

    // The kept output is the last 1 MiB, after a marker saying how much was cut.
    let xml = fs::read_to_string(scratch.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("flood-fail"))
        .unwrap();
    let out = case
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .unwrap();
    let kept = 1 << 20;
    let tail = "\nEND-OF-JOB\n";
    let printed = 100_000_000 + tail.len();
    let expected = format!(
        "[cluster-action: {} bytes of output cut, the last {kept} bytes follow]\n{}{tail}",
        printed - kept,
        "x".repeat(kept - tail.len())
    );
    assert!(
        out == expected,
        "captured output: {} bytes, starting {:?}",
        out.len(),
        &out[..out.len().min(120)]
    );

    let memory = scratch.path().join("outputs/memory/out");
    let cmdline = fs::read_to_string(memory.join("cmdline")).unwrap();
    assert!(cmdline.contains(" worker "), "the job's parent: {cmdline}");
    let hwm = fs::read_to_string(memory.join("hwm")).unwrap();
    let kib: u64 = hwm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("VmHWM line: {hwm}"));
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
    let service = Service::start(&scratch);
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
        let mut run = scratch.start_in(
            root,
            name,
            &["run", &path, "--embed-broker", "--worker-wait", "1s"],
            &pairs(&service.env(name)),
        );
        run.expect_exit(2);
        let stderr = run.stderr();
        assert!(
            stderr.contains(&format!("{path}:{line}:")) && stderr.contains(problem),
            "{name}: expected '{path}:{line}:' and '{problem}' in:\n{stderr}"
        );
        let stats = service.stats();
        assert_eq!(
            (&stats["twirp_total"], &stats["blob_total"]),
            (&0.into(), &0.into()),
            "{name}: nothing may reach the artifact store: {stats}"
        );
    }
    // The counters do see a run that gets going (it gives up without workers).
    scratch.write("fine.yml", "jobs:\n  - { name: a, run: 'true' }\n");
    let mut args = vec!["run", "fine.yml", "--embed-broker", "--worker-wait", "1s"];
    args.extend(TIMINGS);
    scratch
        .start("fine", &args, &pairs(&service.env("fine")))
        .expect_exit(3);
    let stats = service.stats();
    assert!(
        stats["twirp"]["CreateArtifact"].as_u64() > Some(0),
        "{stats}"
    );
    drop(service.proc);
}

// ---------------------------------------------------------------------------------------------
// 8. The README's first command

#[test]
fn the_quickstart_from_the_readme_passes() {
    let _serial = serial();
    let scratch = Scratch::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let report = scratch.path().join("report.json");
    let mut local = scratch.start_in(
        root,
        "quickstart",
        &[
            "local",
            "examples/quickstart/cluster.yml",
            "--report-json",
            report.to_str().unwrap(),
        ],
        &[],
    );
    local.expect_exit(0);
    let (report, jobs) = read_report(&report);
    assert_eq!(jobs.len(), 12);
    assert_eq!(report["summary"]["passed"], 12, "{report}");
}
