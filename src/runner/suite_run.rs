//! The runner's decisions for test suites, as a pure state machine: which batches to submit
//! (planned from estimates once the cluster's slots are known), what each batch's report means
//! for each test, which tests go back to the queue (those a crashed batch or a lost worker never
//! finished), which are retried alone (a failure, up to the suite's `retries`), and when the
//! suites are done.
//!
//! It does no I/O: `runner::machine` feeds it the broker's messages and the reports the shell
//! fetched, and submits the batches it returns. Each test's result comes from the framework's
//! report ([`Listing::parse_report`]), never from the batch's exit code.

use std::collections::BTreeMap;

use crate::history::timings::Timings;
use crate::layer::Digest;
use crate::proto::{Isolation, JobIndex, JobSpec, Submission};
use crate::runner::manifest::{DEFAULT_TIMEOUT, SuiteDef};
use crate::suite::TestKey;
use crate::suite::plan::{PlanTest, estimate_tests, plan_batches};
use crate::suite::{
    ATTEMPT_ENV, Listing, REPORT_ENV, Split, TestCase, TestRecord, TestResult, TestStatus,
};

/// The file, relative to a batch's directory, its framework writes its report to; the batch's
/// one output.
pub const REPORT_FILE: &str = "cluster-report.out";

/// How often a test that its batch never finished (a crash, a lost worker) goes back to the
/// queue before it counts as an error: a test that kills its batch every time must end.
pub const MAX_REQUEUES: u32 = 3;

/// A listed suite, ready to run: its definition, its listing and the digests of the layers
/// every batch gets (the suite's own, then the files its framework ships).
#[derive(Debug, Clone)]
pub struct ListedSuite {
    /// The manifest's entry.
    pub def: SuiteDef,
    /// Its tests and what a batch runs.
    pub listing: Listing,
    /// The layers of every batch, in order.
    pub layers: Vec<Digest>,
}

/// A batch on its way through the cluster.
#[derive(Debug, Clone)]
struct InFlight {
    suite: usize,
    tests: Vec<TestCase>,
    name: String,
    /// The worker it ran on, once the broker said.
    worker: Option<String>,
}

/// Every suite of a run and what is known of each test.
#[derive(Debug)]
pub struct SuiteRun {
    suites: Vec<ListedSuite>,
    timings: Timings,
    /// Each suite's records, in listing order.
    records: Vec<Vec<TestRecord>>,
    /// Where a test's record is: its suite and position.
    position: BTreeMap<TestKey, (usize, usize)>,
    in_flight: BTreeMap<JobIndex, InFlight>,
    requeues: BTreeMap<TestKey, u32>,
    next_index: u64,
    batches_made: u64,
    planned: bool,
    stopped: bool,
}

impl SuiteRun {
    /// The suites of a run whose batches are numbered from `first_index` (after the
    /// manifest's jobs), estimated from `timings`.
    pub fn new(suites: Vec<ListedSuite>, timings: Timings, first_index: u64) -> Self {
        let mut position = BTreeMap::new();
        let records = suites
            .iter()
            .enumerate()
            .map(|(s, suite)| {
                let name = &suite.def.suite.name;
                suite
                    .listing
                    .tests
                    .iter()
                    .enumerate()
                    .map(|(t, case)| {
                        position.insert(TestKey::new(name, &case.id), (s, t));
                        TestRecord {
                            suite: name.clone(),
                            case: case.clone(),
                            attempts: Vec::new(),
                        }
                    })
                    .collect()
            })
            .collect();
        Self {
            suites,
            timings,
            records,
            position,
            in_flight: BTreeMap::new(),
            requeues: BTreeMap::new(),
            next_index: first_index,
            batches_made: 0,
            planned: false,
            stopped: false,
        }
    }

    /// Whether the run has no suites.
    pub fn is_empty(&self) -> bool {
        self.suites.is_empty()
    }

    /// Whether a batch has been planned yet.
    pub fn is_planned(&self) -> bool {
        self.planned || self.suites.is_empty()
    }

    /// Whether no batch will be submitted any more: planned (or stopped), none in flight.
    pub fn is_done(&self) -> bool {
        (self.is_planned() || self.stopped) && self.in_flight.is_empty()
    }

    /// Batches submitted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether job `index` is a batch of this run.
    pub fn owns(&self, index: JobIndex) -> bool {
        self.in_flight.contains_key(&index)
    }

