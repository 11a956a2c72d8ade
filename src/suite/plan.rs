//! Packing a suite's tests into batches: the unit of work a worker runs with one framework
//! invocation. Batches are filled longest test first so the long ones start early and the
//! small ones fill the end; tests without history go first of all (a new slow test must not be
//! the last to start). No batch holds more than an even share of the suite (total / slots), so
//! every slot gets work, and batches shrink toward the end (the remaining work per slot) so the
//! slots finish together; without a target set, a batch is at least ten times what it costs
//! beyond its tests. A `split: file` group stays in one batch.
//!
//! A suite whose every test has history (and no `batch` target) is planned over the slots
//! instead (`plan_measured`): its tests go to the slots longest first, each to the slot that
//! would finish it soonest counting what a batch costs beyond its tests ([`BatchCost`]: a
//! start, and a collection per file), so a slot that holds the longest test gets little else;
//! each slot's work is then cut into 1 to [`MAX_BATCHES_PER_SLOT`] batches, and the plan whose
//! predicted makespan is least, with estimates off by a typical error, wins: fewer, larger
//! batches where starts are costly, more where they are cheap.
//! The batches go out each slot's first, then longest first, so that whichever slot frees
//! first, the last batches handed out are the smallest.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::TestKey;
use super::batch_cost::BatchCost;
use super::makespan::makespan_ms;

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
/// A suite whose every test has history (and that sets no `batch`) is cut into at most this
/// many batches per slot. Where a batch is cheap (a warm session: a fraction of a second) the
/// plans with more, smaller last batches win, and those even out what the estimates do not
/// foresee (a slot that starts late, a test that runs slow): at most 4 a slot, the 480 s
/// suite of BENCHMARKS.md ran 1.15 times its lower bound with history, at most 8, 1.07.
pub const MAX_BATCHES_PER_SLOT: usize = 8;
/// …and at least this many: a plan is made for the slots known when the suite is listed, and a
/// worker that joins later (a matrix job that started late) finds work only in batches not yet
/// started; with one batch per slot it found none (a 2-slot plan ran 10.7 s on 4 slots where
/// 7.5 s was predicted).
pub const MIN_BATCHES_PER_SLOT: usize = 2;
/// How far off a measured plan's estimates are taken to be when plans are compared: each
/// test's time is its estimate times e^(σ·z), z standard normal, with this σ (a test 25 %
/// slower or faster than its history is common: another machine, a busy neighbour). A batch
/// of many tests is off by less than each of them; one of a long test by as much.
pub const ESTIMATE_SPREAD: f64 = 0.25;
/// How far off a whole batch is taken to be beyond its tests' own errors: the machine it lands
/// on (its speed, its neighbours, a late start) is the same for all of its tests. Its time is
/// further multiplied by e^(σ·z) with this σ.
pub const MACHINE_SPREAD: f64 = 0.1;
/// How many draws of those errors a plan's predicted makespan is the mean of.
pub const SPREAD_DRAWS: u64 = 32;
/// Without a target, a batch is at least this many times its cost (start and collection), so
/// that starts stay a small part of a slot's time.
pub const BATCH_COST_MULTIPLE: u64 = 10;

/// A test to plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTest {
    /// The test.
    pub key: TestKey,
    /// Tests with the same group (e.g. their file, for `split: file`) share one batch.
    pub group: Option<String>,
    /// The file it comes from, when the framework says: a batch collects each of its files.
    pub file: Option<String>,
}

