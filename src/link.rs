//! A typed link to the broker (in the spirit of mini-redis's `Connection`): one artifact
//! stream's two halves plus the [`proto`] message types of one role, so that no caller
//! encodes or decodes a frame by hand.
//!
//! [`Link::join`] is the one way a runner or a worker reaches its broker: it waits for the
//! listener, turns "no listener" into [`JoinError::NoBroker`] and a closed listener into
//! [`Joined::ClusterClosed`], and sends the hello. The link then carries messages of its role
//! only: a [`RunnerLink`] sends [`RunnerMsg`] and receives [`BrokerToRunner`]. The broker's
//! end is the same type the other way round ([`PeerLink::accept`] reads the hello and types the
//! link by the role it announces).

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proto::{
    self, BrokerToRunner, BrokerToWorker, DecodeError, Hello, RunnerMsg, WorkerMsg,
};
use crate::store::ArtifactStore;
use crate::stream::{
    self, Connection, Expecting, Namespace, StreamConfig, StreamError, StreamReceiver, StreamSender,
};

/// A runner's link: sends [`RunnerMsg`], receives [`BrokerToRunner`].
pub type RunnerLink = Link<RunnerMsg, BrokerToRunner>;
/// A worker's link: sends [`WorkerMsg`], receives [`BrokerToWorker`].
pub type WorkerLink = Link<WorkerMsg, BrokerToWorker>;

/// A message a peer sends to the broker; its first one is the hello.
pub trait Upward: Serialize {
    /// What to do when no broker appears, for the [`JoinError::NoBroker`] message.
    const NO_BROKER_HINT: &'static str;
    /// The hello message.
    fn hello(hello: Hello) -> Self;
}

/// A message a link receives.
pub trait Incoming: DeserializeOwned {
    /// Who sends it, for decode errors.
    const FROM: &'static str;
}

impl Upward for RunnerMsg {
    const NO_BROKER_HINT: &'static str =
        "start one with `cluster-action broker`, use --embed-broker, or raise --broker-wait";
    fn hello(hello: Hello) -> Self {
        RunnerMsg::Hello(hello)
    }
}

impl Upward for WorkerMsg {
    const NO_BROKER_HINT: &'static str =
        "start one with `cluster-action broker`, or raise --broker-wait";
    fn hello(hello: Hello) -> Self {
        WorkerMsg::Hello(hello)
    }
}

impl Incoming for BrokerToRunner {
    const FROM: &'static str = "broker";
}

impl Incoming for BrokerToWorker {
    const FROM: &'static str = "broker";
}

impl Incoming for RunnerMsg {
    const FROM: &'static str = "runner";
}

impl Incoming for WorkerMsg {
    const FROM: &'static str = "worker";
}

/// Where the broker is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The cluster's stream names.
    pub ns: Namespace,
    /// Stream timings.
    pub stream: StreamConfig,
    /// How long to wait for the broker's listener to appear.
    pub wait: Duration,
}

/// What joining a cluster found.
pub enum Joined<L> {
    /// Connected, hello sent.
    Linked(L),
    /// The cluster was stopped already (its listener is closed): there is nothing to join.
    ClusterClosed,
}

/// Why joining a cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// No broker appeared within the wait.
    #[error("no broker for cluster '{cluster}' appeared within {secs}s ({hint})")]
    NoBroker {
        /// The cluster id.
        cluster: String,
        /// The wait in seconds.
        secs: u64,
        /// What to do about it.
        hint: &'static str,
    },
    /// Connecting or sending the hello failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Why a link operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The stream failed (the store, the peer timeout, a garbled frame).
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A frame was not a message of this role.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The sending half of a link; clones send on the same stream.
pub struct LinkSender<Out> {
    tx: StreamSender,
    out: PhantomData<fn(Out)>,
}

impl<Out> Clone for LinkSender<Out> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            out: PhantomData,
        }
    }
}

impl<Out: Serialize> LinkSender<Out> {
    /// Sends one message (queued for the next append).
    pub async fn send(&self, msg: &Out) -> Result<(), StreamError> {
        self.tx.send(proto::encode(msg)).await
    }

    /// Sends messages that are ready together in one append (as far as one append holds them).
    pub async fn send_all(&self, msgs: &[Out]) -> Result<(), StreamError> {
        match msgs {
            [] => Ok(()),
            [one] => self.send(one).await,
            many => {
                self.tx
                    .send_many(many.iter().map(proto::encode).collect())
                    .await
            }
        }
    }

    /// Flushes every message sent and closes the stream: the peer then sees its end.
    pub async fn close(&self) -> Result<(), StreamError> {
        self.tx.close().await
    }
}

