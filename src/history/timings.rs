//! `ca-timings`: how long each test took in its last passing runs, the history that estimates
//! come from. Uploaded as an artifact at the end of a run and read back at the start of the next
//! one, or kept in a file (`--timings`, `--write-timings`) for local use. Only passing runs
//! count (a timeout or a crash says nothing about how long the test takes) and only the newest
//! [`SAMPLES_KEPT`] durations are kept, so a test that got faster is believed soon. A test
//! that no run has listed for [`FORGOTTEN_AFTER_RUNS`] runs (deleted, renamed) is dropped, so
//! the history stays the size of the suite rather than of every test it ever had.
//!
//! Each test also keeps its [`Record`]: how it ended in each of the history's newest
//! [`RECORD_RUNS`] runs, every run counting (those that did not list it too, as absent), so a
//! flake rate and the last run it was flaky in can be told; the runs themselves are kept
//! beside ([`Timings::recent_runs`]). Version 2 added the record; version 1 files read as
//! tests without one.
//! the history stays the size of the suite rather than of every test it ever had. Per suite it
//! also keeps what its newest batches cost beyond their tests ([`BatchSample`]), the planner's
//! price of a batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::document::ArtifactDocument;
use super::quarantine::QuarantinePolicy;
use super::record::{RECORD_RUNS, Record, RunOutcome, RunRef};
use super::results::{TestOutcome, TestStatus};
use super::sizing::SizingHistory;
use crate::suite::TestKey;
use crate::suite::batch_cost::{BatchCost, BatchSample};

/// The format version this build writes (it reads every version from 1 on).
pub const TIMINGS_VERSION: u32 = 2;
/// How many passing durations are kept per test.
pub const SAMPLES_KEPT: usize = 3;
/// A test that this many runs in a row did not list is dropped from the history: a deleted or
/// renamed test is forgotten after a while (a 1,000,000-entry history of long-gone tests took
/// a runner 1.1 GB), while one left out of a few runs (a filtered or cancelled run, a re-run of
/// the failures) keeps its estimate.
pub const FORGOTTEN_AFTER_RUNS: u64 = 20;
/// How many batch samples are kept per suite (the newest).
pub const BATCH_SAMPLES_KEPT: usize = 64;
/// A duration above this (a week) is kept as this, so sums of estimates cannot overflow.
pub const LONGEST_DURATION_MS: u64 = 7 * 24 * 3_600_000;
/// The artifact's name prefix; [`timings_artifact_name`] adds the cluster and the workflow.
pub const TIMINGS_ARTIFACT: &str = "ca-timings";
/// The file inside the artifact's zip.
pub const TIMINGS_FILE: &str = "ca-timings.json";

/// The timings artifact of one cluster of one workflow: `ca-timings-<cluster>-<workflow file>`,
/// or `ca-timings-<cluster>` when the workflow is unknown (a local run). The name carries the
/// workflow because a repository's artifact listing (filtered by exact name) does not say which
/// workflow made an artifact, and the cluster because several can share a run.
pub fn timings_artifact_name(cluster: &str, workflow: Option<&str>) -> String {
    match workflow {
        Some(workflow) => format!("{TIMINGS_ARTIFACT}-{cluster}-{}", artifact_safe(workflow)),
        None => format!("{TIMINGS_ARTIFACT}-{cluster}"),
    }
}

/// `text` with the characters GitHub refuses in artifact names (`" : < > | * ? \ /` and line
/// breaks) replaced by `_`.
fn artifact_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | ':' | '<' | '>' | '|' | '*' | '?' | '\\' | '/' | '\r' | '\n' => '_',
            c => c,
        })
        .collect()
}

