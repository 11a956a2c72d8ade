//! The processes of a cluster as a CI workflow runs them, for the end-to-end tests: a scratch
//! directory, `cluster-action` processes whose output lands in files, the `serve` artifact
//! service, [`Cluster`], a service with a broker and workers started as jobs of one run, and
//! the job processes a test must not leave behind ([`JobPids`]).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::{PATIENCE, alive, await_some, await_within};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cluster-action");

/// Stream timings of the separate-process clusters: a lost worker is noticed after 3 s, and a
/// keepalive every 300 ms leaves room for a loaded machine.
pub const TIMINGS: &str = "--poll-max 100ms --keepalive 300ms --peer-timeout 3s";

/// Variables of the caller's environment that would change what the binary does.
pub const SCRUBBED_ENV: [&str; 16] = [
    "ACTIONS_RESULTS_URL",
    "ACTIONS_RUNTIME_TOKEN",
    "CLUSTER_ACTION_CLUSTER",
    "CLUSTER_ATTEMPT",
    "CLUSTER_SECRET",
    "GITHUB_EVENT_PATH",
    "GITHUB_RUN_ID",
    "CLUSTER_JOB_NAME",
    "CLUSTER_WORKER",
    "GITHUB_ACTIONS",
    "GITHUB_JOB",
    "GITHUB_OUTPUT",
    "GITHUB_REPOSITORY",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_STEP_SUMMARY",
    "RUST_LOG",
];

/// A `cluster-action` process with its stdout and stderr in files, leading its own process
/// group. Dropping it before it exited kills it, its group and its `cluster-action` children
/// (`local`'s workers).
pub struct Proc {
    name: String,
    pub child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    pub code: Option<i32>,
}

impl Proc {
    /// The process id, also its process group id.
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends `signal` to this process only (not its group).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(sent, 0, "signal {signal} to {}", self.name);
    }

    /// Waits for the process to exit (for [`PATIENCE`]: only a hang takes longer).
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_within(PATIENCE)
    }

    /// Waits for the process to exit, for `patience` (longer than [`PATIENCE`] only for runs
    /// that are long by design).
    pub fn wait_within(&mut self, patience: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        let status = await_within(&what, patience, || self.child.try_wait().unwrap());
        self.code = status.code();
        status
    }

    /// Waits for the process to exit and asserts its exit code, showing its output if not.
    pub fn expect_exit(&mut self, expected: i32) {
        let status = self.wait();
        assert_eq!(
            self.code,
            Some(expected),
            "exit of {} ({status}); stderr:\n{}\nstdout (start):\n{}",
            self.name,
            self.stderr(),
            self.stdout().chars().take(4000).collect::<String>()
        );
    }

    /// What the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stdout).unwrap_or_default()).into_owned()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    /// Waits until the process's stderr contains `text`.
    pub fn await_stderr(&self, text: &str) {
        await_some(&format!("'{text}' in the stderr of {}", self.name), || {
            self.stderr().contains(text).then_some(())
        });
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.code.is_some() {
            return; // exited and reaped
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

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid, ...
pub fn stat_fields(pid: libc::pid_t) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The command line of `pid`, arguments separated by spaces.
pub fn cmdline(pid: libc::pid_t) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// The live children of `parent`.
pub fn children(parent: libc::pid_t) -> Vec<libc::pid_t> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| stat_fields(pid).is_some_and(|f| f[1] == parent.to_string()) && alive(pid))
        .collect()
}

