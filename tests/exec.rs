//! The job executor as a worker relies on it: exit statuses, environment, output capture,
//! time limits, cancellation, and that nothing a job started outlives it.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::future::pending;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster_action::proto::{Isolation, JobStatus};
use cluster_action::worker::contain;
use cluster_action::worker::exec::{ExecError, ExecLimits, Execution, run_job};

/// A time limit no job here reaches.
const LONG: Duration = Duration::from_secs(120);

/// A job as most tests run it: no extra environment, process isolation, a time limit never
/// reached and the default limits; a test sets only what it is about.
struct Job<'a> {
    cmd: &'a str,
    dir: &'a Path,
    env: BTreeMap<String, String>,
    isolation: Isolation,
    time_limit: Duration,
    limits: ExecLimits,
}

impl<'a> Job<'a> {
    fn new(cmd: &'a str, dir: &'a Path) -> Self {
        Job {
            cmd,
            dir,
            env: BTreeMap::new(),
            isolation: Isolation::Process,
            time_limit: LONG,
            limits: ExecLimits::default(),
        }
    }

    fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// Time between SIGTERM and SIGKILL when the job is stopped.
    fn kill_grace(mut self, grace: Duration) -> Self {
        self.limits.kill_grace = grace;
        self
    }

    /// Runs the job until it ends or `cancel` completes.
    async fn run_until(
        self,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<Execution, ExecError> {
        let env = &self.env;
        run_job(
            self.cmd,
            self.dir,
            env,
            self.isolation,
            self.time_limit,
            &self.limits,
            cancel,
        )
        .await
    }

    /// Runs the job to its end, which must not be an error to start it.
    async fn run(self) -> Execution {
        self.run_until(pending()).await.unwrap()
    }
}

/// Runs `cmd` in `dir` as [`Job::new`] sets it up.
async fn run(cmd: &str, dir: &Path) -> Execution {
    Job::new(cmd, dir).run().await
}

/// The pids in `text`, one per line or separated by spaces.
fn parse_pids(text: &str) -> Vec<i32> {
    text.split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect()
}

/// The pids a job wrote to a file.
fn read_pids(path: &Path) -> Vec<i32> {
    parse_pids(&std::fs::read_to_string(path).unwrap())
}

use common::alive as running;

/// Waits (with a generous deadline) until none of `pids` runs any more.
async fn assert_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&pid| running(pid)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still running: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A named pipe: a job writing to it blocks until the test reads, so the test learns exactly
/// when the job has reached that point.
fn fifo(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    common::mkfifo(&path);
    path
}

/// Kills a process on drop, for processes a test deliberately lets escape the job.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

#[tokio::test]
async fn exit_code_decides_passed_or_failed() {
    let dir = tempfile::tempdir().unwrap();
    let passed = run("echo hello", dir.path()).await;
    assert_eq!(passed.status, JobStatus::Passed);
    assert_eq!(passed.exit_code, Some(0));
    assert_eq!(passed.output, "hello\n");

    let failed = run("echo oops; exit 3", dir.path()).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.output, "oops\n");
}

#[tokio::test]
async fn killed_by_a_signal_fails_without_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let killed = run("printf partial; kill -9 $$", dir.path()).await;
    assert_eq!(killed.status, JobStatus::Failed);
    assert_eq!(killed.exit_code, None);
    assert_eq!(
        killed.output,
        "partial\n[cluster-action: killed by signal 9]\n"
    );
}

#[tokio::test]
async fn runs_in_its_directory_with_extra_env_and_no_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = r#"echo "$CLUSTER_TEST_VAR"; echo "$HOME"; pwd -P; cat; echo end"#;
    // Spawned as the worker does, which needs the future to be Send.
    let path = dir.path().to_path_buf();
    let done = tokio::spawn(async move {
        Job::new(cmd, &path)
            .env("CLUSTER_TEST_VAR", "some value")
            .run_until(pending())
            .await
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.status, JobStatus::Passed);
    let home = std::env::var("HOME").unwrap_or_default();
    let cwd = dir.path().canonicalize().unwrap();
    let expected = format!("some value\n{home}\n{}\nend\n", cwd.display());
    assert_eq!(done.output, expected);
}

#[tokio::test]
async fn stdout_and_stderr_are_merged_in_write_order() {
    let dir = tempfile::tempdir().unwrap();
    let done = run("echo 1; echo 2 >&2; echo 3; echo 4 >&2", dir.path()).await;
    assert_eq!(done.output, "1\n2\n3\n4\n");
}

#[tokio::test]
async fn a_missing_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = Job::new("true", &missing)
        .run_until(pending())
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );
}

