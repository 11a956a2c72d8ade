//! One run of a manifest against a cluster: publish layers, submit, follow, collect, report.
//!
//! Shape: the decisions live in [`super::machine`] (a pure state machine); `run` is its async
//! shell, which only moves messages between the [`RunnerLink`] and the machine, runs its
//! timers, fetches outputs layers and shows progress. The broker is not started here: callers
//! that embed one (`run --embed-broker`, `local`) start it beside the run
//! ([`crate::broker::EmbeddedBroker`]).
//!
//! Data path: the layers are packed and published first (only those the store lacks); the
//! suites are listed while the runner joins the cluster (and, for a slow listing, warms the
//! slots' sessions: [`super::warm_up`]); then the jobs go to the broker in batches; the
//! broker's `Started`/`Finished` messages drive progress, and each job's outputs layer is
//! fetched into `--outputs-dir` as it finishes.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::machine::{Effect, Machine, Rules, RunEnd, Timer, planned_slots};
use super::manifest::{Manifest, SuiteDef};
use super::progress::Progress;
use super::report::RunReport;
use super::suite_run::{ListedSuite, REPORT_FILE, SuiteRun};
use super::warm_up::{self, WarmUps};
use crate::history::results::{AttemptResults, RerunMode, RerunSelection, select_rerun};
use crate::history::timings::Timings;
use crate::input_file::{InputFileError, read_bounded};
use crate::layer::{self, Digest, LayerCache};
use crate::link::{JoinError, Joined, LinkError, RunnerLink, Target};
use crate::notice::Level;
use crate::proto::{BrokerToRunner, Hello, JobIndex, PROTOCOL_VERSION, RunnerMsg, Submission};
use crate::seal::{ClusterKeys, LayerSeal};
use crate::store::ArtifactStore;
use crate::stream::{Namespace, StreamConfig, StreamError};
use crate::suite::TestKey;
use crate::suite::{Listing, Shipped, SuiteError};

/// The largest report of one suite batch the runner reads: a batch is a few minutes of tests
/// and its JUnit, with every test's captured output, is far smaller; read into memory and
/// parsed, a report costs several times its size (a 100 MB JUnit cost the runner 600 MB).
/// Past it the batch's tests are errors that name the limit.
pub const MAX_REPORT_BYTES: u64 = 16 << 20;

/// What became of a suite batch's report.
#[derive(Debug)]
enum BatchReport {
    /// Read (none when the batch wrote none).
    Read(Option<Vec<u8>>),
    /// Refused for the reason given (too large, not a file).
    Unreadable(String),
    /// The batch's outputs could not be fetched from the store, for the reason given.
    Lost(String),
}

/// How to run a manifest.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The cluster's stream names.
    pub ns: Namespace,
    /// Stream timings.
    pub stream: StreamConfig,
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
    /// Slots of the worker running inside this process beside the run (0: none): with some,
    /// a run that no other worker joins goes on alone instead of giving up.
    pub own_slots: u32,
    /// The cluster's slots when known before the broker tells (`local`), else 0: suites are
    /// planned for them.
    pub slots_hint: usize,
    /// Workers the cluster is to have, when known (`run --expect-workers`), else 0.
    pub expected_workers: u32,
    /// Timing history the suites' batches are planned from.
    pub timings: Timings,
    /// On a re-run: the previous attempt's results, and what to run again.
    pub rerun: Option<(AttemptResults, RerunMode)>,
}