/// A test's scratch directory: `logs/` holds process output, `tmp/` is the processes' TMPDIR.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A fresh scratch directory, removed when dropped.
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new().prefix("cluster-test-").tempdir();
        Scratch { dir: dir.unwrap() }
    }

    /// The scratch directory, the working directory of the processes.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The processes' TMPDIR.
    pub fn tmp(&self) -> PathBuf {
        self.path().join("tmp")
    }

    /// Starts `cluster-action ARGS` (split at spaces) in this directory.
    pub fn start(&self, name: &str, args: &str) -> Proc {
        self.spawn(self.path(), name, args, &[])
    }

    /// Starts `cluster-action ARGS` (split at spaces) in `cwd`, with `env` added to a scrubbed
    /// environment and `TMPDIR` set to [`Scratch::tmp`].
    pub fn spawn(&self, cwd: &Path, name: &str, args: &str, env: &[(&str, &str)]) -> Proc {
        let args: Vec<&str> = args.split_whitespace().collect();
        self.spawn_args(cwd, name, &args, env)
    }

    /// [`Scratch::spawn`] with the arguments given one by one (an argument may hold spaces).
    pub fn spawn_args(
        &self,
        cwd: &Path,
        name: &str,
        args: &[impl AsRef<std::ffi::OsStr>],
        env: &[(&str, &str)],
    ) -> Proc {
        let logs = self.path().join("logs");
        fs::create_dir_all(&logs).unwrap();
        fs::create_dir_all(self.tmp()).unwrap();
        let stdout = logs.join(format!("{name}.out"));
        let stderr = logs.join(format!("{name}.err"));
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .process_group(0);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.env("TMPDIR", self.tmp()).envs(env.iter().copied());
        let child = cmd.spawn().unwrap();
        Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            code: None,
        }
    }

    /// Asserts that the processes left nothing in their TMPDIR.
    pub fn assert_tmp_empty(&self) {
        let left: Vec<_> = fs::read_dir(self.tmp()).unwrap().flatten().collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    }

    /// Writes `rel` (creating its directory); returns its path.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    /// Makes directory `rel`; returns its path.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.path().join(rel);
        fs::create_dir_all(&path).unwrap();
        path
    }
}

/// A `cluster-action serve` process and its URL.
pub struct Service {
    _proc: Proc,
    pub url: String,
}

impl Service {
    /// Starts the service and waits for its `ACTIONS_RESULTS_URL=` line.
    pub fn up(scratch: &Scratch) -> Service {
        Service::up_as(scratch, "serve", "serve")
    }

    /// Starts the service as `cluster-action ARGS`, its logs named `name`.
    pub fn up_as(scratch: &Scratch, name: &str, args: &str) -> Service {
        // Its blobs go to a temporary directory of its own, apart from the cluster's TMPDIR.
        let data = scratch.mkdir("serve-tmp");
        let env = [("TMPDIR", data.to_str().unwrap())];
        let proc = scratch.spawn(scratch.path(), name, args, &env);
        let url = await_some("the service's URL", || {
            let out = proc.stdout();
            let line = out.split_once('\n')?.0;
            let url = line.strip_prefix("ACTIONS_RESULTS_URL=");
            Some(
                url.unwrap_or_else(|| panic!("first line of serve: {line}"))
                    .to_string(),
            )
        });
        assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'));
        Service { _proc: proc, url }
    }

    /// Starts the service with its blobs in `blobs/` of the scratch directory (returned), to
    /// be read and tampered with.
    pub fn keeping_blobs(scratch: &Scratch) -> (Service, PathBuf) {
        let data = scratch.mkdir("blobs");
        let args = format!("serve --data-dir {}", data.display());
        (Service::up_as(scratch, "serve", &args), data)
    }

    /// Starts `cluster-action ARGS` in `cwd` as job `job` of the run (its name too).
    pub fn start_in(&self, scratch: &Scratch, cwd: &Path, job: &str, args: &str) -> Proc {
        self.start_env(scratch, cwd, job, args, &[])
    }

    /// [`Service::start_in`] with `env` added.
    pub fn start_env(
        &self,
        scratch: &Scratch,
        cwd: &Path,
        job: &str,
        args: &str,
        env: &[(&str, &str)],
    ) -> Proc {
        let token = token("test-run", job);
        let mut all = vec![
            ("ACTIONS_RESULTS_URL", self.url.as_str()),
            ("ACTIONS_RUNTIME_TOKEN", token.as_str()),
        ];
        all.extend_from_slice(env);
        scratch.spawn(cwd, job, args, &all)
    }