#[tokio::test]
async fn huge_output_keeps_the_tail_and_counts_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let done = run(
        "head -c 100000000 /dev/zero | tr '\\0' x; printf END",
        dir.path(),
    )
    .await;
    assert_eq!(done.status, JobStatus::Passed);
    let limit = ExecLimits::default().output_limit;
    assert_eq!(limit, 1 << 20);
    let marker = format!(
        "[cluster-action: {} bytes of output cut, the last {limit} bytes follow]\n",
        100_000_003 - limit
    );
    let body = done
        .output
        .strip_prefix(&marker)
        .expect(&done.output[..200]);
    assert_eq!(body.len(), limit);
    assert!(body.ends_with("xxxEND"));
    assert!(body.bytes().take(limit - 3).all(|b| b == b'x'));
}

#[tokio::test]
async fn time_limit_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    // A child, and a grandchild whose parent is still alive: all must go.
    let cmd = r#"
        sleep 1000 & echo $! >> pids
        bash -c 'sleep 1000 & echo $!; wait' > grandchild & echo $! >> pids
        until [ -s grandchild ]; do sleep 0.01; done
        cat grandchild >> pids
        echo ready
        wait
    "#;
    let done = Job::new(cmd, dir.path())
        .time_limit(Duration::from_secs(2))
        .run()
        .await;
    assert_eq!(done.status, JobStatus::TimedOut);
    assert_eq!(
        done.output,
        "ready\n[cluster-action: time limit of 2s reached, killed]\n"
    );
    let pids = read_pids(&dir.path().join("pids"));
    assert_eq!(pids.len(), 3);
    assert_gone(&pids).await;
}

#[tokio::test]
async fn time_limit_sends_sigterm_first_to_let_the_job_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = "trap 'echo cleaning up; exit 7' TERM; echo ready; sleep 1000 & wait";
    let done = Job::new(cmd, dir.path())
        .time_limit(Duration::from_secs(1))
        .run()
        .await;
    assert_eq!(done.status, JobStatus::TimedOut);
    assert_eq!(done.exit_code, Some(7));
    assert!(
        done.output.starts_with("ready\ncleaning up\n"),
        "{}",
        done.output
    );
}

#[tokio::test]
async fn a_job_ignoring_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    // Ignored signals stay ignored in children, so nothing here dies of SIGTERM.
    let cmd = "trap '' TERM; sleep 1000 & echo $$ $! > pids; wait; wait";
    let done = Job::new(cmd, dir.path())
        .time_limit(Duration::from_secs(1))
        .kill_grace(Duration::from_millis(200))
        .run()
        .await;
    assert_eq!(done.status, JobStatus::TimedOut);
    assert_eq!(done.exit_code, None);
    let pids = read_pids(&dir.path().join("pids"));
    assert_eq!(pids.len(), 2);
    assert_gone(&pids).await;
}

#[tokio::test]
async fn background_processes_left_behind_are_killed_without_waiting_for_them() {
    let dir = tempfile::tempdir().unwrap();
    // The sleep holds the output pipe open; the job must still end when bash exits.
    let done = run("sleep 1000 & echo $! > pids; echo done", dir.path()).await;
    assert_eq!(done.status, JobStatus::Passed);
    assert_eq!(done.output, "done\n");
    assert_gone(&read_pids(&dir.path().join("pids"))).await;
}

#[tokio::test]
async fn a_process_escaping_the_group_dies_with_the_job() {
    let dir = tempfile::tempdir().unwrap();
    // `setsid` puts the sleep in a new session, out of reach of the group kill, while it
    // still holds the output pipe; a daemon's own child, one level further, too. The job ends
    // when bash exits, and takes them with it.
    let cmd = r#"
        setsid sh -c 'echo $$ > escaped; sleep 1000 & echo $! > grandchild; wait' &
        until [ -s escaped ] && [ -s grandchild ]; do sleep 0.01; done
        echo done
    "#;
    let done = run(cmd, dir.path()).await;
    let escaped = read_pids(&dir.path().join("escaped"));
    let grandchild = read_pids(&dir.path().join("grandchild"));
    let _guards: Vec<KillOnDrop> = escaped
        .iter()
        .chain(&grandchild)
        .map(|&p| KillOnDrop(p))
        .collect();
    assert_eq!(done.status, JobStatus::Passed);
    assert!(done.output.starts_with("done\n"), "{}", done.output);
    assert!(
        done.output
            .contains("killed 2 process(es) the job left running outside its process group"),
        "{}",
        done.output
    );
    assert_gone(&escaped).await;
    assert_gone(&grandchild).await;
}

