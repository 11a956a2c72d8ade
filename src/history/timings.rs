//! `ca-timings`: how long each test took in its last passing runs, the history that estimates
//! come from. Uploaded as an artifact at the end of a run and read back at the start of the next
//! one, or kept in a file (`--timings`, `--write-timings`) for local use. Only passing runs
//! count (a timeout or a crash says nothing about how long the test takes) and only the newest
//! [`SAMPLES_KEPT`] durations are kept, so a test that got faster is believed soon. A test
//! that no run has listed for [`FORGOTTEN_AFTER_RUNS`] runs (deleted, renamed) is dropped, so
//! the history stays the size of the suite rather than of every test it ever had. Per suite it
//! also keeps what its newest batches cost beyond their tests ([`BatchSample`]), the planner's
//! price of a batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::document::ArtifactDocument;
use super::results::{TestOutcome, TestStatus};
use crate::suite::TestKey;
use crate::suite::batch_cost::{BatchCost, BatchSample};

/// The format version this build writes and reads.
pub const TIMINGS_VERSION: u32 = 1;
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
    tests: BTreeMap<TestKey, TestTimings>,
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
}

/// The JSON shape: `{"version": 1, "run_id": 123, "runs": 7, "tests": [{"suite", "id",
/// "durations_ms", "seen"}], "batches": [{"suite", "samples": [{"files", "overhead_ms"}]}]}`
/// (a file without `runs` and `seen`, written before they were, reads as every test seen in
/// its newest run; one without `batches` as no batch measured).
#[derive(Serialize, Deserialize)]
struct TimingsWire {
    version: u32,
    #[serde(default)]
    run_id: Option<u64>,
    #[serde(default)]
    runs: u64,
    tests: Vec<TimingsEntry>,
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
}

impl TryFrom<TimingsWire> for Timings {
    type Error = String;

    fn try_from(wire: TimingsWire) -> Result<Self, String> {
        check_version("ca-timings", wire.version, TIMINGS_VERSION)?;
        let mut timings = Timings {
            run_id: wire.run_id,
            runs: wire.runs,
            tests: BTreeMap::new(),
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
            if let Some(test) = timings.tests.get_mut(&key) {
                test.seen = entry.seen.unwrap_or(wire.runs).min(wire.runs);
            }
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
            tests: timings
                .tests
                .into_iter()
                .map(|(key, test)| TimingsEntry {
                    suite: key.suite,
                    id: key.id,
                    durations_ms: test.samples,
                    seen: Some(test.seen),
                })
                .collect(),
            batches: timings
                .batches
                .into_iter()
                .map(|(suite, samples)| BatchesEntry { suite, samples })
                .collect(),
        }
    }
}

/// A format version this build can read, or an error naming both versions.
pub(crate) fn check_version(what: &str, found: u32, known: u32) -> Result<(), String> {
    if found == known {
        Ok(())
    } else {
        Err(format!(
            "{what} format version {found} is not the version {known} this cluster-action reads"
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

    /// Adds the batches one run measured of `suite`, keeping the newest
    /// [`BATCH_SAMPLES_KEPT`].
    pub fn record_batches(&mut self, suite: &str, samples: impl IntoIterator<Item = BatchSample>) {
        let kept = self.batches.entry(suite.to_owned()).or_default();
        kept.extend(samples.into_iter().map(|s| BatchSample {
            overhead_ms: s.overhead_ms.min(LONGEST_DURATION_MS),
            ..s
        }));
        if kept.len() > BATCH_SAMPLES_KEPT {
            kept.drain(..kept.len() - BATCH_SAMPLES_KEPT);
        }
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

    /// Adds one run's results (every test it listed): the duration of every test that passed
    /// (first time, not after a retry) becomes its newest sample; every other outcome leaves
    /// the samples as they were. A test listed is seen in this run; one not seen in the last
    /// [`FORGOTTEN_AFTER_RUNS`] runs is dropped.
    pub fn record_run<'a>(
        &mut self,
        run_id: Option<u64>,
        outcomes: impl IntoIterator<Item = (&'a TestKey, &'a TestOutcome)>,
    ) {
        self.runs += 1;
        for (key, outcome) in outcomes {
            if let (TestStatus::Passed, Some(ms)) = (outcome.status, outcome.duration_ms) {
                self.push(key.clone(), ms);
            }
            if let Some(test) = self.tests.get_mut(key) {
                test.seen = self.runs;
            }
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
        let future = br#"{"version": 2, "tests": []}"#;
        let err = Timings::from_json(future).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
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
    fn batch_samples_are_kept_per_suite_newest_first_and_forgotten_with_the_suite() {
        let mut timings = Timings::default();
        let passed = outcome(TestStatus::Passed, 5);
        timings.record_run(None, [(&key("a"), &passed)]);
        assert_eq!(timings.batch_cost("s"), None);
        let sample = |files, overhead_ms| BatchSample { files, overhead_ms };
        timings.record_batches("s", (0..70).map(|i| sample(1, 1_000 + i)));
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
