//! Duplex artifact streams: a byte-message channel between two jobs of a workflow run built
//! only from append-blob artifacts.
//!
//! The listener (broker) publishes `ca.<cluster>.<attempt>.listen`; a client creates its
//! up-stream, the listener discovers it through `ListArtifacts` and answers with a down-stream.
//! Each direction is a sequence of append-blob segments carrying length-prefixed, versioned
//! frames (data, keepalive, shutdown, rotate).

use std::time::Duration;

use bytes::Bytes;

use crate::store::ArtifactStore;

/// Names of one cluster's streams: `ca.<cluster>.<attempt>.…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The cluster id (the `--cluster` flag).
    pub cluster: String,
    /// The run attempt (`GITHUB_RUN_ATTEMPT`, 1 when unset).
    pub attempt: String,
}

/// Timings and limits of a stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Poll delay right after data arrived.
    pub poll_min: Duration,
    /// Ceiling of the idle poll backoff.
    pub poll_max: Duration,
    /// Send a keepalive frame when nothing else was sent for this long.
    pub keepalive: Duration,
    /// Declare the peer dead when nothing arrived for this long.
    pub peer_timeout: Duration,
    /// Rotate to a new segment after this many appends (Azure's limit is 50,000).
    pub max_appends: u64,
    /// Largest single append in bytes (Azure's limit is 4 MiB).
    pub max_append_bytes: usize,
    /// First and last delay of discovery polling (`ListArtifacts`).
    pub discovery_min: Duration,
    /// Ceiling of discovery polling.
    pub discovery_max: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            poll_min: Duration::from_millis(20),
            poll_max: Duration::from_secs(1),
            keepalive: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(60),
            max_appends: 49_000,
            max_append_bytes: 4 * 1024 * 1024,
            discovery_min: Duration::from_millis(200),
            discovery_max: Duration::from_secs(3),
        }
    }
}

/// Why a stream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The artifact store failed (after its retries).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Nothing arrived from the peer within the peer timeout.
    #[error("peer '{peer}' sent nothing for {secs}s: considered dead")]
    PeerTimeout {
        /// The peer id.
        peer: String,
        /// The timeout in seconds.
        secs: u64,
    },
    /// A frame could not be decoded.
    #[error("garbled frame in '{artifact}' at byte {offset}: {reason}")]
    BadFrame {
        /// The segment artifact.
        artifact: String,
        /// Byte offset of the frame.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// No listener appeared within the wait.
    #[error("no listener '{name}' appeared within {secs}s")]
    NoListener {
        /// The listen artifact name.
        name: String,
        /// The wait in seconds.
        secs: u64,
    },
    /// The local end was closed.
    #[error("the stream is closed")]
    Closed,
}

/// One end of a duplex stream.
pub struct Connection {
    /// The peer's id (the client id; on the client side, the listener's namespace).
    pub peer: String,
    /// Sends messages to the peer.
    pub tx: StreamSender,
    /// Receives the peer's messages.
    pub rx: StreamReceiver,
}

/// The sending half. Clone it to send from several tasks.
#[derive(Clone)]
pub struct StreamSender {}

impl StreamSender {
    /// Queues one message; messages queued together go out in one append.
    pub async fn send(&self, _msg: Bytes) -> Result<(), StreamError> {
        todo!()
    }
    /// Sends a shutdown frame after everything queued and waits until it is written.
    pub async fn close(&self) -> Result<(), StreamError> {
        todo!()
    }
}

/// The receiving half.
pub struct StreamReceiver {}

impl StreamReceiver {
    /// The next message; `Ok(None)` once the peer shut down cleanly.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        todo!()
    }
}

/// Accepts clients of one namespace.
pub struct Listener {}

impl Listener {
    /// Publishes the listen artifact and starts discovering clients.
    pub async fn bind(
        _store: ArtifactStore,
        _ns: Namespace,
        _cfg: StreamConfig,
    ) -> Result<Self, StreamError> {
        todo!()
    }
    /// The next new client.
    pub async fn accept(&mut self) -> Result<Connection, StreamError> {
        todo!()
    }
}

/// Connects to the listener of `ns`, waiting up to `wait` for it to appear.
pub async fn connect(
    _store: ArtifactStore,
    _ns: Namespace,
    _cfg: StreamConfig,
    _wait: Duration,
) -> Result<Connection, StreamError> {
    todo!()
}
