//! Duplex artifact streams against the real local artifact service: ordering, exactly-once
//! delivery, rotation (planned and forced by expiring upload URLs), peer death, clean close,
//! injected faults and garbled input.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use cluster_action::serve::{ServeConfig, ServeHandle};
use cluster_action::store::{ArtifactStore, RetryPolicy};
use cluster_action::stream::{
    self, Connection, Listener, Namespace, StreamConfig, StreamError, StreamReceiver, StreamSender,
};

use common::{GUARD, guarded, start_service, store, store_at};

/// Timings that make tests take seconds; the peer timeout is long enough for a loaded machine.
fn quick() -> StreamConfig {
    StreamConfig {
        poll_min: Duration::from_millis(2),
        poll_max: Duration::from_millis(20),
        keepalive: Duration::from_millis(100),
        peer_timeout: Duration::from_secs(20),
        discovery_min: Duration::from_millis(10),
        discovery_max: Duration::from_millis(100),
        ..StreamConfig::default()
    }
}

/// [`quick`] timings with a peer timeout of a second, for tests of the timeout.
fn impatient() -> StreamConfig {
    StreamConfig {
        peer_timeout: Duration::from_secs(1),
        ..quick()
    }
}

fn ns() -> Namespace {
    Namespace::new("test", "1").unwrap()
}

/// A listener of job `broker` on [`ns`].
async fn listen(service: &ServeHandle, cfg: StreamConfig) -> Listener {
    Listener::bind(store(service, "broker"), ns(), cfg)
        .await
        .unwrap()
}

/// `listener`'s next client, connecting with `store` to `ns` with `cfg`: (server end, client
/// end).
async fn accept_one(
    listener: &mut Listener,
    store: ArtifactStore,
    ns: Namespace,
    cfg: StreamConfig,
) -> (Connection, Connection) {
    let (server, client) = tokio::join!(
        listener.accept(),
        stream::connect(store, ns, cfg, Duration::from_secs(10)),
    );
    (server.unwrap(), client.unwrap())
}

/// A listener (job `broker`) and one connected client (job `client`): (server end, client end).
async fn pair(service: &ServeHandle, cfg: StreamConfig) -> (Connection, Connection) {
    let mut listener = listen(service, cfg.clone()).await;
    accept_one(&mut listener, store(service, "client"), ns(), cfg).await
}

/// Why job `job` could not connect to [`ns`] within `patience`.
async fn connect_error(service: &ServeHandle, job: &str, patience: Duration) -> StreamError {
    guarded(stream::connect(
        store(service, job),
        ns(),
        quick(),
        patience,
    ))
    .await
    .err()
    .unwrap()
}

fn message(i: usize) -> Bytes {
    Bytes::from(format!("message {i} {}", "x".repeat(i % 50)))
}

/// Sends `count` messages, then closes.
async fn send_all(tx: StreamSender, count: usize) {
    for i in 0..count {
        tx.send(message(i)).await.unwrap();
    }
    tx.close().await.unwrap();
}

/// Receives exactly `count` messages in order, then the clean end.
async fn receive_all(rx: &mut StreamReceiver, count: usize) {
    for i in 0..count {
        let got = rx.recv().await.unwrap();
        assert_eq!(got, Some(message(i)), "message {i}");
    }
    assert_eq!(rx.recv().await.unwrap(), None);
}

/// Sends `count` messages each way at once and receives them all on the other side.
async fn exchange_both_ways(server: Connection, client: Connection, count: usize) {
    let (mut server_rx, mut client_rx) = (server.rx, client.rx);
    let up = tokio::spawn(send_all(client.tx, count));
    let down = tokio::spawn(send_all(server.tx, count));
    tokio::join!(
        receive_all(&mut server_rx, count),
        receive_all(&mut client_rx, count)
    );
    up.await.unwrap();
    down.await.unwrap();
}