impl RunConfig {
    /// Where the broker is.
    fn target(&self) -> Target {
        Target {
            ns: self.ns.clone(),
            stream: self.stream.clone(),
            wait: self.broker_wait,
        }
    }
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
    /// No broker appeared, or connecting to it failed.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The cluster was stopped before this run could join it.
    #[error("cluster '{0}' was stopped already: start its broker again")]
    ClusterStopped(String),
    /// The broker refused this runner.
    #[error("the broker refused this runner: {0}")]
    Refused(String),
    /// The broker stopped answering, or sent something that is not a message for runners.
    #[error("lost the broker: {0}")]
    BrokerLost(#[source] LinkError),
    /// Sending to the broker failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Local files.
    #[error("{what}: {source}")]
    Io {
        /// What could not be done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A suite could not be listed.
    #[error(transparent)]
    Suite(#[from] SuiteError),
    /// A task of this run failed (it panicked or was cancelled).
    #[error("{what} task failed: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Runs `manifest` on the cluster; `cancel` completing cancels the run (SIGINT/SIGTERM). The
/// manifest is given away: once its layers are published, its jobs become the submission.
pub async fn run(
    store: ArtifactStore,
    mut manifest: Manifest,
    cfg: &RunConfig,
    progress: &mut Progress,
    cancel: impl Future<Output = ()>,
) -> Result<RunResult, RunError> {
    let started = Instant::now();
    // What listing builds (a nextest archive, go test binaries) lives until the run returns.
    let builds = scratch_dir("cluster-action-suites-")?;
    let layer_seal = cfg.stream.seal.as_ref().map(ClusterKeys::layers);
    // The layers first: the warm-ups need them, and they are packed from the checkout as the
    // user left it, before a listing writes into it. A layer that cannot be published is
    // reported after the listing, whose errors come first, as they did before.
    let published = publish_layers(&store, layer_seal.as_ref(), &manifest).await;
    let mut warm_ups = match (&cfg.rerun, &published) {
        (None, Ok(digests)) => WarmUps::new(&manifest.suites, &manifest.base_dir, digests),
        // A re-run's few tests need few files: a warm-up would collect them all.
        _ => WarmUps::none(),
    };
    // Joining the cluster (a few round trips through the store) and warming its slots go on
    // while the suites are listed: a listing that imports every test file takes seconds.
    let (link, listings, heard) = {
        let listing = async {
            let mut listings = list_suites(&manifest, builds.path()).await?;
            if let Some((previous, mode)) = &cfg.rerun {
                let selection = rerun(&mut listings, previous, *mode);
                progress.warn(&selection.to_string());
            }
            Ok(listings)
        };
        let listing_since = Instant::now();
        tokio::pin!(listing);
        let joining = join_cluster(&store, cfg);
        tokio::pin!(joining);
        tokio::select! {
            listed = &mut listing => match listed {
                Ok(listings) => (joining.await?, listings, Vec::new()),
                Err(e) => {
                    // A runner half way through joining leaves too, if it joins soon.
                    if let Ok(Ok(link)) = tokio::time::timeout(LEAVE_WITHIN, joining).await {
                        leave(&link).await;
                    }
                    return Err(e);
                }
            },
            joined = &mut joining => {
                let mut link = joined?;
                let listed =
                    warm_up_while(&mut link, &mut warm_ups, cfg, listing_since, listing).await;
                match listed {
                    Ok((listings, heard)) => (link, listings, heard),
                    Err(e) => return Err(leave_after(&link, e).await),
                }
            }
        }
    };
    let prepared = async {
        let digests = published?;
        let suites = ship_suites(&store, layer_seal.as_ref(), listings, &digests).await?;
        let defaults = std::mem::take(&mut manifest.defaults);
        let jobs = submissions(manifest, &digests);
        // The scratch directory (and the cache in it) is removed when the run returns.
        let outputs = (cfg.outputs_dir.as_deref())
            .map(|dir| Outputs::open(dir, layer_seal.clone()))
            .transpose()?;
        let reports = match suites.is_empty() {
            true => None,
            false => Some(Reports::open(layer_seal)?),
        };
        Ok((suites, defaults, jobs, outputs, reports))
    };
    let (suites, defaults, jobs, outputs, reports) = match prepared.await {
        Ok(prepared) => prepared,
        Err(e) => return Err(leave_after(&link, e).await),
    };
    let suites = SuiteRun::new(suites, cfg.timings.clone(), jobs.len() as u64);
    let rules = Rules {
        worker_wait: cfg.worker_wait,
        fetch_outputs: outputs.is_some(),
        stop_cluster: cfg.stop_cluster,
        own_slots: cfg.own_slots,
    };
    let machine = Machine::new(jobs, &rules, Instant::now())
        .with_defaults(defaults)
        .with_suites(suites, cfg.slots_hint)
        .expecting_workers(cfg.expected_workers);
    // The broker owes this runner its jobs' outcomes for the whole run: a result after
    // minutes of silence is read at the busy pace.
    link.expecting().set(true);
    let mut shell = Shell {
        machine,
        link,
        progress,
        store,
        outputs,
        fetches: JoinSet::new(),
        reports,
        report_fetches: JoinSet::new(),
    };
    let end = match shell.follow(heard, cancel).await {
        Ok(end) => end,
        Err(e) => return Err(leave_after(&shell.link, e).await),
    };
    debug!(?end, "run ended");
    let report = shell.finish(&end, started).await?;
    info!("run finished in {:?}", started.elapsed());
    Ok(RunResult { report, end })
}

/// How long a runner whose listing failed while it was joining the cluster waits for the
/// join to complete, to leave at once rather than be waited for until the peer timeout.
const LEAVE_WITHIN: Duration = Duration::from_secs(5);

/// Closes the stream to the broker: a runner leaving on an error tells its broker at once
/// (which otherwise waits for it until the peer timeout, and a broker embedded in this
/// process keeps the run from ending until then).
async fn leave(link: &RunnerLink) {
    if let Err(e) = link.close().await {
        crate::link::log_close_error(&e);
    }
}

/// [`leave`]s, then hands back `error`, the reason.
async fn leave_after(link: &RunnerLink, error: RunError) -> RunError {
    leave(link).await;
    error
}

/// What the link received: a message, the end of the broker's stream, or why it broke.
type Received = Result<Option<BrokerToRunner>, LinkError>;

/// Joins the cluster `cfg` names as its runner.
async fn join_cluster(store: &ArtifactStore, cfg: &RunConfig) -> Result<RunnerLink, RunError> {
    let hello = Hello::Runner {
        version: PROTOCOL_VERSION,
        name: cfg.name.clone(),
    };
    match RunnerLink::join(store.clone(), &cfg.target(), hello).await? {
        Joined::Linked(link) => Ok(link),
        Joined::ClusterClosed => Err(RunError::ClusterStopped(cfg.ns.cluster.clone())),
    }
}

/// Waits for `listing` (begun at `listing_since`) while submitting `warm_ups` through `link`,
/// once the listing has taken [`warm_up::AFTER`], for the slots the run plans for as the
/// broker says how many there are; what the link receives meanwhile is kept for the machine,
/// which starts once the listing is done.
async fn warm_up_while<T>(
    link: &mut RunnerLink,
    warm_ups: &mut WarmUps,
    cfg: &RunConfig,
    listing_since: Instant,
    mut listing: std::pin::Pin<&mut impl Future<Output = Result<T, RunError>>>,
) -> Result<(T, Vec<Received>), RunError> {
    let mut heard = Vec::new();
    let mut planned = cfg.slots_hint;
    let due = tokio::time::Instant::from_std(listing_since + warm_up::AFTER);
    let mut armed = false;
    let mut listening = warm_ups.wanted();
    loop {
        tokio::select! {
            listed = &mut listing => return Ok((listed?, heard)),
            () = tokio::time::sleep_until(due), if listening && !armed => {
                armed = true;
                warm_ups.top_up(link, planned).await?;
            }
            msg = link.recv(), if listening => {
                if let Ok(Some(
                    BrokerToRunner::Welcome { workers, slots }
                    | BrokerToRunner::Workers { workers, slots },
                )) = &msg
                {
                    planned = planned_slots(*workers, *slots, cfg.expected_workers, cfg.slots_hint);
                    if armed {
                        warm_ups.top_up(link, planned).await?;
                    }
                }
                // The end of the stream, or an error, is the machine's to handle: nothing is
                // read after it.
                listening = matches!(msg, Ok(Some(_)));
                heard.push(msg);
            }
        }
    }
}

/// The manifest's jobs as submitted: indexed in manifest order, with their layers' digests.
fn submissions(manifest: Manifest, digests: &BTreeMap<String, Digest>) -> Vec<Submission> {
    manifest
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, job)| {
            let layers: Vec<Digest> = job
                .layers
                .iter()
                .filter_map(|l| digests.get(l).cloned())
                .collect();
            job.into_spec(JobIndex(i as u64), &layers)
        })
        .collect()
}

/// The async shell around the runner's [`Machine`].
struct Shell<'a> {
    machine: Machine,
    link: RunnerLink,
    progress: &'a mut Progress,
    store: ArtifactStore,
    outputs: Option<Outputs>,
    fetches: JoinSet<(JobIndex, Result<Vec<String>, String>)>,
    reports: Option<Reports>,
    report_fetches: JoinSet<(JobIndex, BatchReport)>,
}

impl Shell<'_> {
    /// Submits the jobs, gives the machine what was `heard` from the broker before, then feeds
    /// it until the run ends.
    async fn follow(
        &mut self,
        heard: Vec<Received>,
        cancel: impl Future<Output = ()>,
    ) -> Result<RunEnd, RunError> {
        // Begun first: the submission may end tests (those no batch runs).
        self.progress
            .begin(self.machine.len(), self.machine.tests());
        let submission = self.machine.submit();
        self.apply_all(submission).await?;
        info!(jobs = self.machine.len(), "jobs submitted");
        for msg in heard {
            let effects = self.received(msg);
            if let Some(end) = self.apply_all(effects).await? {
                return Ok(end);
            }
        }
        tokio::pin!(cancel);
        let mut cancelled = false;
        loop {
            let deadline = self.machine.deadline();
            let effects = tokio::select! {
                msg = self.link.recv() => self.received(msg),
                () = &mut cancel, if !cancelled => {
                    cancelled = true;
                    self.machine.cancel(Instant::now())
                }
                timer = sleep_until(deadline) => self.machine.timer(timer),
                Some(done) = self.fetches.join_next(), if !self.fetches.is_empty() => {
                    self.fetched(done)
                }
                Some(done) = self.report_fetches.join_next(), if !self.report_fetches.is_empty() => {
                    self.report_done(done)?
                }
            };
            if let Some(end) = self.apply_all(effects).await? {
                return Ok(end);
            }
        }
    }