    /// Starts `cluster-action ARGS` in the scratch directory as job `job` of the run.
    pub fn start(&self, scratch: &Scratch, job: &str, args: &str) -> Proc {
        self.start_in(scratch, scratch.path(), job, args)
    }

    /// The request counters at `GET {url}_stats`.
    pub fn stats(&self) -> Value {
        self.get("_stats")
    }

    /// The JSON answer of the service's own route `path` (`_stats`, `_artifacts`).
    pub fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.url);
        block_on(async {
            let response = reqwest::get(&url).await.unwrap();
            assert!(response.status().is_success(), "GET {url}");
            response.json::<Value>().await.unwrap()
        })
    }
}

/// A runtime token for the local service, from `cluster-action token`.
pub fn token(run: &str, job: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--run", run, "--job", job])
        .output()
        .unwrap();
    assert!(out.status.success(), "token: {out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!token.is_empty());
    token
}

/// Runs `future` to its end on a runtime of its own.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(future)
}

/// How to start a [`Cluster`]: its name, stream timings, service, secret and workers.
pub struct ClusterBuilder {
    name: String,
    timings: String,
    service: Option<Service>,
    secret: Option<String>,
    broker: bool,
    workers: Vec<String>,
    slots: u32,
    worker_args: String,
    own_dirs: bool,
}

/// A cluster of separate processes, each a job of the run, as a CI workflow starts one: an
/// artifact service, a broker (unless a runner embeds it) and workers, all of cluster `name`.
/// Processes it starts get `--cluster NAME` and its timings; dropping it kills them all.
pub struct Cluster<'a> {
    /// The broker, if the cluster started one.
    broker: Option<Proc>,
    /// The workers, by job name.
    pub workers: BTreeMap<String, Proc>,
    /// The artifact service.
    pub service: Service,
    scratch: &'a Scratch,
    name: String,
    timings: String,
    secret: Option<String>,
}

impl Cluster<'_> {
    /// A builder of cluster `name`: [`TIMINGS`], a plain `serve`, a broker, no workers.
    pub fn builder(name: &str) -> ClusterBuilder {
        ClusterBuilder {
            name: name.to_string(),
            timings: TIMINGS.to_string(),
            service: None,
            secret: None,
            broker: true,
            workers: Vec::new(),
            slots: 1,
            worker_args: String::new(),
            own_dirs: false,
        }
    }

    /// Starts `cluster-action ARGS --cluster NAME TIMINGS` as job `job` of the run, with the
    /// cluster's secret (the args name the subcommand: `run cluster.yml`, `worker`, `stop`).
    pub fn start(&self, job: &str, args: &str) -> Proc {
        self.start_env(job, args, &[])
    }

    /// [`Cluster::start`] with `env` added.
    pub fn start_env(&self, job: &str, args: &str, env: &[(&str, &str)]) -> Proc {
        let args = format!("{args} --cluster {} {}", self.name, self.timings);
        let mut all: Vec<(&str, &str)> = self
            .secret
            .iter()
            .map(|s| ("CLUSTER_SECRET", s.as_str()))
            .collect();
        all.extend_from_slice(env);
        let scratch = self.scratch;
        self.service
            .start_env(scratch, scratch.path(), job, &args, &all)
    }

    /// Starts worker `name` with `slots` slots and its own cache and work directories under
    /// the scratch directory's `name/`.
    pub fn start_worker(&self, name: &str, slots: u32) -> Proc {
        self.start(name, &self.own_worker(name, slots))
    }

    /// The arguments of [`Cluster::start_worker`].
    fn own_worker(&self, name: &str, slots: u32) -> String {
        let dir = self.scratch.path().join(name);
        format!(
            "--log-level info worker --name {name} --slots {slots} --cache-dir {} --work-dir {}",
            dir.join("cache").display(),
            dir.join("work").display()
        )
    }

    /// The broker this cluster started.
    pub fn broker(&mut self) -> &mut Proc {
        self.broker.as_mut().expect("the cluster started no broker")
    }

    /// Worker `name` this cluster started.
    pub fn worker(&mut self, name: &str) -> &mut Proc {
        let known: Vec<String> = self.workers.keys().cloned().collect();
        self.workers
            .get_mut(name)
            .unwrap_or_else(|| panic!("no worker {name}, only {known:?}"))
    }
}

