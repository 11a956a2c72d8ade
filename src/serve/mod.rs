//! The local artifact service: both halves of GitHub's artifact v4 protocol (Twirp + blob) on
//! loopback, following github.com where act and github.com differ, with fault and latency
//! injection and per-operation request counters for tests and benchmarks.
//!
//! Routes: `POST /twirp/github.actions.results.api.v1.ArtifactService/{method}` (see
//! `twirp`), `PUT`/`GET`/`HEAD /blob/artifacts/{id}?sig=…&se=…&sp=…` on signed URLs (see
//! `blob`), `GET /_stats` (a [`StatsSnapshot`] as JSON; not subject to faults), and
//! `GET /_artifacts` (every artifact the service holds, with what `ListArtifacts` does not show:
//! unfinalized ones and `expiresAt`; `{"artifacts": [{databaseId, name, workflowRunBackendId,
//! workflowJobRunBackendId, finalized, createdAt, expiresAt}]}`, for tests).
//!
//! Where act and github.com differ, this follows github.com: a second `CreateArtifact` of a
//! name answers `already_exists`, only finalized artifacts are listed, another job's ids do not
//! find an artifact, and the blob half honours `Range`, `If-None-Match` and the append limits.
//! It trusts the runtime token's claims without checking a signature, which is why it only
//! binds loopback addresses.
//!
//! Module map: `artifacts` (the registry), `blobs` (bytes on disk), `sign` (signed
//! URLs), `faults` (latency and failures), `stats` (counters).

mod artifacts;
mod blob;
mod blobs;
mod faults;
mod sign;
mod stats;
mod twirp;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use artifacts::MAX_ARTIFACTS_PER_JOB;
use artifacts::Registry;
use blobs::BlobStore;
use faults::Faults;
pub use faults::Latency;
use sign::Signer;
use stats::Stats;

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen; must be a loopback address (the service trusts unsigned tokens).
    pub addr: SocketAddr,
    /// Where blobs live: a fresh `serve-*` subdirectory of it is created (and kept) for each
    /// start; a temporary directory removed with the handle when `None`.
    pub data_dir: Option<PathBuf>,
    /// The delay added to every request before it is answered.
    pub latency: Latency,
    /// Fraction of requests answered 500 or 503 (before they take effect).
    pub fail_rate: f64,
    /// Fraction of requests answered 429 with `Retry-After` (before they take effect).
    pub throttle_rate: f64,
    /// Seed of the fault injection's random choices.
    pub seed: u64,
    /// Largest append block in bytes (Azure: 4 MiB).
    pub max_append_bytes: u64,
    /// Most appends per append blob (Azure: 50,000).
    pub max_appends: u64,
    /// How long signed URLs stay valid.
    pub url_ttl: Duration,
    /// Most artifacts one job may create (GitHub: 500).
    pub max_artifacts_per_job: u32,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: None,
            latency: Latency::default(),
            fail_rate: 0.0,
            throttle_rate: 0.0,
            seed: 0,
            max_append_bytes: 4 * 1024 * 1024,
            max_appends: 50_000,
            url_ttl: Duration::from_secs(6 * 3600),
            max_artifacts_per_job: MAX_ARTIFACTS_PER_JOB,
        }
    }
}

/// Request counters by operation, as served at `GET /_stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Twirp calls by method name (`CreateArtifact`, ...; `unknown` for other names).
    /// Every request received counts, including those answered with an injected fault or
    /// an authentication error.
    pub twirp: std::collections::BTreeMap<String, u64>,
    /// Blob requests by operation (`put_blob`, `put_block`, `put_block_list`, `append_block`,
    /// `get`, `head`; `other` for an unsupported `comp`).
    pub blob: std::collections::BTreeMap<String, u64>,
    /// Sum of `twirp`.
    pub twirp_total: u64,
    /// Sum of `blob`.
    pub blob_total: u64,
    /// Bytes of blob request bodies received (by `Content-Length`): what clients uploaded.
    #[serde(default)]
    pub blob_bytes_in: u64,
    /// Bytes of blob answer bodies sent (by `Content-Length`): what clients downloaded.
    #[serde(default)]
    pub blob_bytes_out: u64,
}

/// Everything the handlers share.
#[derive(Debug)]
struct App {
    /// `http://127.0.0.1:PORT/`.
    base_url: String,
    registry: Mutex<Registry>,
    blobs: BlobStore,
    signer: Signer,
    faults: Faults,
    stats: Stats,
    url_ttl: Duration,
    max_append_bytes: u64,
    max_appends: u64,
    /// Source of `x-ms-request-id`.
    request_seq: AtomicU64,
}