    /// What the machine makes of what the link received.
    fn received(&mut self, msg: Received) -> Vec<Effect> {
        match msg {
            Ok(Some(msg)) => self.machine.message(msg, Instant::now()),
            Ok(None) => self
                .machine
                .broker_gone("it closed the stream before all jobs finished"),
            Err(e) => self.machine.broker_gone(&e.to_string()),
        }
    }

    /// Carries out effects; the run's end when one of them ends it.
    async fn apply_all(&mut self, effects: Vec<Effect>) -> Result<Option<RunEnd>, RunError> {
        let mut end = None;
        for effect in effects {
            match effect {
                Effect::Send(msg) => {
                    if let Err(e) = self.link.send(&msg).await {
                        let reason = format!("cannot send to it: {e}");
                        let gone = self.machine.broker_gone(&reason);
                        end = gone.into_iter().find_map(|fx| match fx {
                            Effect::End(e) => Some(e),
                            _ => None,
                        });
                        // A message after the end (the closing `StopCluster`) is not the run's.
                        if end.is_none() {
                            warn!("the broker did not get {msg:?}: {e}");
                        }
                        break;
                    }
                }
                Effect::Workers(n) => self.progress.workers(n),
                Effect::Started {
                    name,
                    attempt,
                    worker,
                } => self.progress.started(&name, attempt, &worker),
                Effect::Finished(report) => self.progress.finished(&report),
                Effect::TestsEnded(ended) => self.progress.tests_ended(&ended),
                Effect::TestsFinished(finished) => self.progress.tests_finished(&finished),
                Effect::Notice(n) if n.level == Level::Warn => self.progress.warn(&n.text),
                Effect::Notice(n) => n.log(),
                Effect::FetchOutputs {
                    index,
                    dir,
                    layer,
                    path,
                    after,
                } => self.fetch(index, &dir, layer, path, after),
                Effect::FetchReport { index, layer, path } => {
                    self.fetch_report(index, layer, path);
                }
                Effect::End(e) => end = Some(e),
                Effect::Refused(reason) => return Err(RunError::Refused(reason)),
            }
        }
        Ok(end)
    }

