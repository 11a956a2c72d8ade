//! The broker: accepts workers and runners on an artifact-stream listener and schedules.
//!
//! Data path: one task accepts connections; one task per peer reads its stream and forwards
//! decoded events into a single channel; the main loop feeds them to the [`scheduler`] (a
//! pure state machine) and sends the messages it returns. Only the main loop touches state.

pub mod scheduler;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::cleanup::{self, Keep, Made};
use crate::in_process::InProcess;
use crate::link::{Incoming, Link, LinkSender, PeerLink};
use crate::proto::{BrokerToRunner, BrokerToWorker, Hello, PROTOCOL_VERSION, RunnerMsg, WorkerMsg};
use crate::store::ArtifactStore;
use crate::stream::{
    self, Connection, Expecting, Listener, Namespace, StreamConfig, StreamError, StreamSender,
};
use scheduler::{Dispatch, Effect, PeerId, Scheduler};

/// How to run a broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The cluster's stream names.
    pub ns: Namespace,
    /// Stream timings (the peer timeout declares workers lost).
    pub stream: StreamConfig,
    /// Stop when no runner is connected and nothing is queued for this long.
    pub idle_timeout: Duration,
    /// Jobs given to a worker beyond its slots before its round trip is measured (then the
    /// pipeline is sized from measurements); 0 turns prefetching off.
    pub prefetch: u32,
    /// How many workers are expected to join (0: unknown): none gets work beyond its slots
    /// before they have (see [`scheduler::Dispatch::expected_workers`]).
    pub expected_workers: u32,
    /// What a clean stop leaves in the store (the rest is deleted, see [`crate::cleanup`]).
    pub keep: Keep,
}

/// Why the broker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerEnd {
    /// A runner asked to stop the cluster (`stop`, `run --stop-cluster`), or the caller did.
    Stopped,
    /// Nobody used it for the idle timeout.
    Idle,
}

/// Why the broker failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listener could not be published or stopped accepting.
    #[error("broker listener failed: {0}")]
    Listener(#[source] StreamError),
}

/// The sending half of a peer's link, typed by its role.
enum PeerTx {
    Worker(LinkSender<BrokerToWorker>),
    Runner(LinkSender<BrokerToRunner>),
}

impl PeerTx {
    /// Closes the stream to the peer.
    async fn close(&self) -> Result<(), StreamError> {
        match self {
            Self::Worker(tx) => tx.close().await,
            Self::Runner(tx) => tx.close().await,
        }
    }

    /// Tells a worker to exit, then closes the stream to the peer: the cluster stopped.
    async fn dismiss(&self) -> Result<(), StreamError> {
        if let Self::Worker(tx) = self {
            tx.send(&BrokerToWorker::Exit).await?;
        }
        self.close().await
    }

    /// Tells the peer it is refused, and why, then closes its stream.
    async fn refuse(self, reason: String) {
        let _ = match &self {
            Self::Worker(tx) => tx.send(&BrokerToWorker::Refused { reason }).await,
            Self::Runner(tx) => tx.send(&BrokerToRunner::Refused { reason }).await,
        };
        let _ = self.close().await;
    }
}

/// Why a peer saying `hello` cannot join: it speaks another protocol version.
fn version_mismatch(hello: &Hello) -> Option<String> {
    let version = match hello {
        Hello::Worker { version, .. } | Hello::Runner { version, .. } => *version,
    };
    (version != PROTOCOL_VERSION).then(|| {
        format!(
            "protocol version {version} is not this broker's {PROTOCOL_VERSION}: use the same \
             cluster-action release everywhere"
        )
    })
}

enum Event {
    Joined {
        peer: PeerId,
        hello: Hello,
        tx: PeerTx,
        /// Tells the peer's reader whether the peer owes the broker a message.
        expecting: Expecting,
    },
    Worker(PeerId, WorkerMsg),
    Runner(PeerId, RunnerMsg),
    Gone {
        peer: PeerId,
        reason: String,
    },
    ListenerFailed(StreamError),
}

