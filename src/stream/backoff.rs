//! Patient waiting: exponential backoff between polls, and waiting for an artifact to appear.

use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

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

/// Looks `names` up until one is listed or `within` has passed (`None` then). Returns the
/// index of the first name listed, in the order given, and its entry.
pub(crate) async fn wait_for(
    store: &ArtifactStore,
    names: &[&str],
    mut backoff: Backoff,
    within: Duration,
) -> Result<Option<(usize, ArtifactInfo)>, StoreError> {
    let deadline = Instant::now() + within;
    loop {
        for (index, name) in names.iter().enumerate() {
            if let Some(info) = store.find(name).await? {
                return Ok(Some((index, info)));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
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
}