    /// Starts fetching (the directory `path` of) an outputs layer into the outputs directory,
    /// after `after`.
    fn fetch(
        &mut self,
        index: JobIndex,
        dir: &str,
        layer: Digest,
        path: Option<String>,
        after: Duration,
    ) {
        let Some(outputs) = &self.outputs else {
            return;
        };
        let (store, cache) = (self.store.clone(), outputs.cache.clone());
        let dest = outputs.dir.join(dir);
        self.fetches.spawn(async move {
            tokio::time::sleep(after).await;
            let sub = PathBuf::from(path.unwrap_or_default());
            (
                index,
                fetch_outputs(&store, &cache, &layer, &sub, &dest).await,
            )
        });
    }

    /// Starts fetching the report of a suite batch (none without an outputs layer) from its
    /// directory `path` of the layer (the whole layer: `None`).
    fn fetch_report(&mut self, index: JobIndex, layer: Option<Digest>, path: Option<String>) {
        let cache = self.reports.as_ref().map(|r| r.cache.clone());
        let store = self.store.clone();
        self.report_fetches.spawn(async move {
            let (Some(cache), Some(layer)) = (cache, layer) else {
                return (index, BatchReport::Read(None));
            };
            match cache.fetch(&store, &layer).await {
                Ok(tree) => {
                    let file = tree.join(path.unwrap_or_default()).join(REPORT_FILE);
                    (index, read_report(file).await)
                }
                Err(e) => (index, BatchReport::Lost(e.to_string())),
            }
        });
    }

