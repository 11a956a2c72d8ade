//! Latency and fault injection, so clients' retry paths run in tests and benchmarks.
//!
//! Every Twirp and blob request first waits a delay drawn from the [`Latency`] model, then
//! draws one number from a generator seeded with `seed`: below `fail_rate` the request is
//! answered 500 or 503 (half each), below `fail_rate + throttle_rate` it is answered 429 with
//! `Retry-After: 1`. Either way it never takes effect. For a given order of requests the
//! answers and the delays are reproducible (delays come from their own generator, so adding
//! jitter does not change which requests fail).

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

/// Offset of the delays' generator seed from the faults' one.
const DELAY_SEED: u64 = 0x6c61_7465_6e63_7921;

/// Seconds a throttled client is told to wait; short so tests stay fast.
pub(super) const RETRY_AFTER_SECS: u64 = 1;

/// Why a fault configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "fault rates must be fractions in [0, 1] that sum to at most 1 \
     (fail rate {fail_rate}, throttle rate {throttle_rate}), the latency tail rate a fraction \
     and its spread (sigma) not negative"
)]
pub(super) struct BadRates {
    fail_rate: f64,
    throttle_rate: f64,
}

/// The delay before each request is answered: lognormal around `median` with spread `sigma`
/// (a constant `median` when `sigma` is 0), and with probability `tail_rate` the `tail` delay
/// instead: GitHub's artifact service answers most requests in tens to a few hundred
/// milliseconds and now and then takes seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// The typical delay (the lognormal's median).
    pub median: Duration,
    /// Spread of the lognormal: the delay is `median * exp(sigma * Z)`, Z standard normal.
    pub sigma: f64,
    /// The delay of a request in the tail.
    pub tail: Duration,
    /// Fraction of requests that take `tail` (0 to 1).
    pub tail_rate: f64,
}

impl Latency {
    /// A constant delay.
    pub fn constant(median: Duration) -> Self {
        Self {
            median,
            ..Self::default()
        }
    }

    fn is_zero(&self) -> bool {
        self.median.is_zero() && (self.tail.is_zero() || self.tail_rate == 0.0)
    }

    /// One delay, from two uniform draws in [0, 1).
    fn sample(&self, u1: f64, u2: f64) -> Duration {
        if u1 < self.tail_rate {
            return self.tail;
        }
        if self.sigma == 0.0 {
            return self.median;
        }
        // Box-Muller: a standard normal from two uniforms (1 - u2 is in (0, 1], so ln is finite).
        let z = (-2.0 * (1.0 - u2).ln()).sqrt() * (std::f64::consts::TAU * u1).cos();
        self.median.mul_f64((self.sigma * z).exp())
    }
}

/// The injector shared by all requests.
#[derive(Debug)]
pub(super) struct Faults {
    latency: Latency,
    fail_rate: f64,
    throttle_rate: f64,
    rng: Mutex<StdRng>,
    delays: Mutex<StdRng>,
}

impl Faults {
    /// An injector with these rates; refuses rates that are not fractions or sum past 1, and
    /// a tail rate or spread that is not a fraction or is negative.
    pub(super) fn new(
        latency: Latency,
        fail_rate: f64,
        throttle_rate: f64,
        seed: u64,
    ) -> Result<Self, BadRates> {
        let fraction = |r: f64| (0.0..=1.0).contains(&r);
        let spread = (0.0..f64::INFINITY).contains(&latency.sigma);
        if !fraction(fail_rate)
            || !fraction(throttle_rate)
            || fail_rate + throttle_rate > 1.0
            || !fraction(latency.tail_rate)
            || !spread
        {
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
            delays: Mutex::new(StdRng::seed_from_u64(seed.wrapping_add(DELAY_SEED))),
        })
    }

    /// The next delay of the latency model.
    fn delay(&self) -> Duration {
        let (u1, u2) = {
            let mut rng = self.delays.lock().unwrap_or_else(PoisonError::into_inner);
            (rng.random(), rng.random())
        };
        self.latency.sample(u1, u2)
    }

    /// Waits a delay of the latency model, then decides whether this request fails.
    pub(super) async fn before_request(&self) -> Option<Fault> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.delay()).await;
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
        let none = Latency::default();
        assert!(Faults::new(none, 1.5, 0.0, 0).is_err());
        assert!(Faults::new(none, 0.6, 0.6, 0).is_err());
        assert!(Faults::new(none, -0.1, 0.0, 0).is_err());
        assert!(Faults::new(none, 0.5, 0.5, 0).is_ok());
        let tail = |tail_rate, sigma| Latency {
            tail_rate,
            sigma,
            ..none
        };
        assert!(Faults::new(tail(1.5, 0.0), 0.0, 0.0, 0).is_err());
        assert!(Faults::new(tail(0.01, -1.0), 0.0, 0.0, 0).is_err());
        assert!(Faults::new(tail(0.01, 0.5), 0.0, 0.0, 0).is_ok());
    }

    #[test]
    fn delays_are_lognormal_around_the_median_with_a_tail_and_seeded() {
        let model = Latency {
            median: Duration::from_millis(100),
            sigma: 0.5,
            tail: Duration::from_secs(2),
            tail_rate: 0.01,
        };
        let delays = |seed| {
            let faults = Faults::new(model, 0.0, 0.0, seed).unwrap();
            (0..20_000).map(|_| faults.delay()).collect::<Vec<_>>()
        };
        let mut drawn = delays(3);
        assert_eq!(drawn, delays(3));
        assert_ne!(drawn, delays(4));
        let tail = drawn.iter().filter(|d| **d == model.tail).count();
        assert!((150..=250).contains(&tail), "{tail} of 20000 in the tail");
        drawn.retain(|d| *d != model.tail);
        drawn.sort();
        let median = drawn[drawn.len() / 2].as_secs_f64();
        assert!((0.095..0.105).contains(&median), "median {median}");
        // exp(0.5 * 1.645) = 2.28: the 95th percentile of the lognormal.
        let p95 = drawn[drawn.len() * 95 / 100].as_secs_f64();
        assert!((0.21..0.25).contains(&p95), "p95 {p95}");
        let constant = Faults::new(Latency::constant(model.median), 0.0, 0.0, 0).unwrap();
        assert_eq!(constant.delay(), model.median);
    }

    #[tokio::test]
    async fn same_seed_same_answers() {
        let draws = |seed| async move {
            let faults = Faults::new(Latency::default(), 0.3, 0.3, seed).unwrap();
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