impl ClusterBuilder {
    /// Stream flags for every process instead of [`TIMINGS`].
    pub fn timings(mut self, timings: &str) -> Self {
        self.timings = timings.to_string();
        self
    }

    /// Runs on `service` instead of a plain `serve` of its own.
    pub fn on(mut self, service: Service) -> Self {
        self.service = Some(service);
        self
    }

    /// Every process gets `CLUSTER_SECRET=secret`.
    pub fn secret(mut self, secret: &str) -> Self {
        self.secret = Some(secret.to_string());
        self
    }

    /// No broker of its own: a runner embeds it (`--embed-broker`).
    pub fn embedded_broker(mut self) -> Self {
        self.broker = false;
        self
    }

    /// `count` workers, job names `worker` (one) or `worker-0`, `worker-1`, ...
    pub fn workers(mut self, count: usize) -> Self {
        self.workers = match count {
            1 => vec!["worker".to_string()],
            _ => (0..count).map(|i| format!("worker-{i}")).collect(),
        };
        self
    }

    /// Workers with these job names, each also its worker name (`--name`), with its own cache
    /// and work directories (see [`Cluster::start_worker`]).
    pub fn named_workers(mut self, names: &[&str]) -> Self {
        self.workers = names.iter().map(|n| n.to_string()).collect();
        self.own_dirs = true;
        self
    }

    /// Slots of each worker (1 unless set).
    pub fn slots(mut self, slots: u32) -> Self {
        self.slots = slots;
        self
    }

    /// More flags for each worker (`--retention 3`).
    pub fn worker_args(mut self, args: &str) -> Self {
        self.worker_args = args.to_string();
        self
    }

    /// Starts the service (unless given one), the broker and the workers as jobs of the run
    /// in `scratch`; with a broker of its own, returns once every worker is connected to it.
    pub fn start(self, scratch: &Scratch) -> Cluster<'_> {
        let mut cluster = Cluster {
            broker: None,
            workers: BTreeMap::new(),
            service: self.service.unwrap_or_else(|| Service::up(scratch)),
            scratch,
            name: self.name,
            timings: self.timings,
            secret: self.secret,
        };
        if self.broker {
            cluster.broker = Some(cluster.start("broker", "--log-level info broker"));
        }
        for name in &self.workers {
            let args = if self.own_dirs {
                cluster.own_worker(name, self.slots)
            } else {
                format!("--log-level info worker --slots {}", self.slots)
            };
            let worker = cluster.start(name, &format!("{args} {}", self.worker_args));
            cluster.workers.insert(name.clone(), worker);
        }
        if self.broker {
            for worker in cluster.workers.values() {
                worker.await_stderr("worker connected");
            }
        }
        cluster
    }
}

/// Each test starts several processes on a 2-core machine; one test at a time keeps the peer
/// timeouts meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the test to itself: taken first by every test that starts processes.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Job processes (from the `*.pid` files jobs write into `dir`) that must not outlive the
/// test: killed, with their process groups, on drop.
pub struct JobPids {
    /// Where the jobs write their `*.pid` files.
    pub dir: PathBuf,
}

impl JobPids {
    /// Every pid written so far.
    pub fn pids(&self) -> Vec<libc::pid_t> {
        fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter_map(|e| fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }

    /// Kills `pid` and its group, if it still runs a job's command.
    pub fn kill(pid: libc::pid_t) {
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
pub const PARKED: &str = "echo $$ > $PIDS/$CLUSTER_JOB_NAME.tmp; \
                      mv $PIDS/$CLUSTER_JOB_NAME.tmp $PIDS/$CLUSTER_JOB_NAME.pid; sleep 120";

/// Waits until process `pid` (`what`, for the message) is gone.
pub fn await_gone(what: &str, pid: libc::pid_t) {
    await_some(&format!("{what} {pid} to be gone"), || {
        (!alive(pid)).then_some(())
    });
}