    /// The machine's event for a finished fetch.
    fn fetched(
        &mut self,
        done: Result<(JobIndex, Result<Vec<String>, String>), tokio::task::JoinError>,
    ) -> Vec<Effect> {
        match done {
            Ok((index, fetched)) => self.machine.outputs_fetched(index, fetched),
            Err(e) => {
                warn!("an output fetch task failed: {e}");
                Vec::new()
            }
        }
    }

    /// A batch report's fetch ended: the machine reads the report, or is told why it could
    /// not be read.
    fn report_done(
        &mut self,
        done: Result<(JobIndex, BatchReport), tokio::task::JoinError>,
    ) -> Result<Vec<Effect>, RunError> {
        Ok(match done {
            Ok((index, BatchReport::Read(report))) => self.machine.report_fetched(index, report),
            Ok((index, BatchReport::Unreadable(reason))) => {
                self.machine.report_unreadable(index, &reason)
            }
            Ok((index, BatchReport::Lost(reason))) => self.machine.report_lost(index, &reason),
            Err(source) => {
                return Err(RunError::Task {
                    what: "report fetch",
                    source,
                });
            }
        })
    }

    /// Waits for the outputs and batch reports still on their way, then sends what the machine
    /// sends last (the stop of the cluster, if asked).
    async fn close(&mut self) -> Result<(), RunError> {
        while let Some(done) = self.fetches.join_next().await {
            let effects = self.fetched(done);
            self.apply_all(effects).await?;
        }
        // The reports of batches a cancel ended: what their tests did before it.
        while let Some(done) = self.report_fetches.join_next().await {
            let effects = self.report_done(done)?;
            self.apply_all(effects).await?;
        }
        let closing = self.machine.closing();
        self.apply_all(closing).await?;
        Ok(())
    }