/// Names of the segments of `peer`'s stream in `direction` ("up" or "down").
async fn segments(store: &ArtifactStore, peer: &str, direction: &str) -> Vec<String> {
    let prefix = format!("{}.{peer}.{direction}.", ns());
    let mut names: Vec<String> = store
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_arrive_in_order_then_the_clean_end() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (mut server, client) = pair(&service, quick()).await;
        let sending = tokio::spawn(send_all(client.tx, 10_000));
        receive_all(&mut server.rx, 10_000).await;
        sending.await.unwrap();
        // The end is sticky.
        assert_eq!(server.rx.recv().await.unwrap(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_at_once() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (server, client) = pair(&service, quick()).await;
        exchange_both_ways(server, client, 5_000).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_serves_several_clients() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let cfg = quick();
        let mut listener = listen(&service, cfg.clone()).await;
        let clients = (0..3).map(|i| {
            let store = store(&service, &format!("worker-{i}"));
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let mut conn = stream::connect(store, ns(), cfg, Duration::from_secs(10))
                    .await
                    .unwrap();
                conn.tx
                    .send(Bytes::from(format!("hello {i}")))
                    .await
                    .unwrap();
                // The answer comes back on this client's own down-stream.
                let answer = conn.rx.recv().await.unwrap().unwrap();
                assert_eq!(answer, Bytes::from(format!("welcome {i}")));
                conn.tx.close().await.unwrap();
            })
        });
        let clients: Vec<_> = clients.collect();
        let mut peers = Vec::new();
        for _ in 0..3 {
            let mut conn = listener.accept().await.unwrap();
            let hello = conn.rx.recv().await.unwrap().unwrap();
            let i = hello.strip_prefix(b"hello ").unwrap();
            conn.tx
                .send(Bytes::from([&b"welcome "[..], i].concat()))
                .await
                .unwrap();
            assert_eq!(conn.rx.recv().await.unwrap(), None);
            peers.push(conn.peer);
        }
        for client in clients {
            client.await.unwrap();
        }
        peers.sort();
        peers.dedup();
        assert_eq!(peers.len(), 3, "each client is accepted once");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_through_segments_before_the_append_limit() {
    // The service enforces the limit too: a writer that overran it would fail.
    let service = start_service(ServeConfig {
        max_appends: 20,
        ..ServeConfig::default()
    })
    .await;
    guarded(async {
        // Small appends force many of them; messages bigger than an append travel in parts.
        let cfg = StreamConfig {
            max_appends: 20,
            max_append_bytes: 256,
            ..quick()
        };
        let (mut server, client) = pair(&service, cfg).await;
        let big = |i: usize| Bytes::from(vec![(i % 251) as u8; 100 + i * 37 % 1000]);
        let tx = client.tx.clone();
        let sending = tokio::spawn(async move {
            for i in 0..300 {
                tx.send(message(i)).await.unwrap();
                tx.send(big(i)).await.unwrap();
            }
            tx.close().await.unwrap();
        });
        for i in 0..300 {
            assert_eq!(server.rx.recv().await.unwrap(), Some(message(i)));
            assert_eq!(server.rx.recv().await.unwrap(), Some(big(i)));
        }
        assert_eq!(server.rx.recv().await.unwrap(), None);
        sending.await.unwrap();
        let segments = segments(&store(&service, "observer"), &server.peer, "up").await;
        assert!(segments.len() >= 3, "segments: {segments:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_to_a_new_segment_when_the_upload_url_expires() {
    // The service signs expiry in whole seconds: 2 s gives URLs that live 1 to 2 s.
    let url_ttl = Duration::from_secs(2);
    let service = start_service(ServeConfig {
        url_ttl,
        ..ServeConfig::default()
    })
    .await;
    guarded(async {
        let (mut server, client) = pair(&service, quick()).await;
        let sending = tokio::spawn(async move {
            // Bursts spread over several URL lifetimes (the pauses are the scenario, not
            // synchronisation): each burst after a pause meets an expired upload URL.
            for burst in 0..3 {
                for i in 0..100 {
                    client.tx.send(message(burst * 100 + i)).await.unwrap();
                }
                tokio::time::sleep(url_ttl).await;
            }
            client.tx.close().await.unwrap();
        });
        receive_all(&mut server.rx, 300).await;
        sending.await.unwrap();
        let segments = segments(&store(&service, "observer"), &server.peer, "up").await;
        assert!(segments.len() >= 2, "segments: {segments:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_segment_a_stopped_cluster_deleted_leaves_nothing_behind() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (server, client) = pair(&service, quick()).await;
        // The cluster stops while the client is still connecting: the marker first, then
        // the cleanup deletes the client's up-stream.
        let broker = store(&service, "broker");
        stream::close_listener(&broker, &ns()).await.unwrap();
        let up0 = format!("{}.{}.up.0", ns(), server.peer);
        let listed = broker
            .find(&up0)
            .await
            .unwrap()
            .expect("the up-stream exists");
        broker.delete(&listed).await.unwrap();
        client.tx.send(message(1)).await.ok();
        // The keepalive or the message finds the segment gone; either way the error says why.
        let err = client
            .tx
            .close()
            .await
            .expect_err("the write cannot succeed");
        assert!(
            err.to_string()
                .contains("the listener 'ca.test.1.listen' has closed"),
            "{err}"
        );
        let left = segments(&store(&service, "observer"), &server.peer, "up").await;
        assert!(left.is_empty(), "a new segment was left behind: {left:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_without_closing_times_out() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (mut server, client) = pair(&service, impatient()).await;
        client
            .tx
            .send(Bytes::from_static(b"last words"))
            .await
            .unwrap();
        drop(client); // as if its process died: no shutdown frame, no more keepalives
        assert_eq!(
            server.rx.recv().await.unwrap(),
            Some(Bytes::from_static(b"last words"))
        );
        match server.rx.recv().await {
            Err(StreamError::PeerTimeout { peer, .. }) => assert_eq!(peer, server.peer),
            other => panic!("expected a peer timeout, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_hold_an_idle_stream_open() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (mut server, client) = pair(&service, impatient()).await;
        // Idle for several peer timeouts: keepalives must keep the peer alive.
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            client
                .tx
                .send(Bytes::from_static(b"still here"))
                .await
                .unwrap();
            client.tx.close().await.unwrap();
        });
        assert_eq!(
            server.rx.recv().await.unwrap(),
            Some(Bytes::from_static(b"still here"))
        );
        assert_eq!(server.rx.recv().await.unwrap(), None);
        later.await.unwrap();
    })
    .await;
}

/// Polls 10 ms after a message, doubling up to 30 s: after 3 s of silence the next poll is
/// 5.1 s after the last message (10 + 20 + ... + 2,560 ms, then 2,560 ms more).
fn slowing() -> StreamConfig {
    StreamConfig {
        poll_min: Duration::from_millis(10),
        poll_max: Duration::from_secs(30),
        idle_poll_max: Duration::from_secs(30),
        keepalive: Duration::from_secs(10),
        peer_timeout: Duration::from_secs(60),
        ..quick()
    }
}

/// Silence long enough for [`slowing`]'s polls to be seconds apart, then a message from
/// `server`: how long `client` took to read it.
async fn read_after_silence(
    server: &Connection,
    client: &mut Connection,
    message_due: bool,
) -> Duration {
    tokio::time::sleep(Duration::from_secs(3)).await;
    if message_due {
        client.rx.expecting().message_due();
    }
    let sent = tokio::time::Instant::now();
    server.tx.send(Bytes::from_static(b"answer")).await.unwrap();
    assert_eq!(
        client.rx.recv().await.unwrap(),
        Some(Bytes::from_static(b"answer"))
    );
    sent.elapsed()
}

/// A worker whose slot frees says so and expects its next job at once; on a stream silent
/// for a while its reader polls seconds apart (up to `poll_max`). Told that a message is
/// due, it polls at its fastest pace again, so the answer is read within a few `poll_min`,
/// not at the next slow poll (seconds later here, as the same read without it shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_due_is_read_at_once_however_slow_the_polls_had_become() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (server, mut client) = pair(&service, slowing()).await;
        let waited = read_after_silence(&server, &mut client, false).await;
        assert!(
            waited >= Duration::from_secs(1),
            "read {waited:?} after it was sent: the polls had not slowed"
        );
        let waited = read_after_silence(&server, &mut client, true).await;
        assert!(
            waited < Duration::from_secs(1),
            "a message due was read only {waited:?} after it was sent"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_the_stream_cleanly() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (mut server, client) = pair(&service, quick()).await;
        client.tx.send(Bytes::new()).await.unwrap();
        client.tx.close().await.unwrap();
        assert_eq!(server.rx.recv().await.unwrap(), Some(Bytes::new()));
        assert_eq!(server.rx.recv().await.unwrap(), None);
        assert_eq!(server.rx.recv().await.unwrap(), None);
        // Closing again is fine; sending after close is not.
        client.tx.close().await.unwrap();
        assert!(matches!(
            client.tx.send(Bytes::from_static(b"late")).await,
            Err(StreamError::Closed)
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_exactly_once_in_order_despite_faults() {
    let service = start_service(ServeConfig {
        fail_rate: 0.1,
        throttle_rate: 0.05,
        seed: 7,
        ..ServeConfig::default()
    })
    .await;
    guarded(async {
        let (server, client) = pair(&service, quick()).await;
        exchange_both_ways(server, client, 2_000).await;
    })
    .await;
}

/// A listener and a connected client of cluster `cluster` with stream timings `cfg`, whose
/// stores give each request only `retry`'s attempts; `None` when the store failed while they
/// were being set up.
async fn pair_with(
    service: &ServeHandle,
    cluster: &str,
    retry: &RetryPolicy,
    cfg: &StreamConfig,
) -> Option<(Connection, Connection)> {
    let ns = Namespace::new(cluster, "1").unwrap();
    let at = |job| store_at(service.url(), job, retry.clone());
    let mut listener = Listener::bind(at("broker"), ns.clone(), cfg.clone())
        .await
        .ok()?;
    // Either failing is a failed set-up: the other would wait for it in vain.
    tokio::try_join!(
        listener.accept(),
        stream::connect(at("client"), ns, cfg.clone(), Duration::from_secs(10)),
    )
    .ok()
}

/// A service failing one request in five (500 or 503), its faults drawn from `seed`.
async fn failing_one_in_five(seed: u64) -> ServeHandle {
    let cfg = ServeConfig {
        fail_rate: 0.2,
        seed,
        ..ServeConfig::default()
    };
    start_service(cfg).await
}

/// Two attempts per request, quickly: on [`failing_one_in_five`], one request in 25 fails for
/// good.
fn two_attempts() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    }
}

/// A pair set up on a store that fails some requests for good (a failed set-up is tried
/// again: setting up is not what the callers test).
async fn flaky_pair(
    service: &ServeHandle,
    retry: &RetryPolicy,
    cfg: &StreamConfig,
) -> (Connection, Connection) {
    for attempt in 0..20 {
        let cluster = format!("flaky{attempt}");
        if let Some(pair) = pair_with(service, &cluster, retry, cfg).await {
            return pair;
        }
    }
    panic!("no stream pair set up within 20 tries");
}

/// Sends `rounds` messages from `client`, each answered by `server` before the next: every
/// message is an append and a read of its own. Both ends close after.
async fn ping_pong(mut server: Connection, mut client: Connection, rounds: usize) {
    let echo = tokio::spawn(async move {
        for _ in 0..rounds {
            let ping = server.rx.recv().await.unwrap().unwrap();
            server.tx.send(ping).await.unwrap();
        }
        server.tx.close().await.unwrap();
    });
    for i in 0..rounds {
        client.tx.send(message(i)).await.unwrap();
        assert_eq!(
            client.rx.recv().await.unwrap(),
            Some(message(i)),
            "round {i}"
        );
    }
    assert_eq!(client.rx.recv().await.unwrap(), None);
    echo.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_rides_out_store_failures_that_outlast_each_request_s_retries() {
    // One in 25 requests fails for good, dozens of times while the messages travel. The
    // stream tries again until its peer timeout.
    let service = failing_one_in_five(11).await;
    guarded(async {
        let (server, client) = flaky_pair(&service, &two_attempts(), &quick()).await;
        ping_pong(server, client, 100).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_answer_the_store_failed_part_way_answers_again() {
    // Answering a client creates its down-stream's first segment: three requests, each given
    // two attempts, so one answer in about twelve fails after CreateArtifact took the name.
    let service = failing_one_in_five(31).await;
    const CLIENTS: usize = 40;
    guarded(async {
        let mut bound = None;
        for attempt in 0..20 {
            let ns = Namespace::new(&format!("answers{attempt}"), "1").unwrap();
            let at = store_at(service.url(), "broker", two_attempts());
            if let Ok(listener) = Listener::bind(at, ns.clone(), quick()).await {
                bound = Some((listener, ns));
                break;
            }
        }
        let (mut listener, ns) = bound.expect("a listener bound within 20 tries");
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (store, ns) = (store(&service, &format!("client-{i}")), ns.clone());
                tokio::spawn(stream::connect(store, ns, quick(), Duration::from_secs(10)))
            })
            .collect();
        let mut peers = Vec::new();
        for _ in 0..CLIENTS {
            peers.push(listener.accept().await.unwrap().peer);
        }
        for client in clients {
            client.await.unwrap().unwrap();
        }
        peers.sort();
        peers.dedup();
        assert_eq!(peers.len(), CLIENTS, "each client is accepted once");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_half_created_when_the_store_failed_is_finished_not_created_again() {
    // Creating a segment is three requests (CreateArtifact, the append blob, FinalizeArtifact);
    // with two attempts each, one rotation in about twelve sees a later one fail for good
    // after CreateArtifact took the name. A new segment every 2 appends: dozens of rotations.
    let service = failing_one_in_five(23).await;
    let cfg = StreamConfig {
        max_appends: 3,
        ..quick()
    };
    guarded(async {
        let (server, client) = flaky_pair(&service, &two_attempts(), &cfg).await;
        let peer = server.peer.clone();
        ping_pong(server, client, 80).await;
        let listed = store(&service, "observer").list(None).await.unwrap();
        let up = format!(".{peer}.up.");
        let segments = listed.iter().filter(|a| a.name.contains(&up)).count();
        assert!(segments >= 30, "{segments} segments");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_a_segment_is_a_bad_frame() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let mut listener = listen(&service, quick()).await;
        // A client that writes its up-stream by hand, with bytes that are no frame.
        let name = format!("{}.0123456789abcdef.up.0", ns());
        let mut raw = store(&service, "rogue").create_append(&name).await.unwrap();
        raw.append(Bytes::from_static(
            b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
        ))
        .await
        .unwrap();
        let mut conn = listener.accept().await.unwrap();
        assert_eq!(conn.peer, "0123456789abcdef");
        match conn.rx.recv().await {
            Err(StreamError::BadFrame {
                artifact, offset, ..
            }) => {
                assert_eq!(artifact, name);
                assert_eq!(offset, 0);
            }
            other => panic!("expected a bad frame, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_gives_up_without_a_listener() {
    let service = start_service(ServeConfig::default()).await;
    let err = connect_error(&service, "client", Duration::from_millis(200)).await;
    assert!(
        matches!(&err, StreamError::NoListener { name, .. } if name == "ca.test.1.listen"),
        "{err}"
    );
}

#[tokio::test]
async fn a_closed_listener_turns_late_clients_away_at_once() {
    let service = start_service(ServeConfig::default()).await;
    let broker = store(&service, "broker");
    let listener = Listener::bind(broker.clone(), ns(), quick()).await.unwrap();
    drop(listener);
    stream::close_listener(&broker, &ns()).await.unwrap();
    // Closing twice is fine (a broker stopping after a `stop`).
    stream::close_listener(&broker, &ns()).await.unwrap();
    // The wait would be an hour: the client must not sit it out.
    let err = connect_error(&service, "late-worker", Duration::from_secs(3600)).await;
    assert!(
        matches!(&err, StreamError::ListenerClosed { name } if name == "ca.test.1.listen"),
        "{err}"
    );
}

#[tokio::test]
async fn rejects_bad_namespaces_and_settings() {
    let err = Namespace::new("my cluster", "1").unwrap_err();
    assert!(err.to_string().contains("invalid cluster id"), "{err}");
    let bad = StreamConfig {
        peer_timeout: Duration::from_millis(100),
        ..quick()
    };
    let err = bad.validate().unwrap_err();
    assert!(matches!(err, StreamError::Config(_)));
    // The settings by name and value, not a Debug dump of the struct.
    let text = err.to_string();
    assert!(
        text.contains("need 0 < 2 * keepalive < peer_timeout"),
        "{text}"
    );
    assert!(
        text.contains("keepalive 100ms, peer timeout 100ms"),
        "{text}"
    );
    assert!(!text.contains("StreamConfig"), "{text}");
    assert!(quick().validate().is_ok());
    assert!(StreamConfig::default().validate().is_ok());
}

/// A service that lost the run's artifacts (a restarted `serve`) or a deleted listen artifact:
/// the listener says so instead of waiting for clients that can no longer find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_listen_artifact_vanishes_says_so() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let broker = store(&service, "broker");
        let mut listener = Listener::bind(broker.clone(), ns(), quick()).await.unwrap();
        // A client accepted: discovery has listed the listen artifact at least once.
        let (server, client) = tokio::join!(
            listener.accept(),
            stream::connect(store(&service, "client"), ns(), quick(), GUARD),
        );
        let (_server, _client) = (server.unwrap(), client.unwrap());
        let listen = broker.find("ca.test.1.listen").await.unwrap().unwrap();
        broker.delete(&listen).await.unwrap();
        let err = listener
            .accept()
            .await
            .err()
            .expect("an error, not a client");
        assert!(
            matches!(&err, StreamError::ListenerVanished { name } if name == "ca.test.1.listen"),
            "{err:?}"
        );
        assert!(err.to_string().contains("was it restarted?"), "{err}");
    })
    .await;
}

/// Sealed streams: messages arrive as sent, no plaintext is stored, and a client with another
/// secret is refused on both sides as a mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_streams_deliver_and_refuse_another_secret() {
    use cluster_action::seal::ClusterKeys;
    let service = start_service(ServeConfig::default()).await;
    let sealed = |secret: &[u8]| StreamConfig {
        seal: Some(ClusterKeys::derive(secret, "run-1", "test").unwrap()),
        ..quick()
    };
    guarded(async {
        let (mut server, client) = pair(&service, sealed(b"secret")).await;
        let sender = tokio::spawn(send_all(client.tx, 50));
        receive_all(&mut server.rx, 50).await;
        sender.await.unwrap();
        let store = store(&service, "client");
        let up = segments(&store, &server.peer, "up").await;
        assert!(!up.is_empty());
        for name in up {
            let info = store.find(&name).await.unwrap().unwrap();
            let bytes = store
                .tail(info)
                .read_new()
                .await
                .unwrap()
                .unwrap_or_default();
            assert!(
                !bytes.windows(7).any(|w| w == b"message"),
                "plaintext in {name}"
            );
        }

        let other = Namespace::new("other", "1").unwrap();
        let mut listener = Listener::bind(store.clone(), other.clone(), sealed(b"secret"))
            .await
            .unwrap();
        let (mut server, client) =
            accept_one(&mut listener, store.clone(), other, sealed(b"another")).await;
        client.tx.send(message(1)).await.unwrap();
        let refused = server.rx.recv().await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("the peer seals with another secret"),
            "{refused}"
        );
        server.tx.close().await.unwrap();
        let mut client_rx = client.rx;
        let refused = client_rx.recv().await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("the peer seals with another secret"),
            "{refused}"
        );
    })
    .await;
}
