//! One run of a manifest against a cluster: publish layers, submit, follow, collect, report.
//!
//! Data path: layers are packed and published first (only those the store lacks); the jobs
//! go to the broker in batches; the broker's `Started`/`Finished` messages drive progress, and
//! each job's outputs layer is fetched into `--outputs-dir` as it finishes.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::manifest::Manifest;
use super::progress::Progress;
use super::report::{JobReport, RunReport};
use crate::broker::{self, BrokerConfig};
use crate::layer::{self, Digest, LayerCache};
use crate::proto::{
    self, BrokerToRunner, Hello, JobOutcome, JobStatus, PROTOCOL_VERSION, RunnerMsg,
};
use crate::store::ArtifactStore;
use crate::stream::{self, Namespace, StreamConfig, StreamError, StreamSender};

/// Jobs per `Submit` message.
const SUBMIT_BATCH: usize = 500;
/// How long a cancelled run waits for workers to confirm their jobs were killed.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// How to run a manifest.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The cluster's stream names.
    pub ns: Namespace,
    /// Stream timings.
    pub stream: StreamConfig,
    /// Run the broker inside this process (then the cluster stops when the run ends).
    pub embed_broker: Option<BrokerConfig>,
    /// Stop the cluster when this run is done.
    pub stop_cluster: bool,
    /// How long to wait for the broker to appear.
    pub broker_wait: Duration,
    /// Give up (exit 3) when no worker is connected for this long while jobs wait.
    pub worker_wait: Duration,
    /// Where each job's outputs are written, under a folder named after the job.
    pub outputs_dir: Option<PathBuf>,
    /// This runner's name in the broker's logs.
    pub name: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every job has a final outcome.
    Completed,
    /// Cancelled by a signal.
    Cancelled,
    /// No worker was there for `worker_wait`; `not_run` jobs never ran.
    NoWorkers {
        /// Jobs without an outcome.
        not_run: usize,
    },
}

/// A finished run.
#[derive(Debug)]
pub struct RunResult {
    /// Every job of the manifest, in manifest order.
    pub report: RunReport,
    /// How it ended.
    pub end: RunEnd,
}

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Packing or publishing a layer failed.
    #[error("layer '{name}': {source}")]
    Layer {
        /// The manifest's layer name.
        name: String,
        /// What failed.
        #[source]
        source: layer::LayerError,
    },
    /// No broker appeared.
    #[error(
        "no broker for cluster '{cluster}' appeared within {secs}s (start one with `cluster-action broker`, use --embed-broker, or raise --broker-wait)"
    )]
    NoBroker {
        /// The cluster id.
        cluster: String,
        /// The wait.
        secs: u64,
    },
    /// The broker refused this runner.
    #[error("the broker refused this runner: {0}")]
    Refused(String),
    /// The broker stopped answering.
    #[error("lost the broker: {0}")]
    BrokerLost(String),
    /// The embedded broker failed.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// The stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Local files.
    #[error("{0}")]
    Io(String),
}

