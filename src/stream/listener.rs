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
/// listing watches the listen artifact ([`ListenWatch`]); once it is gone, discovery ends with
/// [`StreamError::ListenerVanished`].
async fn discover(
    store: ArtifactStore,
    ns: Namespace,
    cfg: StreamConfig,
    tx: mpsc::Sender<Result<Connection, StreamError>>,
) {
    let mut discovery = Discovery::new(store, ns, cfg);
    loop {
        let found = match discovery.list().await {
            Ok(found) => found,
            Err(e @ StreamError::ListenerVanished { .. }) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(e) => {
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
                Vec::new()
            }
        };
        for info in found {
            if let Some(answered) = discovery.client(info).await
                && tx.send(answered).await.is_err()
            {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(discovery.backoff.next_delay()) => {}
            () = tx.closed() => return,
        }
    }
}

/// The state of [`discover`]: the clients answered so far and the pace of its listings.
struct Discovery {
    store: ArtifactStore,
    ns: Namespace,
    cfg: StreamConfig,
    /// Clients answered (or being answered), by peer.
    seen: HashSet<String>,
    /// Down-streams whose creation failed part-way, by peer: the next answer finishes them.
    creating: HashMap<String, AppendCreation>,
    /// Whether the listen artifact is still there.
    listen: ListenWatch,
    /// The pause between listings: back to its floor when a client is found.
    backoff: Backoff,
    /// A new client may bring work: every stream of this listener polls fast again.
    wake: watch::Sender<()>,
}

impl Discovery {
    /// Discovery of the clients of `ns`, none found yet.
    fn new(store: ArtifactStore, ns: Namespace, cfg: StreamConfig) -> Self {
        Self {
            backoff: Backoff::new(cfg.discovery_min, cfg.discovery_max),
            store,
            ns,
            cfg,
            seen: HashSet::new(),
            creating: HashMap::new(),
            listen: ListenWatch::default(),
            wake: watch::channel(()).0,
        }
    }

    /// One listing of the run's artifacts. A listing that failed in a way that may pass is a
    /// listing that found nothing new; a listing that no longer shows the listen artifact
    /// fails with [`StreamError::ListenerVanished`].
    async fn list(&mut self) -> Result<Vec<ArtifactInfo>, StreamError> {
        let listen = self.ns.listen_name();
        match self.store.list(None).await {
            Ok(list) => {
                let listed = list.iter().any(|info| info.name == listen);
                if self.listen.gone_after(listed) {
                    return Err(StreamError::ListenerVanished { name: listen });
                }
                Ok(list)
            }
            Err(e) if e.is_transient() => {
                debug!(error = %e, "listing for new clients failed; trying again");
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The answer to the client whose up-stream segment 0 is `info`, if it is a new client:
    /// its connection, or why it cannot have one. `None` for an artifact that is no new
    /// client, and for a client whose answer failed in a way that may pass (the next listing
    /// finds it again).
    async fn client(&mut self, info: ArtifactInfo) -> Option<Result<Connection, StreamError>> {
        let peer = self.ns.up0_peer(&info.name)?.to_string();
        if !self.seen.insert(peer.clone()) {
            return None;
        }
        self.backoff.reset();
        self.wake.send_replace(());
        debug!(%peer, "discovered a client");
        let answered = self.answer(&peer, info).await;
        if let Err(e) = &answered
            && e.is_transient()
        {
            debug!(%peer, error = %e, "answering a client failed; trying again");
            self.seen.remove(&peer);
            return None;
        }
        self.creating.remove(&peer);
        Some(answered)
    }

    /// Creates the down-stream of client `peer` (finishing a creation that failed part-way)
    /// and connects the two streams.
    async fn answer(&mut self, peer: &str, up0: ArtifactInfo) -> Result<Connection, StreamError> {
        let creation = self.creating.entry(peer.to_string()).or_insert_with(|| {
            AppendCreation::new(&self.ns.segments(peer, Direction::Down).segment(0))
        });
        let first = creation.create(&self.store).await?;
        Ok(connection(
            &self.store,
            &self.ns,
            &self.cfg,
            peer.to_string(),
            first,
            up0,
            &self.wake,
        ))
    }
}

/// The listen artifact, watched through the listings: once seen, it is gone when missing from
/// two listings in a row (one could be a store's hiccup).
#[derive(Debug, Default)]
struct ListenWatch {
    seen: bool,
    missing: u32,
}

impl ListenWatch {
    /// One listing, which `listed` the listen artifact or not: whether it is gone now.
    fn gone_after(&mut self, listed: bool) -> bool {
        if listed {
            self.seen = true;
            self.missing = 0;
        } else if self.seen {
            self.missing += 1;
        }
        self.missing >= 2
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_artifact_is_gone_once_seen_then_missing_twice_in_a_row() {
        let mut watch = ListenWatch::default();
        let gone: Vec<bool> = [false, false, true, false, true, false, false]
            .into_iter()
            .map(|listed| watch.gone_after(listed))
            .collect();
        assert_eq!(
            gone,
            [false, false, false, false, false, false, true],
            "not before it was seen, not after one miss"
        );
    }
}
