//! The one retry schedule of the crate: how many attempts, and how long to pause between them
//! (doubling from a first pause, up to a ceiling). Every caller that tries an operation again
//! after a transient failure names its schedule as a [`RetryPolicy`]: the store's requests,
//! a worker's outputs publish, a runner's outputs fetch, a layer download.
//!
//! Pure: the callers sleep; the store adds full jitter ([`RetryPolicy::jittered_pause`]) so
//! that many clients failing at once do not retry in step.

use std::time::Duration;

use rand::RngExt;

/// How often and how patiently to retry an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The pause before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Whether another attempt follows `failed` failed ones (at least one attempt is made).
    pub fn retries_after(&self, failed: u32) -> bool {
        failed < self.max_attempts.max(1)
    }

    /// The pause before retry number `retry` (1 for the first retry): `base_delay *
    /// 2^(retry-1)`, at most `max_delay`.
    pub fn pause(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_delay)
    }

    /// A random pause up to [`RetryPolicy::pause`] (full jitter).
    pub fn jittered_pause(&self, retry: u32) -> Duration {
        let millis = u64::try_from(self.pause(retry).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// After `failed` failed attempts: the pause before the next one, or `None` when the
    /// attempts are spent.
    pub fn after_failure(&self, failed: u32) -> Option<Duration> {
        self.retries_after(failed).then(|| self.pause(failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn pauses_double_from_the_base_up_to_the_ceiling() {
        let policy = RetryPolicy {
            max_attempts: 30,
            base_delay: ms(100),
            max_delay: ms(350),
        };
        let pauses: Vec<Duration> = (1..=4).map(|retry| policy.pause(retry)).collect();
        assert_eq!(pauses, [ms(100), ms(200), ms(350), ms(350)]);
        assert_eq!(
            policy.pause(29),
            ms(350),
            "no overflow however many retries"
        );
    }

    #[test]
    fn jittered_pauses_stay_under_their_ceiling() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: ms(100),
            max_delay: ms(350),
        };
        for _ in 0..100 {
            assert!(policy.jittered_pause(1) <= ms(100));
            assert!(policy.jittered_pause(2) <= ms(200));
            assert!(policy.jittered_pause(9) <= ms(350));
        }
    }

    #[test]
    fn the_attempts_end_after_max_attempts_and_at_least_one_is_made() {
        let policy = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        };
        let secs: Vec<Option<u64>> = (1..=4)
            .map(|failed| policy.after_failure(failed).map(|d| d.as_secs()))
            .collect();
        assert_eq!(secs, [Some(1), Some(2), Some(4), None]);
        let none = RetryPolicy {
            max_attempts: 0,
            ..policy
        };
        assert!(
            !none.retries_after(1),
            "0 attempts is one attempt, never retried"
        );
    }
}
