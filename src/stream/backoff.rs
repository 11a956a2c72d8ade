//! Patient waiting: exponential backoff between polls, the pace of a stream reader (whose
//! ceiling grows while the stream carries no messages), and waiting for an artifact to appear.

use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::StreamConfig;
use crate::store::{ArtifactInfo, ArtifactStore, StoreError};

/// A delay that doubles on every use up to a ceiling and snaps back to its floor on activity.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }
    /// The delay to wait now; the one after it is twice as long (at most the ceiling).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
    /// Activity: the next delay is the floor again.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The pace of a stream reader's polls: right after a message the reader polls at `poll_min`,
/// doubling the delay on every empty poll up to a ceiling. The ceiling itself grows with the
/// time since the last activity (a message frame, or a wake-up when a new peer was found):
/// `poll_max` until `idle_after` has passed, `idle_poll_max` from then on. So a stream in use
/// (even one whose jobs run for most of a minute) answers within `poll_max`, and a cluster
/// waiting for work polls each stream only every `idle_poll_max`. Keepalive frames are not
/// activity: they are what an idle stream carries. A reader *expecting* a message (its peer
/// owes it one: a worker running jobs, a runner in the middle of its run) keeps the busy
/// ceiling however long the silence: a job's result after minutes of running is read within
/// `poll_max`, not `idle_poll_max`.
#[derive(Debug, Clone)]
pub(crate) struct PollPace {
    min: Duration,
    max: Duration,
    idle_max: Duration,
    idle_after: Duration,
    next: Duration,
    last_activity: Instant,
    expecting: bool,
}

impl PollPace {
    /// A pace that starts as after activity now.
    pub(crate) fn new(cfg: &StreamConfig) -> Self {
        Self {
            min: cfg.poll_min,
            max: cfg.poll_max,
            // An idle ceiling below the busy one would make idle streams poll faster.
            idle_max: cfg.idle_poll_max.max(cfg.poll_max),
            idle_after: cfg.idle_after,
            next: cfg.poll_min,
            last_activity: Instant::now(),
            expecting: false,
        }
    }

    /// Whether a message is owed (see [`Expecting`](super::Expecting)).
    pub(crate) fn expect(&mut self, expecting: bool) {
        self.expecting = expecting;
    }

    /// A message arrived (or the reader was woken): poll fast again.
    pub(crate) fn activity(&mut self) {
        self.next = self.min;
        self.last_activity = Instant::now();
    }

    /// The ceiling now: `poll_max` after activity or while expecting, `idle_poll_max` once
    /// `idle_after` passed.
    pub(crate) fn ceiling(&self) -> Duration {
        if !self.expecting && self.last_activity.elapsed() >= self.idle_after {
            self.idle_max
        } else {
            self.max
        }
    }

    /// The delay before the next poll after an empty one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.ceiling());
        self.next = (delay * 2).min(self.idle_max);
        delay
    }
}

