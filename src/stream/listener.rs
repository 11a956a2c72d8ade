//! The listening side: publishes the listen artifact and turns each new client's up-stream,
//! found by polling `ListArtifacts`, into a [`Connection`] with a fresh down-stream.

use std::collections::{HashMap, HashSet};

use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::backoff::Backoff;
use super::names::{Direction, Namespace};
use super::{Connection, StreamConfig, StreamError, reader, writer};
use crate::store::{AppendCreation, AppendWriter, ArtifactInfo, ArtifactStore};

/// Connections discovered but not yet accepted.
const ACCEPT_QUEUE: usize = 16;

/// Accepts clients of one namespace.
pub struct Listener {
    incoming: mpsc::Receiver<Result<Connection, StreamError>>,
}

impl Listener {
    /// Publishes the listen artifact and starts discovering clients in the background (until
    /// the listener is dropped).
    pub async fn bind(
        store: ArtifactStore,
        ns: Namespace,
        cfg: StreamConfig,
    ) -> Result<Self, StreamError> {
        ns.validate()?;
        cfg.validate()?;
        // An empty append blob: its existence is the announcement; the protocol version
        // travels in every frame header.
        store.create_append(&ns.listen_name()).await?;
        debug!(listen = %ns.listen_name(), "listening");
        let (tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        tokio::spawn(discover(store, ns, cfg, tx));
        Ok(Self { incoming })
    }

    /// The next new client. Cancel-safe. An error concerns one discovery round or one client;
    /// the listener keeps discovering, so calling `accept` again is fine.
    pub async fn accept(&mut self) -> Result<Connection, StreamError> {
        self.incoming
            .recv()
            .await
            .unwrap_or(Err(StreamError::Closed))
    }
}

/// Marks the listener of `ns` closed for good: clients that try to connect afterwards get
/// [`StreamError::ListenerClosed`] at once instead of waiting for an answer that never comes.
/// Closing twice is fine.
pub async fn close_listener(store: &ArtifactStore, ns: &Namespace) -> Result<(), StreamError> {
    match store.create_append(&ns.closed_name()).await {
        Ok(_) | Err(crate::store::StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the listener of `ns` has been closed for good (see [`close_listener`]).
pub async fn listener_closed(store: &ArtifactStore, ns: &Namespace) -> Result<bool, StreamError> {
    Ok(store.find(&ns.closed_name()).await?.is_some())
}

/// Lists the run's artifacts until the listener is dropped, backing off while nothing is new.
/// GitHub's `nameFilter` matches exact names only, so the whole list is filtered here. The same
/// listing watches the listen artifact: once seen, missing from two listings in a row (one
/// could be a store's hiccup), it is gone, and discovery ends with
/// [`StreamError::ListenerVanished`].
async fn discover(
    store: ArtifactStore,
    ns: Namespace,
    cfg: StreamConfig,
    tx: mpsc::Sender<Result<Connection, StreamError>>,
) {
    let mut seen = HashSet::new();
    // Down-streams whose creation failed part-way, by peer: the next answer finishes them.
    let mut creating: HashMap<String, AppendCreation> = HashMap::new();
    let listen = ns.listen_name();
    let mut listen_seen = false;
    let mut listen_missing = 0;
    let mut backoff = Backoff::new(cfg.discovery_min, cfg.discovery_max);
    // A new client may bring work: every stream of this listener polls fast again.
    let (wake, _) = watch::channel(());
    loop {
        let found = match store.list(None).await {
            Ok(list) => {
                if list.iter().any(|info| info.name == listen) {
                    listen_seen = true;
                    listen_missing = 0;
                } else if listen_seen {
                    listen_missing += 1;
                }
                if listen_missing >= 2 {
                    let _ = tx
                        .send(Err(StreamError::ListenerVanished { name: listen }))
                        .await;
                    return;
                }
                list
            }
            // A listing that failed in a way that may pass is a listing that found nothing new.
            Err(e) if e.is_transient() => {
                debug!(error = %e, "listing for new clients failed; trying again");
                Vec::new()
            }
            Err(e) => {
                if tx.send(Err(e.into())).await.is_err() {
                    return;
                }
                Vec::new()
            }
        };
        for info in found {
            let Some(peer) = ns.up0_peer(&info.name) else {
                continue;
            };
            if !seen.insert(peer.to_string()) {
                continue;
            }
            backoff.reset();
            wake.send_replace(());
            let peer = peer.to_string();
            debug!(%peer, "discovered a client");
            let creation = creating.entry(peer.clone()).or_insert_with(|| {
                AppendCreation::new(&ns.segments(&peer, Direction::Down).segment(0))
            });
            let answered = match creation.create(&store).await {
                Ok(first) => Ok(connection(
                    &store,
                    &ns,
                    &cfg,
                    peer.clone(),
                    first,
                    info,
                    &wake,
                )),
                Err(e) => Err(StreamError::from(e)),
            };
            if let Err(e) = &answered
                && e.is_transient()
            {
                // Not answered yet: the next listing finds the client again.
                debug!(%peer, error = %e, "answering a client failed; trying again");
                seen.remove(&peer);
                continue;
            }
            creating.remove(&peer);
            if tx.send(answered).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = tx.closed() => return,
        }
    }
}

/// The connection to client `peer` whose up-stream segment 0 is `up0`, its down-stream's
/// segment 0 created as `first`.
fn connection(
    store: &ArtifactStore,
    ns: &Namespace,
    cfg: &StreamConfig,
    peer: String,
    first: AppendWriter,
    up0: ArtifactInfo,
    wake: &watch::Sender<()>,
) -> Connection {
    Connection {
        tx: writer::spawn(
            store.clone(),
            ns.segments(&peer, Direction::Down),
            first,
            cfg,
        ),
        rx: reader::spawn(
            store.clone(),
            ns.segments(&peer, Direction::Up),
            up0,
            peer.clone(),
            cfg,
            Some(wake.subscribe()),
        ),
        peer,
    }
}