/// The timing history: per test, its newest passing durations in milliseconds, oldest first,
/// and the last run that listed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TimingsWire", into = "TimingsWire")]
pub struct Timings {
    /// The workflow run that recorded the newest durations (none for a local run).
    pub run_id: Option<u64>,
    /// How many runs this history has recorded: the clock of [`TestTimings::seen`].
    runs: u64,
    /// The newest runs (at most [`RECORD_RUNS`]), oldest first: the runs of each test's
    /// [`Record`].
    recent_runs: Vec<RunRef>,
    tests: BTreeMap<TestKey, TestTimings>,
    /// What runs' wall times taught the plan.
    pub sizing: SizingHistory,
    /// Per suite, what its newest batches cost beyond their tests, oldest first.
    batches: BTreeMap<String, Vec<BatchSample>>,
}

/// One test's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TestTimings {
    /// Its newest passing durations, oldest first.
    samples: Vec<u64>,
    /// The last run (counted in [`Timings::runs`]) that listed it.
    seen: u64,
    /// Its outcomes in the newest runs.
    record: Record,
    /// The run it was quarantined in, while it is.
    quarantined_since: Option<RunRef>,
}

/// The JSON shape: `{"version": 2, "run_id": 123, "runs": 7, "recent_runs": [{"run",
/// "run_id"}], "tests": [{"suite", "id", "durations_ms", "seen", "record",
/// "quarantined_since"}]}`, `record` one letter a recent run (`p` passed, `f` failed, `k`
/// flaky, `.` absent). A file without `runs` and `seen`, written before they were, reads as
/// every test seen in its newest run; one without `recent_runs` and `record` (version 1) as
/// tests with no record yet.
/// `"sizing"` is there once a run measured its wall time (see [`SizingHistory`]; absent, it
/// reads as empty).
/// `"batches": [{"suite", "samples": [{"files", "overhead_ms"}]}]`, what suites' batches cost
/// beyond their tests, is there once one was measured (absent, it reads as none measured).
#[derive(Serialize, Deserialize)]
struct TimingsWire {
    version: u32,
    #[serde(default)]
    run_id: Option<u64>,
    #[serde(default)]
    runs: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recent_runs: Vec<RunRef>,
    tests: Vec<TimingsEntry>,
    #[serde(default, skip_serializing_if = "SizingHistory::is_empty")]
    sizing: SizingHistory,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    batches: Vec<BatchesEntry>,
}

/// One suite's batch samples in the JSON.
#[derive(Serialize, Deserialize)]
struct BatchesEntry {
    suite: String,
    samples: Vec<BatchSample>,
}

/// One test's line in the JSON.
#[derive(Serialize, Deserialize)]
struct TimingsEntry {
    suite: String,
    id: String,
    durations_ms: Vec<u64>,
    #[serde(default)]
    seen: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    record: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quarantined_since: Option<RunRef>,
}

impl TryFrom<TimingsWire> for Timings {
    type Error = String;

    fn try_from(wire: TimingsWire) -> Result<Self, String> {
        check_version("ca-timings", wire.version, 1..=TIMINGS_VERSION)?;
        let mut recent_runs = wire.recent_runs;
        recent_runs.drain(..recent_runs.len().saturating_sub(RECORD_RUNS));
        let mut timings = Timings {
            run_id: wire.run_id,
            runs: wire.runs,
            recent_runs,
            tests: BTreeMap::new(),
            sizing: wire.sizing,
            batches: BTreeMap::new(),
        };
        for entry in wire.batches {
            timings.record_batches(&entry.suite, entry.samples);
        }
        for entry in wire.tests {
            let key = TestKey::new(entry.suite, entry.id);
            for ms in entry.durations_ms {
                timings.push(key.clone(), ms);
            }
            let test = timings.tests.entry(key).or_default();
            test.seen = entry.seen.unwrap_or(wire.runs).min(wire.runs);
            test.record = Record::from_letters(&entry.record);
            test.quarantined_since = entry.quarantined_since;
        }
        Ok(timings)
    }
}