/// Looks `names` up until one is listed or `within` has passed (`None` then). Returns the
/// index of the first name listed, in the order given, and its entry. A look-up that fails in
/// a way that may pass ([`StoreError::is_transient`]) counts as "not listed yet"; when the
/// last look-up before the deadline failed so, that failure is the answer instead of `None`.
pub(crate) async fn wait_for(
    store: &ArtifactStore,
    names: &[&str],
    mut backoff: Backoff,
    within: Duration,
) -> Result<Option<(usize, ArtifactInfo)>, StoreError> {
    let deadline = Instant::now() + within;
    loop {
        let mut failed = None;
        for (index, name) in names.iter().enumerate() {
            match store.find(name).await {
                Ok(Some(info)) => return Ok(Some((index, info))),
                Ok(None) => {}
                Err(e) if e.is_transient() => {
                    debug!(%name, error = %e, "look-up failed; trying again");
                    failed = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return failed.map_or(Ok(None), Err);
        }
        let delay = backoff.next_delay().min(deadline - now);
        debug!(?names, ?delay, "artifact not listed yet");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(10), ms(35));
        let seen: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(seen, [ms(10), ms(20), ms(35), ms(35)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(10));
    }

    /// The action's defaults: 20 ms after a message, 1 s ceiling, 6 s after a minute idle.
    fn pace() -> PollPace {
        PollPace::new(&StreamConfig::default())
    }

    /// Empty polls, each followed by its delay on the (paused) clock; returns the delays.
    async fn idle_polls(pace: &mut PollPace, count: usize) -> Vec<Duration> {
        let mut delays = Vec::new();
        for _ in 0..count {
            let delay = pace.next_delay();
            tokio::time::advance(delay).await;
            delays.push(delay);
        }
        delays
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_stream_polls_within_poll_max() {
        let mut pace = pace();
        let delays = idle_polls(&mut pace, 8).await;
        let ms = Duration::from_millis;
        assert_eq!(
            delays,
            [
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(320),
                ms(640),
                ms(1000),
                ms(1000)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_ceiling_grows_to_idle_poll_max_after_a_minute_of_silence() {
        let mut pace = pace();
        let mut waited = Duration::ZERO;
        let mut last = Duration::ZERO;
        while waited < Duration::from_secs(60) {
            let delay = pace.next_delay();
            assert!(
                delay <= Duration::from_secs(1),
                "{delay:?} before a minute of silence"
            );
            assert!(
                delay >= last,
                "an idle pace never speeds up: {delay:?} after {last:?}"
            );
            tokio::time::advance(delay).await;
            waited += delay;
            last = delay;
        }
        assert_eq!(pace.ceiling(), Duration::from_secs(6));
        let s = Duration::from_secs;
        assert_eq!(idle_polls(&mut pace, 4).await, [s(2), s(4), s(6), s(6)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_resets_the_ceiling_and_the_delay() {
        let mut pace = pace();
        tokio::time::advance(Duration::from_secs(300)).await;
        idle_polls(&mut pace, 20).await;
        assert_eq!(pace.next_delay(), Duration::from_secs(6));
        pace.activity();
        assert_eq!(pace.ceiling(), Duration::from_secs(1));
        assert_eq!(pace.next_delay(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expecting_reader_keeps_the_busy_ceiling_through_any_silence() {
        let mut pace = pace();
        pace.expect(true);
        tokio::time::advance(Duration::from_secs(600)).await;
        let delays = idle_polls(&mut pace, 40).await;
        assert_eq!(delays.iter().max(), Some(&Duration::from_secs(1)));
        // No longer expecting: the minute of silence counts again.
        pace.expect(false);
        assert_eq!(pace.ceiling(), Duration::from_secs(6));
        assert_eq!(
            idle_polls(&mut pace, 4).await,
            [2, 4, 6, 6].map(Duration::from_secs)
        );
    }

    /// After 5 minutes of idle, a message written at any moment is read within the idle
    /// ceiling; with the discovery delays (the broker finding the runner's up-stream, the
    /// runner finding its down-stream) and one busy poll (the broker reading the submission)
    /// the first job of a late runner reaches its worker within 15 s at the action defaults.
    #[tokio::test(start_paused = true)]
    async fn a_job_submitted_after_five_minutes_of_idle_reaches_a_worker_within_15s() {
        let cfg = StreamConfig::default();
        let mut pace = PollPace::new(&cfg);
        let start = Instant::now();
        let mut polls = vec![start];
        while start.elapsed() < Duration::from_secs(330) {
            let delay = pace.next_delay();
            tokio::time::advance(delay).await;
            polls.push(Instant::now());
        }
        // The longest a message written after 5 minutes waits for the worker's next poll.
        let after_idle = start + Duration::from_secs(300);
        let worst = polls
            .windows(2)
            .filter(|w| w[1] > after_idle)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap();
        assert!(worst <= cfg.idle_poll_max, "{worst:?}");
        let first_job = cfg.discovery_max * 2 + cfg.poll_max + worst;
        assert!(first_job <= Duration::from_secs(13), "{first_job:?}");
    }
}
