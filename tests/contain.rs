//! What a job can leave behind and what it can read, through the real binary on `local`:
//! every process a job starts dies with its worker, however the worker goes, and no process
//! above a job shows it the artifact credentials.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

mod common;
use common::cluster::{Proc, Scratch, children, cmdline};
use common::report::read_report;
use common::{alive, await_some, await_within};

/// A bash function for jobs: whether pid $1 is a live process (a zombie is not).
const RUNNING_FN: &str = r#"running() { s=$(cat /proc/$1/stat 2>/dev/null) || return 1; case "${s##*) }" in Z*|X*) return 1;; esac; }"#;

/// Starts `cluster-action local` on `manifest` in `scratch` with two one-slot workers.
fn start_local(scratch: &Scratch, manifest: &str) -> Proc {
    start_local_env(scratch, manifest, &[])
}

/// [`start_local`] with `env` added to the cluster's environment.
fn start_local_env(scratch: &Scratch, manifest: &str, env: &[(&str, &str)]) -> Proc {
    scratch.write("cluster.yml", manifest);
    let args = "local --workers 2 --slots 1 cluster.yml --report-json report.json";
    scratch.spawn(scratch.path(), "local", args, env)
}

/// The JSON report's entry for the only job.
fn the_job(dir: &Path) -> serde_json::Value {
    let (report, _) = read_report(&dir.join("report.json"));
    report["jobs"][0].clone()
}

