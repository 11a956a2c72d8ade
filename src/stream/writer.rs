//! The sending half: a task per stream direction that batches queued messages into appends,
//! keeps the peer informed with keepalives, and moves to a new segment before the append limit
//! or when the segment's upload URL stops working.
//!
//! Every append holds whole frames only (a message bigger than one append is split into
//! [`Kind::Part`] frames), so a duplicated append — a retry after a lost response — duplicates
//! whole frames, which the reader drops by sequence number, instead of tearing one apart.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};
use tracing::{debug, info, warn};

use super::frame::{self, Kind, MAX_PAYLOAD};
use super::names::SegmentNames;
use super::{StreamConfig, StreamError};
use crate::seal::FrameSeal;
use crate::store::{AppendCreation, AppendWriter, ArtifactStore, StoreError};

/// Messages a sender may queue before `send` waits (backpressure).
const SEND_QUEUE: usize = 1024;
/// Segments in a row whose first append fails before the writer gives up: a fresh upload URL
/// that cannot write either means the store, not the URL, is the problem.
const MAX_DEAD_IN_A_ROW: u32 = 3;
/// The pause before a write the store failed (after its own retries) is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

type CloseReply = oneshot::Sender<Result<(), StreamError>>;

enum Command {
    Send(Bytes),
    /// Messages that must travel together (one append, while they fit in one).
    SendMany(Vec<Bytes>),
    Close(CloseReply),
}

/// How the writer task ended: cleanly after a shutdown frame, or with this error.
type Outcome = Result<(), Arc<StreamError>>;

/// The sending half. Clone it to send from several tasks.
#[derive(Clone)]
pub struct StreamSender {
    tx: mpsc::Sender<Command>,
    outcome: Arc<OnceLock<Outcome>>,
}

impl StreamSender {
    /// Queues one message; messages queued together go out in one append. Waits while the
    /// queue is full. Fails once the stream was closed or its writer failed.
    pub async fn send(&self, msg: Bytes) -> Result<(), StreamError> {
        check_size(&msg)?;
        self.queue(Command::Send(msg)).await
    }

    /// Queues several messages at once, so that they go out in the same append (as far as
    /// one append holds them) instead of racing the writer one by one.
    pub async fn send_many(&self, msgs: Vec<Bytes>) -> Result<(), StreamError> {
        msgs.iter().try_for_each(check_size)?;
        self.queue(Command::SendMany(msgs)).await
    }

    async fn queue(&self, command: Command) -> Result<(), StreamError> {
        self.tx
            .send(command)
            .await
            .map_err(|_| match self.outcome.get() {
                Some(Err(e)) => StreamError::Broken(e.clone()),
                _ => StreamError::Closed,
            })
    }

    /// Sends a shutdown frame after everything queued and waits until it is written.
    /// Closing an already closed stream succeeds.
    pub async fn close(&self) -> Result<(), StreamError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Command::Close(reply)).await.is_ok()
            && let Ok(result) = answer.await
        {
            return result;
        }
        match self.outcome.get() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(StreamError::Broken(e.clone())),
            None => Err(StreamError::Closed),
        }
    }
}

fn check_size(msg: &Bytes) -> Result<(), StreamError> {
    if msg.len() > MAX_PAYLOAD {
        return Err(StreamError::TooLarge {
            len: msg.len(),
            max: MAX_PAYLOAD,
        });
    }
    Ok(())
}