impl PlanTest {
    /// `case` of the suite `suite` split by `split`, as the planner takes it: a `split: file`
    /// suite groups a file's tests (or a group's, where the framework names no file).
    pub fn of(suite: &str, split: super::Split, case: &super::TestCase) -> Self {
        PlanTest {
            key: TestKey::new(suite, &case.id),
            group: match split {
                super::Split::File => Some(case.file.clone().unwrap_or(case.group.clone())),
                super::Split::Test => None,
            },
            file: case.file.clone(),
        }
    }
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
/// within [`DEFAULT_TARGET_MIN_MS`]..[`DEFAULT_TARGET_MAX_MS`] and at least
/// [`BATCH_COST_MULTIPLE`] times `batch_cost_ms` (what a batch costs beyond its tests), never
/// above an even share.
pub fn default_target_ms(total_ms: u64, slots: usize, batch_cost_ms: u64) -> u64 {
    let slots = slots.max(1) as u64;
    (total_ms / (slots * BATCHES_PER_SLOT))
        .clamp(DEFAULT_TARGET_MIN_MS, DEFAULT_TARGET_MAX_MS)
        .max(batch_cost_ms.saturating_mul(BATCH_COST_MULTIPLE))
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
    /// The files its tests come from (indices into the suite's files), sorted.
    files: Vec<usize>,
}

/// Tests of the same suite and group become one unit; the rest one unit each.
fn units(tests: Vec<Estimated>) -> Vec<Unit> {
    let mut file_index: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut units: Vec<Unit> = Vec::new();
    let mut group_unit: BTreeMap<(String, String), usize> = BTreeMap::new();
    for Estimated { test, estimate } in tests {
        let file = test.file.map(|file| {
            let next = file_index.len();
            *file_index
                .entry((test.key.suite.clone(), file))
                .or_insert(next)
        });
        let slot = test.group.map(|group| {
            let next = units.len();
            *group_unit
                .entry((test.key.suite.clone(), group))
                .or_insert(next)
        });
        let unit = match slot {
            Some(index) if index < units.len() => {
                let unit = &mut units[index];
                unit.tests.push(test.key);
                unit.ms = unit.ms.saturating_add(estimate.ms());
                unit.guessed |= estimate.is_guess();
                unit
            }
            _ => {
                units.push(Unit {
                    tests: vec![test.key],
                    ms: estimate.ms(),
                    guessed: estimate.is_guess(),
                    files: Vec::new(),
                });
                units.last_mut().expect("just pushed")
            }
        };
        if let Some(file) = file
            && !unit.files.contains(&file)
        {
            unit.files.push(file);
            unit.files.sort_unstable();
        }
    }
    units
}

/// Packs one suite's estimated tests into batches, in dispatch order; a batch costs `cost`
/// beyond its tests. Every test is in exactly one batch. Units (tests, or groups) are taken
/// guessed first, then longest first, and added to the open batch while it stays within its cap: the remaining work per slot, between
/// [`SMALLEST_BATCH_MS`] and the target (`target_ms`, or [`default_target_ms`]), which is never
/// above total / slots. A unit larger than the cap is a batch of its own.
///
/// A suite that sets no target and whose every test has history is planned over the slots
/// instead: see `plan_measured`.
pub fn plan_batches(
    tests: Vec<Estimated>,
    target_ms: Option<u64>,
    slots: usize,
    cost: BatchCost,
) -> Vec<Batch> {
    let mut units = units(tests);
    units.sort_by(|a, b| {
        (b.guessed.cmp(&a.guessed))
            .then(b.ms.cmp(&a.ms))
            .then_with(|| a.tests.cmp(&b.tests))
    });
    if target_ms.is_none() && units.iter().all(|u| !u.guessed) {
        return plan_measured(units, slots, cost);
    }
    let total = units.iter().fold(0u64, |sum, u| sum.saturating_add(u.ms));
    let slots = slots.max(1) as u64;
    let target = target_ms
        .unwrap_or_else(|| default_target_ms(total, slots as usize, cost.ms(1)))
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
            (empty_batch(), cap)
        });
        batch.tests.extend(unit.tests);
        batch.estimate_ms = batch.estimate_ms.saturating_add(unit.ms);
        batch.guessed |= unit.guessed;
    }
    batches.extend(open.map(|(batch, _)| batch));
    batches
}

fn empty_batch() -> Batch {
    Batch {
        tests: Vec::new(),
        estimate_ms: 0,
        guessed: false,
    }
}

/// A slot's planned work: its units, and the files they touch.
#[derive(Default)]
struct SlotWork {
    units: Vec<Unit>,
    ms: u64,
    files: BTreeSet<usize>,
}

impl SlotWork {
    /// What `unit` would add here: its time, and the collection of the files it brings.
    fn added_ms(&self, unit: &Unit, cost: BatchCost) -> u64 {
        let new_files = unit
            .files
            .iter()
            .filter(|f| !self.files.contains(f))
            .count();
        unit.ms
            .saturating_add(cost.per_file_ms.saturating_mul(new_files as u64))
    }
}

