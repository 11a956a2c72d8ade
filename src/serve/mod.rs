//! The local artifact service: both halves of GitHub's artifact v4 protocol (Twirp + blob) on
//! loopback, following github.com where act and github.com differ, with fault and latency
//! injection and per-operation request counters for tests and benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen; must be a loopback address (the service trusts unsigned tokens).
    pub addr: SocketAddr,
    /// Where blobs live; a temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// Added to every request before it is answered.
    pub latency: Duration,
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
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: None,
            latency: Duration::ZERO,
            fail_rate: 0.0,
            throttle_rate: 0.0,
            seed: 0,
            max_append_bytes: 4 * 1024 * 1024,
            max_appends: 50_000,
            url_ttl: Duration::from_secs(6 * 3600),
        }
    }
}

/// Request counters by operation, as served at `GET /_stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Twirp calls by method name (`CreateArtifact`, ...).
    pub twirp: std::collections::BTreeMap<String, u64>,
    /// Blob requests by operation (`put_block`, `put_block_list`, `put_blob`, `append_block`, `get`).
    pub blob: std::collections::BTreeMap<String, u64>,
    /// Sum of `twirp`.
    pub twirp_total: u64,
    /// Sum of `blob`.
    pub blob_total: u64,
}

/// A running service.
#[derive(Debug)]
pub struct ServeHandle {
    _url: String,
}

impl ServeHandle {
    /// The base URL, `http://127.0.0.1:PORT/` (what `ACTIONS_RESULTS_URL` should be).
    pub fn url(&self) -> &str {
        &self._url
    }
    /// The request counters now.
    pub fn stats(&self) -> StatsSnapshot {
        todo!()
    }
    /// Stops serving and waits for the server task.
    pub async fn shutdown(self) {
        todo!()
    }
}

/// Starts the service; it is ready to answer when this returns.
pub async fn start(_cfg: ServeConfig) -> anyhow::Result<ServeHandle> {
    todo!()
}

/// Runs the service until SIGINT/SIGTERM, calling `print_url` once it is ready.
pub async fn run_until_signal(
    _cfg: ServeConfig,
    _print_url: impl FnOnce(&str),
) -> anyhow::Result<()> {
    todo!()
}