/// Starts the writer of one direction whose segment 0 (`first`) is already created.
pub(crate) fn spawn(
    store: ArtifactStore,
    names: SegmentNames,
    first: AppendWriter,
    cfg: &StreamConfig,
) -> StreamSender {
    let (tx, mut rx) = mpsc::channel(SEND_QUEUE);
    let outcome = Arc::new(OnceLock::new());
    let mut writer = Writer {
        encoder: Encoder::new(cfg.max_append_bytes, names.seal(cfg.seal.as_ref())),
        store,
        names,
        index: 0,
        segment: first,
        max_appends: cfg.max_appends,
        keepalive: cfg.keepalive,
        patience: cfg.peer_timeout,
        written_seq: 0,
    };
    let task_outcome = Arc::clone(&outcome);
    tokio::spawn(async move {
        let mut close = None;
        let result = writer.run(&mut rx, &mut close).await;
        let reply = match result {
            Ok(true) => {
                let _ = task_outcome.set(Ok(()));
                Ok(())
            }
            // Every sender was dropped without closing: stop, so the peer times out.
            Ok(false) => return,
            Err(e) => {
                let stream = writer.names.segment(writer.index);
                if e.is_listener_closed() {
                    info!(%stream, error = %e, "stream writer stopped");
                } else {
                    warn!(%stream, error = %e, "stream writer failed");
                }
                let e = Arc::new(e);
                let _ = task_outcome.set(Err(Arc::clone(&e)));
                Err(StreamError::Broken(e))
            }
        };
        if let Some(close) = close {
            let _ = close.send(reply);
        }
        // `rx` is dropped only now, after the outcome is recorded, so a `send` that finds the
        // channel closed also finds the reason.
        drop(rx);
    });
    StreamSender { tx, outcome }
}

struct Writer {
    store: ArtifactStore,
    names: SegmentNames,
    index: u64,
    segment: AppendWriter,
    max_appends: u64,
    keepalive: Duration,
    /// How long writes the store fails in a way that may pass are tried again: the peer
    /// timeout, after which the peer has given up on this side anyway.
    patience: Duration,
    encoder: Encoder,
    /// The sequence number of the last message frame written (what a rotate frame carries).
    written_seq: u64,
}