    /// [`Shell::close`]s (a stopping broker deletes the outputs layers: stopped first, it
    /// deleted layers still being fetched), leaves the cluster, even when that failed, and
    /// makes the report.
    async fn finish(mut self, end: &RunEnd, started: Instant) -> Result<RunReport, RunError> {
        let closed = self.close().await;
        leave(&self.link).await;
        closed?;
        Ok(self
            .machine
            .into_report(end, started.elapsed().as_millis() as u64))
    }
}

/// The report a batch wrote at `file`: none when it wrote none; an error (its tests become
/// errors saying it) when it is not a regular file or holds more than [`MAX_REPORT_BYTES`],
/// which is then not read further.
async fn read_report(file: PathBuf) -> BatchReport {
    let read = tokio::task::spawn_blocking(move || read_bounded(&file, MAX_REPORT_BYTES)).await;
    match read {
        Ok(Ok(bytes)) => BatchReport::Read(Some(bytes)),
        Ok(Err(e @ (InputFileError::NotRegular(_) | InputFileError::TooLarge { .. }))) => {
            BatchReport::Unreadable(format!(
                "the batch's report ({REPORT_FILE}) was not read: {e}"
            ))
        }
        Ok(Err(InputFileError::Io(_))) | Err(_) => BatchReport::Read(None),
    }
}

/// Sleeps until the machine's next deadline, if it has one.
async fn sleep_until(deadline: Option<(Instant, Timer)>) -> Timer {
    match deadline {
        Some((at, timer)) => {
            tokio::time::sleep_until(at.into()).await;
            timer
        }
        None => std::future::pending().await,
    }
}

/// A temporary directory named `prefix…`, removed when dropped.
fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir, RunError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| RunError::Io {
            what: "cannot create a temporary directory".into(),
            source,
        })
}

/// Lists every suite of the manifest in its directory, writing builds under `builds`.
async fn list_suites(
    manifest: &Manifest,
    builds: &Path,
) -> Result<Vec<(SuiteDef, Listing)>, RunError> {
    let mut listings = Vec::with_capacity(manifest.suites.len());
    for def in &manifest.suites {
        let (suite, dir, work) = (
            def.suite.clone(),
            manifest.base_dir.clone(),
            builds.to_path_buf(),
        );
        info!(suite = %suite.name, framework = suite.framework.name(), "listing");
        let listing = tokio::task::spawn_blocking(move || suite.list(&dir, &work))
            .await
            .map_err(|source| RunError::Task {
                what: "suite listing",
                source,
            })??;
        info!(suite = %def.suite.name, tests = listing.tests.len(), "listed");
        listings.push((def.clone(), listing));
    }
    Ok(listings)
}

/// Keeps in `listings` only the tests a re-run runs (see [`select_rerun`]); a suite left with
/// none is dropped.
fn rerun(
    listings: &mut Vec<(SuiteDef, Listing)>,
    previous: &AttemptResults,
    mode: RerunMode,
) -> RerunSelection {
    let key = |def: &SuiteDef, id: &str| TestKey::new(&def.suite.name, id);
    let listed: Vec<TestKey> = listings
        .iter()
        .flat_map(|(def, listing)| listing.tests.iter().map(move |t| key(def, &t.id)))
        .collect();
    let selection = select_rerun(&listed, Some(previous), mode);
    let run: std::collections::BTreeSet<&TestKey> = selection.run.iter().collect();
    for (def, listing) in listings.iter_mut() {
        listing.tests.retain(|t| run.contains(&key(def, &t.id)));
    }
    listings.retain(|(_, listing)| !listing.tests.is_empty());
    selection
}