impl From<Timings> for TimingsWire {
    fn from(timings: Timings) -> Self {
        TimingsWire {
            version: TIMINGS_VERSION,
            run_id: timings.run_id,
            runs: timings.runs,
            recent_runs: timings.recent_runs,
            tests: timings
                .tests
                .into_iter()
                .map(|(key, test)| TimingsEntry {
                    suite: key.suite,
                    id: key.id,
                    durations_ms: test.samples,
                    seen: Some(test.seen),
                    record: test.record.letters().to_owned(),
                    quarantined_since: test.quarantined_since,
                })
                .collect(),
            sizing: timings.sizing,
            batches: timings
                .batches
                .into_iter()
                .map(|(suite, samples)| BatchesEntry { suite, samples })
                .collect(),
        }
    }
}

/// A format version this build can read (one of `known`), or an error naming the versions.
pub(crate) fn check_version(
    what: &str,
    found: u32,
    known: std::ops::RangeInclusive<u32>,
) -> Result<(), String> {
    if known.contains(&found) {
        Ok(())
    } else {
        let (oldest, newest) = known.into_inner();
        let versions = match oldest == newest {
            true => format!("the version {newest}"),
            false => format!("versions {oldest} to {newest}"),
        };
        Err(format!(
            "{what} format version {found} is not {versions} this cluster-action reads"
        ))
    }
}

impl Timings {
    /// The newest passing durations of `key`, oldest first (empty when it never passed).
    pub fn samples(&self, key: &TestKey) -> &[u64] {
        self.tests
            .get(key)
            .map_or(&[], |test| test.samples.as_slice())
    }