    /// The name of batch `index`, for progress.
    pub fn name(&self, index: JobIndex) -> Option<&str> {
        self.in_flight.get(&index).map(|b| b.name.as_str())
    }

    /// The first batches, for a cluster of `slots` slots (once): each suite packed from its
    /// estimates, the suites' batches merged so that guessed and longer batches go first while
    /// each suite keeps its plan's order. The broker runs batches without an estimate in
    /// submission order, so this order is the dispatch order.
    pub fn plan(&mut self, slots: usize) -> Vec<Submission> {
        if self.planned || self.stopped {
            return Vec::new();
        }
        self.planned = true;
        let mut plans: Vec<std::collections::VecDeque<(bool, u64, Vec<TestCase>)>> = Vec::new();
        for suite in &self.suites {
            let name = &suite.def.suite.name;
            let tests: Vec<PlanTest> = suite
                .listing
                .tests
                .iter()
                .map(|case| PlanTest {
                    key: TestKey::new(name, &case.id),
                    group: match suite.def.split {
                        Split::File => Some(case.file.clone().unwrap_or(case.group.clone())),
                        Split::Test => None,
                    },
                })
                .collect();
            let target = suite.def.batch.map(|d| d.as_millis() as u64);
            let batches = plan_batches(
                estimate_tests(tests, |key| self.timings.estimate_ms(key)),
                target,
                slots,
            );
            plans.push(
                batches
                    .into_iter()
                    .map(|b| {
                        let cases = b.tests.iter().filter_map(|k| self.case(k)).collect();
                        (b.guessed, b.estimate_ms, cases)
                    })
                    .collect(),
            );
        }
        let mut out = Vec::new();
        while let Some(next) = (0..plans.len())
            .filter(|&s| !plans[s].is_empty())
            .max_by_key(|&s| plans[s].front().map(|(g, ms, _)| (*g, *ms)))
        {
            if let Some((_, _, tests)) = plans[next].pop_front() {
                out.push(self.batch(next, tests, 1));
            }
        }
        out
    }

    /// No new batch from now on (the run is cancelled or gave up); those in flight still end.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Batch `index` ended on `worker` (before its report is fetched): its tests' results
    /// will name it, and their retries go to another worker where there is one.
    pub fn ended_on(&mut self, index: JobIndex, worker: &str) {
        if let Some(batch) = self.in_flight.get_mut(&index)
            && !worker.is_empty()
        {
            batch.worker = Some(worker.to_string());
        }
    }

    /// Batch `index` ended and its report (if it wrote one) was fetched: each test's result is
    /// recorded, and the batches to submit next are returned: the tests it never finished go
    /// back to the queue together (at most [`MAX_REQUEUES`] times), and each failed test is
    /// retried alone while it has retries left.
    pub fn finished(&mut self, index: JobIndex, report: Option<&[u8]>) -> Vec<Submission> {
        let Some(batch) = self.in_flight.remove(&index) else {
            return Vec::new();
        };
        let results = self.suites[batch.suite]
            .listing
            .parse_report(report, &batch.tests);
        self.record(batch, results)
    }

    /// Batch `index` ended with a report that was not read (`reason`: too large, not a
    /// file): each of its tests is an error saying so, retried like one.
    pub fn unreadable(&mut self, index: JobIndex, reason: &str) -> Vec<Submission> {
        let Some(batch) = self.in_flight.remove(&index) else {
            return Vec::new();
        };
        let results = batch
            .tests
            .iter()
            .map(|case| TestResult::without_report(case.clone(), TestStatus::Error, reason))
            .collect();
        self.record(batch, results)
    }