/// Packs and publishes what each suite's framework ships (one layer per suite) and gives
/// each suite its batches' layers: its manifest layers, then the shipped files.
async fn ship_suites(
    store: &ArtifactStore,
    seal: Option<&LayerSeal>,
    listings: Vec<(SuiteDef, Listing)>,
    digests: &BTreeMap<String, Digest>,
) -> Result<Vec<ListedSuite>, RunError> {
    let mut suites = Vec::with_capacity(listings.len());
    for (def, listing) in listings {
        let mut layers = suite_layers(&def, digests);
        if !listing.ship.is_empty() {
            let name = format!("suite '{}' files", def.suite.name);
            let layer_err = |source| RunError::Layer {
                name: name.clone(),
                source,
            };
            let staging = scratch_dir("cluster-action-ship-")?;
            let (ship, root) = (listing.ship.clone(), staging.path().to_path_buf());
            let digest = tokio::task::spawn_blocking(move || pack_shipped(&ship, &root))
                .await
                .map_err(|source| RunError::Task {
                    what: "layer packing",
                    source,
                })?
                .map_err(layer_err)?;
            let archive = staging.path().join(SHIP_ARCHIVE);
            let published = layer::publish(store, seal, &archive, &digest)
                .await
                .map_err(layer_err)?;
            info!(layer = %name, digest = %published.digest.0, "published");
            layers.push(published.digest);
        }
        suites.push(ListedSuite {
            def,
            listing,
            layers,
        });
    }
    Ok(suites)
}

/// The published layers of `def`'s batches but what its framework ships, in order.
pub(super) fn suite_layers(def: &SuiteDef, digests: &BTreeMap<String, Digest>) -> Vec<Digest> {
    def.layers
        .iter()
        .filter_map(|l| digests.get(l).cloned())
        .collect()
}

/// The archive [`pack_shipped`] writes in its staging directory.
const SHIP_ARCHIVE: &str = "ship.tar.gz";

/// Puts each shipped file at its destination under `root/files` (a hard link, else a copy)
/// and packs them into `root/`[`SHIP_ARCHIVE`].
fn pack_shipped(ship: &[Shipped], root: &Path) -> Result<Digest, layer::LayerError> {
    let files = root.join("files");
    let mut paths = Vec::with_capacity(ship.len());
    for file in ship {
        let dest = files.join(&file.dest);
        let placed = dest
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::hard_link(&file.source, &dest)
                    .or_else(|_| std::fs::copy(&file.source, &dest).map(|_| ()))
            });
        placed.map_err(|e| {
            layer::LayerError::io(format!("placing '{}'", file.source.display()), e)
        })?;
        paths.push(file.dest.clone());
    }
    layer::pack(&files, &paths, &root.join(SHIP_ARCHIVE))
}

/// Packs every layer some job uses and publishes those the store lacks.
async fn publish_layers(
    store: &ArtifactStore,
    seal: Option<&LayerSeal>,
    manifest: &Manifest,
) -> Result<BTreeMap<String, Digest>, RunError> {
    let used: std::collections::BTreeSet<&String> = manifest
        .jobs
        .iter()
        .flat_map(|j| j.layers.iter())
        .chain(manifest.suites.iter().flat_map(|s| s.layers.iter()))
        .collect();
    let staging = tempfile::tempdir().map_err(|source| RunError::Io {
        what: "cannot create a temporary directory".into(),
        source,
    })?;
    let mut digests = BTreeMap::new();
    let mut uploads = JoinSet::new();
    for (index, name) in used.into_iter().enumerate() {
        let Some(def) = manifest.layers.get(name) else {
            continue;
        };
        let archive = staging.path().join(format!("{index}.tar.gz"));
        let (root, paths, out) = (
            manifest.base_dir.clone(),
            def.paths.clone(),
            archive.clone(),
        );
        let listed = def.listed;
        let digest =
            tokio::task::spawn_blocking(move || layer::pack_listed(&root, &paths, listed, &out))
                .await
                .map_err(|source| RunError::Task {
                    what: "layer packing",
                    source,
                })?
                .map_err(|source| RunError::Layer {
                    name: name.clone(),
                    source,
                })?;
        info!(layer = %name, digest = %digest.0, "packed");
        let (store, name, seal) = (store.clone(), name.clone(), seal.cloned());
        uploads.spawn(async move {
            let result = layer::publish(&store, seal.as_ref(), &archive, &digest).await;
            (name, result)
        });
    }
    while let Some(done) = uploads.join_next().await {
        let (name, result) = done.map_err(|source| RunError::Task {
            what: "layer upload",
            source,
        })?;
        let published = result.map_err(|source| RunError::Layer {
            name: name.clone(),
            source,
        })?;
        debug!(layer = %name, ?published, "published");
        digests.insert(name, published.digest);
    }
    Ok(digests)
}