/// The plan of a suite whose every test has history (`units` sorted longest first): the units
/// go to `slots` slots longest first, each to the slot where it would end soonest (its files'
/// collection counted: a test tends to join its file); each slot's work is cut into `m`
/// batches, for every `m` from 1 to [`MAX_BATCHES_PER_SLOT`], and the plan with the least
/// predicted makespan ([`predicted_makespan_ms`]) wins, the fewer batches on a tie.
fn plan_measured(units: Vec<Unit>, slots: usize, cost: BatchCost) -> Vec<Batch> {
    let slots = slots.max(1);
    let mut work: Vec<SlotWork> = (0..slots).map(|_| SlotWork::default()).collect();
    for unit in units {
        let Some(slot) =
            (work.iter_mut()).min_by_key(|w| w.ms.saturating_add(w.added_ms(&unit, cost)))
        else {
            break;
        };
        slot.ms = slot.ms.saturating_add(slot.added_ms(&unit, cost));
        slot.files.extend(unit.files.iter().copied());
        slot.units.push(unit);
    }
    work.retain(|w| !w.units.is_empty());
    // The slot with the longest test first; within a slot, a file's tests together, files in
    // the order of their longest test, so the longest starts first and each file is
    // collected once a batch.
    work.sort_by_key(|w| Reverse(w.units.first().map_or(0, |u| u.ms)));
    for slot in &mut work {
        let mut first_at: BTreeMap<Option<usize>, usize> = BTreeMap::new();
        for (at, unit) in slot.units.iter().enumerate() {
            first_at.entry(unit.files.first().copied()).or_insert(at);
        }
        slot.units
            .sort_by_key(|u| first_at[&u.files.first().copied()]);
    }
    let mut best: Option<(u64, Vec<PlannedBatch>)> = None;
    for per_slot in MIN_BATCHES_PER_SLOT..=MAX_BATCHES_PER_SLOT {
        let plan = cut_slots(&work, per_slot, cost);
        let predicted = predicted_makespan_ms(&plan, slots);
        if best.as_ref().is_none_or(|(least, _)| predicted < *least) {
            best = Some((predicted, plan));
        }
        if slots == 1 {
            // One slot has nothing to balance: more batches only cost starts.
            break;
        }
    }
    let (_, plan) = best.unwrap_or_default();
    plan.into_iter().map(|b| b.batch).collect()
}

/// A batch of a measured plan, with its predicted time (its tests and its cost).
struct PlannedBatch {
    batch: Batch,
    /// Its units' estimates.
    units_ms: Vec<u64>,
    /// What it costs beyond them.
    cost_ms: u64,
    /// Both together.
    ms: u64,
}

/// Each slot's work cut into `per_slot` batches of shrinking size (weights `per_slot`, …, 2,
/// 1: the last is the smallest, so the slots' ends can even out), in dispatch order: each
/// slot's first batch, the slot with the longest test first, then the rest longest first.
/// A queue hands each batch to the slot that frees first, and the slots never free in the
/// order the estimates say (one starts its session late, a test runs slow): in any other
/// order a large batch can come after the small ones and start when the others are done (a
/// slot's third batch of 2.4 s went last in a run of 8 slots and ended it 1.7 s after the
/// rest). Longest first, the last batches are the smallest, whoever takes them.
fn cut_slots(work: &[SlotWork], per_slot: usize, cost: BatchCost) -> Vec<PlannedBatch> {
    let mut firsts = Vec::new();
    let mut rest = Vec::new();
    for slot in work {
        let mut batches = cut(&slot.units, slot.ms, per_slot, cost).into_iter();
        firsts.extend(batches.next());
        rest.extend(batches);
    }
    // Stable: equal batches keep their slots' order.
    rest.sort_by_key(|batch| Reverse(batch.ms));
    firsts.extend(rest);
    firsts
}

/// `units` (one slot's, `ms` in all) cut in order into at most `pieces` batches of shrinking
/// size; a unit never splits.
fn cut(units: &[Unit], ms: u64, pieces: usize, cost: BatchCost) -> Vec<PlannedBatch> {
    let weights: u64 = (1..=pieces as u64).sum();
    let mut batches = Vec::new();
    let mut current = (empty_batch(), BTreeSet::<usize>::new(), Vec::<u64>::new());
    let mut done_ms = 0u64;
    let mut goal_ms = 0u64;
    let mut piece = 0;
    for unit in units {
        if piece == 0 || (done_ms >= goal_ms && piece < pieces) {
            if !current.0.tests.is_empty() {
                batches.push(std::mem::replace(
                    &mut current,
                    (empty_batch(), BTreeSet::new(), Vec::new()),
                ));
            }
            piece += 1;
            // The first `piece` weights: pieces, pieces - 1, ….
            let share: u64 = (0..piece as u64).map(|i| pieces as u64 - i).sum();
            goal_ms = ms.saturating_mul(share) / weights;
        }
        let (batch, files, units_ms) = &mut current;
        units_ms.push(unit.ms);
        batch.tests.extend(unit.tests.iter().cloned());
        batch.estimate_ms = batch.estimate_ms.saturating_add(unit.ms);
        files.extend(unit.files.iter().copied());
        done_ms = done_ms.saturating_add(unit.ms);
    }
    if !current.0.tests.is_empty() {
        batches.push(current);
    }
    batches
        .into_iter()
        .map(|(batch, files, units_ms)| {
            let cost_ms = cost.ms(files.len());
            PlannedBatch {
                ms: batch.estimate_ms.saturating_add(cost_ms),
                batch,
                units_ms,
                cost_ms,
            }
        })
        .collect()
}