/// The receiving half of a link.
pub struct LinkReceiver<In> {
    rx: StreamReceiver,
    incoming: PhantomData<fn() -> In>,
}

impl<In: Incoming> LinkReceiver<In> {
    /// The next message, or `None` once the peer closed its stream.
    pub async fn recv(&mut self) -> Result<Option<In>, LinkError> {
        match self.rx.recv().await? {
            Some(frame) => Ok(Some(proto::decode(In::FROM, &frame)?)),
            None => Ok(None),
        }
    }

    /// The handle that says whether the peer owes a message (see [`Expecting`]).
    pub fn expecting(&self) -> Expecting {
        self.rx.expecting()
    }
}

/// A typed duplex link over one artifact stream.
pub struct Link<Out, In> {
    tx: LinkSender<Out>,
    rx: LinkReceiver<In>,
}

/// The broker's end of a link whose hello said who the peer is.
pub enum PeerLink {
    /// A worker.
    Worker(Link<BrokerToWorker, WorkerMsg>),
    /// A runner.
    Runner(Link<BrokerToRunner, RunnerMsg>),
}

impl<Out: Upward, In: Incoming> Link<Out, In> {
    /// Connects to the broker of `target` (waiting up to `target.wait` for it) and says
    /// `hello`.
    pub async fn join(
        store: ArtifactStore,
        target: &Target,
        hello: Hello,
    ) -> Result<Joined<Self>, JoinError> {
        let connected = stream::connect(
            store.clone(),
            target.ns.clone(),
            target.stream.clone(),
            target.wait,
        )
        .await;
        let conn = match connected {
            Ok(conn) => conn,
            Err(StreamError::ListenerClosed { .. }) => return Ok(Joined::ClusterClosed),
            Err(StreamError::NoListener { .. }) => {
                return Err(JoinError::NoBroker {
                    cluster: target.ns.cluster.clone(),
                    secs: target.wait.as_secs(),
                    hint: Out::NO_BROKER_HINT,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let link = Self::new(conn.tx, conn.rx);
        link.send(&Out::hello(hello)).await?;
        Ok(Joined::Linked(link))
    }
}

impl PeerLink {
    /// The broker's end of a new peer's stream whose first frame is `first`: its hello, and
    /// the link typed by the role the hello announces.
    pub fn accept(
        tx: StreamSender,
        rx: StreamReceiver,
        first: &[u8],
    ) -> Result<(Hello, Self), DecodeError> {
        let hello = proto::decode_hello(first)?;
        let link = match hello {
            Hello::Worker { .. } => Self::Worker(Link::new(tx, rx)),
            Hello::Runner { .. } => Self::Runner(Link::new(tx, rx)),
        };
        Ok((hello, link))
    }
}

impl<Out: Serialize, In: Incoming> Link<Out, In> {
    /// A link over an open connection (either end), for messages other than the cluster's.
    pub fn over(conn: Connection) -> Self {
        Self::new(conn.tx, conn.rx)
    }

    /// A link over the two halves of an open stream.
    fn new(tx: StreamSender, rx: StreamReceiver) -> Self {
        Self {
            tx: LinkSender {
                tx,
                out: PhantomData,
            },
            rx: LinkReceiver {
                rx,
                incoming: PhantomData,
            },
        }
    }

    /// Sends one message.
    pub async fn send(&self, msg: &Out) -> Result<(), StreamError> {
        self.tx.send(msg).await
    }

    /// Sends messages that are ready together in one append.
    pub async fn send_all(&self, msgs: &[Out]) -> Result<(), StreamError> {
        self.tx.send_all(msgs).await
    }

    /// The next message, or `None` once the peer closed its stream.
    pub async fn recv(&mut self) -> Result<Option<In>, LinkError> {
        self.rx.recv().await
    }

    /// The handle that says whether the peer owes a message (see [`Expecting`]).
    pub fn expecting(&self) -> Expecting {
        self.rx.expecting()
    }

    /// Flushes every message sent and closes this side.
    pub async fn close(&self) -> Result<(), StreamError> {
        self.tx.close().await
    }

    /// The two halves, for a sender and a reader that live in different tasks.
    pub fn split(self) -> (LinkSender<Out>, LinkReceiver<In>) {
        (self.tx, self.rx)
    }
}

/// Logs a failure to close the stream to the broker: at info when the cluster's listener had
/// closed (the cluster stopped as this peer left: an ordinary end), else as a warning.
pub fn log_close_error(e: &crate::stream::StreamError) {
    if e.is_listener_closed() {
        tracing::info!("closing the stream to the broker: {e}");
    } else {
        tracing::warn!("closing the stream to the broker: {e}");
    }
}