#[tokio::test]
async fn a_job_reports_only_its_own_leftovers_and_kills_anothers_too() {
    // Another job of this process ended and left a process outside its group that no sweep
    // has killed yet: as when two jobs end together and this one's sweep comes first.
    let other = contain::Mark::new();
    // The job's sweep reaps it: that is what the test checks.
    #[allow(clippy::zombie_processes)]
    let stray = std::process::Command::new("sleep")
        .arg("1000")
        .env(contain::MARK_VAR, other.value())
        .process_group(0)
        .spawn()
        .unwrap();
    let stray = i32::try_from(stray.id()).unwrap();
    let _guard = KillOnDrop(stray);
    drop(other);
    let dir = tempfile::tempdir().unwrap();
    let done = run("echo done", dir.path()).await;
    assert_eq!(done.status, JobStatus::Passed);
    assert_eq!(done.output, "done\n");
    assert_gone(&[stray]).await;
}

#[tokio::test]
async fn every_process_of_a_job_carries_its_mark() {
    let dir = tempfile::tempdir().unwrap();
    let done = run(
        r"setsid sh -c 'cat /proc/$$/environ' | tr '\0' '\n' | grep ^CLUSTER_ACTION_JOB_MARK=",
        dir.path(),
    )
    .await;
    assert_eq!(done.status, JobStatus::Passed, "{}", done.output);
    let mark = done
        .output
        .trim()
        .strip_prefix("CLUSTER_ACTION_JOB_MARK=")
        .unwrap();
    let (owner, seq) = mark.split_once('.').unwrap();
    assert_eq!(owner, std::process::id().to_string());
    assert!(seq.parse::<u64>().is_ok(), "{mark}");
}

#[tokio::test]
async fn cancellation_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let ready = fifo(dir.path(), "ready");
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let cmd = "sleep 1000 & echo $$ $! > ready; wait";
    let job = Job::new(cmd, dir.path()).run_until(async {
        let _ = cancelled.await;
    });
    let started = async {
        let pids = tokio::fs::read_to_string(&ready).await.unwrap();
        cancel.send(()).unwrap();
        pids
    };
    let (done, pids) = tokio::join!(job, started);
    let done = done.unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
    assert_eq!(done.output, "[cluster-action: cancelled, killed]\n");
    let pids = parse_pids(&pids);
    assert_eq!(pids.len(), 2);
    assert_gone(&pids).await;
}

#[tokio::test]
async fn dropping_the_job_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let ready = fifo(dir.path(), "ready");
    let cmd = "sleep 1000 & echo $$ $! > ready; wait";
    let job = Job::new(cmd, dir.path()).run_until(pending());
    let pids = tokio::select! {
        done = job => panic!("the job ended: {done:?}"),
        pids = tokio::fs::read_to_string(&ready) => pids.unwrap(),
    };
    let pids = parse_pids(&pids);
    assert_eq!(pids.len(), 2);
    assert_gone(&pids).await;
}

/// A command as long as a suite batch naming 20,000 tests (far over the 128 KiB the kernel
/// allows one argument) runs like a short one: its output, its exit code, and no descriptor
/// of its own left to the processes it starts; sandboxed too.
#[tokio::test]
async fn a_command_over_the_kernels_argument_limit_runs_like_a_short_one() {
    let dir = tempfile::tempdir().unwrap();
    let short = "echo \"$(wc -c <<< \"$ids\")\"; ls /proc/self/fd; exit 3";
    let ids: String = (0..20_000)
        .map(|n| format!("test_many.py::test_many[{n:060}]\n"))
        .collect();
    let long = format!("ids='{ids}'\n{short}");
    assert!(long.len() > 1 << 20);
    for isolation in [Isolation::Process, Isolation::Sandbox] {
        let short_cmd = format!("ids=x\n{short}");
        let (short, long) = (
            Job::new(&short_cmd, dir.path())
                .isolation(isolation)
                .run()
                .await,
            Job::new(&long, dir.path()).isolation(isolation).run().await,
        );
        assert_eq!(long.exit_code, Some(3), "{isolation:?}: {}", long.output);
        let (count, fds) = long.output.split_once('\n').unwrap();
        assert_eq!(count, (ids.len() + 1).to_string(), "{isolation:?}");
        assert_eq!(
            fds,
            short.output.split_once('\n').unwrap().1,
            "{isolation:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// isolation: sandbox

/// Runs `cmd` in `dir` in a sandbox of kind `isolation`.
async fn sandboxed(cmd: &str, dir: &Path, isolation: Isolation) -> Execution {
    Job::new(cmd, dir).isolation(isolation).run().await
}

#[tokio::test]
async fn a_sandboxed_job_sees_only_its_own_processes() {
    let dir = tempfile::tempdir().unwrap();
    let done = sandboxed(
        "echo $$; ls /proc | grep -c '^[0-9]'",
        dir.path(),
        Isolation::Sandbox,
    )
    .await;
    assert_eq!(done.status, JobStatus::Passed, "{}", done.output);
    let lines: Vec<&str> = done.output.lines().collect();
    assert_eq!(lines[0], "1", "the job's shell is its namespace's init");
    let seen: u32 = lines[1].parse().unwrap();
    assert!(seen <= 4, "the job sees {seen} processes");
}

#[tokio::test]
async fn a_sandboxed_job_writes_only_its_directory_and_a_private_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job");
    std::fs::create_dir(&job).unwrap();
    let outside = std::env::temp_dir().join(format!("sandbox-probe-{}", std::process::id()));
    let host = format!("/var/tmp/sandbox-probe-{}", std::process::id());
    let cmd = format!(
        "echo kept > mine; echo private > {tmp}; test -e {tmp} && echo tmp-ok; \
         if echo x > {host}; then echo host-written; else echo host-refused; fi",
        tmp = outside.display()
    );
    let done = sandboxed(&cmd, &job, Isolation::Sandbox).await;
    assert_eq!(done.status, JobStatus::Passed, "{}", done.output);
    assert!(done.output.contains("tmp-ok"), "{}", done.output);
    assert!(done.output.contains("host-refused"), "{}", done.output);
    assert_eq!(std::fs::read_to_string(job.join("mine")).unwrap(), "kept\n");
    assert!(!outside.exists(), "the job's /tmp is its own");
    assert!(
        !Path::new(&host).exists(),
        "the rest of the tree is read-only"
    );
}

#[tokio::test]
async fn a_sandboxed_jobs_processes_die_with_its_shell() {
    let dir = tempfile::tempdir().unwrap();
    // A marker argument no other process has, to find the daemon from outside.
    let marker = format!(
        "{}.{}",
        1000 + std::process::id() % 1000,
        std::process::id() % 97
    );
    let cmd = format!("setsid sleep {marker} & sleep 0.2; echo started");
    let done = sandboxed(&cmd, dir.path(), Isolation::Sandbox).await;
    assert_eq!(done.status, JobStatus::Passed, "{}", done.output);
    let survivors = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|pid: &i32| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                cmdline == format!("sleep\0{marker}\0").into_bytes() && running(*pid)
            })
            .collect()
    };
    assert_gone(&survivors()).await;
}