    /// Records the `results` of `batch` and returns what to submit next (see
    /// [`SuiteRun::finished`]).
    fn record(&mut self, batch: InFlight, results: Vec<TestResult>) -> Vec<Submission> {
        let suite = batch.suite;
        let retries = self.suites[suite].def.retries;
        let name = self.suites[suite].def.suite.name.clone();
        let mut requeue = Vec::new();
        let mut retry = Vec::new();
        for mut result in results {
            result.worker.clone_from(&batch.worker);
            let key = TestKey::new(&name, &result.case.id);
            let Some(&(s, t)) = self.position.get(&key) else {
                continue;
            };
            let status = result.status;
            let case = result.case.clone();
            let record = &mut self.records[s][t];
            record.attempts.push(result);
            let ran = ran(record);
            match status {
                TestStatus::NotRun => {
                    let count = self.requeues.entry(key).or_default();
                    *count += 1;
                    if *count <= MAX_REQUEUES {
                        requeue.push(case);
                    }
                }
                TestStatus::Failed | TestStatus::Error if ran <= retries as usize => {
                    retry.push((case, ran as u32 + 1));
                }
                _ => {}
            }
        }
        if self.stopped {
            return Vec::new();
        }
        let mut out = Vec::new();
        if !requeue.is_empty() {
            let attempt = requeue
                .iter()
                .map(|c| self.ran_of(&name, c) as u32 + 1)
                .max()
                .unwrap_or(1);
            out.push(self.batch(suite, requeue, attempt));
        }
        for (case, attempt) in retry {
            out.push(self.batch(suite, vec![case], attempt));
        }
        out
    }

    /// Every test's record: suites in manifest order, tests in listing order.
    pub fn records(&self) -> Vec<TestRecord> {
        self.records.iter().flatten().cloned().collect()
    }

    /// The listed case of `key`.
    fn case(&self, key: &TestKey) -> Option<TestCase> {
        let &(s, t) = self.position.get(key)?;
        Some(self.records[s][t].case.clone())
    }

    /// Attempts of a test that ran to an end.
    fn ran_of(&self, suite: &str, case: &TestCase) -> usize {
        self.position
            .get(&TestKey::new(suite, &case.id))
            .map_or(0, |&(s, t)| ran(&self.records[s][t]))
    }

    /// The workers earlier attempts of `tests` ran on (those that ran to an end and those a
    /// batch stopped on), each once.
    fn earlier_workers(&self, suite: usize, tests: &[TestCase]) -> Vec<String> {
        let name = &self.suites[suite].def.suite.name;
        let mut workers: Vec<String> = tests
            .iter()
            .filter_map(|case| self.position.get(&TestKey::new(name, &case.id)))
            .flat_map(|&(s, t)| self.records[s][t].attempts.iter())
            .filter_map(|a| a.worker.clone())
            .collect();
        workers.sort();
        workers.dedup();
        workers
    }

    /// A batch of `tests` of suite `suite` at `attempt`, as submitted: away from the workers
    /// earlier attempts of its tests ran on, where there is another.
    fn batch(&mut self, suite: usize, tests: Vec<TestCase>, attempt: u32) -> Submission {
        let avoid_workers = self.earlier_workers(suite, &tests);
        let index = JobIndex(self.next_index);
        self.next_index += 1;
        self.batches_made += 1;
        let listed = &self.suites[suite];
        let name = match tests.as_slice() {
            [one] => format!("{} {}", listed.def.suite.name, one.id),
            _ => format!(
                "{} batch {} ({} tests)",
                listed.def.suite.name,
                self.batches_made,
                tests.len()
            ),
        };
        let env = BTreeMap::from([
            (REPORT_ENV.to_string(), REPORT_FILE.to_string()),
            (ATTEMPT_ENV.to_string(), attempt.to_string()),
        ]);
        let spec = JobSpec {
            name: name.clone(),
            run: listed.listing.batch_command(&tests),
            env,
            layers: listed.layers.clone(),
            timeout_ms: DEFAULT_TIMEOUT.as_millis() as u64,
            // A lost worker's batch comes back here as not run; failures are retried per test.
            retries: 0,
            outputs: vec![REPORT_FILE.to_string()],
            // No estimate: the broker keeps submission order, which is the plan's.
            estimate_ms: None,
            isolation: Isolation::default(),
            secret_env: Default::default(),
            inherits: false,
            avoid_workers,
        };
        let batch = InFlight {
            suite,
            tests,
            name,
            worker: None,
        };
        self.in_flight.insert(index, batch);
        Submission { index, spec }
    }
}