/// Runs `manifest` on the cluster; `cancel` completing cancels the run (SIGINT/SIGTERM).
pub async fn run(
    store: ArtifactStore,
    manifest: &Manifest,
    cfg: &RunConfig,
    progress: &mut Progress,
    cancel: impl Future<Output = ()>,
) -> Result<RunResult, RunError> {
    let started = Instant::now();
    let digests = publish_layers(&store, manifest).await?;
    let specs: Vec<proto::JobSpec> = manifest
        .jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let layers: Vec<Digest> = job
                .layers
                .iter()
                .filter_map(|l| digests.get(l).cloned())
                .collect();
            job.to_spec(i as u64, &layers)
        })
        .collect();

    let (broker_stop_tx, broker_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let embedded = cfg.embed_broker.clone().map(|bcfg| {
        let store = store.clone();
        tokio::spawn(async move {
            broker::run(store, bcfg, async {
                let _ = broker_stop_rx.await;
            })
            .await
        })
    });

    let conn = stream::connect(
        store.clone(),
        cfg.ns.clone(),
        cfg.stream.clone(),
        cfg.broker_wait,
    )
    .await
    .map_err(|e| match e {
        StreamError::NoListener { .. } => RunError::NoBroker {
            cluster: cfg.ns.cluster.clone(),
            secs: cfg.broker_wait.as_secs(),
        },
        other => RunError::Stream(other),
    })?;
    let tx = conn.tx;
    let mut rx = conn.rx;
    send(
        &tx,
        &RunnerMsg::Hello(Hello::Runner {
            version: PROTOCOL_VERSION,
            name: cfg.name.clone(),
        }),
    )
    .await?;
    for batch in specs.chunks(SUBMIT_BATCH) {
        send(
            &tx,
            &RunnerMsg::Submit {
                jobs: batch.to_vec(),
            },
        )
        .await?;
    }
    send(&tx, &RunnerMsg::EndOfSubmission).await?;
    info!(jobs = specs.len(), "jobs submitted");
    progress.begin(specs.len());

    // The scratch directory (and the cache in it) is removed when the run returns.
    let (_outputs_scratch, outputs_cache) = match &cfg.outputs_dir {
        Some(dir) => {
            let (scratch, cache) = open_outputs_cache(dir)?;
            (Some(scratch), Some(cache))
        }
        None => (None, None),
    };
    let mut outcomes: BTreeMap<u64, JobOutcome> = BTreeMap::new();
    let mut fetches: JoinSet<(u64, Result<Vec<String>, String>)> = JoinSet::new();
    let mut workers = 0u32;
    let mut no_workers_since = Some(tokio::time::Instant::now());
    let mut cancelled_at: Option<tokio::time::Instant> = None;
    tokio::pin!(cancel);
    let end = loop {
        let worker_deadline = no_workers_since.map(|t| t + cfg.worker_wait);
        let cancel_deadline = cancelled_at.map(|t| t + CANCEL_GRACE);
        tokio::select! {
            msg = rx.recv() => {
                let frame = match msg {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return Err(RunError::BrokerLost("it closed the stream before all jobs finished".into())),
                    Err(e) => return Err(RunError::BrokerLost(e.to_string())),
                };
                match proto::decode::<BrokerToRunner>("broker", &frame).map_err(|e| RunError::BrokerLost(e.to_string()))? {
                    BrokerToRunner::Welcome { workers: w, .. } | BrokerToRunner::Workers { workers: w, .. } => {
                        workers = w;
                        no_workers_since = if w == 0 { no_workers_since.or(Some(tokio::time::Instant::now())) } else { None };
                        progress.workers(w);
                    }
                    BrokerToRunner::Started { id, attempt, worker } => {
                        if let Some(spec) = specs.get(id as usize) {
                            progress.started(&spec.name, attempt, &worker);
                        }
                    }
                    BrokerToRunner::Finished(outcome) => {
                        let id = outcome.id;
                        if let (Some(cache), Some(dir), Some(layer), Some(spec)) =
                            (&outputs_cache, &cfg.outputs_dir, outcome.outputs_layer.clone(), specs.get(id as usize))
                        {
                            let (store, cache, dest) = (store.clone(), cache.clone(), dir.join(safe_dir_name(&spec.name)));
                            let sub = crate::worker::outputs_pack::job_dir(id, outcome.attempt);
                            fetches.spawn(async move { (id, fetch_outputs(&store, &cache, &layer, &sub, &dest).await) });
                        }
                        if let Some(spec) = specs.get(id as usize) {
                            progress.finished(&JobReport::finished(spec, &outcome, Vec::new()));
                        }
                        outcomes.insert(id, outcome);
                    }
                    BrokerToRunner::AllDone => {
                        break if cancelled_at.is_some() { RunEnd::Cancelled } else { RunEnd::Completed };
                    }
                    BrokerToRunner::Refused { reason } => return Err(RunError::Refused(reason)),
                }
            }
            () = &mut cancel, if cancelled_at.is_none() => {
                warn!("cancelling: queued jobs are dropped, running jobs are killed");
                send(&tx, &RunnerMsg::Cancel).await?;
                cancelled_at = Some(tokio::time::Instant::now());
            }
            () = sleep_until(worker_deadline), if worker_deadline.is_some() && cancelled_at.is_none() => {
                let not_run = specs.len() - outcomes.len();
                warn!("no worker connected for {:?} with {not_run} job(s) waiting", cfg.worker_wait);
                send(&tx, &RunnerMsg::Cancel).await?;
                break RunEnd::NoWorkers { not_run };
            }
            () = sleep_until(cancel_deadline), if cancel_deadline.is_some() => {
                warn!("workers did not confirm the cancellation within {CANCEL_GRACE:?}");
                break RunEnd::Cancelled;
            }
        }
    };
    debug!(?end, workers, "run ended");

    // Outputs first: a clean stop deletes the cluster's layers, outputs layers included.
    let mut outputs: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    while let Some(done) = fetches.join_next().await {
        match done {
            Ok((id, Ok(files))) => {
                outputs.insert(id, files);
            }
            Ok((id, Err(e))) => {
                // The job's result stands, but its outputs are missing: say so loudly.
                let name = specs.get(id as usize).map_or("?", |s| s.name.as_str());
                progress.warn(&format!(
                    "outputs of job '{name}' could not be brought back: {e}"
                ));
                if let Some(o) = outcomes.get_mut(&id)
                    && o.status == JobStatus::Passed
                {
                    o.status = JobStatus::Error;
                    o.error = Some(format!("outputs could not be brought back: {e}"));
                }
            }
            Err(e) => warn!("an output fetch task failed: {e}"),
        }
    }

    if cfg.stop_cluster || embedded.is_some() {
        send(&tx, &RunnerMsg::StopCluster).await?;
    }
    if let Err(e) = tx.close().await {
        warn!("closing the stream to the broker: {e}");
    }
    if let Some(task) = embedded {
        let _ = broker_stop_tx.send(());
        match task.await {
            Ok(result) => {
                result?;
            }
            Err(e) => warn!("embedded broker task failed: {e}"),
        }
    }

    let jobs = specs
        .iter()
        .map(|spec| match outcomes.get(&spec.id) {
            Some(o) => JobReport::finished(spec, o, outputs.remove(&spec.id).unwrap_or_default()),
            None => not_run_report(spec, &end),
        })
        .collect();
    let report = RunReport {
        jobs,
        wall_ms: started.elapsed().as_millis() as u64,
    };
    info!("run finished in {:?}", started.elapsed());
    Ok(RunResult { report, end })
}