/// Runs a broker until it is told to stop, it idles out, or `shutdown` completes (then it
/// stops the cluster, telling workers to exit).
pub async fn run(
    store: ArtifactStore,
    cfg: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<BrokerEnd, BrokerError> {
    let listener = Listener::bind(store.clone(), cfg.ns.clone(), cfg.stream.clone())
        .await
        .map_err(BrokerError::Listener)?;
    info!(cluster = %cfg.ns.cluster, "broker listening");
    let (events_tx, mut events) = mpsc::channel(1024);
    let (greeting, greeter) = Greeting::open();
    let acceptor = tokio::spawn(accept_loop(listener, events_tx, greeter));
    let mut broker = Shell::new(&cfg);
    let end = broker.serve(&mut events, cfg.idle_timeout, shutdown).await;
    acceptor.abort();
    let end = end.map_err(BrokerError::Listener)?;
    broker.stop(&store, &cfg, &mut events, greeting).await;
    Ok(end)
}

/// Peers still saying hello when the cluster stops are closed cleanly: `stopping` tells
/// them, and each holds a sender of `unanswered` until its `Joined` event is queued or it
/// closed.
struct Greeting {
    stopping: watch::Sender<bool>,
    unanswered: mpsc::Receiver<()>,
}

/// What each peer saying hello is given: the stopping signal, and its `unanswered` sender.
#[derive(Clone)]
struct Greeter {
    stopping: watch::Receiver<bool>,
    unanswered: Unanswered,
}

/// Held by a peer from its connection until its `Joined` event is queued (or it closed): a
/// stopping broker waits for every one (see [`Greeting::close`]), and then finds each peer
/// that joined meanwhile in its queue of events.
type Unanswered = mpsc::Sender<()>;

/// A peer's first frame, read before the cluster stopped.
struct Greeted {
    conn: Connection,
    first: Bytes,
    unanswered: Unanswered,
}

impl Greeting {
    /// A greeting open to new peers, and what the acceptor hands each of them.
    fn open() -> (Self, Greeter) {
        let (stopping_tx, stopping) = watch::channel(false);
        let (unanswered_tx, unanswered) = mpsc::channel::<()>(1);
        let greeting = Self {
            stopping: stopping_tx,
            unanswered,
        };
        let greeter = Greeter {
            stopping,
            unanswered: unanswered_tx,
        };
        (greeting, greeter)
    }

    /// Tells the peers still saying hello that the cluster stopped, and waits (at most
    /// [`CLOSE_GRACE`]) until each has closed its stream.
    async fn close(mut self) {
        let _ = self.stopping.send(true);
        // Every sender is gone once each peer still saying hello has closed its stream.
        let _ = tokio::time::timeout(CLOSE_GRACE, self.unanswered.recv()).await;
    }
}

/// The peers a stopping broker waits for before its cleanup deletes the cluster's streams and
/// layers. A runner may still be fetching its jobs' outputs layers, which it does before it
/// closes its stream: it is waited for however long that takes (a runner that dies is gone
/// after the peer timeout). Workers and other peers get [`CLOSE_GRACE`].
#[derive(Debug)]
struct Departures {
    /// Runners still connected.
    runners: HashSet<PeerId>,
    /// Other peers still connected.
    others: usize,
}

impl Departures {
    /// Every peer joined now.
    fn of(peers: &HashMap<PeerId, PeerTx>) -> Self {
        let mut departures = Self {
            runners: HashSet::new(),
            others: 0,
        };
        for (peer, tx) in peers {
            departures.add(peer, tx);
        }
        departures
    }

    /// `peer` is to be waited for.
    fn add(&mut self, peer: &str, tx: &PeerTx) {
        if let PeerTx::Runner(_) = tx {
            self.runners.insert(peer.to_owned());
        } else {
            self.others += 1;
        }
    }

    /// An event of the stopping cluster: a peer left, or joined as it stopped (it is
    /// dismissed, and waited for).
    async fn on(&mut self, ev: Event) {
        match ev {
            Event::Gone { peer, .. } => self.gone(&peer),
            Event::Joined { peer, tx, .. } => {
                self.add(&peer, &tx);
                dismiss(&peer, &tx).await;
            }
            _ => {}
        }
    }

    /// Runners still connected.
    fn runners(&self) -> usize {
        self.runners.len()
    }

    /// `peer` closed its stream or was lost.
    fn gone(&mut self, peer: &str) {
        if !self.runners.remove(peer) {
            self.others = self.others.saturating_sub(1);
        }
    }

    /// Whether the cleanup may start: every runner has left, and so has every other peer
    /// unless the grace is over.
    fn may_clean_up(&self, grace_over: bool) -> bool {
        self.runners.is_empty() && (self.others == 0 || grace_over)
    }
}

/// A broker running as a task of this process, beside a runner (`run --embed-broker`,
/// `local`): the caller starts it before the run and stops it after.
pub struct EmbeddedBroker(InProcess<Result<BrokerEnd, BrokerError>>);

impl EmbeddedBroker {
    /// Starts a broker task.
    pub fn start(store: ArtifactStore, cfg: BrokerConfig) -> Self {
        Self(InProcess::start(|stopped| run(store, cfg, stopped)))
    }

    /// Stops the broker (it tells its workers to exit) and waits until it has.
    pub async fn stop(self) -> Result<BrokerEnd, BrokerError> {
        self.0.stop("embedded broker", Ok(BrokerEnd::Stopped)).await
    }
}

/// Completes once [`Departures::may_clean_up`] (or every reader is done). A peer that joined
/// as the cluster stopped (its `Joined` event is queued: see [`Unanswered`]) is dismissed
/// (see [`dismiss`]) and waited for like the others.
async fn peers_left(events: &mut mpsc::Receiver<Event>, mut departures: Departures) {
    let grace = tokio::time::sleep(CLOSE_GRACE);
    tokio::pin!(grace);
    let mut grace_over = false;
    loop {
        while let Ok(ev) = events.try_recv() {
            departures.on(ev).await;
        }
        if departures.may_clean_up(grace_over) {
            return;
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => departures.on(ev).await,
                None => return,
            },
            () = &mut grace, if !grace_over => grace_over = true,
        }
    }
}

