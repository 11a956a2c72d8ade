//! Duplex artifact streams: a byte-message channel between two jobs of a workflow run built
//! only from append-blob artifacts.
//!
//! The listener (broker) publishes `ca.<cluster>.<attempt>.listen`; a client creates its
//! up-stream, the listener discovers it through `ListArtifacts` and answers with a down-stream.
//! A listener closed for good publishes `ca.<cluster>.<attempt>.closed`, so that late clients
//! learn it at once (see [`close_listener`]).
//! Each direction is a sequence of append-blob segments carrying length-prefixed, versioned,
//! checksummed frames (data, part, keepalive, shutdown, rotate).
//!
//! Module map: `names` (artifact names), `frame` (the codec), `writer` (batching, keepalives,
//! rotation), `reader` (polling, following rotations, peer timeout), `sequence` (exactly-once delivery),
//! `listener` and `connect` (the two ways to get a [`Connection`]), `backoff` (patient waiting, the reader's poll pace).
//!
//! Idle cost: a stream that carried no message for `idle_after` slows its polls from
//! `poll_max` to `idle_poll_max`; a listener that discovers a new client wakes the
//! readers of all its streams, so the broker polls fast again as soon as work may arrive.
//!
//! With a secret ([`StreamConfig::seal`]) every frame is sealed (see [`crate::seal`]); a frame
//! that fails authentication ends the stream with [`StreamError::Refused`].
//!
//! Delivery guarantee: each message sent before a successful [`StreamSender::close`] is
//! received exactly once and in order, or the receiver gets an error; never a silent loss.

mod backoff;
mod connect;
mod frame;
mod listener;
mod names;
mod reader;
mod sequence;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use crate::seal::{ClusterKeys, SealError};

pub use connect::connect;
pub use listener::{Listener, close_listener, listener_closed};
pub use names::Namespace;
pub use reader::{Expecting, StreamReceiver};
pub use writer::StreamSender;

/// Timings and limits of a stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Poll delay right after data arrived.
    pub poll_min: Duration,
    /// Ceiling of the poll backoff of a busy stream (one that carried a message lately).
    pub poll_max: Duration,
    /// Ceiling of the poll backoff once the stream carried no message for `idle_after`; at
    /// least `poll_max`. It bounds how long a message written into an idle stream waits to be
    /// read.
    pub idle_poll_max: Duration,
    /// How long without a message until polls slow down to `idle_poll_max`.
    pub idle_after: Duration,
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
    /// The cluster's keys when it has a secret: every frame is then sealed, and frames that
    /// are not (or fail authentication) are refused. Also the keys of the cluster's layers.
    pub seal: Option<ClusterKeys>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            poll_min: Duration::from_millis(20),
            poll_max: Duration::from_secs(1),
            idle_poll_max: Duration::from_secs(6),
            idle_after: Duration::from_secs(60),
            keepalive: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(60),
            max_appends: 49_000,
            max_append_bytes: 4 * 1024 * 1024,
            discovery_min: Duration::from_millis(200),
            discovery_max: Duration::from_secs(3),
            seal: None,
        }
    }
}

impl StreamConfig {
    /// Checks the settings make sense together: no zero delays (busy loops), a peer timeout
    /// longer than two keepalives (the reader probes for a new segment after two silent
    /// keepalive periods), room for a rotate frame per segment and for a frame per append.
    pub fn validate(&self) -> Result<(), StreamError> {
        let problem = if self.poll_min.is_zero() || self.poll_min > self.poll_max {
            "need 0 < poll_min <= poll_max"
        } else if self.discovery_min.is_zero() || self.discovery_min > self.discovery_max {
            "need 0 < discovery_min <= discovery_max"
        } else if self.keepalive.is_zero() || self.peer_timeout <= self.keepalive * 2 {
            "need 0 < 2 * keepalive < peer_timeout"
        } else if self.max_appends < 2 {
            "need max_appends >= 2"
        } else if self.max_append_bytes <= frame::HEADER_LEN + crate::seal::FRAME_OVERHEAD {
            "need max_append_bytes > 66 (a sealed frame's header)"
        } else {
            return Ok(());
        };
        Err(StreamError::Config(format!(
            "invalid stream settings: {problem} (poll {:?} to {:?}, discovery {:?} to {:?}, \
             keepalive {:?}, peer timeout {:?}, {} appends of at most {} bytes per segment)",
            self.poll_min,
            self.poll_max,
            self.discovery_min,
            self.discovery_max,
            self.keepalive,
            self.peer_timeout,
            self.max_appends,
            self.max_append_bytes
        )))
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
    /// A frame was refused by the seal: it failed authentication, or the peer does not share
    /// this side's secret ([`SealError::is_mismatch`]).
    #[error("refused frame in '{artifact}' at byte {offset}: {source}")]
    Refused {
        /// The segment artifact.
        artifact: String,
        /// Byte offset of the frame.
        offset: u64,
        /// Why.
        #[source]
        source: SealError,
    },
    /// No listener appeared within the wait.
    #[error("no listener '{name}' appeared within {secs}s")]
    NoListener {
        /// The listen artifact name.
        name: String,
        /// The wait in seconds.
        secs: u64,
    },
    /// The listener has closed for good (its broker stopped the cluster).
    #[error("the listener '{name}' has closed: it accepts no more connections")]
    ListenerClosed {
        /// The listen artifact name.
        name: String,
    },
    /// The listener's own listen artifact is gone from the store (the service lost the run's
    /// artifacts, say a restarted `serve`, or someone deleted it): no client can find it.
    #[error(
        "the listen artifact '{name}' vanished from the artifact store: the service lost this \
         run's artifacts (was it restarted?) or someone deleted it, so no client can reach \
         this listener any more"
    )]
    ListenerVanished {
        /// The listen artifact name.
        name: String,
    },
    /// The local end was closed.
    #[error("the stream is closed")]
    Closed,
    /// An invalid namespace or configuration; the message says what is allowed.
    #[error("{0}")]
    Config(String),
    /// A message larger than a stream carries.
    #[error("message of {len} bytes exceeds the stream limit of {max} bytes")]
    TooLarge {
        /// The message size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The sending side failed earlier (e.g. the store stayed unreachable); shared by every
    /// clone of the sender.
    #[error("the stream failed earlier: {0}")]
    Broken(Arc<StreamError>),
}

impl StreamError {
    /// Whether this is a store failure that may pass ([`crate::store::StoreError::is_transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, StreamError::Store(e) if e.is_transient())
    }

    /// Whether the stream ended because its listener closed: the cluster stopped, an ordinary
    /// end for a peer that joined as it did (worth a note, not a warning).
    pub fn is_listener_closed(&self) -> bool {
        match self {
            StreamError::ListenerClosed { .. } => true,
            StreamError::Broken(inner) => inner.is_listener_closed(),
            _ => false,
        }
    }

    /// [`StreamError::PeerTimeout`] for `peer` after `timeout`.
    fn peer_timeout(peer: &str, timeout: Duration) -> Self {
        Self::PeerTimeout {
            peer: peer.to_string(),
            secs: timeout.as_secs_f64().ceil() as u64,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_listener_is_told_apart_however_deep_the_stream_broke() {
        let closed = StreamError::ListenerClosed { name: "l".into() };
        assert!(closed.is_listener_closed());
        let broken = StreamError::Broken(Arc::new(StreamError::Broken(Arc::new(closed))));
        assert!(broken.is_listener_closed());
        let timeout = StreamError::peer_timeout("p", Duration::from_secs(1));
        assert!(!StreamError::Broken(Arc::new(timeout)).is_listener_closed());
    }
}