impl App {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running service. Dropping it stops the server in the background (and removes the
/// temporary data directory); [`ServeHandle::shutdown`] stops it and waits.
pub struct ServeHandle {
    url: String,
    app: Arc<App>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    _data: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for ServeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeHandle")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ServeHandle {
    /// The base URL, `http://127.0.0.1:PORT/` (what `ACTIONS_RESULTS_URL` should be).
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The request counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.app.stats.snapshot()
    }
    /// Stops accepting connections, lets requests in flight finish, and waits for the server.
    pub async fn shutdown(self) {
        // The server may already have stopped on its own; then there is no one to tell.
        let _ = self.stop.send(());
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("artifact service stopped with an error: {e}"),
            Err(e) => tracing::warn!("artifact service task failed: {e}"),
        }
    }
}

/// Starts the service; it is ready to answer when this returns.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<ServeHandle> {
    if !cfg.addr.ip().is_loopback() {
        bail!(
            "refusing to serve on {}: the artifact service trusts unsigned runtime tokens, \
             so it only binds loopback addresses (127.0.0.1 or ::1)",
            cfg.addr
        );
    }
    let faults = Faults::new(cfg.latency, cfg.fail_rate, cfg.throttle_rate, cfg.seed)?;
    let (data, root) = match &cfg.data_dir {
        None => {
            let dir = tempfile::Builder::new()
                .prefix("cluster-action-serve-")
                .tempdir()
                .context("creating a temporary directory for blobs")?;
            let root = dir.path().to_path_buf();
            (Some(dir), root)
        }
        Some(parent) => {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the data directory {}", parent.display()))?;
            let dir = tempfile::Builder::new()
                .prefix("serve-")
                .tempdir_in(parent)
                .with_context(|| {
                    format!("creating a directory for blobs in {}", parent.display())
                })?;
            (None, dir.keep())
        }
    };
    let blobs = BlobStore::new(&root)
        .with_context(|| format!("preparing the blob directory {}", root.display()))?;
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("binding {}", cfg.addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    // Without TCP_NODELAY a response written in two parts (its head, then a blob streamed
    // from disk) waits for the client's delayed ACK of the first: 40 ms a download on Linux.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("setting TCP_NODELAY on a connection: {e}");
        }
    });
    let url = format!("http://{local}/");
    let app = Arc::new(App {
        base_url: url.clone(),
        registry: Mutex::new(Registry::new(cfg.max_artifacts_per_job)),
        blobs,
        signer: Signer::new(),
        faults,
        stats: Stats::default(),
        url_ttl: cfg.url_ttl,
        max_append_bytes: cfg.max_append_bytes,
        max_appends: cfg.max_appends,
        request_seq: AtomicU64::new(1),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let server = axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(async move {
            // A dropped handle stops the server too.
            let _ = stopped.await;
        })
        .into_future();
    tracing::info!(
        "artifact service listening on {url} (blobs in {})",
        root.display()
    );
    Ok(ServeHandle {
        url,
        app,
        stop,
        server: tokio::spawn(server),
        _data: data,
    })
}

fn router(app: Arc<App>) -> Router {
    let blob_routes = Router::new()
        .route(
            "/blob/artifacts/{id}",
            get(blob::get).head(blob::head).put(blob::put),
        )
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            blob::azure_headers,
        ));
    Router::new()
        .route(
            "/twirp/github.actions.results.api.v1.ArtifactService/{method}",
            post(twirp::handle),
        )
        .route("/_stats", get(stats_json))
        .route("/_artifacts", get(artifacts_json))
        .merge(blob_routes)
        .with_state(app)
}

async fn stats_json(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
) -> axum::Json<StatsSnapshot> {
    axum::Json(app.stats.snapshot())
}

async fn artifacts_json(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
) -> axum::Json<serde_json::Value> {
    let all = app.registry().inspect(rfc3339);
    axum::Json(serde_json::json!({ "artifacts": all }))
}

/// `t` as protojson writes a `google.protobuf.Timestamp` (RFC 3339, UTC, whole seconds).
fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// What `cluster-action serve` runs: starts the service, calls `announce` with its URL once it
/// is ready, then serves until SIGINT or SIGTERM and shuts down gracefully. Pass
/// [`announce_on_stdout`] to get the documented first line of output.
pub async fn run_until_signal(
    cfg: ServeConfig,
    announce: impl FnOnce(&str) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let handle = start(cfg).await?;
    announce(handle.url()).context("announcing the service URL")?;
    wait_for_signal().await?;
    let stats = handle.stats();
    handle.shutdown().await;
    tracing::info!(
        "artifact service stopped after {} Twirp and {} blob requests",
        stats.twirp_total,
        stats.blob_total
    );
    Ok(())
}

/// Prints `ACTIONS_RESULTS_URL=<url>` as a line on stdout and flushes it, so a parent process
/// (or a shell: `eval "$(… | head -1)"`) can read where the service is.
pub fn announce_on_stdout(url: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACTIONS_RESULTS_URL={url}")?;
    out.flush()
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("listening for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("listening for Ctrl-C")
}