async fn send(tx: &StreamSender, msg: &RunnerMsg) -> Result<(), RunError> {
    Ok(tx.send(proto::encode(msg)).await?)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Packs every layer some job uses and publishes those the store lacks.
async fn publish_layers(
    store: &ArtifactStore,
    manifest: &Manifest,
) -> Result<BTreeMap<String, Digest>, RunError> {
    let used: std::collections::BTreeSet<&String> =
        manifest.jobs.iter().flat_map(|j| j.layers.iter()).collect();
    let staging = tempfile::tempdir()
        .map_err(|e| RunError::Io(format!("cannot create a temporary directory: {e}")))?;
    let mut digests = BTreeMap::new();
    let mut uploads = JoinSet::new();
    for name in used {
        let Some(def) = manifest.layers.get(name) else {
            continue;
        };
        let archive = staging.path().join(format!("{}.tar.gz", digests.len()));
        let (root, paths, out) = (
            manifest.base_dir.clone(),
            def.paths.clone(),
            archive.clone(),
        );
        let digest = tokio::task::spawn_blocking(move || layer::pack(&root, &paths, &out))
            .await
            .map_err(|e| RunError::Io(format!("layer packing task failed: {e}")))?
            .map_err(|source| RunError::Layer {
                name: name.clone(),
                source,
            })?;
        info!(layer = %name, digest = %digest.0, "packed");
        digests.insert(name.clone(), digest.clone());
        let (store, name) = (store.clone(), name.clone());
        uploads.spawn(async move {
            let result = layer::publish(&store, &archive, &digest).await;
            (name, result)
        });
    }
    while let Some(done) = uploads.join_next().await {
        let (name, result) =
            done.map_err(|e| RunError::Io(format!("layer upload task failed: {e}")))?;
        let outcome = result.map_err(|source| RunError::Layer {
            name: name.clone(),
            source,
        })?;
        debug!(layer = %name, ?outcome, "published");
    }
    Ok(digests)
}

/// Creates the outputs directory, and a layer cache for the outputs layers in a temporary
/// directory that is removed when the returned guard is dropped.
fn open_outputs_cache(dir: &Path) -> Result<(tempfile::TempDir, LayerCache), RunError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        RunError::Io(format!(
            "cannot create outputs directory {}: {e}",
            dir.display()
        ))
    })?;
    let scratch = tempfile::Builder::new()
        .prefix("cluster-action-outputs-")
        .tempdir()
        .map_err(|e| RunError::Io(format!("cannot create a temporary directory: {e}")))?;
    let cache = LayerCache::open(scratch.path()).map_err(|source| RunError::Layer {
        name: "outputs".into(),
        source,
    })?;
    Ok((scratch, cache))
}

