//! The receiving half: a task per stream direction that tails the peer's current segment with
//! adaptive polling, decodes frames, delivers each message exactly once and in order, follows
//! the writer from segment to segment, and declares the peer dead when it falls silent.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::debug;

use super::backoff::{self, Backoff, PollPace};
use super::frame::{self, DecodeError, Frame, Kind};
use super::names::SegmentNames;
use super::sequence::{Sequencer, Taken};
use super::{StreamConfig, StreamError};
use crate::seal::FrameSeal;
use crate::store::{ArtifactInfo, ArtifactStore, BlobTail};

/// Messages delivered but not yet received before the reader stops polling (backpressure).
const RECV_QUEUE: usize = 256;

type Delivery = Result<Option<Bytes>, StreamError>;

/// The receiving half.
pub struct StreamReceiver {
    rx: mpsc::Receiver<Delivery>,
    ended: bool,
    expecting: Expecting,
}

/// Tells a stream's reader what its peer owes. Whether it owes a message (a worker holding jobs
/// owes their results; a runner's broker owes its outcomes): while it does, the reader polls
/// at the busy pace however long the stream stays silent, instead of slowing to
/// `idle_poll_max`. And when a message is due now ([`Expecting::message_due`]). Clones share
/// one setting; the protocol layer above the stream sets it.
#[derive(Debug, Clone)]
pub struct Expecting(Arc<watch::Sender<Owed>>);

/// What the peer owes the reader: see [`Expecting`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Owed {
    /// A message, some time.
    message: bool,
    /// How many times a message was said to be due: a change is a new one.
    due: u64,
}

impl Expecting {
    /// Sets whether a message is owed; a change wakes the reader to poll at the new pace.
    pub fn set(&self, expecting: bool) {
        self.0
            .send_if_modified(|owed| std::mem::replace(&mut owed.message, expecting) != expecting);
    }

    /// A message from the peer is due at once: the answer to one just sent (a worker's freed
    /// slot asks for its next job), or one the peer announced (a worker uploading a job's
    /// outputs sends its result once they are stored). The reader polls at its fastest pace
    /// again, as after a message came, so the message is read within a few `poll_min`, not up
    /// to `poll_max` later: on a stream silent for a while (a worker running long jobs) that
    /// would leave a slot idle for most of a second each time it frees. It does not poll at
    /// once: an answer cannot be there before the peer read what was sent.
    pub fn message_due(&self) {
        self.0
            .send_modify(|owed| owed.due = owed.due.wrapping_add(1));
    }
}

impl StreamReceiver {
    /// The handle that says whether this stream's peer owes a message.
    pub fn expecting(&self) -> Expecting {
        self.expecting.clone()
    }

    /// The next message; `Ok(None)` once the peer shut down cleanly (and on every call after).
    /// After an error, later calls return [`StreamError::Closed`].
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        match self.rx.recv().await {
            Some(delivery) => {
                self.ended |= matches!(delivery, Ok(None));
                delivery
            }
            None if self.ended => Ok(None),
            None => Err(StreamError::Closed),
        }
    }
}

