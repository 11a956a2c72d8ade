//! End-to-end tests of sealing: with a cluster secret nothing readable reaches the artifact
//! store, `secret-env` values reach their jobs masked, tampered layers and frames are refused,
//! and peers with different secrets do not talk.
//!
//! Each test drives the binary as a user does and waits for events (files appearing, log
//! lines, process exits), never for time; every process a test starts is killed when the
//! test ends, also when it fails. The tests of a file run one at a time ([`serial`]).

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use common::cluster::{Cluster, Proc, Scratch, Service, TIMINGS, serial};
use common::manifest::manifest;
use common::report::read_report;
use common::{await_some, files_under};

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
    files_under(data)
        .into_iter()
        .filter(|(_, bytes)| bytes.starts_with(b"ca-seal1"))
        .map(|(path, _)| data.join(path))
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
    let stored = files_under(&data);
    assert!(
        stored.len() >= 8,
        "streams, the layer and the outputs layer: {stored:?}"
    );
    for (path, bytes) in &stored {
        let found = markers_in(bytes, &markers);
        assert!(found.is_empty(), "{found:?} readable in {path}");
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
    let mut last: BTreeMap<String, usize> = files_under(&data)
        .into_iter()
        .map(|(p, b)| (p, b.len()))
        .collect();
    let mut growths: BTreeMap<String, u32> = BTreeMap::new();
    let (path, bytes) = await_some("a segment growing twice", || {
        for (path, bytes) in files_under(&data) {
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
    forge_last_frame(&data.join(path), &bytes);
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
