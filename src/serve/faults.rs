//! Latency and fault injection, so clients' retry paths run in tests and benchmarks.
//!
//! Every Twirp and blob request first waits `latency`, then draws one number from a generator
//! seeded with `seed`: below `fail_rate` the request is answered 500 or 503 (half each), below
//! `fail_rate + throttle_rate` it is answered 429 with `Retry-After: 1`. Either way it never
//! takes effect. For a given order of requests the answers are reproducible.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// An injected failure, rendered by the Twirp and blob halves in their own error formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// Answer 500.
    Internal,
    /// Answer 503.
    Unavailable,
    /// Answer 429 with `Retry-After`.
    Throttled,
}

/// Seconds a throttled client is told to wait; short so tests stay fast.
pub(super) const RETRY_AFTER_SECS: u64 = 1;

/// Why a fault configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "fault rates must be fractions in [0, 1] that sum to at most 1 \
     (fail rate {fail_rate}, throttle rate {throttle_rate})"
)]
pub(super) struct BadRates {
    fail_rate: f64,
    throttle_rate: f64,
}

/// The injector shared by all requests.
#[derive(Debug)]
pub(super) struct Faults {
    latency: Duration,
    fail_rate: f64,
    throttle_rate: f64,
    rng: Mutex<StdRng>,
}

impl Faults {
    /// An injector with these rates; refuses rates that are not fractions or sum past 1.
    pub(super) fn new(
        latency: Duration,
        fail_rate: f64,
        throttle_rate: f64,
        seed: u64,
    ) -> Result<Self, BadRates> {
        let fraction = |r: f64| (0.0..=1.0).contains(&r);
        if !fraction(fail_rate) || !fraction(throttle_rate) || fail_rate + throttle_rate > 1.0 {
            return Err(BadRates {
                fail_rate,
                throttle_rate,
            });
        }
        Ok(Self {
            latency,
            fail_rate,
            throttle_rate,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }

    /// Waits the configured latency, then decides whether this request fails.
    pub(super) async fn before_request(&self) -> Option<Fault> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.fail_rate == 0.0 && self.throttle_rate == 0.0 {
            return None;
        }
        let draw: f64 = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        if draw < self.fail_rate / 2.0 {
            Some(Fault::Internal)
        } else if draw < self.fail_rate {
            Some(Fault::Unavailable)
        } else if draw < self.fail_rate + self.throttle_rate {
            Some(Fault::Throttled)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_rates_that_are_not_fractions() {
        assert!(Faults::new(Duration::ZERO, 1.5, 0.0, 0).is_err());
        assert!(Faults::new(Duration::ZERO, 0.6, 0.6, 0).is_err());
        assert!(Faults::new(Duration::ZERO, -0.1, 0.0, 0).is_err());
        assert!(Faults::new(Duration::ZERO, 0.5, 0.5, 0).is_ok());
    }

    #[tokio::test]
    async fn same_seed_same_answers() {
        let draws = |seed| async move {
            let faults = Faults::new(Duration::ZERO, 0.3, 0.3, seed).unwrap();
            let mut out = Vec::new();
            for _ in 0..64 {
                out.push(faults.before_request().await);
            }
            out
        };
        let first = draws(7).await;
        assert_eq!(first, draws(7).await);
        assert!(first.contains(&Some(Fault::Throttled)));
        assert!(first.contains(&None));
    }
}