/// How long a stopping broker waits for the streams of peers that never said hello to close,
/// and for its workers to leave (not for its runners, which may still be fetching outputs).
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Accepts new peers until the listener fails, each served by a task of its own.
async fn accept_loop(mut listener: Listener, events: mpsc::Sender<Event>, greeter: Greeter) {
    loop {
        match listener.accept().await {
            Ok(conn) => {
                let hello = await_hello(conn, greeter.clone());
                tokio::spawn(peer_loop(hello, events.clone()));
            }
            Err(e) => {
                let _ = events.send(Event::ListenerFailed(e)).await;
                return;
            }
        }
    }
}

/// The first frame of a new peer, or `None` when it left first or the cluster stopped first
/// (then its stream is closed cleanly, so it learns at once).
async fn await_hello(conn: Connection, greeter: Greeter) -> Option<Greeted> {
    let Greeter {
        mut stopping,
        unanswered,
    } = greeter;
    let Connection { peer, tx, mut rx } = conn;
    // The guard `wait_for` returns is dropped inside the block: it must not live across awaits.
    let stopped = async { stopping.wait_for(|stop| *stop).await.is_ok() };
    let first = tokio::select! {
        first = rx.recv() => first,
        true = stopped => {
            close_unanswered(&peer, &tx).await;
            return None;
        }
    };
    match first {
        Ok(Some(first)) => Some(Greeted {
            conn: Connection { peer, tx, rx },
            first,
            unanswered,
        }),
        Ok(None) => None,
        Err(e) => {
            failed_before_hello(&peer, &tx, e).await;
            None
        }
    }
}

/// Closes the stream of a peer that never said hello before the cluster stopped, so it
/// learns at once.
async fn close_unanswered(peer: &str, tx: &StreamSender) {
    if let Err(e) = tx.close().await {
        debug!(%peer, "closing the stream of a peer that never said hello: {e}");
    }
}

/// A peer's stream failed before its hello: a peer whose frames this broker refuses is told
/// by closing the stream (it cannot open the broker's frames either, and says why); any
/// other failure means it vanished.
async fn failed_before_hello(peer: &str, tx: &StreamSender, e: StreamError) {
    if let StreamError::Refused { .. } = e {
        warn!(%peer, "refusing a peer at hello: {e}");
        let _ = tx.close().await;
    } else {
        debug!(%peer, "peer vanished before hello: {e}");
    }
}