impl Writer {
    /// Writes until a close (`Ok(true)`, its reply left in `close`) or until every sender is
    /// gone (`Ok(false)`).
    async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        close: &mut Option<CloseReply>,
    ) -> Result<bool, StreamError> {
        let mut last_write = Instant::now();
        loop {
            let command = tokio::select! {
                command = rx.recv() => command,
                () = tokio::time::sleep_until(last_write + self.keepalive) => {
                    self.encoder.keepalive();
                    self.flush().await?;
                    last_write = Instant::now();
                    continue;
                }
            };
            let Some(mut command) = command else {
                return Ok(false);
            };
            // Take everything that is ready (up to about one append's worth) into one batch.
            loop {
                match command {
                    Command::Send(msg) => self.encoder.message(&msg),
                    Command::SendMany(msgs) => msgs.iter().for_each(|m| self.encoder.message(m)),
                    Command::Close(reply) => {
                        self.encoder.shutdown();
                        *close = Some(reply);
                        break;
                    }
                }
                if self.encoder.pending() >= self.encoder.max_append {
                    break;
                }
                match rx.try_recv() {
                    Ok(next) => command = next,
                    Err(_) => break,
                }
            }
            self.flush().await?;
            last_write = Instant::now();
            if close.is_some() {
                return Ok(true);
            }
        }
    }

    async fn flush(&mut self) -> Result<(), StreamError> {
        for append in self.encoder.take_appends() {
            self.append(append.body).await?;
            self.written_seq = append.last_seq;
        }
        Ok(())
    }

    /// Appends one body, rotating first when the segment is one append short of its limit,
    /// re-sending the body in a new segment when the current one can no longer be written, and
    /// again after a pause while the store fails in a way that may pass (for at most
    /// `patience`).
    async fn append(&mut self, body: Bytes) -> Result<(), StreamError> {
        let mut dead_in_a_row = 0;
        let mut failing_since = None;
        loop {
            if self.segment.appends() + 1 >= self.max_appends {
                self.rotate().await?;
            }
            match self.segment.append(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.upload_url_is_spent() && dead_in_a_row < MAX_DEAD_IN_A_ROW => {
                    dead_in_a_row += 1;
                    // A stopped cluster's cleanup deletes the segments of a peer that was
                    // still connecting: a new one would be left behind in the store.
                    if self.cluster_closed().await {
                        return Err(StreamError::ListenerClosed {
                            name: self.names.namespace().listen_name(),
                        });
                    }
                    debug!(segment = %self.names.segment(self.index), error = %e,
                        "segment can no longer be written; continuing in a new one");
                    // No rotate frame: it could not be written either. The reader finds the
                    // next segment by probing when this one falls silent.
                    self.segment = self.open(self.index + 1).await?;
                    self.index += 1;
                }
                Err(e) if self.patient(&e, &mut failing_since) => {
                    debug!(segment = %self.names.segment(self.index), error = %e,
                        "append failed; trying again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the namespace's listener has closed for good (a failed look-up says no: the
    /// append is then tried in a new segment, as before).
    async fn cluster_closed(&self) -> bool {
        let closed = self.names.namespace().closed_name();
        matches!(self.store.find(&closed).await, Ok(Some(_)))
    }

    /// Planned rotation: creates the next segment, then ends this one with a rotate frame.
    async fn rotate(&mut self) -> Result<(), StreamError> {
        let next = self.open(self.index + 1).await?;
        let rotate = self.encoder.rotate_frame(self.written_seq, self.index + 1);
        match self.segment.append(rotate).await {
            Ok(()) => {}
            Err(e) if e.upload_url_is_spent() || e.is_transient() => {
                debug!(error = %e, "rotate frame not written; the reader will probe")
            }
            Err(e) => return Err(e.into()),
        }
        debug!(from = %self.names.segment(self.index), to = self.index + 1, "rotated segment");
        self.segment = next;
        self.index += 1;
        Ok(())
    }

    /// Whether a write that failed with `e` is tried again: a failure that may pass, within
    /// `patience` of the first of a row (`failing_since`, set now if unset).
    fn patient(&self, e: &StoreError, failing_since: &mut Option<Instant>) -> bool {
        e.is_transient() && failing_since.get_or_insert_with(Instant::now).elapsed() < self.patience
    }

    /// Creates segment `index`, trying again while the store fails in a way that may pass;
    /// a try finishes what the one before it started (the segment's name is taken as soon as
    /// its CreateArtifact succeeded).
    async fn open(&self, index: u64) -> Result<AppendWriter, StreamError> {
        let name = self.names.segment(index);
        let mut creation = AppendCreation::new(&name);
        let mut failing_since = None;
        loop {
            match creation.create(&self.store).await {
                Ok(segment) => return Ok(segment),
                Err(e) if self.patient(&e, &mut failing_since) => {
                    debug!(segment = %name, error = %e, "creating the segment failed; trying again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Encodes messages and control frames and packs them into append bodies of whole frames.
struct Encoder {
    max_append: usize,
    /// Seals every frame when the cluster has a secret.
    seal: Option<FrameSeal>,
    /// The sequence number of the last message frame encoded.
    seq: u64,
    /// Finished append bodies.
    done: Vec<Append>,
    current: BytesMut,
    /// The sequence number of the last message frame in `current` or before it.
    current_last_seq: u64,
}

/// One append body and the sequence number of the last message frame it holds (or of the one
/// before it, for a body of control frames only).
struct Append {
    body: Bytes,
    last_seq: u64,
}

impl Encoder {
    fn new(max_append: usize, seal: Option<FrameSeal>) -> Self {
        Self {
            max_append,
            seal,
            seq: 0,
            done: Vec::new(),
            current: BytesMut::new(),
            current_last_seq: 0,
        }
    }

    /// One message: a data frame, preceded by part frames if it does not fit in one append.
    fn message(&mut self, msg: &[u8]) {
        let chunk = (self.max_append - frame::overhead(self.seal.as_ref())).min(MAX_PAYLOAD);
        let mut rest = msg;
        while rest.len() > chunk {
            let (part, tail) = rest.split_at(chunk);
            self.push_message(Kind::Part, part);
            rest = tail;
        }
        self.push_message(Kind::Data, rest);
    }

    fn shutdown(&mut self) {
        self.push_message(Kind::Shutdown, &[]);
    }

    fn keepalive(&mut self) {
        self.push(Kind::Keepalive, self.seq, &[]);
    }

    fn push_message(&mut self, kind: Kind, payload: &[u8]) {
        self.seq += 1;
        self.push(kind, self.seq, payload);
    }

    fn push(&mut self, kind: Kind, seq: u64, payload: &[u8]) {
        if !self.current.is_empty()
            && self.current.len() + frame::overhead(self.seal.as_ref()) + payload.len()
                > self.max_append
        {
            self.finish_append();
        }
        frame::encode(kind, seq, payload, self.seal.as_ref(), &mut self.current);
        if kind.is_message() {
            self.current_last_seq = seq;
        }
    }

    /// A [`Kind::Rotate`] frame after message `seq`, pointing at segment `next`.
    fn rotate_frame(&self, seq: u64, next: u64) -> Bytes {
        let mut rotate = BytesMut::new();
        frame::encode_rotate(seq, next, self.seal.as_ref(), &mut rotate);
        rotate.freeze()
    }

    /// Encoded bytes not yet taken.
    fn pending(&self) -> usize {
        self.done.iter().map(|a| a.body.len()).sum::<usize>() + self.current.len()
    }

    fn finish_append(&mut self) {
        let body = self.current.split().freeze();
        self.done.push(Append {
            body,
            last_seq: self.current_last_seq,
        });
    }

    /// The append bodies, in order; each at most `max_append` bytes.
    fn take_appends(&mut self) -> Vec<Append> {
        if !self.current.is_empty() {
            self.finish_append();
        }
        std::mem::take(&mut self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(appends: &[Append]) -> Vec<frame::Frame> {
        let mut out = Vec::new();
        for append in appends {
            // Every append must hold whole frames only, and know its last message seq.
            let mut buf = BytesMut::from(&append.body[..]);
            while let Some(f) = frame::decode(&mut buf, None).unwrap() {
                out.push(f);
            }
            assert!(buf.is_empty(), "an append ends inside a frame");
            let last = out.iter().rev().find(|f| f.kind.is_message());
            assert_eq!(append.last_seq, last.map_or(0, |f| f.seq));
        }
        out
    }

    #[test]
    fn packs_ready_messages_into_few_appends_within_the_limit() {
        let mut enc = Encoder::new(100, None);
        for i in 0..20u8 {
            enc.message(&[i; 10]);
        }
        let bodies = enc.take_appends();
        assert!(bodies.iter().all(|a| a.body.len() <= 100));
        // 20 frames of 28 bytes, 3 per append.
        assert_eq!(bodies.len(), 7);
        let seqs: Vec<_> = frames(&bodies).iter().map(|f| f.seq).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        assert!(enc.take_appends().is_empty());
    }

    #[test]
    fn splits_big_messages_into_parts() {
        let mut enc = Encoder::new(64, None);
        let msg: Vec<u8> = (0..=255).collect();
        enc.message(&msg);
        enc.keepalive();
        enc.shutdown();
        let bodies = enc.take_appends();
        assert!(bodies.iter().all(|a| a.body.len() <= 64));
        let frames = frames(&bodies);
        let kinds: Vec<_> = frames.iter().map(|f| f.kind).collect();
        assert_eq!(kinds.iter().filter(|k| **k == Kind::Part).count(), 5);
        assert_eq!(kinds[5..], [Kind::Data, Kind::Keepalive, Kind::Shutdown]);
        let joined: Vec<u8> = frames[..6]
            .iter()
            .flat_map(|f| f.payload.to_vec())
            .collect();
        assert_eq!(joined, msg);
        // The keepalive carries the last message seq and takes none itself.
        assert_eq!(frames[6].seq, 6);
        assert_eq!(frames[7].seq, 7);
    }

    #[test]
    fn sealed_appends_stay_within_the_limit() {
        let keys = crate::seal::ClusterKeys::derive(b"k", "1", "c").unwrap();
        let seal = keys.frames(crate::seal::Direction::Up, "ca.c.1.p.up");
        let mut enc = Encoder::new(200, Some(seal.clone()));
        let msg: Vec<u8> = (0..1000).map(|i| (i % 256) as u8).collect();
        enc.message(&msg);
        enc.keepalive();
        enc.shutdown();
        let bodies = enc.take_appends();
        assert!(bodies.iter().all(|a| a.body.len() <= 200));
        let mut joined = Vec::new();
        for append in &bodies {
            let mut buf = BytesMut::from(&append.body[..]);
            while let Some(f) = frame::decode(&mut buf, Some(&seal)).unwrap() {
                joined.extend_from_slice(&f.payload);
            }
            assert!(buf.is_empty());
        }
        assert_eq!(joined, msg);
        let rotate = enc.rotate_frame(9, 2);
        let f = frame::decode(&mut BytesMut::from(&rotate[..]), Some(&seal))
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.kind, f.seq, f.rotate_target().unwrap()),
            (Kind::Rotate, 9, 2)
        );
    }
}