/// Where outputs go: the directory, and a layer cache for the outputs layers in a
/// temporary directory that is removed when this is dropped.
struct Outputs {
    dir: PathBuf,
    cache: LayerCache,
    _scratch: tempfile::TempDir,
}

impl Outputs {
    /// Creates the outputs directory and the scratch cache; `seal` opens sealed layers.
    fn open(dir: &Path, seal: Option<LayerSeal>) -> Result<Self, RunError> {
        std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
            what: format!("cannot create outputs directory {}", dir.display()),
            source,
        })?;
        let scratch = tempfile::Builder::new()
            .prefix("cluster-action-outputs-")
            .tempdir()
            .map_err(|source| RunError::Io {
                what: "cannot create a temporary directory".into(),
                source,
            })?;
        let cache = LayerCache::open(scratch.path())
            .map_err(|source| RunError::Layer {
                name: "outputs".into(),
                source,
            })?
            .with_seal(seal);
        Ok(Self {
            dir: dir.to_path_buf(),
            cache,
            _scratch: scratch,
        })
    }
}

/// Where suite batches' reports are fetched to: a layer cache in a temporary directory that
/// is removed when this is dropped.
struct Reports {
    cache: LayerCache,
    _scratch: tempfile::TempDir,
}

impl Reports {
    /// Creates the scratch cache; `seal` opens sealed layers.
    fn open(seal: Option<LayerSeal>) -> Result<Self, RunError> {
        let scratch = scratch_dir("cluster-action-reports-")?;
        let cache = LayerCache::open(scratch.path())
            .map_err(|source| RunError::Layer {
                name: "reports".into(),
                source,
            })?
            .with_seal(seal);
        Ok(Self {
            cache,
            _scratch: scratch,
        })
    }
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
    // A worker names the directory: it stays inside the layer.
    if !sub
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "the worker named outputs directory '{}', which leaves the layer",
            sub.display()
        ));
    }
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

/// Tells the cluster's broker to stop (as `cluster-action stop` does) and waits until it
/// acknowledges by closing the stream.
pub async fn stop_cluster(
    store: ArtifactStore,
    target: &Target,
    name: &str,
) -> Result<(), RunError> {
    let Some(mut link) = ask_to_stop(store, target, name).await? else {
        return Ok(());
    };
    loop {
        match link.recv().await {
            Ok(Some(crate::proto::BrokerToRunner::Refused { reason })) => {
                return Err(RunError::Refused(reason));
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return Err(RunError::BrokerLost(e)),
        }
    }
    let _ = link.close().await;
    Ok(())
}

/// Asks the cluster's broker to stop once every runner's work is done (as a runner with
/// `--stop-cluster` that failed before it could submit anything does, so that the broker and
/// the workers waiting for its jobs stop instead of idling out). Returns the link, to wait on
/// or to close, or `None` when the cluster was stopped already.
pub async fn ask_to_stop(
    store: ArtifactStore,
    target: &Target,
    name: &str,
) -> Result<Option<RunnerLink>, RunError> {
    let hello = Hello::Runner {
        version: PROTOCOL_VERSION,
        name: name.to_string(),
    };
    let link = match RunnerLink::join(store, target, hello).await? {
        Joined::Linked(link) => link,
        Joined::ClusterClosed => return Ok(None),
    };
    link.send(&RunnerMsg::StopCluster).await?;
    link.send(&RunnerMsg::EndOfSubmission).await?;
    Ok(Some(link))
}
