//! Packing a suite's tests into batches: the unit of work a worker runs with one framework
//! invocation. Batches are filled longest test first so the long ones start early and the
//! small ones fill the end; tests without history go first of all (a new slow test must not be
//! the last to start). No batch holds more than an even share of the suite (total / slots), so
//! every slot gets work, and batches shrink toward the end (the remaining work per slot) so the
//! slots finish together. A `split: file` group stays in one batch. A suite whose every test
//! has history (and no `batch` target) is dealt onto two batches per slot instead: good
//! estimates need few batches to balance, and every batch costs a framework start and a round
//! trip through the store.

use std::collections::BTreeMap;

use super::TestKey;

/// The estimate for a test of a suite with no history at all.
pub const DEFAULT_ESTIMATE_MS: u64 = 1_000;
/// The default batch target aims at this many batches per slot, so the queue can balance.
pub const BATCHES_PER_SLOT: u64 = 4;
/// The default target is at least this (a batch costs a round trip through the store)…
pub const DEFAULT_TARGET_MIN_MS: u64 = 5_000;
/// …and at most this (a lost worker loses at most this much work).
pub const DEFAULT_TARGET_MAX_MS: u64 = 120_000;
/// Batches shrink toward the end of the plan, but not below this (or the target if smaller).
pub const SMALLEST_BATCH_MS: u64 = 2_000;
/// A suite whose every test has history (and that sets no `batch`) is dealt onto this many
/// batches per slot: its estimates are good enough that balance needs few batches, and each
/// batch costs a framework start and a round trip through the store.
pub const MEASURED_BATCHES_PER_SLOT: usize = 2;

/// A test to plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTest {
    /// The test.
    pub key: TestKey,
    /// Tests with the same group (e.g. their file, for `split: file`) share one batch.
    pub group: Option<String>,
}

/// How long a test is expected to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    /// From its timing history.
    Measured(u64),
    /// No history: the suite's median (or [`DEFAULT_ESTIMATE_MS`]).
    Guessed(u64),
}

impl Estimate {
    /// The estimate in milliseconds.
    pub fn ms(self) -> u64 {
        match self {
            Self::Measured(ms) | Self::Guessed(ms) => ms,
        }
    }

    /// Whether it is a guess.
    pub fn is_guess(self) -> bool {
        matches!(self, Self::Guessed(_))
    }
}

/// A test with its estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimated {
    /// The test.
    pub test: PlanTest,
    /// Its estimate.
    pub estimate: Estimate,
}

/// One batch: tests run together by one framework invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Its tests, in plan order.
    pub tests: Vec<TestKey>,
    /// The sum of their estimates.
    pub estimate_ms: u64,
    /// Whether any of them has no history.
    pub guessed: bool,
}

/// Estimates every test from `history` (its estimate from timing history, if any): its own
/// history (at least 1 ms), else the median of the measured tests of its suite among `tests`,
/// else [`DEFAULT_ESTIMATE_MS`].
pub fn estimate_tests(
    tests: Vec<PlanTest>,
    history: impl Fn(&TestKey) -> Option<u64>,
) -> Vec<Estimated> {
    let measured: Vec<Option<u64>> = tests
        .iter()
        .map(|t| history(&t.key).map(|ms| ms.max(1)))
        .collect();
    let mut by_suite: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (test, ms) in tests.iter().zip(&measured) {
        if let Some(ms) = ms {
            by_suite.entry(&test.key.suite).or_default().push(*ms);
        }
    }
    let medians: BTreeMap<String, u64> = by_suite
        .into_iter()
        .map(|(suite, mut all)| {
            all.sort_unstable();
            (suite.to_string(), all[all.len() / 2])
        })
        .collect();
    tests
        .into_iter()
        .zip(measured)
        .map(|(test, ms)| {
            let estimate = match ms {
                Some(ms) => Estimate::Measured(ms),
                None => Estimate::Guessed(
                    medians
                        .get(&test.key.suite)
                        .copied()
                        .unwrap_or(DEFAULT_ESTIMATE_MS),
                ),
            };
            Estimated { test, estimate }
        })
        .collect()
}

