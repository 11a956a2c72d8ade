//! The connecting side: waits for the listener, opens an up-stream and waits for the answer.

use std::time::Duration;

use tracing::debug;

use super::backoff::{Backoff, wait_for};
use super::names::{Direction, Namespace, new_peer_id};
use super::{Connection, StreamConfig, StreamError, reader, writer};
use crate::store::ArtifactStore;

/// Connects to the listener of `ns`, waiting up to `wait` for it to appear. The listener must
/// then answer within `cfg.peer_timeout`, else [`StreamError::PeerTimeout`].
pub async fn connect(
    store: ArtifactStore,
    ns: Namespace,
    cfg: StreamConfig,
    wait: Duration,
) -> Result<Connection, StreamError> {
    ns.validate()?;
    cfg.validate()?;
    let discovery = Backoff::new(cfg.discovery_min, cfg.discovery_max);
    let listen = ns.listen_name();
    let closed = ns.closed_name();
    match wait_for(&store, &[&closed, &listen], discovery.clone(), wait).await? {
        None => {
            return Err(StreamError::NoListener {
                name: listen,
                secs: wait.as_secs_f64().ceil() as u64,
            });
        }
        Some((0, _)) => return Err(StreamError::ListenerClosed { name: listen }),
        Some(_) => {}
    }
    let peer = new_peer_id();
    let up = ns.segments(&peer, Direction::Up);
    let first = store.create_append(&up.segment(0)).await?;
    debug!(%peer, listen = %listen, "connecting");
    // Writing starts now, so keepalives flow while the listener has yet to answer.
    let tx = writer::spawn(store.clone(), up, first, &cfg);
    let down = ns.segments(&peer, Direction::Down);
    let listener = ns.to_string();
    // The listener may close before it answers: then its closed marker appears instead.
    let down0 = match wait_for(
        &store,
        &[&down.segment(0), &closed],
        discovery,
        cfg.peer_timeout,
    )
    .await?
    {
        None => return Err(StreamError::peer_timeout(&listener, cfg.peer_timeout)),
        Some((0, down0)) => down0,
        Some(_) => return Err(StreamError::ListenerClosed { name: listen }),
    };
    debug!(%peer, "connected");
    let rx = reader::spawn(store, down, down0, listener.clone(), &cfg, None);
    Ok(Connection {
        peer: listener,
        tx,
        rx,
    })
}
