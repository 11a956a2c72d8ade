//! End-to-end tests of a cluster's life: a worker joining a running run, a run without
//! workers or a worker without a broker giving up, `stop`, manifest errors refused before
//! anything is uploaded, and an idle cluster that polls slowly and still runs a late job.
//!
//! Each test drives the binary as a user does and waits for events (files appearing, log
//! lines, process exits), never for time; every process a test starts is killed when the
//! test ends, also when it fails. The tests of a file run one at a time ([`serial`]).

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::cluster::{Cluster, Scratch, Service, TIMINGS, serial};
use common::manifest::manifest;
use common::report::{read_report, with_status};

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
fn a_run_of_jobs_and_a_suite_without_workers_counts_both_as_not_run() {
    let _serial = serial();
    let scratch = Scratch::new();
    let service = Service::up(&scratch);
    let jobs = [("a".to_string(), "true".to_string(), String::new())];
    let suite = "suites:\n  - name: s\n    framework: command\n    \
                 list: \"echo t1; echo t2\"\n    run: \"true\"\n";
    scratch.write("cluster.yml", format!("{}{suite}", manifest("", &jobs)));
    let args = format!("run cluster.yml --embed-broker --slots 0 --worker-wait 2s {TIMINGS}");
    let mut runner = service.start(&scratch, "runner", &args);
    runner.expect_exit(3);
    let stderr = runner.stderr();
    let message = "no worker joined the cluster within --worker-wait; 1 of 1 job(s) and 2 of 2 test(s) did not run";
    assert!(stderr.contains(message), "{stderr}");
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