/// A job whose first attempt starts a background process and a `setsid` daemon (with a child
/// of its own), writes their pids, and then loses its worker by `lose` (run in the job, or by
/// the test when it is empty). The second attempt, on the other worker, passes only once every
/// process of the first is gone while the run goes on.
fn the_first_attempts_processes_die_with_its_worker(lose: &str) {
    let scratch = Scratch::new();
    let d = scratch.path();
    let run = format!(
        r#"{RUNNING_FN}
if [ "$CLUSTER_ATTEMPT" = 1 ]; then
  sleep 300 & echo $! >> {d}/pids
  setsid sh -c 'echo $$ >> {d}/pids; sleep 300 & echo $! >> {d}/pids; wait' &
  until [ $(wc -l < {d}/pids) -ge 3 ]; do sleep 0.01; done
  echo $$ >> {d}/pids
  echo $PPID > {d}/worker.tmp; mv {d}/worker.tmp {d}/worker
  {lose}
  wait
else
  for i in $(seq 300); do
    left=0; for p in $(cat {d}/pids); do running $p && left=1; done
    [ $left = 0 ] && exit 0
    sleep 0.1
  done
  echo "still running: $(cat {d}/pids)"; exit 1
fi"#,
        d = d.display()
    );
    let manifest = format!(
        "jobs:\n  - name: daemon\n    retries: 1\n    run: {}\n",
        serde_json::to_string(&run).unwrap()
    );
    let mut local = start_local(&scratch, &manifest);
    let worker: libc::pid_t = await_some("the first attempt to start", || {
        fs::read_to_string(d.join("worker"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    if lose.is_empty() {
        // SAFETY: kill has no memory-safety preconditions; `worker` is local's child.
        assert_eq!(unsafe { libc::kill(worker, libc::SIGKILL) }, 0);
    }
    let status = local.wait();
    let job = the_job(d);
    assert_eq!(status.code(), Some(0), "{job}");
    assert_eq!(job["status"], "passed", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
}

#[test]
fn processes_of_a_sigkilled_workers_job_die_with_it() {
    the_first_attempts_processes_die_with_its_worker("");
}

#[test]
fn a_job_that_kills_its_worker_takes_its_processes_with_it() {
    the_first_attempts_processes_die_with_its_worker("kill -9 $PPID");
}

#[test]
fn no_process_above_a_job_shows_it_the_artifact_credentials_or_the_cluster_secret() {
    let scratch = Scratch::new();
    // Its own environment, then every ancestor's initial environment, as far up as the job
    // can read. With the cluster secret a job could open every sealed artifact of the run, and
    // a job that prints its environment would put it in the reports.
    let run = r#"test -z "${CLUSTER_SECRET:-}" || { echo "the job has CLUSTER_SECRET"; exit 1; }
p=$$; found=0
while [ "$p" -gt 1 ]; do
  if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qE '^(ACTIONS_(RUNTIME_TOKEN|RESULTS_URL)|CLUSTER_SECRET)='; then
    echo "found in $p: $(tr '\0' ' ' < /proc/$p/cmdline)"; found=1
  fi
  p=$(sed 's/.*) //' /proc/$p/stat | cut -d' ' -f2)
done
exit $found"#;
    let manifest = format!(
        "jobs:\n  - name: snoop\n    run: {}\n",
        serde_json::to_string(run).unwrap()
    );
    let secret = [("CLUSTER_SECRET", "a secret no job may see")];
    let status = start_local_env(&scratch, &manifest, &secret).wait();
    let job = the_job(scratch.path());
    assert_eq!(status.code(), Some(0), "{job}");
    assert_eq!(job["status"], "passed", "{job}");
}

#[test]
fn isolation_from_the_manifest_reaches_the_job() {
    let scratch = Scratch::new();
    // In a sandbox the job's shell is its namespace's init and sees a network of its own.
    let boxed =
        r#"test $$ = 1 && test "$(cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ')" = lo"#;
    let manifest = format!(
        "defaults:\n  isolation: sandbox-no-network\njobs:\n  - name: boxed\n    run: {}\n  \
         - name: plain\n    isolation: process\n    run: test $$ != 1\n",
        serde_json::to_string(boxed).unwrap()
    );
    let status = start_local(&scratch, &manifest).wait();
    let (report, _) = read_report(&scratch.path().join("report.json"));
    assert_eq!(status.code(), Some(0), "{report}");
}

#[test]
fn an_unknown_isolation_is_bad_input_with_its_location() {
    let scratch = Scratch::new();
    let manifest = "jobs:\n  - name: a\n    run: true\n    isolation: vm\n";
    let mut local = start_local(&scratch, manifest);
    let status = local.wait();
    let stderr = local.stderr();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cluster.yml:4:"), "{stderr}");
    assert!(stderr.contains("sandbox-no-network"), "{stderr}");
}

/// `local`'s worker processes, as soon as `count` of them run.
fn workers_of(local: &Proc, count: usize) -> Vec<libc::pid_t> {
    await_some("local's workers to start", || {
        let workers: Vec<libc::pid_t> = children(local.pid())
            .into_iter()
            .filter(|&pid| cmdline(pid).contains(" worker "))
            .collect();
        (workers.len() >= count).then_some(workers)
    })
}

/// Kills the processes it holds when dropped: what a failing test left running.
struct Leftovers(Vec<libc::pid_t>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in self.0.iter().filter(|&&pid| alive(pid)) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A job that would hold the run for minutes.
const LONG_JOB: &str = "jobs:\n  - name: long\n    run: sleep 300\n";

#[test]
fn a_sigterm_right_after_local_starts_its_workers_ends_them_with_it() {
    let scratch = Scratch::new();
    let mut local = start_local(&scratch, LONG_JOB);
    // At once: the run has not listed, published or joined yet.
    let workers = Leftovers(workers_of(&local, 2));
    local.signal(libc::SIGTERM);
    local.expect_exit(130);
    // `local` waited for its workers before it exited: none may be left, not even briefly.
    let left: Vec<_> = workers.0.iter().filter(|&&pid| alive(pid)).collect();
    assert!(left.is_empty(), "workers left running: {left:?}");
}

#[test]
fn the_workers_of_a_sigkilled_local_end_too() {
    let scratch = Scratch::new();
    let mut local = start_local(&scratch, LONG_JOB);
    let workers = Leftovers(workers_of(&local, 2));
    local.signal(libc::SIGKILL);
    local.wait();
    // Well within the workers' own ways of noticing a lost cluster (their broker wait, the
    // peer timeout of 10 s), so only `local`'s death can be what ends them.
    await_within("local's workers to end", Duration::from_secs(5), || {
        workers.0.iter().all(|&pid| !alive(pid)).then_some(())
    });
}