/// Reads one peer's stream: a hello, then messages of its role, until it ends.
async fn peer_loop(hello: impl Future<Output = Option<Greeted>>, events: mpsc::Sender<Event>) {
    let Some(Greeted {
        conn: Connection { peer, tx, rx },
        first,
        unanswered,
    }) = hello.await
    else {
        return;
    };
    let (hello, link) = match PeerLink::accept(tx, rx, &first) {
        Ok(accepted) => accepted,
        Err(e) => {
            warn!(%peer, "refusing a peer: {e}");
            return;
        }
    };
    match link {
        PeerLink::Worker(link) => {
            let (tx, ev) = (PeerTx::Worker, Event::Worker);
            serve_peer(peer, hello, link, unanswered, events, tx, ev).await;
        }
        PeerLink::Runner(link) => {
            let (tx, ev) = (PeerTx::Runner, Event::Runner);
            serve_peer(peer, hello, link, unanswered, events, tx, ev).await;
        }
    }
}

/// Hands a joined peer's sending half to the main loop (then lets go of `unanswered`), then
/// forwards its messages as events until its stream ends or fails.
async fn serve_peer<Out: serde::Serialize, In: Incoming>(
    peer: PeerId,
    hello: Hello,
    link: Link<Out, In>,
    unanswered: Unanswered,
    events: mpsc::Sender<Event>,
    tx: fn(LinkSender<Out>) -> PeerTx,
    event: fn(PeerId, In) -> Event,
) {
    let (sender, mut rx) = link.split();
    let joined = Event::Joined {
        peer: peer.clone(),
        hello,
        tx: tx(sender),
        expecting: rx.expecting(),
    };
    if events.send(joined).await.is_err() {
        return;
    }
    drop(unanswered);
    loop {
        let ev = match rx.recv().await {
            Ok(Some(msg)) => event(peer.clone(), msg),
            Ok(None) => Event::Gone {
                peer: peer.clone(),
                reason: "it closed its stream".into(),
            },
            Err(e) => Event::Gone {
                peer: peer.clone(),
                reason: e.to_string(),
            },
        };
        let last = matches!(ev, Event::Gone { .. });
        if events.send(ev).await.is_err() || last {
            return;
        }
    }
}

/// The main loop's state: the scheduler and how to reach each peer.
struct Shell {
    sched: Scheduler,
    peers: HashMap<PeerId, PeerTx>,
    /// Each joined peer's reader's [`Expecting`]: a runner owes messages for as long as it is
    /// here (it submits, cancels, stops), a worker while it holds jobs (their results).
    expecting: HashMap<PeerId, Expecting>,
    /// The layers the cluster's jobs used and produced, for the cleanup at a clean stop.
    made: Made,
}

/// Events handled before their messages are sent, so that what is ready together (outcomes
/// to a runner, assignments to a worker) travels in one append.
const EVENTS_PER_BATCH: usize = 256;

impl Shell {
    /// A broker's state before any peer joined.
    fn new(cfg: &BrokerConfig) -> Self {
        Self {
            sched: Scheduler::new(Dispatch {
                prefetch: cfg.prefetch,
                // Half the silence after which a worker is declared lost: a worker whose lease
                // ran out may have been declared lost, one that holds it cannot have been.
                lease: cfg.stream.peer_timeout / 2,
                expected_workers: cfg.expected_workers,
            }),
            peers: HashMap::new(),
            expecting: HashMap::new(),
            made: Made::default(),
        }
    }