/// Fetches an outputs layer and copies the files of its directory `sub` (the job's, in a
/// layer a worker packed for several jobs) under `dest`; returns their relative paths.
async fn fetch_outputs(
    store: &ArtifactStore,
    cache: &LayerCache,
    digest: &Digest,
    sub: &Path,
    dest: &Path,
) -> Result<Vec<String>, String> {
    let tree = cache
        .fetch(store, digest)
        .await
        .map_err(|e| e.to_string())?
        .join(sub);
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dest)
            .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        layer::materialize(std::slice::from_ref(&tree), &dest).map_err(|e| e.to_string())?;
        let mut files = Vec::new();
        list_files(&tree, &tree, &mut files).map_err(|e| format!("cannot list outputs: {e}"))?;
        files.sort();
        Ok(files)
    })
    .await
    .map_err(|e| format!("output copy task failed: {e}"))?
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// A job name as a single, safe directory name.
fn safe_dir_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => "_".into(),
        _ => cleaned,
    }
}

/// The report of a job that never got an outcome from the broker.
fn not_run_report(spec: &proto::JobSpec, end: &RunEnd) -> JobReport {
    let mut report = JobReport::cancelled(spec);
    if let RunEnd::NoWorkers { .. } = end {
        report.status = JobStatus::Error;
        report.error = Some("not run: no worker was available".into());
    }
    report
}

/// Tells the cluster's broker to stop (as `cluster-action stop` does) and waits until it
/// acknowledges by closing the stream.
pub async fn stop_cluster(
    store: ArtifactStore,
    ns: &Namespace,
    stream_cfg: &StreamConfig,
    wait: Duration,
    name: &str,
) -> Result<(), RunError> {
    let conn = match stream::connect(store, ns.clone(), stream_cfg.clone(), wait).await {
        // Stopped already: what was asked is done.
        Err(StreamError::ListenerClosed { .. }) => return Ok(()),
        other => other,
    }
    .map_err(|e| match e {
        StreamError::NoListener { .. } => RunError::NoBroker {
            cluster: ns.cluster.clone(),
            secs: wait.as_secs(),
        },
        other => RunError::Stream(other),
    })?;
    let (tx, mut rx) = (conn.tx, conn.rx);
    send(
        &tx,
        &RunnerMsg::Hello(Hello::Runner {
            version: PROTOCOL_VERSION,
            name: name.to_string(),
        }),
    )
    .await?;
    send(&tx, &RunnerMsg::StopCluster).await?;
    send(&tx, &RunnerMsg::EndOfSubmission).await?;
    loop {
        match rx.recv().await {
            Ok(Some(frame)) => {
                if let Ok(BrokerToRunner::Refused { reason }) =
                    proto::decode::<BrokerToRunner>("broker", &frame)
                {
                    return Err(RunError::Refused(reason));
                }
            }
            Ok(None) => break,
            Err(e) => return Err(RunError::BrokerLost(e.to_string())),
        }
    }
    let _ = tx.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::safe_dir_name;

    #[test]
    fn job_names_become_single_safe_directories() {
        assert_eq!(safe_dir_name("unit-1"), "unit-1");
        assert_eq!(safe_dir_name("a/../b c"), "a_.._b_c");
        assert_eq!(safe_dir_name(".."), "_");
        assert_eq!(safe_dir_name(""), "_");
    }
}