/// Starts reading the stream whose segment 0 is `first`; `peer` names the writer in errors.
/// A change on `wake` (the listener found a new client) makes an idle reader poll fast again.
pub(crate) fn spawn(
    store: ArtifactStore,
    names: SegmentNames,
    first: ArtifactInfo,
    peer: String,
    cfg: &StreamConfig,
    wake: Option<watch::Receiver<()>>,
) -> StreamReceiver {
    let (tx, rx) = mpsc::channel(RECV_QUEUE);
    let (expecting, expected) = watch::channel(Owed::default());
    let segment = Segment::new(&store, 0, first);
    let seal = names.seal(cfg.seal.as_ref());
    let mut reader = Reader {
        seal,
        store,
        names,
        cfg: cfg.clone(),
        peer,
        segment,
        sequencer: Sequencer::default(),
        last_heard: Instant::now(),
        heard_message: false,
        wake,
        expected: Some(expected),
        due: 0,
        tx,
    };
    tokio::spawn(async move {
        let end = match reader.run().await {
            Ok(Flow::Stop) => return,
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
        let _ = reader.tx.send(end).await;
    });
    StreamReceiver {
        rx,
        ended: false,
        expecting: Expecting(Arc::new(expecting)),
    }
}

/// What to do after a batch of bytes was decoded.
enum Flow {
    /// Keep reading this segment.
    More,
    /// The writer continues in segment n.
    Rotate(u64),
    /// The peer shut down cleanly.
    Shutdown,
    /// Our receiver is gone: stop quietly.
    Stop,
}

/// The segment being read and the bytes of it not yet decoded.
struct Segment {
    index: u64,
    name: String,
    tail: BlobTail,
    buf: BytesMut,
    /// Offset in the segment of `buf[0]`.
    offset: u64,
}

impl Segment {
    fn new(store: &ArtifactStore, index: u64, info: ArtifactInfo) -> Self {
        Self {
            index,
            name: info.name.clone(),
            tail: store.tail(info),
            buf: BytesMut::new(),
            offset: 0,
        }
    }

    fn undecodable(&self, error: DecodeError) -> StreamError {
        match error {
            DecodeError::Garbled(reason) => self.bad_frame(reason),
            DecodeError::Refused(source) => StreamError::Refused {
                artifact: self.name.clone(),
                offset: self.offset,
                source,
            },
        }
    }

    fn bad_frame(&self, reason: String) -> StreamError {
        StreamError::BadFrame {
            artifact: self.name.clone(),
            offset: self.offset,
            reason,
        }
    }
}

struct Reader {
    store: ArtifactStore,
    names: SegmentNames,
    cfg: StreamConfig,
    peer: String,
    segment: Segment,
    sequencer: Sequencer,
    last_heard: Instant,
    /// Whether a frame other than a keepalive was decoded since the last poll.
    heard_message: bool,
    wake: Option<watch::Receiver<()>>,
    /// What the peer owes ([`Expecting`]); `None` once nobody can change it.
    expected: Option<watch::Receiver<Owed>>,
    /// The messages said to be due so far ([`Owed::due`]).
    due: u64,
    tx: mpsc::Sender<Delivery>,
    seal: Option<FrameSeal>,
}

impl Reader {
    async fn run(&mut self) -> Result<Flow, StreamError> {
        let mut poll = PollPace::new(&self.cfg);
        // Silence this long means the writer may have moved on without a rotate frame.
        let probe_after = self.cfg.keepalive * 2;
        let mut last_probe = Instant::now();
        loop {
            // A read the store failed (after its own retries) in a way that may pass is a read
            // that brought nothing: only the peer timeout ends a stream whose peer is silent.
            let (read, failed) = match self.segment.tail.read_new().await {
                Ok(read) => (read, None),
                Err(e) if e.is_transient() => {
                    debug!(segment = %self.segment.name, error = %e, "read failed; trying again");
                    (None, Some(e))
                }
                Err(e) => return Err(e.into()),
            };
            let flow = match read {
                Some(bytes) => {
                    self.segment.buf.extend_from_slice(&bytes);
                    self.decode().await?
                }
                None => {
                    let silent = self.last_heard.elapsed();
                    if silent >= self.cfg.peer_timeout {
                        // Silent because the store kept failing: say so rather than blame the peer.
                        return Err(failed.map_or_else(|| self.peer_timeout(), StreamError::from));
                    }
                    if silent >= probe_after && last_probe.elapsed() >= probe_after {
                        last_probe = Instant::now();
                        self.probe_next().await?
                    } else {
                        Flow::More
                    }
                }
            };
            match flow {
                Flow::More => {}
                Flow::Rotate(next) => {
                    self.follow_rotate(next).await?;
                    poll.activity();
                    last_probe = Instant::now();
                    continue;
                }
                Flow::Shutdown | Flow::Stop => return Ok(flow),
            }
            if std::mem::take(&mut self.heard_message) {
                poll.activity();
            }
            if self.wait(&mut poll).await {
                return Ok(Flow::Stop);
            }
        }
    }

    /// Waits until the next poll is due at `poll`'s pace, or until something changes it: the
    /// peer owes a message or no longer does, or a wake-up (both poll at once), or a message
    /// is due (the pace is the fastest again, from now). True when nobody receives any more.
    async fn wait(&mut self, poll: &mut PollPace) -> bool {
        loop {
            let owed = self.expected.as_mut().map(|rx| *rx.borrow_and_update());
            poll.expect(owed.is_some_and(|owed| owed.message));
            if let Some(owed) = owed
                && owed.due != std::mem::replace(&mut self.due, owed.due)
            {
                poll.activity();
            }
            tokio::select! {
                () = tokio::time::sleep(poll.next_delay()) => return false,
                changed = changed(&mut self.expected) => {
                    if !changed {
                        self.expected = None;
                        return false;
                    }
                    let due = self.expected.as_ref().map(|rx| rx.borrow().due);
                    if due == Some(self.due) {
                        return false;
                    }
                }
                woken = woken(&mut self.wake) => {
                    if woken {
                        poll.activity();
                    } else {
                        self.wake = None;
                    }
                    return false;
                }
                () = self.tx.closed() => return true,
            }
        }
    }

    /// Decodes and handles every complete frame in the buffer.
    async fn decode(&mut self) -> Result<Flow, StreamError> {
        loop {
            let frame = frame::decode(&mut self.segment.buf, self.seal.as_ref())
                .map_err(|e| self.segment.undecodable(e))?;
            let Some(frame) = frame else {
                return Ok(Flow::More);
            };
            self.last_heard = Instant::now();
            self.heard_message |= frame.kind != Kind::Keepalive;
            let flow = self.handle(frame).await?;
            if !matches!(flow, Flow::More) {
                return Ok(flow);
            }
        }
    }

    /// Handles one frame and advances the segment offset past it.
    async fn handle(&mut self, frame: Frame) -> Result<Flow, StreamError> {
        let len = frame.wire_len as u64;
        let taken = self
            .sequencer
            .take(frame)
            .map_err(|reason| self.segment.bad_frame(reason));
        self.segment.offset += len;
        Ok(match taken? {
            Taken::Nothing => Flow::More,
            Taken::Message(msg) => match self.tx.send(Ok(Some(msg))).await {
                Ok(()) => Flow::More,
                Err(_) => Flow::Stop,
            },
            Taken::Rotate(next) => Flow::Rotate(next),
            Taken::Shutdown => Flow::Shutdown,
        })
    }

    /// The writer announced segment `next`: wait for it to be listed and continue there.
    async fn follow_rotate(&mut self, next: u64) -> Result<(), StreamError> {
        if next != self.segment.index + 1 {
            return Err(self.segment.bad_frame(format!(
                "rotate to segment {next} from segment {}",
                self.segment.index
            )));
        }
        let name = self.names.segment(next);
        let discovery = Backoff::new(self.cfg.discovery_min, self.cfg.discovery_max);
        let Some((_, info)) =
            backoff::wait_for(&self.store, &[&name], discovery, self.cfg.peer_timeout).await?
        else {
            return Err(self.peer_timeout());
        };
        // Bytes after a rotate frame can only be a duplicated append: nothing new.
        self.switch(next, info);
        Ok(())
    }

    /// The segment fell silent: if the writer started the next one (after its upload URL
    /// stopped working), take the rest of this one and continue there.
    /// A look-up or read that failed in a way that may pass leaves things as they are: the
    /// next probe tries again.
    async fn probe_next(&mut self) -> Result<Flow, StreamError> {
        let next = self.segment.index + 1;
        let info = match self.store.find(&self.names.segment(next)).await {
            Ok(Some(info)) => info,
            Ok(None) => return Ok(Flow::More),
            Err(e) if e.is_transient() => return Ok(Flow::More),
            Err(e) => return Err(e.into()),
        };
        // Everything written here was written before the next segment was created: one more
        // read gets it all.
        let rest = match self.segment.tail.read_new().await {
            Err(e) if e.is_transient() => return Ok(Flow::More),
            rest => rest?,
        };
        if let Some(bytes) = rest {
            self.segment.buf.extend_from_slice(&bytes);
            let flow = self.decode().await?;
            if !matches!(flow, Flow::More) {
                return Ok(flow);
            }
        }
        self.switch(next, info);
        Ok(Flow::More)
    }

    fn switch(&mut self, next: u64, info: ArtifactInfo) {
        debug!(
            from = %self.segment.name,
            to = %info.name,
            dropped_bytes = self.segment.buf.len(),
            "following the writer to its next segment"
        );
        // A partial frame left behind belonged to a failed append; the writer re-sent it.
        self.segment = Segment::new(&self.store, next, info);
    }

    fn peer_timeout(&self) -> StreamError {
        StreamError::peer_timeout(&self.peer, self.cfg.peer_timeout)
    }
}

/// Completes when what the peer owes changes (true), or when nobody can change it any more
/// (false).
async fn changed(expected: &mut Option<watch::Receiver<Owed>>) -> bool {
    match expected {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Completes with `true` on a wake-up, with `false` once nobody can wake the reader any more
/// (the listener is gone), and never without a wake source.
async fn woken(wake: &mut Option<watch::Receiver<()>>) -> bool {
    match wake {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}