/// The batch target when the suite sets none: about [`BATCHES_PER_SLOT`] batches per slot,
/// within [`DEFAULT_TARGET_MIN_MS`]..[`DEFAULT_TARGET_MAX_MS`], never above an even share.
pub fn default_target_ms(total_ms: u64, slots: usize) -> u64 {
    let slots = slots.max(1) as u64;
    (total_ms / (slots * BATCHES_PER_SLOT))
        .clamp(DEFAULT_TARGET_MIN_MS, DEFAULT_TARGET_MAX_MS)
        .min(even_share(total_ms, slots))
}

/// total / slots, at least 1 ms: the most one batch may hold.
fn even_share(total_ms: u64, slots: u64) -> u64 {
    (total_ms / slots.max(1)).max(1)
}

/// What the packer places: one test, or a group that stays together.
struct Unit {
    tests: Vec<TestKey>,
    ms: u64,
    guessed: bool,
}

/// Tests of the same suite and group become one unit; the rest one unit each.
fn units(tests: Vec<Estimated>) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    let mut group_unit: BTreeMap<(String, String), usize> = BTreeMap::new();
    for Estimated { test, estimate } in tests {
        let slot = test.group.map(|group| {
            let next = units.len();
            *group_unit
                .entry((test.key.suite.clone(), group))
                .or_insert(next)
        });
        match slot {
            Some(index) if index < units.len() => {
                let unit = &mut units[index];
                unit.tests.push(test.key);
                unit.ms = unit.ms.saturating_add(estimate.ms());
                unit.guessed |= estimate.is_guess();
            }
            _ => units.push(Unit {
                tests: vec![test.key],
                ms: estimate.ms(),
                guessed: estimate.is_guess(),
            }),
        }
    }
    units
}

/// Packs one suite's estimated tests into batches, in dispatch order. Every test is in exactly
/// one batch. Units (tests, or groups) are taken guessed first, then longest first, and added to
/// the open batch while it stays within its cap: the remaining work per slot, between
/// [`SMALLEST_BATCH_MS`] and the target (`target_ms`, or [`default_target_ms`]), which is never
/// above total / slots. A unit larger than the cap is a batch of its own.
///
/// A suite that sets no target and whose every test has history is dealt instead: see
/// `deal_measured`.
pub fn plan_batches(tests: Vec<Estimated>, target_ms: Option<u64>, slots: usize) -> Vec<Batch> {
    let mut units = units(tests);
    units.sort_by(|a, b| {
        (b.guessed.cmp(&a.guessed))
            .then(b.ms.cmp(&a.ms))
            .then_with(|| a.tests.cmp(&b.tests))
    });
    if target_ms.is_none() && units.iter().all(|u| !u.guessed) {
        return deal_measured(units, measured_batch_count(slots));
    }
    let total = units.iter().fold(0u64, |sum, u| sum.saturating_add(u.ms));
    let slots = slots.max(1) as u64;
    let target = target_ms
        .unwrap_or_else(|| default_target_ms(total, slots as usize))
        .clamp(1, even_share(total, slots));
    let smallest = target.min(SMALLEST_BATCH_MS);
    let mut remaining = total;
    let mut batches = Vec::new();
    let mut open: Option<(Batch, u64)> = None;
    for unit in units {
        if let Some((batch, cap)) = open.take() {
            if batch.estimate_ms.saturating_add(unit.ms) > cap {
                remaining = remaining.saturating_sub(batch.estimate_ms);
                batches.push(batch);
            } else {
                open = Some((batch, cap));
            }
        }
        let (batch, _) = open.get_or_insert_with(|| {
            let cap = (remaining / slots).clamp(smallest, target);
            let empty = Batch {
                tests: Vec::new(),
                estimate_ms: 0,
                guessed: false,
            };
            (empty, cap)
        });
        batch.tests.extend(unit.tests);
        batch.estimate_ms = batch.estimate_ms.saturating_add(unit.ms);
        batch.guessed |= unit.guessed;
    }
    batches.extend(open.map(|(batch, _)| batch));
    batches
}

/// How many batches a measured suite is dealt onto: [`MEASURED_BATCHES_PER_SLOT`] per slot,
/// but one for a single slot, which has nothing to balance (a second batch would only cost a
/// framework start and run a shorter test before a longer one).
fn measured_batch_count(slots: usize) -> usize {
    if slots <= 1 {
        1
    } else {
        slots * MEASURED_BATCHES_PER_SLOT
    }
}

