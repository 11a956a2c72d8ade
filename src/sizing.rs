//! How many machines a run is worth (`cluster-action plan`): the wall time a cluster of 1…N
//! machines is predicted to take for suites whose tests the history has measured, and the
//! number to ask for.
//!
//! A run's wall time is modelled as its set-up (what a run takes beyond its batches: starting
//! the cluster, listing, shipping and fetching layers, the first test starting) plus the
//! makespan of its batches on the cluster's slots: the batches [`plan_batches`] makes for that
//! many slots, longest first, each costing its tests' estimates plus its suite's per-batch
//! cost (the framework's start and collection), each to the slot that frees up first.
//!
//! The set-up is measured by every run ([`measured_setup_ms`]: its wall time minus the
//! makespan of the batches its own measured durations give), so what the model leaves out at
//! one size is in the set-up of the next prediction; and every run is checked against what the
//! history before it predicted ([`check_run`]). The number of machines is the smallest that
//! meets a target, or without one the knee: where one more machine saves less than its
//! set-up ([`choose`]). Pure: no I/O.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::history::sizing::PredictionCheck;
use crate::history::timings::Timings;
use crate::runner::manifest::SuiteDef;
use crate::suite::batch_cost::BatchCost;
use crate::suite::makespan::makespan_ms;
use crate::suite::plan::{Estimated, PlanTest, estimate_tests, plan_batches};
use crate::suite::{TestCase, TestKey, TestRecord};

/// The per-batch cost of a suite whose cost no run measured: about a small framework's start
/// (an interpreter and its collection).
pub const DEFAULT_BATCH_COST_MS: u64 = 250;

/// [`DEFAULT_BATCH_COST_MS`] as a batch cost: all of it to start.
const DEFAULT_BATCH_COST: BatchCost = BatchCost {
    start_ms: DEFAULT_BATCH_COST_MS,
    per_file_ms: 0,
};
/// The set-up of a job when no run measured one: about what a GitHub job spends before its
/// first test (a runner, a checkout, the cluster joining).
pub const DEFAULT_SETUP_MS: u64 = 20_000;

/// A suite as the plan sees it: its tests with their estimates, how the planner batches it,
/// and what each batch costs beyond its tests.
#[derive(Debug, Clone)]
pub struct SuiteWork {
    /// Its tests.
    pub tests: Vec<Estimated>,
    /// The suite's `batch:` target, if it sets one.
    pub batch_target_ms: Option<u64>,
    /// What one batch costs beyond its tests: measured by earlier runs, else
    /// [`DEFAULT_BATCH_COST_MS`] to start.
    pub batch_cost: BatchCost,
    /// Whether `batch_cost` was measured (the history had batches of the suite).
    pub cost_measured: bool,
}

impl SuiteWork {
    /// The tests `cases` of the suite `def`, estimated from `timings` as the runner would.
    pub fn estimated(def: &SuiteDef, cases: &[TestCase], timings: &Timings) -> Self {
        let tests = (cases.iter())
            .map(|case| PlanTest::of(&def.suite.name, def.split, case))
            .collect();
        let estimated = estimate_tests(tests, |key| timings.estimate_ms(key));
        Self::of(def, estimated, timings.batch_cost(&def.suite.name))
    }

    /// The same suite at another measured per-batch cost (none: the default).
    pub fn at_cost(&self, measured: Option<BatchCost>) -> Self {
        Self {
            batch_cost: measured.unwrap_or(DEFAULT_BATCH_COST),
            cost_measured: measured.is_some(),
            ..self.clone()
        }
    }

    /// The suite `def` with `tests`, at its measured per-batch cost (else the default).
    fn of(def: &SuiteDef, tests: Vec<Estimated>, measured: Option<BatchCost>) -> Self {
        Self {
            tests,
            batch_target_ms: def
                .batch
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            batch_cost: measured.unwrap_or(DEFAULT_BATCH_COST),
            cost_measured: measured.is_some(),
        }
    }

    /// How many of its tests have history.
    pub fn measured_count(&self) -> usize {
        self.tests.iter().filter(|t| !t.estimate.is_guess()).count()
    }