    /// The estimate for `key`: the median of its kept durations (the mean of the middle two for
    /// an even count), or none without history.
    pub fn estimate_ms(&self, key: &TestKey) -> Option<u64> {
        let mut samples = self.samples(key).to_vec();
        samples.sort_unstable();
        let n = samples.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(samples[n / 2]),
            _ => Some(samples[n / 2 - 1].midpoint(samples[n / 2])),
        }
    }

    /// What a batch of `suite` costs beyond its tests, fitted to its kept batch samples; none
    /// before any was measured.
    pub fn batch_cost(&self, suite: &str) -> Option<BatchCost> {
        BatchCost::fit(self.batches.get(suite).map_or(&[], Vec::as_slice))
    }

    /// [`Timings::batch_cost`] as it will be once `samples` are recorded
    /// ([`Timings::record_batches`]), without recording them.
    pub fn batch_cost_with(&self, suite: &str, samples: &[BatchSample]) -> Option<BatchCost> {
        let mut all = self.batches.get(suite).cloned().unwrap_or_default();
        keep_samples(&mut all, samples.iter().copied());
        BatchCost::fit(&all)
    }

    /// Adds the batches one run measured of `suite`, keeping the newest
    /// [`BATCH_SAMPLES_KEPT`].
    pub fn record_batches(&mut self, suite: &str, samples: impl IntoIterator<Item = BatchSample>) {
        let kept = self.batches.entry(suite.to_owned()).or_default();
        keep_samples(kept, samples);
        if kept.is_empty() {
            self.batches.remove(suite);
        }
    }

    /// How many tests have history.
    pub fn len(&self) -> usize {
        self.tests.len()
    }

    /// Whether no test has history.
    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    /// Whether a run has listed `key` (a test the history has never seen is new).
    pub fn has_seen(&self, key: &TestKey) -> bool {
        self.tests.contains_key(key)
    }

    /// The record of `key`: its outcomes in the newest runs (empty when never seen).
    pub fn record(&self, key: &TestKey) -> Record {
        self.tests
            .get(key)
            .map(|test| test.record.clone())
            .unwrap_or_default()
    }

    /// The run `key` was last flaky in, within its record.
    pub fn last_flaky(&self, key: &TestKey) -> Option<RunRef> {
        let back = self.tests.get(key)?.record.last_flaky_back()?;
        let at = self.recent_runs.len().checked_sub(back + 1)?;
        self.recent_runs.get(at).copied()
    }

    /// The run whose record put `key` in quarantine, while it is there.
    pub fn quarantined_since(&self, key: &TestKey) -> Option<RunRef> {
        self.tests.get(key)?.quarantined_since
    }

    /// The tests of `suite` their record put in quarantine, with the run it did.
    pub fn quarantine_marks<'a>(
        &'a self,
        suite: &'a str,
    ) -> impl Iterator<Item = (TestKey, RunRef)> + 'a {
        self.tests
            .iter()
            .filter(move |(key, _)| key.suite == suite)
            .filter_map(|(key, test)| Some((key.clone(), test.quarantined_since?)))
    }

    /// After a run is recorded: each test of a suite whose policy (`policy_of` its suite) has
    /// `auto` enters quarantine in the newest run or leaves it, as its record says
    /// ([`QuarantinePolicy::enters`], [`QuarantinePolicy::releases`]).
    pub fn update_quarantine<'a>(
        &mut self,
        policy_of: impl Fn(&str) -> Option<&'a QuarantinePolicy>,
    ) {
        let Some(&newest) = self.recent_runs.last() else {
            return;
        };
        for (key, test) in &mut self.tests {
            let Some(policy) = policy_of(&key.suite).filter(|p| p.auto) else {
                continue;
            };
            test.quarantined_since = match test.quarantined_since {
                Some(_) if policy.releases(&test.record) => None,
                None if policy.enters(&test.record) => Some(newest),
                since => since,
            };
        }
    }

    /// The newest runs, oldest first: those the records' letters stand for.
    pub fn recent_runs(&self) -> &[RunRef] {
        &self.recent_runs
    }

    /// Adds one run's results (every test it listed): the duration of every test that passed
    /// (first time, not after a retry) becomes its newest sample; every other outcome leaves
    /// the samples as they were. Every test's record gets this run's outcome (absent for
    /// those not listed); a second attempt of the run recorded last (the same `run_id`, a
    /// re-run) adds to that run's outcomes instead. A test listed is seen in this run; one not
    /// seen in the last [`FORGOTTEN_AFTER_RUNS`] runs is dropped.
    pub fn record_run<'a>(
        &mut self,
        run_id: Option<u64>,
        outcomes: impl IntoIterator<Item = (&'a TestKey, &'a TestOutcome)>,
    ) {
        self.runs += 1;
        let same_run =
            run_id.is_some() && self.recent_runs.last().map(|r| r.run_id) == Some(run_id);
        if !same_run {
            self.recent_runs.push(RunRef {
                run: self.runs,
                run_id,
            });
            self.recent_runs
                .drain(..self.recent_runs.len().saturating_sub(RECORD_RUNS));
            for test in self.tests.values_mut() {
                test.record.push(RunOutcome::Absent);
            }
        }
        for (key, outcome) in outcomes {
            if let (TestStatus::Passed, Some(ms)) = (outcome.status, outcome.duration_ms) {
                self.push(key.clone(), ms);
            }
            let test = self.tests.entry(key.clone()).or_default();
            test.seen = self.runs;
            test.record.merge_newest(RunOutcome::of(outcome.status));
        }
        let runs = self.runs;
        self.tests
            .retain(|_, test| runs - test.seen < FORGOTTEN_AFTER_RUNS);
        // A suite none of whose tests is left is forgotten with its batches.
        let suites: std::collections::BTreeSet<&str> =
            self.tests.keys().map(|k| k.suite.as_str()).collect();
        self.batches
            .retain(|suite, _| suites.contains(suite.as_str()));
        self.run_id = run_id;
    }

    /// Appends a sample, dropping the oldest beyond [`SAMPLES_KEPT`].
    fn push(&mut self, key: TestKey, ms: u64) {
        let samples = &mut self.tests.entry(key).or_default().samples;
        samples.push(ms.min(LONGEST_DURATION_MS));
        if samples.len() > SAMPLES_KEPT {
            samples.drain(..samples.len() - SAMPLES_KEPT);
        }
    }
}

