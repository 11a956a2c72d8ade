//! End-to-end tests of what a cluster leaves in the artifact store: a clean stop deletes what
//! it made, a crashed cluster's leftovers expire for `gc`, the 500-artifact budget per job,
//! and shared defaults that cross the store once.
//!
//! Each test drives the binary as a user does and waits for events (files appearing, log
//! lines, process exits), never for time; every process a test starts is killed when the
//! test ends, also when it fails. The tests of a file run one at a time ([`serial`]).

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::Duration;

use serde_json::Value;

use common::await_some;
use common::cluster::{
    Cluster, JobPids, PARKED, Scratch, Service, TIMINGS, block_on, serial, token,
};
use common::manifest::{defaults_env, manifest, write_data_layer};
use common::report::read_report;

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