#[tokio::test]
async fn a_sandboxed_job_keeps_its_exit_status_and_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let done = sandboxed("echo out; exit 7", dir.path(), Isolation::Sandbox).await;
    assert_eq!((done.status, done.exit_code), (JobStatus::Failed, Some(7)));
    assert_eq!(done.output, "out\n");
    let done = Job::new("sleep 1000", dir.path())
        .isolation(Isolation::Sandbox)
        .time_limit(Duration::from_secs(1))
        .kill_grace(Duration::from_millis(200))
        .run()
        .await;
    assert_eq!(done.status, JobStatus::TimedOut, "{}", done.output);
}

#[tokio::test]
async fn a_sandbox_without_network_has_a_working_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '; \
               (exec 3<>/dev/tcp/127.0.0.1/9) 2>&1 | grep -o 'Connection refused' | head -n 1";
    let done = sandboxed(cmd, dir.path(), Isolation::SandboxNoNetwork).await;
    assert_eq!(done.status, JobStatus::Passed, "{}", done.output);
    // Only `lo`, and it is up: a connection to a closed port is refused, not unroutable.
    assert_eq!(done.output, "lo\nConnection refused\n");
}

/// Many short jobs at once under `isolation: process`, some leaving a process outside their
/// group behind: every job ends with its own shell's exit status. Each job's end sweeps the
/// worker's children for leftovers while other jobs' shells start and end; a sweep that took
/// a starting shell for a leftover reaped it, and its job failed with ECHILD (about one job
/// in a few thousand).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_short_jobs_at_once_each_keep_their_exit_status() {
    let jobs: usize = std::env::var("STRESS_JOBS").map_or(3000, |v| v.parse().unwrap());
    const AT_ONCE: usize = 32;
    let dir = tempfile::tempdir().unwrap();
    let mut set = tokio::task::JoinSet::new();
    let mut lost = Vec::new();
    for i in 0..jobs {
        if set.len() >= AT_ONCE {
            lost.extend(set.join_next().await.unwrap().unwrap());
        }
        let job_dir = dir.path().join(i.to_string());
        std::fs::create_dir(&job_dir).unwrap();
        set.spawn(async move {
            // Every 5th leaves a process outside its group; every 7th fails by design.
            let stray = if i % 5 == 0 { "(setsid true &); " } else { "" };
            let code = if i % 7 == 0 { 3 } else { 0 };
            let cmd = format!("{stray}exit {code}");
            match Job::new(&cmd, &job_dir).run_until(pending()).await {
                Ok(x) if x.exit_code == Some(code) => None,
                other => Some(format!("job {i}: {other:?}")),
            }
        });
    }
    while let Some(done) = set.join_next().await {
        lost.extend(done.unwrap());
    }
    assert!(lost.is_empty(), "{} of {jobs} jobs: {lost:?}", lost.len());
}