    /// Handles events until the cluster is to stop: a runner asked, `shutdown` completed, or
    /// nobody used it for `idle_timeout`. Fails when the listener failed.
    async fn serve(
        &mut self,
        events: &mut mpsc::Receiver<Event>,
        idle_timeout: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<BrokerEnd, StreamError> {
        tokio::pin!(shutdown);
        let mut idle_since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { return Ok(BrokerEnd::Stopped) };
                    self.handle(ev, events).await?;
                    if self.sched.should_stop() {
                        return Ok(BrokerEnd::Stopped);
                    }
                    if self.in_use() {
                        idle_since = tokio::time::Instant::now();
                    }
                }
                () = tokio::time::sleep_until(idle_since + idle_timeout) => {
                    if !self.in_use() {
                        warn!("no runner and no work for {idle_timeout:?}: stopping the cluster");
                        return Ok(BrokerEnd::Idle);
                    }
                    idle_since = tokio::time::Instant::now();
                }
                () = &mut shutdown => return Ok(BrokerEnd::Stopped),
            }
        }
    }

    /// Whether a runner is connected or work is unfinished: the broker is not idle.
    fn in_use(&self) -> bool {
        self.sched.runner_count() > 0 || self.sched.unfinished() > 0
    }

    /// Stops the cluster: marks the listener closed, tells every worker to exit, closes the
    /// peers still saying hello, waits for the peers to leave, then cleans up.
    async fn stop(
        mut self,
        store: &ArtifactStore,
        cfg: &BrokerConfig,
        events: &mut mpsc::Receiver<Event>,
        greeting: Greeting,
    ) {
        // First the marker, so that a worker starting now exits instead of waiting for an
        // answer.
        if let Err(e) = stream::close_listener(store, &cfg.ns).await {
            warn!("could not mark the cluster stopped for late workers: {e}");
        }
        let departures = Departures::of(&self.peers);
        self.stop_all().await;
        greeting.close().await;
        // Deleting streams peers still read would fail them, and deleting the outputs layers a
        // runner still fetches would turn its passing jobs into errors: first let them leave.
        if departures.runners() > 0 {
            info!(
                runners = departures.runners(),
                "waiting for the runners to fetch their results and leave before cleaning up"
            );
        }
        peers_left(events, departures).await;
        cleanup::after_stop(store, &cfg.ns, &self.made, cfg.keep).await;
    }

    /// Handles `first` and whatever else is ready (up to [`EVENTS_PER_BATCH`]), then sends
    /// their messages; fails when the listener failed.
    async fn handle(
        &mut self,
        first: Event,
        more: &mut mpsc::Receiver<Event>,
    ) -> Result<(), StreamError> {
        let mut effects = Vec::new();
        let mut next = Some(first);
        let mut handled = 0;
        let mut result = Ok(());
        while let Some(ev) = next.take() {
            if let Event::ListenerFailed(e) = ev {
                result = Err(e);
                break;
            }
            effects.extend(self.effects_of(ev).await);
            handled += 1;
            if handled == EVENTS_PER_BATCH || self.sched.should_stop() {
                break;
            }
            next = more.try_recv().ok();
        }
        self.apply(effects).await;
        self.expect_owed();
        result
    }

    /// Tells each peer's reader whether that peer owes the broker a message now, so that a
    /// result after a long silence is read at the busy pace, and idle workers' streams are
    /// polled at the idle one.
    fn expect_owed(&self) {
        for (peer, expecting) in &self.expecting {
            let owed = match self.peers.get(peer) {
                Some(PeerTx::Runner(_)) => true,
                Some(PeerTx::Worker(_)) => self.sched.holds_work(peer),
                None => false,
            };
            expecting.set(owed);
        }
    }

    async fn effects_of(&mut self, ev: Event) -> Vec<Effect> {
        self.sched.at(std::time::Instant::now());
        match ev {
            Event::Joined {
                peer,
                hello,
                tx,
                expecting,
            } => {
                self.expecting.insert(peer.clone(), expecting);
                self.joined(peer, hello, tx).await
            }
            Event::Worker(peer, msg) => match msg {
                WorkerMsg::Hello(_) => Vec::new(),
                WorkerMsg::Started { id, attempt } => self.sched.job_started(&peer, id, attempt),
                WorkerMsg::Uploading { id, attempt } => {
                    // Its result follows as soon as the outputs are in the store.
                    self.message_due(&peer);
                    self.sched.job_uploading(&peer, id, attempt)
                }
                WorkerMsg::Finished { id, outcome } => {
                    self.made.finished(&outcome);
                    self.sched.job_finished(&peer, id, outcome)
                }
                WorkerMsg::Renew { seq } => self.sched.renew(&peer, seq),
                WorkerMsg::Released { jobs } => self.sched.released(&peer, &jobs),
                WorkerMsg::Progress { id, attempt, lines } => {
                    self.sched.job_progress(&peer, id, attempt, lines)
                }
            },
            Event::Runner(peer, msg) => match msg {
                RunnerMsg::Hello(_) => Vec::new(),
                RunnerMsg::Defaults(defaults) => {
                    self.sched.defaults(&peer, defaults);
                    Vec::new()
                }
                RunnerMsg::Submit { jobs } => {
                    self.made.submitted(&jobs);
                    self.sched.submit(&peer, jobs)
                }
                RunnerMsg::EndOfSubmission => self.sched.end_of_submission(&peer),
                RunnerMsg::Cancel => self.sched.cancel(&peer),
                RunnerMsg::StopCluster => {
                    self.sched.request_stop();
                    Vec::new()
                }
            },
            Event::Gone { peer, reason } => {
                info!(%peer, "peer gone: {reason}");
                self.peers.remove(&peer);
                self.expecting.remove(&peer);
                let mut fx = self.sched.worker_lost(&peer, &reason);
                fx.extend(self.sched.runner_lost(&peer));
                fx
            }
            Event::ListenerFailed(_) => Vec::new(),
        }
    }

    /// A peer said hello: it joins the scheduler, unless it speaks another protocol version
    /// (then it is told why and its stream closed).
    async fn joined(&mut self, peer: PeerId, hello: Hello, tx: PeerTx) -> Vec<Effect> {
        if let Some(reason) = version_mismatch(&hello) {
            warn!(%peer, "{reason}");
            tx.refuse(reason).await;
            return Vec::new();
        }
        self.peers.insert(peer.clone(), tx);
        self.admit(peer, hello)
    }

    /// A peer of this protocol version joins the scheduler in its role.
    fn admit(&mut self, peer: PeerId, hello: Hello) -> Vec<Effect> {
        match hello {
            Hello::Worker { name, slots, .. } => {
                info!(%peer, %name, slots, "worker joined");
                self.sched.worker_joined(peer, name, slots)
            }
            Hello::Runner { name, .. } => {
                info!(%peer, %name, "runner joined");
                self.sched.runner_joined(peer)
            }
        }
    }

    /// Sends the effects' messages, each peer's in one batch (one append while they fit).
    async fn apply(&mut self, effects: Vec<Effect>) {
        let mut to_workers: Vec<(PeerId, Vec<BrokerToWorker>)> = Vec::new();
        let mut to_runners: Vec<(PeerId, Vec<BrokerToRunner>)> = Vec::new();
        for effect in effects {
            match effect {
                Effect::ToWorker(p, m) => push_for(&mut to_workers, p, m),
                Effect::ToRunner(p, m) => push_for(&mut to_runners, p, m),
                Effect::Notice(n) => n.log(),
            }
        }
        for (peer, msgs) in to_workers {
            if let Some(PeerTx::Worker(tx)) = self.peers.get(&peer) {
                report_send(&peer, tx.send_all(&msgs).await);
                if msgs.iter().any(BrokerToWorker::answered_at_once) {
                    self.message_due(&peer);
                }
            }
        }
        for (peer, msgs) in to_runners {
            if let Some(PeerTx::Runner(tx)) = self.peers.get(&peer) {
                report_send(&peer, tx.send_all(&msgs).await);
            }
        }
    }

    /// Has `peer`'s reader look for its next message at the fastest pace: one is due at once
    /// (see [`Expecting::message_due`]).
    fn message_due(&self, peer: &str) {
        if let Some(expecting) = self.expecting.get(peer) {
            expecting.message_due();
        }
    }

    /// Dismisses every peer (see [`dismiss`]).
    async fn stop_all(&mut self) {
        for (peer, tx) in self.peers.drain() {
            dismiss(&peer, &tx).await;
        }
    }
}

