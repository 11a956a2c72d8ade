//! A typed link to the broker (in the spirit of mini-redis's `Connection`): one artifact
//! stream's two halves plus the [`proto`] message types of one role, so that no caller
//! encodes or decodes a frame by hand.
//!
//! [`Link::join`] is the one way a runner or a worker reaches its broker: it waits for the
//! listener, turns "no listener" into [`JoinError::NoBroker`] and a closed listener into
//! [`Joined::ClusterClosed`], and sends the hello. The link then carries messages of its role
//! only: a [`RunnerLink`] sends [`RunnerMsg`] and receives [`BrokerToRunner`].

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proto::{
    self, BrokerToRunner, BrokerToWorker, DecodeError, Hello, RunnerMsg, WorkerMsg,
};
use crate::store::ArtifactStore;
use crate::stream::{
    self, Connection, Namespace, StreamConfig, StreamError, StreamReceiver, StreamSender,
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

/// A message a peer receives from the broker.
pub trait Downward: DeserializeOwned {
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

impl Downward for BrokerToRunner {
    const FROM: &'static str = "broker";
}

impl Downward for BrokerToWorker {
    const FROM: &'static str = "broker";
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

    /// Flushes every message sent and closes the stream: the peer then sees its end.
    pub async fn close(&self) -> Result<(), StreamError> {
        self.tx.close().await
    }
}

/// A typed duplex link over one artifact stream.
pub struct Link<Out, In> {
    tx: LinkSender<Out>,
    rx: StreamReceiver,
    store: ArtifactStore,
    ns: Namespace,
    incoming: PhantomData<fn() -> In>,
}

impl<Out: Upward, In: Downward> Link<Out, In> {
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
        let link = Self::new(store, target.ns.clone(), conn);
        link.send(&Out::hello(hello)).await?;
        Ok(Joined::Linked(link))
    }
}

impl<Out: Serialize, In: Downward> Link<Out, In> {
    /// A link over an open connection to the broker of `ns`.
    fn new(store: ArtifactStore, ns: Namespace, conn: Connection) -> Self {
        Self {
            tx: LinkSender {
                tx: conn.tx,
                out: PhantomData,
            },
            rx: conn.rx,
            store,
            ns,
            incoming: PhantomData,
        }
    }

    /// Sends one message.
    pub async fn send(&self, msg: &Out) -> Result<(), StreamError> {
        self.tx.send(msg).await
    }

    /// The next message, or `None` once the broker closed its stream.
    pub async fn recv(&mut self) -> Result<Option<In>, LinkError> {
        match self.rx.recv().await? {
            Some(frame) => Ok(Some(proto::decode(In::FROM, &frame)?)),
            None => Ok(None),
        }
    }

    /// Flushes every message sent and closes this side.
    pub async fn close(&self) -> Result<(), StreamError> {
        self.tx.close().await
    }

    /// Another handle on the sending half.
    pub fn sender(&self) -> LinkSender<Out> {
        self.tx.clone()
    }

    /// Whether the cluster has been stopped for good (its broker closed the listener): a
    /// stream that ended then ended with the cluster, not with a lost broker.
    pub async fn cluster_stopped(&self) -> bool {
        stream::listener_closed(&self.store, &self.ns)
            .await
            .unwrap_or(false)
    }
}