/// When `plan` (in dispatch order) is predicted to end on `slots` slots: the mean, over
/// [`SPREAD_DRAWS`] seeded draws of each test's error ([`ESTIMATE_SPREAD`]) and each batch's
/// ([`MACHINE_SPREAD`]), of the makespan
/// of a queue handing the batches out in order. A plan with one batch per slot has no room to
/// even out a batch that runs long; one with many pays more starts.
fn predicted_makespan_ms(plan: &[PlannedBatch], slots: usize) -> u64 {
    let mut rng = StdRng::seed_from_u64(19);
    let mut sum = 0u64;
    for _ in 0..SPREAD_DRAWS {
        let drawn: Vec<u64> = plan
            .iter()
            .map(|b| {
                let tests: f64 = (b.units_ms.iter())
                    .map(|&ms| ms as f64 * (ESTIMATE_SPREAD * standard_normal(&mut rng)).exp())
                    .sum();
                let machine = (MACHINE_SPREAD * standard_normal(&mut rng)).exp();
                b.cost_ms.saturating_add((tests * machine) as u64)
            })
            .collect();
        sum = sum.saturating_add(makespan_ms(&drawn, slots));
    }
    sum / SPREAD_DRAWS
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::suite::makespan::lower_bound_ms;

    /// Batches that cost nothing beyond their tests.
    const FREE: BatchCost = BatchCost {
        start_ms: 0,
        per_file_ms: 0,
    };

    fn measured(id: &str, ms: u64) -> Estimated {
        with(id, None, Estimate::Measured(ms))
    }

    fn with(id: &str, group: Option<&str>, estimate: Estimate) -> Estimated {
        Estimated {
            test: PlanTest {
                key: TestKey::new("s", id),
                group: group.map(str::to_string),
                file: None,
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
        let batches = plan_batches(tests, Some(6_000), 2, FREE);
        assert_eq!(
            ids(&batches),
            [vec!["b"], vec!["c"], vec!["d"], vec!["e"], vec!["a", "f"]]
        );
        assert_eq!(batches[0].estimate_ms, 9_000);
    }

    #[test]
    fn a_measured_suite_is_planned_over_the_slots_longest_first() {
        let tests: Vec<Estimated> = [9, 8, 5, 4, 3, 3, 2, 1, 1]
            .iter()
            .enumerate()
            .map(|(i, s)| measured(&format!("t{i}"), s * 1_000))
            .collect();
        // 36 s on 2 slots, tests longest first each to the slot that would end it soonest:
        // 18 s each. Without a start to pay, cutting each slot in two evens out the errors
        // the plan allows for.
        let batches = plan_batches(tests.clone(), None, 2, FREE);
        let mut slots: Vec<Vec<&str>> = ids(&batches);
        assert_eq!(slots[0][0], "t0", "the longest test first");
        slots.sort();
        let all: Vec<&str> = slots.iter().flatten().copied().collect();
        assert_eq!(all.len(), 9);
        // At a start of 5 s a batch, the fewest batches a plan makes, two a slot (a worker
        // joining late finds work): t0 t3 | t4 t6 and t1 t2 | t5 t7 t8, 18 s a slot.
        let costly = BatchCost {
            start_ms: 5_000,
            per_file_ms: 0,
        };
        let batches = plan_batches(tests.clone(), None, 2, costly);
        assert_eq!(
            ids(&batches),
            [
                vec!["t0", "t3"],
                vec!["t1", "t2"],
                vec!["t4", "t6"],
                vec!["t5", "t7", "t8"]
            ]
        );
        // One slot has nothing to balance but a worker joining late: two batches, longest
        // first.
        let one = plan_batches(tests.clone(), None, 1, FREE);
        let all: Vec<&str> = ids(&one).concat();
        let in_order: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
        assert_eq!(
            (one.len(), all),
            (2, in_order.iter().map(String::as_str).collect())
        );
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
        assert_eq!(
            flat(plan_batches(tests.clone(), Some(40_000), 2, FREE)),
            order
        );
        let mut one_new = tests;
        one_new[8].estimate = Estimate::Guessed(1_000);
        let mut order = order;
        order.rotate_right(1);
        assert_eq!(flat(plan_batches(one_new, None, 2, FREE)), order);
    }

    /// A heavy-tailed measured suite of `n` tests in files of 10, lognormal (σ = 1, seeded)
    /// but for `t000`, which takes `longest_ms`; `total_ms` in all.
    fn heavy_tailed(n: usize, total_ms: u64, longest_ms: u64) -> Vec<Estimated> {
        let mut rng = StdRng::seed_from_u64(20261206);
        let raw: Vec<f64> = (1..n).map(|_| (standard_normal(&mut rng)).exp()).collect();
        let scale = (total_ms - longest_ms) as f64 / raw.iter().sum::<f64>();
        let rest = raw.iter().map(|r| ((r * scale) as u64).max(1));
        (std::iter::once(longest_ms).chain(rest))
            .enumerate()
            .map(|(i, ms)| {
                let mut test = measured(&format!("t{i:03}"), ms);
                test.test.file = Some(format!("f{}.py", i / 10));
                test
            })
            .collect()
    }

    /// The time each slot ends when `batches` are handed out in order to the slot free first,
    /// each taking its estimate and `cost`.
    fn slot_ends(
        batches: &[Batch],
        slots: usize,
        cost: BatchCost,
        tests: &[Estimated],
    ) -> Vec<u64> {
        let file = |k: &TestKey| {
            tests
                .iter()
                .find(|t| &t.test.key == k)
                .unwrap()
                .test
                .file
                .clone()
        };
        let mut ends = vec![0u64; slots];
        for batch in batches {
            let files: BTreeSet<Option<String>> = batch.tests.iter().map(file).collect();
            let free = (0..slots).min_by_key(|&s| ends[s]).unwrap();
            ends[free] += batch.estimate_ms + cost.ms(files.len());
        }
        ends
    }

    #[test]
    fn a_heavy_tailed_suite_runs_its_longest_test_alone_and_balances_the_slots() {
        let cost = BatchCost {
            start_ms: 500,
            per_file_ms: 200,
        };
        let slots = 4;
        // The longest test a quarter of a slot's share, then one longer than a share.
        for longest_ms in [30_000, 150_000] {
            let tests = heavy_tailed(200, 480_000, longest_ms);
            let batches = plan_batches(tests.clone(), None, slots, cost);
            let of_longest = batches.iter().find(|b| b.tests[0].id == "t000").unwrap();
            assert_eq!(
                batches[0].tests[0].id, "t000",
                "the longest test starts first"
            );
            let ends = slot_ends(&batches, slots, cost, &tests);
            let (first, last) = (ends.iter().min().unwrap(), ends.iter().max().unwrap());
            // What the slots can do at best: the work and one batch (of one file) each.
            let bound = (480_000 + slots as u64 * cost.ms(1)) / slots as u64;
            if longest_ms > bound {
                assert_eq!(of_longest.tests.len(), 1, "longer than a share: alone");
                assert_eq!(*last, longest_ms + cost.ms(1), "{ends:?}");
                // The other slots balance within 3 %.
                let others: Vec<u64> = ends.iter().copied().filter(|&e| e != *last).collect();
                let (lo, hi) = (others.iter().min().unwrap(), others.iter().max().unwrap());
                assert!(*hi as f64 <= *lo as f64 * 1.03, "{ends:?}");
            } else {
                // The slot of the longest test gets little else: the longest test is most of
                // its first batch.
                assert!(
                    of_longest.estimate_ms <= 2 * longest_ms,
                    "{}",
                    of_longest.estimate_ms
                );
                // The slots end within 1 % of each other, and within 5 % of the bound (the
                // plan pays a few more batches for room to even out errors).
                assert!(*last as f64 <= *first as f64 * 1.01, "{ends:?}");
                assert!(
                    *last as f64 <= bound as f64 * 1.05,
                    "{ends:?} against {bound}"
                );
            }
        }
    }

    #[test]
    fn after_each_slots_first_batch_a_measured_plan_hands_out_the_longest_first() {
        // However the slots' ends stray from the estimates, a queue handing the batches out in
        // this order leaves only small ones for the end.
        let cost = BatchCost {
            start_ms: 100,
            per_file_ms: 50,
        };
        for (slots, longest_ms) in [(4, 30_000), (8, 40_000), (3, 2_000)] {
            let tests = heavy_tailed(200, 480_000, longest_ms);
            let batches = plan_batches(tests.clone(), None, slots, cost);
            assert!(batches.len() > 2 * slots, "{}", batches.len());
            if longest_ms >= 30_000 {
                assert_eq!(batches[0].tests[0].id, "t000", "the longest test first");
            }
            let file = |k: &TestKey| {
                let test = tests.iter().find(|t| &t.test.key == k).unwrap();
                test.test.file.clone()
            };
            let planned: Vec<u64> = batches
                .iter()
                .map(|b| {
                    let files: BTreeSet<Option<String>> = b.tests.iter().map(file).collect();
                    b.estimate_ms + cost.ms(files.len())
                })
                .collect();
            let rest = &planned[slots..];
            assert!(
                rest.windows(2).all(|w| w[0] >= w[1]),
                "{slots} slots: {planned:?}"
            );
        }
    }

    #[test]
    fn the_cost_of_a_batch_sets_how_many_batches_a_measured_suite_gets() {
        let tests = heavy_tailed(200, 480_000, 30_000);
        let count = |start_ms, per_file_ms| {
            plan_batches(
                tests.clone(),
                None,
                4,
                BatchCost {
                    start_ms,
                    per_file_ms,
                },
            )
            .len()
        };
        let (free, cheap, costly) = (count(0, 0), count(500, 50), count(20_000, 0));
        assert!(free > 4 && free >= cheap, "{free} {cheap}");
        assert!(cheap > costly, "{cheap} {costly}");
        assert_eq!(
            costly, 8,
            "the fewest batches, two a slot, when a start is a sixth of a slot's share"
        );
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
                file: None,
            })
            .collect();
        let estimated = estimate_tests(plan.clone(), |key| history.get(key).copied());
        assert_eq!(estimated[3].estimate, Estimate::Guessed(300));
        let batches = plan_batches(estimated, Some(1), 4, FREE);
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
        let batches = plan_batches(tests, Some(1_000), 2, FREE);
        assert_eq!(ids(&batches), [vec!["big"], vec!["x", "y", "z"]]);
        assert_eq!(batches[1].estimate_ms, 3_000);
    }

    #[test]
    fn the_default_target_follows_the_total_and_the_slots() {
        assert_eq!(default_target_ms(3_200_000, 8, 0), 100_000);
        assert_eq!(default_target_ms(100_000_000, 8, 0), DEFAULT_TARGET_MAX_MS);
        assert_eq!(default_target_ms(60_000, 4, 0), DEFAULT_TARGET_MIN_MS);
        // A suite smaller than the minimum per slot: one batch per slot.
        assert_eq!(default_target_ms(8_000, 4, 0), 2_000);
        assert_eq!(default_target_ms(0, 0, 0), 1);
        // Costly batches are larger: ten times their cost, within the even share.
        assert_eq!(default_target_ms(600_000, 4, 2_000), 37_500);
        assert_eq!(default_target_ms(600_000, 4, 5_000), 50_000);
        assert_eq!(default_target_ms(600_000, 4, 50_000), 150_000);
    }

    #[test]
    fn an_empty_suite_has_no_batches() {
        assert!(plan_batches(Vec::new(), None, 3, FREE).is_empty());
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
                &plan_batches(tests.clone(), target, slots, FREE),
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
                &run(plan_batches(suite(&Estimate::Measured), None, slots, FREE)),
                slots,
            );
            let guessed = plan_batches(
                suite(&|_| Estimate::Guessed(DEFAULT_ESTIMATE_MS)),
                None,
                slots,
                FREE,
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
        let measured = target.is_none() && tests.iter().all(|t| !t.estimate.is_guess());
        if measured {
            // Planned over the slots: the longest unit first, and longest first within each
            // batch (these tests name no files).
            let longest = order.iter().map(|(_, (ms, _))| *ms).max().unwrap_or(0);
            assert!(batches.is_empty() || unit_of(&batches[0].tests[0]).1.0 == longest);
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
                measured || batch.estimate_ms <= share || units_in.len() == 1,
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