    /// The sum of its tests' estimates.
    pub fn total_ms(&self) -> u64 {
        self.tests
            .iter()
            .fold(0, |sum, t| sum.saturating_add(t.estimate.ms()))
    }
}

/// What each test of `records` took in the run that recorded them: all its attempts.
pub fn measured_durations(records: &[TestRecord]) -> BTreeMap<TestKey, u64> {
    records
        .iter()
        .map(|record| {
            let ms =
                (record.attempts.iter()).fold(0u64, |sum, a| sum.saturating_add(a.duration_ms));
            (TestKey::new(&record.suite, &record.case.id), ms)
        })
        .collect()
}

/// How long `suites`' batches take on `slots` slots: each suite planned for them, the batches
/// longest first (the order the runner submits them in), each to the first free slot.
pub fn batches_ms(suites: &[SuiteWork], slots: usize) -> u64 {
    makespan_of(suites, slots, |_| None)
}

/// [`batches_ms`] of the plan `suites`' estimates make, each test taking what `took` says
/// (its estimate where it says nothing).
fn makespan_of(suites: &[SuiteWork], slots: usize, took: impl Fn(&TestKey) -> Option<u64>) -> u64 {
    let mut batches: Vec<(bool, u64, u64)> = suites
        .iter()
        .flat_map(|suite| {
            let estimates: BTreeMap<&TestKey, u64> = (suite.tests.iter())
                .map(|t| (&t.test.key, t.estimate.ms()))
                .collect();
            let files: BTreeMap<&TestKey, Option<&String>> = (suite.tests.iter())
                .map(|t| (&t.test.key, t.test.file.as_ref()))
                .collect();
            let cost = suite.batch_cost;
            let planned = plan_batches(suite.tests.clone(), suite.batch_target_ms, slots, cost);
            let work = |key: &TestKey| took(key).or(estimates.get(key).copied()).unwrap_or(0);
            planned
                .into_iter()
                .map(|b| {
                    let touched: BTreeSet<Option<&String>> = b
                        .tests
                        .iter()
                        .filter_map(|k| files.get(k).copied())
                        .collect();
                    let ms = (b.tests.iter().map(work))
                        .fold(cost.ms(touched.len()), u64::saturating_add);
                    (b.guessed, b.estimate_ms, ms)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    batches.sort_by_key(|&(guessed, estimate, _)| Reverse((guessed, estimate)));
    let durations: Vec<u64> = batches.into_iter().map(|(_, _, ms)| ms).collect();
    makespan_ms(&durations, slots)
}

/// The predicted wall time of a cluster of `machines`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prediction {
    /// How many machines.
    pub machines: u32,
    /// The wall time predicted, in milliseconds.
    pub wall_ms: u64,
}

/// The wall time of `suites` on 1 to `max_machines` machines of `slots` slots each, with a
/// set-up of `setup_ms`.
pub fn predict(
    suites: &[SuiteWork],
    setup_ms: u64,
    slots: u32,
    max_machines: u32,
) -> Vec<Prediction> {
    (1..=max_machines.max(1))
        .map(|machines| Prediction {
            machines,
            wall_ms: setup_ms.saturating_add(batches_ms(suites, total_slots(machines, slots))),
        })
        .collect()
}

/// The slots of `machines` machines of `slots` slots each (at least 1).
fn total_slots(machines: u32, slots: u32) -> usize {
    (machines.max(1) as usize).saturating_mul(slots.max(1) as usize)
}

/// Why a number of machines was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The smallest number whose prediction meets the target.
    MeetsTarget,
    /// No number up to the maximum meets the target: the fastest.
    MissesTarget,
    /// The knee: one more machine would save `saves_ms`, less than its set-up.
    Knee {
        /// What one more machine would save.
        saves_ms: u64,
    },
    /// Every machine up to the maximum saves more than its set-up.
    EveryMachinePays,
}

/// A number of machines and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// How many machines.
    pub machines: u32,
    /// Why.
    pub reason: Reason,
}

/// The machines to ask for among `predictions` (for 1, 2, … machines): with `target_ms`, the
/// smallest number predicted to meet it (else the fastest); without, the knee, the first
/// number after which one more machine saves less than `setup_ms`.
pub fn choose(predictions: &[Prediction], target_ms: Option<u64>, setup_ms: u64) -> Choice {
    let Some(last) = predictions.last() else {
        return Choice {
            machines: 1,
            reason: Reason::EveryMachinePays,
        };
    };
    if let Some(target) = target_ms {
        if let Some(meets) = predictions.iter().find(|p| p.wall_ms <= target) {
            return Choice {
                machines: meets.machines,
                reason: Reason::MeetsTarget,
            };
        }
        let fastest = predictions.iter().min_by_key(|p| p.wall_ms).unwrap_or(last);
        return Choice {
            machines: fastest.machines,
            reason: Reason::MissesTarget,
        };
    }
    for pair in predictions.windows(2) {
        let saves_ms = pair[0].wall_ms.saturating_sub(pair[1].wall_ms);
        if saves_ms < setup_ms {
            return Choice {
                machines: pair[0].machines,
                reason: Reason::Knee { saves_ms },
            };
        }
    }
    Choice {
        machines: last.machines,
        reason: Reason::EveryMachinePays,
    }
}

/// The set-up a run measured: its wall time `wall_ms` beyond the makespan of its batches on
/// its `slots` slots, the batches planned from the estimates it had (`estimated`) and each
/// test taking what it took (`took`, see [`measured_durations`]).
pub fn measured_setup_ms(
    wall_ms: u64,
    estimated: &[SuiteWork],
    took: &BTreeMap<TestKey, u64>,
    slots: usize,
) -> u64 {
    wall_ms.saturating_sub(makespan_of(estimated, slots, |key| took.get(key).copied()))
}

/// A finished run of `machines` machines of `slots` slots that took `wall_ms`, checked against
/// the history before it (`estimated`: its tests estimated from that history; `setup_ms`: the
/// set-up it had measured): the set-up this run measured, and its prediction's check when
/// the history had measured any of its tests.
pub fn check_run(
    estimated: &[SuiteWork],
    setup_ms: u64,
    took: &BTreeMap<TestKey, u64>,
    (machines, slots): (u32, u32),
    wall_ms: u64,
) -> (u64, Option<PredictionCheck>) {
    let total = total_slots(machines, slots);
    let setup = measured_setup_ms(wall_ms, estimated, took, total);
    let known = estimated.iter().any(|suite| suite.measured_count() > 0);
    let check = known.then(|| PredictionCheck {
        machines,
        slots,
        predicted_ms: setup_ms.saturating_add(batches_ms(estimated, total)),
        actual_ms: wall_ms,
    });
    (setup, check)
}

#[cfg(test)]
mod tests {
    use std::collections::BinaryHeap;

    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::suite::plan::Estimate;

    /// A cluster as it runs, simulated apart from the model: the runner lists for `listing_ms`
    /// before the first batch goes out; machine `i` joins after its own set-up
    /// (`setup_ms[i]`); each batch takes `batch_cost_ms` plus its tests' actual durations and
    /// goes to the slot that frees up first.
    struct Cluster {
        listing_ms: u64,
        setup_ms: Vec<u64>,
        slots: u32,
        batch_cost_ms: u64,
    }

    impl Cluster {
        /// The wall time of `batches` (each its tests' actual durations), in dispatch order.
        fn run(&self, batches: &[u64]) -> u64 {
            let mut free: BinaryHeap<Reverse<u64>> = self
                .setup_ms
                .iter()
                .flat_map(|&setup| {
                    (0..self.slots).map(move |_| Reverse(setup.max(self.listing_ms)))
                })
                .collect();
            let mut end = 0;
            for &work in batches {
                let Some(Reverse(at)) = free.pop() else { break };
                let done = at + self.batch_cost_ms + work;
                end = end.max(done);
                free.push(Reverse(done));
            }
            end
        }
    }

    /// A suite of `n` tests (no split) with `durations`, all measured exactly.
    fn suite(durations: &[u64], batch_cost_ms: u64) -> SuiteWork {
        SuiteWork {
            tests: durations
                .iter()
                .enumerate()
                .map(|(i, &ms)| Estimated {
                    test: PlanTest {
                        key: TestKey::new("s", format!("t{i:03}")),
                        group: None,
                        file: None,
                    },
                    estimate: Estimate::Measured(ms),
                })
                .collect(),
            batch_target_ms: None,
            batch_cost: BatchCost {
                start_ms: batch_cost_ms,
                per_file_ms: 0,
            },
            cost_measured: true,
        }
    }

    /// What each test of [`suite`] took.
    fn took(actual: &[u64]) -> BTreeMap<TestKey, u64> {
        (actual.iter().enumerate())
            .map(|(i, &ms)| (TestKey::new("s", format!("t{i:03}")), ms))
            .collect()
    }

    /// The batches the runner would send for `suite` on `slots` slots, as actual work.
    fn dispatched(suite: &SuiteWork, actual: &[u64], slots: usize) -> Vec<u64> {
        let index = |key: &TestKey| key.id[1..].parse::<usize>().unwrap();
        let mut batches: Vec<(u64, u64)> = plan_batches(
            suite.tests.clone(),
            suite.batch_target_ms,
            slots,
            suite.batch_cost,
        )
        .iter()
        .map(|b| {
            (
                b.estimate_ms,
                b.tests.iter().map(|k| actual[index(k)]).sum(),
            )
        })
        .collect();
        batches.sort_by_key(|&(estimate, _)| Reverse(estimate));
        batches.into_iter().map(|(_, work)| work).collect()
    }

    fn random_durations(rng: &mut StdRng, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| 10u64.pow(rng.random_range(1..4)) * rng.random_range(1..10))
            .collect()
    }

    #[test]
    fn with_a_known_setup_and_cost_the_prediction_is_the_simulated_wall_time() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..30 {
            let n = rng.random_range(1..200);
            let durations = random_durations(&mut rng, n);
            let (setup, cost, slots) = (rng.random_range(0..30_000), 700, rng.random_range(1..5));
            let work = suite(&durations, cost);
            for p in predict(std::slice::from_ref(&work), setup, slots, 6) {
                let cluster = Cluster {
                    listing_ms: setup,
                    setup_ms: vec![setup; p.machines as usize],
                    slots,
                    batch_cost_ms: cost,
                };
                let total = total_slots(p.machines, slots);
                assert_eq!(
                    p.wall_ms,
                    cluster.run(&dispatched(&work, &durations, total))
                );
            }
        }
    }

    /// One run on one machine measures the set-up and the per-batch cost (700 ms, which the
    /// history's batch samples give the plan), with machines that join at different times: the
    /// predictions for 2 to 8 machines are then within 15 % of the simulated cluster's, and
    /// the number chosen for a target meets it there.
    #[test]
    fn one_measured_run_predicts_the_other_sizes_within_15_percent() {
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..40 {
            let n = rng.random_range(40..400);
            let actual = random_durations(&mut rng, n);
            let slots = rng.random_range(1..5);
            let listing_ms = rng.random_range(500..5_000);
            let cluster = |machines: u32, rng: &mut StdRng| Cluster {
                listing_ms,
                // Every machine joins after 9 to 11 s (a runner, a checkout, a layer fetch).
                setup_ms: (0..machines)
                    .map(|_| rng.random_range(9_000..11_000))
                    .collect(),
                slots,
                batch_cost_ms: 700,
            };
            // Estimates: the median of earlier runs, within ±10 % of today's durations.
            let estimates: Vec<u64> = actual
                .iter()
                .map(|&ms| ms * rng.random_range(90..=110) / 100)
                .collect();
            let planned = suite(&estimates, 700);
            let one = total_slots(1, slots);
            let wall_one = cluster(1, &mut rng).run(&dispatched(&planned, &actual, one));
            let (setup, check) = check_run(
                std::slice::from_ref(&planned),
                DEFAULT_SETUP_MS,
                &took(&actual),
                (1, slots),
                wall_one,
            );
            assert!(check.is_some(), "a measured suite is checked");
            let predictions = predict(std::slice::from_ref(&planned), setup, slots, 8);
            let mut simulated = Vec::new();
            for p in &predictions[1..] {
                let total = total_slots(p.machines, slots);
                let wall = cluster(p.machines, &mut rng).run(&dispatched(&planned, &actual, total));
                let error = (wall as f64 - p.wall_ms as f64).abs() / wall as f64;
                assert!(
                    error <= 0.15,
                    "round {round}: {} machines of {slots}: predicted {} ms, simulated {wall} ms",
                    p.machines,
                    p.wall_ms
                );
                simulated.push((p.machines, wall));
            }
            // A target between the 2- and 8-machine predictions: the number chosen meets it
            // in the simulation (within the 15 %), and one fewer was predicted not to.
            let target = (predictions[1].wall_ms + predictions[7].wall_ms) / 2;
            let choice = choose(&predictions, Some(target), setup);
            assert_eq!(choice.reason, Reason::MeetsTarget);
            let (_, wall) = simulated[choice.machines as usize - 2];
            assert!(wall as f64 <= target as f64 * 1.15, "round {round}");
            assert!(predictions[choice.machines as usize - 2].wall_ms > target);
        }
    }

    fn walls(ms: &[u64]) -> Vec<Prediction> {
        (1..)
            .zip(ms)
            .map(|(machines, &wall_ms)| Prediction { machines, wall_ms })
            .collect()
    }

    #[test]
    fn the_knee_is_where_one_more_machine_saves_less_than_its_setup() {
        // Twelve tests of 10 s on 2 slots a machine: 6, 3, 2, 2, 2 tests a slot after a
        // 20 s set-up; one more than two machines saves 10 s, less than the set-up.
        let work = suite(&[10_000; 12], 0);
        let predictions = predict(std::slice::from_ref(&work), 20_000, 2, 5);
        let ms: Vec<u64> = predictions.iter().map(|p| p.wall_ms).collect();
        assert_eq!(ms, [80_000, 50_000, 40_000, 40_000, 40_000]);
        assert_eq!(
            choose(&predictions, None, 20_000),
            Choice {
                machines: 2,
                reason: Reason::Knee { saves_ms: 10_000 }
            }
        );
        // A cheaper set-up buys the third machine, never the fourth, which saves nothing.
        assert_eq!(choose(&predictions, None, 5_000).machines, 3);
        let every = choose(&walls(&[90, 60, 40, 30]), None, 1);
        assert_eq!(every.reason, Reason::EveryMachinePays);
        assert_eq!(every.machines, 4);
    }

    #[test]
    fn a_target_takes_the_smallest_number_that_meets_it_else_the_fastest() {
        let predictions = walls(&[100, 60, 45, 40, 42]);
        let meets = |target| choose(&predictions, Some(target), 1_000);
        assert_eq!(meets(60).machines, 2);
        assert_eq!(meets(59).machines, 3);
        assert_eq!(meets(100).machines, 1);
        assert_eq!(
            meets(10),
            Choice {
                machines: 4,
                reason: Reason::MissesTarget
            }
        );
        assert_eq!(choose(&[], Some(10), 0).machines, 1);
    }

    #[test]
    fn a_run_without_history_is_not_checked_and_measures_its_setup() {
        let guessed = SuiteWork {
            tests: suite(&[1_000, 2_000], 0)
                .tests
                .into_iter()
                .map(|mut t| {
                    t.estimate = Estimate::Guessed(1_000);
                    t
                })
                .collect(),
            batch_target_ms: None,
            batch_cost: BatchCost {
                start_ms: 0,
                per_file_ms: 0,
            },
            cost_measured: true,
        };
        // One slot: one batch of 3 s; the run took 5 s: 2 s of set-up.
        let took = took(&[1_000, 2_000]);
        let (setup, check) = check_run(std::slice::from_ref(&guessed), 0, &took, (1, 1), 5_000);
        assert_eq!((setup, check), (2_000, None));
        // Faster than its batches (a cost overestimated): no negative set-up.
        assert_eq!(measured_setup_ms(1_000, &[guessed], &took, 1), 0);
    }
}