/// Tells `peer` the cluster stopped: a worker is told to exit, and the stream to any peer is
/// flushed and closed, so that it learns at once.
async fn dismiss(peer: &str, tx: &PeerTx) {
    if let Err(e) = tx.dismiss().await {
        debug!(%peer, "closing stream: {e}");
    }
}

/// Adds `msg` to `peer`'s batch, keeping each peer's messages in order.
fn push_for<M>(batches: &mut Vec<(PeerId, Vec<M>)>, peer: PeerId, msg: M) {
    match batches.iter_mut().find(|(p, _)| *p == peer) {
        Some((_, msgs)) => msgs.push(msg),
        None => batches.push((peer, vec![msg])),
    }
}

fn report_send(peer: &str, sent: Result<(), StreamError>) {
    if let Err(e) = sent {
        // The peer's reader will report it gone; the scheduler requeues then.
        debug!(%peer, "send failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{self, ServeConfig};
    use crate::store::StoreConfig;
    use crate::token::{BackendIds, make_token};

    #[tokio::test]
    async fn a_worker_that_joined_as_the_cluster_stopped_is_told_to_exit() {
        let service = serve::start(ServeConfig::default()).await.unwrap();
        let store = |job: &str| {
            let ids = BackendIds {
                run: "1".into(),
                job: job.into(),
            };
            ArtifactStore::new(StoreConfig::new(service.url(), &make_token(&ids)).unwrap()).unwrap()
        };
        let (ns, cfg) = (Namespace::new("t", "1").unwrap(), StreamConfig::default());
        let mut listener = Listener::bind(store("broker"), ns.clone(), cfg.clone())
            .await
            .unwrap();
        let wait = Duration::from_secs(30);
        let (accepted, connected) = tokio::join!(
            listener.accept(),
            stream::connect(store("worker"), ns, cfg, wait)
        );
        let mut worker = Link::<WorkerMsg, BrokerToWorker>::over(connected.unwrap());
        let (tx, rx) = Link::<BrokerToWorker, WorkerMsg>::over(accepted.unwrap()).split();
        // Its hello was read as the cluster stopped, with no other peer left: its `Joined`
        // event is the one the stopping broker finds queued.
        let (events_tx, mut events) = mpsc::channel(4);
        let hello = Hello::Worker {
            version: PROTOCOL_VERSION,
            name: "w".into(),
            slots: 1,
        };
        let joined = Event::Joined {
            peer: "w".into(),
            hello,
            tx: PeerTx::Worker(tx),
            expecting: rx.expecting(),
        };
        events_tx.send(joined).await.unwrap();
        let stopping =
            tokio::spawn(async move { peers_left(&mut events, departures(&[], 0)).await });
        // Told to exit, its stream closed, well within its peer timeout…
        let told = tokio::time::timeout(wait, async {
            (worker.recv().await.unwrap(), worker.recv().await.unwrap())
        });
        let told = told.await.expect("not told within 30s");
        assert!(
            matches!(told, (Some(BrokerToWorker::Exit), None)),
            "{told:?}"
        );
        // …and waited for until it leaves.
        assert!(!stopping.is_finished());
        let gone = Event::Gone {
            peer: "w".into(),
            reason: "it closed its stream".into(),
        };
        events_tx.send(gone).await.unwrap();
        stopping.await.unwrap();
    }

    fn departures(runners: &[&str], others: usize) -> Departures {
        Departures {
            runners: runners.iter().map(|r| (*r).to_string()).collect(),
            others,
        }
    }

    #[test]
    fn the_cleanup_waits_for_every_runner_however_long_the_grace() {
        let mut d = departures(&["r1", "r2"], 0);
        assert!(!d.may_clean_up(true), "r1 and r2 may still be fetching");
        d.gone("r1");
        assert!(!d.may_clean_up(true), "r2 may still be fetching");
        d.gone("r2");
        assert!(d.may_clean_up(false));
    }

    #[test]
    fn the_cleanup_waits_for_workers_only_until_the_grace_is_over() {
        let mut d = departures(&["r"], 2);
        d.gone("r");
        assert!(!d.may_clean_up(false));
        assert!(d.may_clean_up(true));
        d.gone("w1");
        d.gone("w2");
        assert!(d.may_clean_up(false));
        // A peer that left without being counted (it joined as the broker stopped) is no
        // runner the cleanup waits for.
        d.gone("late");
        assert!(d.may_clean_up(false));
    }
}