/// Attempts of a record that ran to an end.
fn ran(record: &TestRecord) -> usize {
    record
        .attempts
        .iter()
        .filter(|a| a.status != TestStatus::NotRun)
        .count()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::suite::{Framework, Suite};

    /// A `command` suite `name` of tests `ids`.
    pub(crate) fn listed(name: &str, ids: &[&str], retries: u32) -> ListedSuite {
        let suite = Suite {
            name: name.into(),
            framework: Framework::Command {
                list: "true".into(),
                run: "true".into(),
            },
            args: Vec::new(),
        };
        let tests = ids
            .iter()
            .map(|id| TestCase {
                id: (*id).into(),
                group: name.into(),
                name: (*id).into(),
                file: None,
            })
            .collect();
        ListedSuite {
            def: SuiteDef {
                suite: suite.clone(),
                layers: Vec::new(),
                batch: None,
                retries,
                split: Split::Test,
            },
            listing: Listing::new(&suite, tests),
            layers: Vec::new(),
        }
    }

    /// A JUnit report: each `(id, outcome)` with outcome `pass` or `fail`.
    pub(crate) fn junit(cases: &[(&str, &str)]) -> Vec<u8> {
        let mut xml = String::from("<testsuites><testsuite name=\"s\">");
        for (id, outcome) in cases {
            xml.push_str(&format!("<testcase name=\"{id}\" time=\"0.5\">"));
            if *outcome == "fail" {
                xml.push_str("<failure message=\"boom\"/>");
            }
            xml.push_str("</testcase>");
        }
        xml.push_str("</testsuite></testsuites>");
        xml.into_bytes()
    }

    fn ids(sub: &Submission, run: &SuiteRun) -> Vec<String> {
        run.in_flight[&sub.index]
            .tests
            .iter()
            .map(|t| t.id.clone())
            .collect()
    }

    fn status_of(run: &SuiteRun, id: &str) -> crate::suite::FinalStatus {
        let records = run.records();
        records
            .iter()
            .find(|r| r.case.id == id)
            .map(TestRecord::status)
            .expect("a record")
    }

    #[test]
    fn every_test_is_in_exactly_one_first_batch_numbered_after_the_jobs() {
        let mut run = SuiteRun::new(
            vec![
                listed("a", &["1", "2", "3"], 0),
                listed("b", &["4", "5"], 0),
            ],
            Timings::default(),
            7,
        );
        assert!(!run.is_done(), "not planned yet");
        let subs = run.plan(2);
        let mut all: Vec<String> = subs.iter().flat_map(|s| ids(s, &run)).collect();
        all.sort();
        assert_eq!(all, ["1", "2", "3", "4", "5"]);
        assert!(subs.iter().all(|s| s.index.0 >= 7));
        assert!(subs.iter().all(|s| s.spec.estimate_ms.is_none()));
        assert!(run.plan(2).is_empty(), "planned once");
    }

    #[test]
    fn a_batch_writes_its_report_to_its_one_output() {
        let mut run = SuiteRun::new(vec![listed("a", &["1"], 0)], Timings::default(), 0);
        let sub = &run.plan(1)[0];
        assert_eq!(sub.spec.env[REPORT_ENV], REPORT_FILE);
        assert_eq!(sub.spec.env[ATTEMPT_ENV], "1");
        assert_eq!(sub.spec.outputs, [REPORT_FILE]);
    }

    #[test]
    fn results_come_from_the_report_and_the_suite_is_done_after_the_last_batch() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 0)], Timings::default(), 0);
        let subs = run.plan(1);
        assert_eq!(subs.len(), 1);
        let next = run.finished(subs[0].index, Some(&junit(&[("1", "pass"), ("2", "fail")])));
        assert!(next.is_empty(), "no retries");
        assert!(run.is_done());
        assert_eq!(status_of(&run, "1").name(), "passed");
        assert_eq!(status_of(&run, "2").name(), "failed");
    }

    #[test]
    fn tests_a_batch_never_finished_are_queued_again_at_the_same_attempt() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 0)], Timings::default(), 0);
        let first = run.plan(1)[0].index;
        let next = run.finished(first, None);
        assert_eq!(next.len(), 1);
        assert_eq!(ids(&next[0], &run), ["1", "2"]);
        assert_eq!(next[0].spec.env[ATTEMPT_ENV], "1");
        assert!(!run.is_done());
    }

    #[test]
    fn a_report_that_was_not_read_makes_its_tests_errors_saying_why() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 0)], Timings::default(), 0);
        let first = run.plan(1)[0].index;
        assert!(
            run.unreadable(first, "over 16 MiB").is_empty(),
            "not requeued"
        );
        assert!(run.is_done());
        for record in run.records() {
            let attempt = &record.attempts[0];
            assert_eq!(attempt.status, TestStatus::Error);
            assert_eq!(attempt.message.as_deref(), Some("over 16 MiB"));
        }
    }

    #[test]
    fn a_test_that_never_finishes_ends_as_an_error_after_the_requeues() {
        let mut run = SuiteRun::new(vec![listed("a", &["1"], 0)], Timings::default(), 0);
        let mut index = run.plan(1)[0].index;
        for _ in 0..MAX_REQUEUES {
            let next = run.finished(index, None);
            assert_eq!(next.len(), 1);
            index = next[0].index;
        }
        assert!(run.finished(index, None).is_empty());
        assert!(run.is_done());
        assert_eq!(status_of(&run, "1").name(), "error");
    }

    #[test]
    fn a_failed_test_is_retried_alone_and_is_flaky_when_it_then_passes() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 2)], Timings::default(), 0);
        let first = run.plan(1)[0].index;
        let next = run.finished(first, Some(&junit(&[("1", "pass"), ("2", "fail")])));
        assert_eq!(next.len(), 1);
        assert_eq!(ids(&next[0], &run), ["2"]);
        assert_eq!(next[0].spec.env[ATTEMPT_ENV], "2");
        assert!(
            run.finished(next[0].index, Some(&junit(&[("2", "pass")])))
                .is_empty()
        );
        assert!(run.is_done());
        assert_eq!(status_of(&run, "2").name(), "flaky");
    }

    #[test]
    fn a_retry_avoids_every_worker_its_test_ran_on_and_results_name_them() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 2)], Timings::default(), 0);
        let planned = run.plan(1);
        assert!(
            planned[0].spec.avoid_workers.is_empty(),
            "a first attempt goes anywhere"
        );
        let first = planned[0].index;
        run.ended_on(first, "w1");
        let next = run.finished(first, Some(&junit(&[("1", "pass"), ("2", "fail")])));
        assert_eq!(next[0].spec.avoid_workers, ["w1"]);
        run.ended_on(next[0].index, "w2");
        let last = run.finished(next[0].index, Some(&junit(&[("2", "fail")])));
        assert_eq!(last[0].spec.avoid_workers, ["w1", "w2"]);
        run.ended_on(last[0].index, "w1");
        assert!(
            run.finished(last[0].index, Some(&junit(&[("2", "pass")])))
                .is_empty()
        );
        let entries: Vec<_> = run.records().iter().map(TestRecord::entry).collect();
        assert_eq!(entries[0].workers, ["w1"]);
        assert_eq!(entries[1].workers, ["w1", "w2", "w1"]);
    }

    #[test]
    fn a_failing_test_gets_its_retries_and_no_more() {
        let mut run = SuiteRun::new(vec![listed("a", &["1"], 2)], Timings::default(), 0);
        let mut index = run.plan(1)[0].index;
        let mut attempts = 1;
        loop {
            let next = run.finished(index, Some(&junit(&[("1", "fail")])));
            let Some(sub) = next.first() else { break };
            attempts += 1;
            index = sub.index;
        }
        assert_eq!(attempts, 3, "1 + retries");
        assert_eq!(status_of(&run, "1").name(), "failed");
    }

    #[test]
    fn a_stopped_run_submits_nothing_more() {
        let mut run = SuiteRun::new(vec![listed("a", &["1"], 2)], Timings::default(), 0);
        let first = run.plan(1)[0].index;
        run.stop();
        assert!(run.finished(first, None).is_empty());
        assert!(run.is_done());
        assert_eq!(status_of(&run, "1").name(), "error");
    }

    #[test]
    fn measured_long_tests_are_planned_first() {
        let mut timings = Timings::default();
        let key = |id: &str| TestKey::new("a", id);
        let outcome = |ms| crate::history::results::TestOutcome {
            status: crate::history::results::TestStatus::Passed,
            duration_ms: Some(ms),
            attempt: 1,
        };
        let (o1, o2, o3) = (outcome(100), outcome(60_000), outcome(30_000));
        let (k1, k2, k3) = (key("1"), key("2"), key("3"));
        timings.record_run(None, [(&k1, &o1), (&k2, &o2), (&k3, &o3)]);
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2", "3"], 0)], timings, 0);
        let subs = run.plan(3);
        let first: Vec<String> = subs.iter().map(|s| ids(s, &run)[0].clone()).collect();
        assert_eq!(first, ["2", "3", "1"]);
    }
}
