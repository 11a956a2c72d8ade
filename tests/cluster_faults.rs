//! End-to-end tests of a cluster of separate processes when something fails: a worker lost
//! (killed, terminated, SIGKILLed with nobody waiting, stalled and fenced), the broker lost,
//! the artifact service failing requests or restarted, and a soak of 500 jobs under faults.
//!
//! Each test drives the binary as a user does and waits for events (files appearing, log
//! lines, process exits), never for time; every process a test starts is killed when the
//! test ends, also when it fails. The tests of a file run one at a time ([`serial`]).

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use common::cluster::{
    Cluster, JobPids, PARKED, Scratch, Service, TIMINGS, await_gone, cmdline, serial,
};
use common::manifest::{defaults_env, manifest};
use common::report::{read_report, with_status};
use common::{alive, await_some, names_ending};

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
    // Whether it says "lease ran out" depends on what it held when stopped (a worker warns only
    // when work waited through its lease; a_stalled_worker_starts_nothing_it_was_given_before_it_was_declared_lost
    // checks the warning): this test is about every job once, whatever the worker says.
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