/// Deals `units` (sorted longest first) onto `count` batches, each unit to the batch with the
/// least work so far (longest processing time first): the batches come out nearly equal, none
/// above total / slots unless a unit is alone, with one framework start each. Batches go out
/// in the order they were opened, so the i-th longest test is the first of the i-th batch
/// and the longest tests start first; empty ones (fewer units than batches) are dropped.
fn deal_measured(units: Vec<Unit>, count: usize) -> Vec<Batch> {
    let mut batches: Vec<Batch> = (0..count.max(1))
        .map(|_| Batch {
            tests: Vec::new(),
            estimate_ms: 0,
            guessed: false,
        })
        .collect();
    for unit in units {
        let Some(least) = batches.iter_mut().min_by_key(|b| b.estimate_ms) else {
            break;
        };
        least.tests.extend(unit.tests);
        least.estimate_ms = least.estimate_ms.saturating_add(unit.ms);
    }
    batches.retain(|b| !b.tests.is_empty());
    batches
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::suite::makespan::{lower_bound_ms, makespan_ms};

    fn measured(id: &str, ms: u64) -> Estimated {
        with(id, None, Estimate::Measured(ms))
    }

    fn with(id: &str, group: Option<&str>, estimate: Estimate) -> Estimated {
        Estimated {
            test: PlanTest {
                key: TestKey::new("s", id),
                group: group.map(str::to_string),
            },
            estimate,
        }
    }

    fn ids(batches: &[Batch]) -> Vec<Vec<&str>> {
        batches
            .iter()
            .map(|b| b.tests.iter().map(|k| k.id.as_str()).collect())
            .collect()
    }

    #[test]
    fn longest_first_within_the_share_and_shrinking_to_the_end() {
        let tests = vec![
            measured("a", 1_000),
            measured("b", 9_000),
            measured("c", 4_000),
            measured("d", 3_000),
            measured("e", 2_000),
            measured("f", 1_000),
        ];
        // Total 20 s on 2 slots, target 6 s. b (9 s) is over the cap alone; then the cap is
        // the remaining work per slot: 11/2 → 5 s (c), 7/2 → 3 s (d), 4/2 → 2 s (e, then a+f).
        let batches = plan_batches(tests, Some(6_000), 2);
        assert_eq!(
            ids(&batches),
            [vec!["b"], vec!["c"], vec!["d"], vec!["e"], vec!["a", "f"]]
        );
        assert_eq!(batches[0].estimate_ms, 9_000);
    }

    #[test]
    fn a_measured_suite_is_dealt_onto_two_batches_per_slot_longest_first() {
        let tests: Vec<Estimated> = [9, 8, 5, 4, 3, 3, 2, 1, 1]
            .iter()
            .enumerate()
            .map(|(i, s)| measured(&format!("t{i}"), s * 1_000))
            .collect();
        // 36 s on 2 slots: 4 batches, each test to the one with the least work so far.
        let batches = plan_batches(tests.clone(), None, 2);
        assert_eq!(
            ids(&batches),
            [
                vec!["t0"],
                vec!["t1", "t7"],
                vec!["t2", "t5", "t8"],
                vec!["t3", "t4", "t6"]
            ]
        );
        let ms: Vec<u64> = batches.iter().map(|b| b.estimate_ms).collect();
        assert_eq!(ms, [9_000, 9_000, 9_000, 9_000]);
        // One slot has nothing to balance: one batch, longest first.
        let one = plan_batches(tests.clone(), None, 1);
        let all: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
        assert_eq!(ids(&one), [all]);
        // A target set by the suite, or a test without history, keeps the packer (its plan
        // is longest first throughout; the guessed test first of all).
        let flat = |batches: Vec<Batch>| -> Vec<String> {
            batches
                .into_iter()
                .flat_map(|b| b.tests)
                .map(|k| k.id)
                .collect()
        };
        let order: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
        assert_eq!(flat(plan_batches(tests.clone(), Some(40_000), 2)), order);
        let mut one_new = tests;
        one_new[8].estimate = Estimate::Guessed(1_000);
        let mut order = order;
        order.rotate_right(1);
        assert_eq!(flat(plan_batches(one_new, None, 2)), order);
    }

    #[test]
    fn unknown_tests_go_first_at_the_suite_median() {
        let history: BTreeMap<TestKey, u64> = [("a", 100), ("b", 300), ("c", 50_000)]
            .into_iter()
            .map(|(id, ms)| (TestKey::new("s", id), ms))
            .collect();
        let plan: Vec<PlanTest> = ["a", "b", "c", "new"]
            .into_iter()
            .map(|id| PlanTest {
                key: TestKey::new("s", id),
                group: None,
            })
            .collect();
        let estimated = estimate_tests(plan.clone(), |key| history.get(key).copied());
        assert_eq!(estimated[3].estimate, Estimate::Guessed(300));
        let batches = plan_batches(estimated, Some(1), 4);
        assert_eq!(ids(&batches), [["new"], ["c"], ["b"], ["a"]]);
        assert!(batches[0].guessed && !batches[1].guessed);

        let nothing = estimate_tests(plan, |_| None);
        assert!(
            nothing
                .iter()
                .all(|e| e.estimate == Estimate::Guessed(DEFAULT_ESTIMATE_MS))
        );
    }

    #[test]
    fn a_group_stays_in_one_batch() {
        let g = |id, ms| with(id, Some("file.py"), Estimate::Measured(ms));
        let tests = vec![
            g("x", 1_000),
            measured("big", 5_000),
            g("y", 1_000),
            g("z", 1_000),
        ];
        let batches = plan_batches(tests, Some(1_000), 2);
        assert_eq!(ids(&batches), [vec!["big"], vec!["x", "y", "z"]]);
        assert_eq!(batches[1].estimate_ms, 3_000);
    }

    #[test]
    fn the_default_target_follows_the_total_and_the_slots() {
        assert_eq!(default_target_ms(3_200_000, 8), 100_000);
        assert_eq!(default_target_ms(100_000_000, 8), DEFAULT_TARGET_MAX_MS);
        assert_eq!(default_target_ms(60_000, 4), DEFAULT_TARGET_MIN_MS);
        // A suite smaller than the minimum per slot: one batch per slot.
        assert_eq!(default_target_ms(8_000, 4), 2_000);
        assert_eq!(default_target_ms(0, 0), 1);
    }

    #[test]
    fn an_empty_suite_has_no_batches() {
        assert!(plan_batches(Vec::new(), None, 3).is_empty());
    }

    /// A random suite: heavy-tailed durations, some without history, some in groups.
    fn random_suite(rng: &mut StdRng) -> Vec<Estimated> {
        let n = rng.random_range(1..150);
        (0..n)
            .map(|i| {
                let ms = 10u64.pow(rng.random_range(0..5)) * rng.random_range(1..10);
                let estimate = if rng.random_bool(0.2) {
                    Estimate::Guessed(ms)
                } else {
                    Estimate::Measured(ms)
                };
                let group = rng
                    .random_bool(0.3)
                    .then(|| format!("g{}", rng.random_range(0..6)));
                with(&format!("t{i}"), group.as_deref(), estimate)
            })
            .collect()
    }

    #[test]
    fn random_suites_keep_every_rule() {
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..400 {
            let tests = random_suite(&mut rng);
            let slots = rng.random_range(1..17);
            let target = rng.random_bool(0.5).then(|| rng.random_range(1..60_000));
            check_rules(
                &tests,
                &plan_batches(tests.clone(), target, slots),
                slots,
                target,
            );
        }
    }

    #[test]
    fn with_history_the_plan_is_near_the_lower_bound() {
        let mut rng = StdRng::seed_from_u64(17);
        let (mut informed, mut blind, mut bound) = (0, 0, 0);
        for _ in 0..50 {
            // 400 tests, heavy-tailed: most take tens of milliseconds, a few take seconds.
            let actual: Vec<u64> = (0..400)
                .map(|_| 10u64.pow(rng.random_range(1..5)) * rng.random_range(1..10))
                .collect();
            let suite = |estimate: &dyn Fn(u64) -> Estimate| -> Vec<Estimated> {
                (0..actual.len())
                    .map(|i| with(&format!("t{i:03}"), None, estimate(actual[i])))
                    .collect()
            };
            let run = |plan: Vec<Batch>| -> Vec<u64> {
                let ms = |k: &TestKey| actual[k.id[1..].parse::<usize>().unwrap()];
                plan.iter().map(|b| b.tests.iter().map(ms).sum()).collect()
            };
            let slots = 8;
            informed += makespan_ms(
                &run(plan_batches(suite(&Estimate::Measured), None, slots)),
                slots,
            );
            let guessed = plan_batches(
                suite(&|_| Estimate::Guessed(DEFAULT_ESTIMATE_MS)),
                None,
                slots,
            );
            blind += makespan_ms(&run(guessed), slots);
            bound += lower_bound_ms(&actual, slots);
        }
        let ratio = |m: u64| m as f64 / bound as f64;
        assert!(
            ratio(informed) <= 1.10,
            "with history: {:.3}",
            ratio(informed)
        );
        assert!(
            ratio(informed) < ratio(blind),
            "history did not help: {:.3} against {:.3} without",
            ratio(informed),
            ratio(blind)
        );
    }

    /// Every rule of a plan, checked from the input alone.
    fn check_rules(tests: &[Estimated], batches: &[Batch], slots: usize, target: Option<u64>) {
        // Units as the input defines them: a group's sum, or a test alone.
        let mut group_ms: BTreeMap<&str, (u64, bool)> = BTreeMap::new();
        for t in tests {
            if let Some(g) = &t.test.group {
                let entry = group_ms.entry(g).or_default();
                entry.0 += t.estimate.ms();
                entry.1 |= t.estimate.is_guess();
            }
        }
        let unit_of = |key: &TestKey| {
            let t = tests.iter().find(|t| &t.test.key == key).unwrap();
            match &t.test.group {
                Some(g) => (g.clone(), group_ms[g.as_str()]),
                None => (key.id.clone(), (t.estimate.ms(), t.estimate.is_guess())),
            }
        };
        // Every test exactly once.
        let planned: Vec<&TestKey> = batches.iter().flat_map(|b| &b.tests).collect();
        let unique: BTreeSet<&TestKey> = planned.iter().copied().collect();
        assert_eq!(planned.len(), tests.len());
        assert_eq!(unique.len(), tests.len());
        // Plan order: guessed units first, then non-increasing estimates; groups contiguous.
        let mut order: Vec<(String, (u64, bool))> = Vec::new();
        for key in &planned {
            let unit = unit_of(key);
            if order.last().is_none_or(|last| last.0 != unit.0) {
                assert!(order.iter().all(|seen| seen.0 != unit.0), "group split");
                order.push(unit);
            }
        }
        let dealt = target.is_none() && tests.iter().all(|t| !t.estimate.is_guess());
        if dealt {
            // Dealt: batches in the order of their first (longest) tests, and longest first
            // within each.
            let first = |b: &Batch| unit_of(&b.tests[0]).1.0;
            for pair in batches.windows(2) {
                assert!(first(&pair[0]) >= first(&pair[1]), "not longest first");
            }
            for batch in batches {
                let ms: Vec<u64> = batch.tests.iter().map(|k| unit_of(k).1.0).collect();
                assert!(ms.windows(2).all(|w| w[0] >= w[1]), "not longest first");
            }
        } else {
            for pair in order.windows(2) {
                let ((_, (a_ms, a_guess)), (_, (b_ms, b_guess))) = (&pair[0], &pair[1]);
                assert!(a_guess >= b_guess, "a measured unit before a guessed one");
                assert!(a_guess != b_guess || a_ms >= b_ms, "not longest first");
            }
        }
        // No batch above the even share unless it is one unit too big alone.
        let total: u64 = tests.iter().map(|t| t.estimate.ms()).sum();
        let share = (total / slots as u64).max(1);
        let units: Vec<u64> = order.iter().map(|(_, (ms, _))| *ms).collect();
        for batch in batches {
            assert_eq!(
                batch.estimate_ms,
                batch.tests.iter().map(|k| est(tests, k)).sum::<u64>()
            );
            let units_in = batch
                .tests
                .iter()
                .map(|k| unit_of(k).0)
                .collect::<BTreeSet<_>>();
            assert!(
                batch.estimate_ms <= share || units_in.len() == 1,
                "batch over share"
            );
        }
        // Every slot gets work when no unit alone is over the share.
        if units.iter().all(|&ms| ms <= share) {
            assert!(batches.len() >= slots.min(units.len()));
        }
        // Dispatched in order, the plan is within twice the lower bound.
        let durations: Vec<u64> = batches.iter().map(|b| b.estimate_ms).collect();
        assert!(makespan_ms(&durations, slots) <= 2 * lower_bound_ms(&units, slots));
    }

    fn est(tests: &[Estimated], key: &TestKey) -> u64 {
        tests
            .iter()
            .find(|t| &t.test.key == key)
            .unwrap()
            .estimate
            .ms()
    }
}