impl ArtifactDocument for Timings {
    const FILE: &'static str = TIMINGS_FILE;
}

/// Adds `samples` to `kept` (each overhead at most [`LONGEST_DURATION_MS`]), keeping the newest
/// [`BATCH_SAMPLES_KEPT`].
fn keep_samples(kept: &mut Vec<BatchSample>, samples: impl IntoIterator<Item = BatchSample>) {
    kept.extend(samples.into_iter().map(|s| BatchSample {
        overhead_ms: s.overhead_ms.min(LONGEST_DURATION_MS),
        ..s
    }));
    if kept.len() > BATCH_SAMPLES_KEPT {
        kept.drain(..kept.len() - BATCH_SAMPLES_KEPT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> TestKey {
        TestKey::new("s", id)
    }

    fn outcome(status: TestStatus, ms: u64) -> TestOutcome {
        TestOutcome {
            status,
            duration_ms: Some(ms),
            attempt: 1,
        }
    }

    #[test]
    fn only_passing_durations_count_and_the_newest_three_are_kept() {
        let mut timings = Timings::default();
        for (run, ms) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            timings.record_run(Some(run), [(&key("a"), &outcome(TestStatus::Passed, ms))]);
        }
        for status in [TestStatus::Failed, TestStatus::TimedOut, TestStatus::Flaky] {
            timings.record_run(Some(5), [(&key("a"), &outcome(status, 9_999))]);
        }
        assert_eq!(timings.samples(&key("a")), &[20, 30, 40]);
        assert_eq!(timings.estimate_ms(&key("a")), Some(30));
        assert_eq!(timings.run_id, Some(5));
        assert_eq!(timings.estimate_ms(&key("never")), None);
    }

    #[test]
    fn a_test_no_run_listed_for_a_while_is_forgotten() {
        let mut timings = Timings::default();
        let (gone, kept, failing) = (key("gone"), key("kept"), key("failing"));
        let passed = outcome(TestStatus::Passed, 5);
        let failed = outcome(TestStatus::Failed, 5);
        timings.record_run(
            None,
            [(&gone, &passed), (&kept, &passed), (&failing, &passed)],
        );
        for run in 1..FORGOTTEN_AFTER_RUNS {
            timings.record_run(None, [(&kept, &passed), (&failing, &failed)]);
            assert_eq!(timings.samples(&gone), &[5], "still kept after {run} runs");
        }
        // Written and read back, the history keeps when each test was seen.
        let mut timings = Timings::from_json(&timings.to_json()).unwrap();
        timings.record_run(None, [(&kept, &passed), (&failing, &failed)]);
        assert_eq!(
            timings.samples(&gone),
            &[] as &[u64],
            "unseen for the limit: dropped"
        );
        assert_eq!(timings.samples(&kept), &[5, 5, 5]);
        assert_eq!(
            timings.samples(&failing),
            &[5],
            "listed, though failing: kept"
        );
        assert_eq!(timings.len(), 2);
        // A file written before runs were counted: every test counts as seen in its newest run.
        let old = br#"{"version":1,"tests":[{"suite":"s","id":"a","durations_ms":[3]}]}"#;
        let mut old = Timings::from_json(old).unwrap();
        for _ in 1..FORGOTTEN_AFTER_RUNS {
            old.record_run(None, []);
        }
        assert_eq!(old.samples(&key("a")), &[3]);
        old.record_run(None, []);
        assert!(old.is_empty());
    }

    #[test]
    fn the_estimate_is_the_median() {
        let mut timings = Timings::default();
        for ms in [100, 10] {
            timings.record_run(None, [(&key("a"), &outcome(TestStatus::Passed, ms))]);
        }
        assert_eq!(timings.estimate_ms(&key("a")), Some(55));
        timings.record_run(None, [(&key("a"), &outcome(TestStatus::Passed, 5_000))]);
        assert_eq!(timings.estimate_ms(&key("a")), Some(100));
    }

    #[test]
    fn json_round_trips_and_names_a_wrong_version() {
        let mut timings = Timings::default();
        timings.record_run(Some(7), [(&key("a::b"), &outcome(TestStatus::Passed, 12))]);
        let back = Timings::from_json(&timings.to_json()).unwrap();
        assert_eq!(back, timings);
        let future = br#"{"version": 3, "tests": []}"#;
        let err = Timings::from_json(future).unwrap_err();
        assert!(
            err.contains("version 3") && err.contains("versions 1 to 2"),
            "{err}"
        );
        // Too many samples in a file are cut to the newest three on reading.
        let long = br#"{"version":1,"tests":[{"suite":"s","id":"a","durations_ms":[1,2,3,4]}]}"#;
        assert_eq!(
            Timings::from_json(long).unwrap().samples(&key("a")),
            &[2, 3, 4]
        );
        let huge = br#"{"version":1,"tests":[{"suite":"s","id":"a","durations_ms":[18446744073709551615]}]}"#;
        let huge = Timings::from_json(huge).unwrap();
        assert_eq!(huge.samples(&key("a")), &[LONGEST_DURATION_MS]);
        let zipped = timings.to_artifact_zip().unwrap();
        assert_eq!(Timings::from_artifact_zip(&zipped).unwrap(), timings);
    }

    #[test]
    fn every_run_adds_to_each_tests_record_and_a_rerun_to_its_runs() {
        let mut timings = Timings::default();
        let (a, b) = (key("a"), key("b"));
        let passed = outcome(TestStatus::Passed, 5);
        let flaky = outcome(TestStatus::Flaky, 5);
        let failed = outcome(TestStatus::Failed, 5);
        timings.record_run(Some(10), [(&a, &passed), (&b, &failed)]);
        timings.record_run(Some(11), [(&a, &flaky)]);
        timings.record_run(Some(12), [(&a, &failed), (&b, &passed)]);
        // A second attempt of run 12: a's failure passed now, so run 12 was flaky for it.
        timings.record_run(Some(12), [(&a, &passed)]);
        assert_eq!(timings.record(&a).letters(), "pkk");
        assert_eq!(timings.record(&b).letters(), "f.p");
        assert!(timings.has_seen(&b), "seen though it never passed before");
        assert!(!timings.has_seen(&key("new")));
        let runs: Vec<Option<u64>> = timings.recent_runs().iter().map(|r| r.run_id).collect();
        assert_eq!(runs, [Some(10), Some(11), Some(12)]);
        assert_eq!(timings.last_flaky(&a).and_then(|r| r.run_id), Some(12));
        assert_eq!(timings.last_flaky(&b), None);
        // Local runs have no id: each counts.
        timings.record_run(None, [(&a, &passed)]);
        timings.record_run(None, [(&a, &passed)]);
        assert_eq!(timings.record(&a).letters(), "pkkpp");
        assert_eq!(timings.last_flaky(&a).map(|r| r.run), Some(3));
        let back = Timings::from_json(&timings.to_json()).unwrap();
        assert_eq!(back, timings);
        for _ in 0..RECORD_RUNS {
            timings.record_run(None, [(&a, &passed)]);
        }
        assert_eq!(timings.record(&a).letters(), "p".repeat(RECORD_RUNS));
        assert_eq!(timings.recent_runs().len(), RECORD_RUNS);
    }

    #[test]
    fn a_version_1_file_reads_as_tests_without_a_record() {
        let old = br#"{"version":1,"runs":4,"tests":[{"suite":"s","id":"a","durations_ms":[3],"seen":4}]}"#;
        let mut old = Timings::from_json(old).unwrap();
        assert_eq!(old.record(&key("a")).runs_seen(), 0);
        assert!(old.has_seen(&key("a")));
        old.record_run(None, [(&key("a"), &outcome(TestStatus::Flaky, 3))]);
        assert_eq!(old.record(&key("a")).letters(), "k");
        assert_eq!(old.last_flaky(&key("a")).map(|r| r.run), Some(5));
    }

    #[test]
    fn fifty_thousand_tests_with_full_records_stay_a_few_megabytes() {
        let mut timings = Timings::default();
        let keys: Vec<TestKey> = (0..50_000)
            .map(|i| {
                TestKey::new(
                    "suite",
                    format!("tests/unit/test_module_{}.py::test_case_{i}", i / 50),
                )
            })
            .collect();
        for run in 0..RECORD_RUNS as u64 {
            let outcomes: Vec<(TestKey, TestOutcome)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let status = match (i as u64 + run) % 17 {
                        0 => TestStatus::Flaky,
                        1 => TestStatus::Failed,
                        _ => TestStatus::Passed,
                    };
                    (
                        k.clone(),
                        outcome(status, 1_000 + (i as u64 * 7 + run) % 9_000),
                    )
                })
                .collect();
            timings.record_run(
                Some(9_000_000_000 + run),
                outcomes.iter().map(|(k, o)| (k, o)),
            );
        }
        let json = timings.to_json();
        let zip = timings.to_artifact_zip().unwrap();
        // Measured: 7.8 MB of JSON, 0.8 MB as the zipped artifact.
        assert!(json.len() < 10 << 20, "the JSON takes {} bytes", json.len());
        assert!((json.len() as u64) < super::super::document::MAX_DOCUMENT_BYTES);
        assert!(
            zip.len() < 4 << 20,
            "the artifact takes {} bytes",
            zip.len()
        );
        assert_eq!(timings.record(&keys[0]).letters().len(), RECORD_RUNS);
    }

    #[test]
    fn batch_samples_are_kept_per_suite_newest_first_and_forgotten_with_the_suite() {
        let mut timings = Timings::default();
        let passed = outcome(TestStatus::Passed, 5);
        timings.record_run(None, [(&key("a"), &passed)]);
        assert_eq!(timings.batch_cost("s"), None);
        let sample = |files, overhead_ms| BatchSample { files, overhead_ms };
        // The cost with samples not yet recorded is the cost once they are.
        let first: Vec<_> = (0..70).map(|i| sample(1, 1_000 + i)).collect();
        let foreseen = timings.batch_cost_with("s", &first);
        timings.record_batches("s", first);
        assert_eq!(foreseen, timings.batch_cost("s"));
        timings.record_batches("other", [sample(2, 10)]);
        // The newest 64 of s: 1,006 to 1,069 ms, one file each.
        let cost = timings.batch_cost("s").unwrap();
        assert_eq!((cost.start_ms, cost.per_file_ms), (1_038, 0));
        let back = Timings::from_json(&timings.to_json()).unwrap();
        assert_eq!(back, timings);
        // A file written before batches were kept reads as none measured, and one without
        // batches writes none.
        let old = br#"{"version":1,"tests":[{"suite":"s","id":"a","durations_ms":[3]}]}"#;
        let old = Timings::from_json(old).unwrap();
        assert_eq!(old.batch_cost("s"), None);
        assert!(
            !String::from_utf8(old.to_json())
                .unwrap()
                .contains("batches")
        );
        // A suite with no test left in the history loses its batches at the next run.
        timings.record_run(None, [(&key("a"), &passed)]);
        assert_eq!(timings.batch_cost("other"), None);
        assert!(timings.batch_cost("s").is_some());
    }

    #[test]
    fn artifact_names_carry_the_workflow_safely() {
        assert_eq!(timings_artifact_name("default", None), "ca-timings-default");
        assert_eq!(
            timings_artifact_name("default", Some("ci.yml")),
            "ca-timings-default-ci.yml"
        );
        assert_eq!(
            timings_artifact_name("c", Some("a:b/c")),
            "ca-timings-c-a_b_c"
        );
    }
}
