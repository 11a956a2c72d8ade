//! The runner's decisions for test suites, as a pure state machine: which batches to submit
//! (planned from estimates once the cluster's slots are known), what each batch's report means
//! for each test, which tests go back to the queue (those a crashed batch or a lost worker never
//! finished), which are retried alone (a failure, up to the suite's `retries`; a new test
//! checked for flakiness, up to its `new-test-runs`: [`choose_new_tests`]), which suites
//! stop because their framework fails the same way everywhere ([`SuiteFailure`]; the tests
//! its framework did not report carry what their batch printed), and when the suites are done.
//! A batch a cancel ended keeps what its framework reported; its other tests were not
//! attempted. Every batch that ran all its tests to an end is measured: what it cost beyond
//! them ([`BatchSample`]), which the timing history keeps for the next plan.
//!
//! It does no I/O: `runner::machine` feeds it the broker's messages and the reports the shell
//! fetched, and submits the batches it returns. Each test's result comes from the framework's
//! report ([`Listing::parse_report`]), never from the batch's exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::duration::{format_duration, millis};
use crate::history::timings::Timings;
use crate::layer::Digest;
use crate::notice::Notice;
use crate::proto::{JobIndex, JobOutcome, JobSpec, JobStatus, SecretEnv, Submission};
use crate::runner::manifest::SuiteDef;
use crate::runner::report::{last_lines, without_escapes};
use crate::suite::TestKey;
use crate::suite::batch_cost::{BatchCost, BatchSample};
use crate::suite::new_tests::{NewTestChecks, choose_new_tests};
use crate::suite::plan::{PlanTest, estimate_tests, plan_batches};
use crate::suite::{
    ATTEMPT_ENV, FinalStatus, Listing, REPORT_ENV, TestCase, TestRecord, TestResult, TestStatus,
};
use crate::worker::output::mask;

/// The file, relative to a batch's directory, its framework writes its report to; the batch's
/// one output.
pub const REPORT_FILE: &str = "cluster-report.out";

/// The longest a batch of tests without full timing history runs (plus one per-test timeout)
/// however many tests it holds: the sum of their timeouts would let one hanging test hold a
/// slot for hours where no watchdog names it (nextest, go, `command`). A healthy batch stopped
/// there loses nothing it finished: the rest go back to the queue, uncounted.
pub const UNMEASURED_BATCH_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// How often a test that its batch never finished (a crash, a lost worker) goes back to the
/// queue before it counts as an error: a test that kills its batch every time must end.
pub const MAX_REQUEUES: u32 = 3;

/// Lines of a batch's output a test's message and the log quote: the end of a log is where
/// a framework says why it stopped.
pub(super) const QUOTED_LINES: usize = 10;

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

/// How one attempt of a test ended, for progress: every test of a finished batch but those
/// going back to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestEnded {
    /// Its suite.
    pub suite: String,
    /// Its id in the suite.
    pub id: String,
    /// This attempt among those that ran it to an end (1 for the first); 0 when none did.
    pub attempt: u32,
    /// How this attempt ended.
    pub status: TestStatus,
    /// The framework's message, when it gave one.
    pub message: Option<String>,
    /// How the test ended over all its attempts when this was its last; `None`: it is retried.
    pub outcome: Option<FinalStatus>,
}

/// A test a running batch's framework reported, for progress (the batch's final report
/// decides its result: a teardown may still fail it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFinished {
    /// Its suite.
    pub suite: String,
    /// Its id in the suite.
    pub id: String,
    /// How it ended, as reported so far.
    pub status: TestStatus,
    /// Its run time as the framework measured it.
    pub duration_ms: u64,
}

/// The most of a running batch's report the runner keeps and reads for progress: reading it
/// whole at each of its worker's messages (once a second) costs at most this much a batch.
pub const LIVE_REPORT_LIMIT: usize = 4 << 20;

/// What a running batch's report has shown so far ([`SuiteRun::progress`]).
#[derive(Debug, Clone, Default)]
struct Live {
    /// The attempt the lines come from.
    attempt: u32,
    /// The report's lines so far.
    text: String,
    /// The tests already shown.
    shown: BTreeSet<String>,
    /// Whether the report outgrew [`LIVE_REPORT_LIMIT`]: no more of it is read.
    full: bool,
}

/// A batch on its way through the cluster.
#[derive(Debug, Clone)]
struct InFlight {
    suite: usize,
    tests: Vec<TestCase>,
    name: String,
    /// What its report has shown while it runs.
    live: Live,
    /// The worker it ran on, once the broker said.
    worker: Option<String>,
    /// How its process ended by itself, once the broker said (not when it was killed, lost
    /// or never started).
    exit: Option<Exit>,
    /// How long its job took, when its process ended by itself.
    wall_ms: Option<u64>,
    /// Whether a cancel ended it (its tests not reported by then were not attempted).
    cancelled: bool,
    /// Its time limit, and whether it was stopped there.
    timeout_ms: u64,
    timed_out: bool,
}

/// How a batch's process ended by itself: its exit code and the end of what it printed.
#[derive(Debug, Clone)]
struct Exit {
    code: i32,
    tail: String,
}

/// A batch that ended by itself without its framework reporting any of its tests.
#[derive(Debug, Clone)]
struct Silent {
    worker: String,
    code: i32,
}

/// A suite whose batches fail the same way on different workers: no batch of it is
/// submitted any more, and its tests that did not run end as errors saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteFailure {
    /// The suite.
    pub suite: String,
    /// How its batches failed, as a sentence.
    pub reason: String,
    /// The end of what its framework printed.
    pub output: String,
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
    /// Tests that finished in batches that ended, which their batch's progress had not shown,
    /// since [`SuiteRun::take_finished`] last took them.
    finished: Vec<TestFinished>,
    /// Attempts ended since [`SuiteRun::take_ended`] last took them.
    ended: Vec<TestEnded>,
    /// Per suite, its batches that ended without reporting a test.
    silent: BTreeMap<usize, Vec<Silent>>,
    /// Per suite, why its batches stopped (see [`SuiteFailure`]).
    failed: BTreeMap<usize, SuiteFailure>,
    /// Notices for the user, taken by [`SuiteRun::take_notices`].
    notices: Vec<Notice>,
    /// The new tests run several times, with how many times each runs in all.
    repeats: BTreeMap<TestKey, u32>,
    /// Per suite checking new tests, which were (see [`SuiteRun::new_tests`]).
    new_tests: Vec<NewTestChecks>,
    /// Per suite, what its batches that ran every test cost beyond them.
    batch_samples: BTreeMap<usize, Vec<BatchSample>>,
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
                            attempts: refused(case).into_iter().collect(),
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
            finished: Vec::new(),
            ended: Vec::new(),
            silent: BTreeMap::new(),
            failed: BTreeMap::new(),
            notices: Vec::new(),
            repeats: BTreeMap::new(),
            new_tests: Vec::new(),
            batch_samples: BTreeMap::new(),
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

    /// Tests listed in all suites.
    pub fn tests(&self) -> usize {
        self.position.len()
    }

    /// Tests that have not ended yet: those of the batches in flight, or, before the plan,
    /// every test a batch will run.
    pub fn unfinished_tests(&self) -> usize {
        match self.planned || self.stopped {
            true => self.in_flight.values().map(|b| b.tests.len()).sum(),
            false => (self.records.iter().flatten())
                .filter(|r| r.attempts.is_empty())
                .count(),
        }
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
    /// submission order, so this order is the dispatch order. The tests no batch runs
    /// ([`TestCase::refusal`]) end here.
    pub fn plan(&mut self, slots: usize) -> Vec<Submission> {
        if self.planned || self.stopped {
            return Vec::new();
        }
        self.planned = true;
        // The tests no batch runs end now.
        let refused = self.records.iter().flatten().filter_map(|record| {
            let attempt = record.attempts.first()?;
            Some(TestEnded {
                suite: record.suite.clone(),
                id: record.case.id.clone(),
                attempt: 1,
                status: attempt.status,
                message: attempt.message.clone(),
                outcome: Some(record.status()),
            })
        });
        self.ended.extend(refused);
        let mut plans: Vec<std::collections::VecDeque<(bool, u64, Vec<TestCase>)>> = Vec::new();
        for suite in &self.suites {
            let name = &suite.def.suite.name;
            let tests: Vec<PlanTest> = suite
                .listing
                .tests
                .iter()
                .filter(|case| case.refusal().is_none())
                .map(|case| PlanTest::of(name, suite.def.split, case))
                .collect();
            let target = suite.def.batch.map(|d| d.as_millis() as u64);
            let estimated = estimate_tests(tests, |key| self.timings.estimate_ms(key));
            // On a first run (no history at all) no test is new: every test would be.
            if suite.def.new_tests.detect && !self.timings.is_empty() {
                let checks = choose_new_tests(
                    name,
                    &estimated,
                    |key| !self.timings.has_seen(key),
                    &suite.def.new_tests,
                );
                for key in &checks.checked {
                    self.repeats.insert(key.clone(), checks.runs);
                }
                self.new_tests.push(checks);
            }
            let cost = (self.timings.batch_cost(name)).unwrap_or(BatchCost::UNMEASURED);
            let batches = plan_batches(estimated, target, slots, cost);
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

    /// Batch `index` ended as `outcome` says (before its report is fetched): its tests'
    /// results will name its worker, and their retries go to another worker where there is
    /// one; what it printed explains the tests its framework did not report.
    pub fn ended_on(&mut self, index: JobIndex, outcome: &JobOutcome) {
        let Some(batch) = self.in_flight.get_mut(&index) else {
            return;
        };
        if !outcome.worker.is_empty() {
            batch.worker = Some(outcome.worker.clone());
        }
        batch.cancelled = outcome.status == JobStatus::Cancelled;
        if let (JobStatus::Passed | JobStatus::Failed, Some(code)) =
            (outcome.status, outcome.exit_code)
        {
            let tail = without_escapes(last_lines(&outcome.output, QUOTED_LINES));
            batch.exit = Some(Exit {
                code,
                tail: tail.trim_end().to_owned(),
            });
            batch.wall_ms = Some(outcome.duration_ms);
        }
    }

    /// Batch `index` was stopped at its time limit (before its report is fetched).
    pub fn timed_out(&mut self, index: JobIndex) {
        if let Some(batch) = self.in_flight.get_mut(&index) {
            batch.timed_out = true;
        }
    }

    /// Batch `index`'s attempt `attempt`, still running, added `lines` to its report: the
    /// tests they show finished that were not shown before (lines of another attempt start
    /// over). A framework whose report is whole only at its end (JUnit) shows none here. The
    /// report so far is read whole each time (the frameworks' readers take whole reports), so
    /// a batch stops showing its tests this way past [`LIVE_REPORT_LIMIT`]: the rest show at
    /// its end.
    pub fn progress(&mut self, index: JobIndex, attempt: u32, lines: &str) -> Vec<TestFinished> {
        let Some(batch) = self.in_flight.get_mut(&index) else {
            return Vec::new();
        };
        if batch.live.attempt != attempt {
            batch.live = Live {
                attempt,
                ..Live::default()
            };
        }
        if batch.live.full || batch.live.text.len() + lines.len() > LIVE_REPORT_LIMIT {
            batch.live.full = true;
            batch.live.text = String::new();
            return Vec::new();
        }
        batch.live.text.push_str(lines);
        let suite = &self.suites[batch.suite];
        let read = suite
            .listing
            .read_report(Some(batch.live.text.as_bytes()), &batch.tests);
        let shown = &mut batch.live.shown;
        (read.results.iter())
            .filter_map(|result| finished_of(suite, result))
            .filter(|test| shown.insert(test.id.clone()))
            .collect()
    }

    /// Batch `index` ended and its report (if it wrote one) was fetched: each test's result is
    /// recorded, and the batches to submit next are returned: the tests it never finished go
    /// back to the queue together (at most [`MAX_REQUEUES`] times), and each failed test is
    /// retried alone while it has retries left.
    pub fn finished(&mut self, index: JobIndex, report: Option<&[u8]>) -> Vec<Submission> {
        let Some(batch) = self.in_flight.remove(&index) else {
            return Vec::new();
        };
        let suite = &self.suites[batch.suite];
        let read = suite.listing.read_report(report, &batch.tests);
        if !read.unasked.is_empty() {
            self.notices
                .push(unasked_notice(&suite.def.suite.name, &read.unasked));
        }
        self.record(batch, read.results)
    }

    /// Batch `index` ended with a report that was not read (`reason`: too large, not a
    /// file): each of its tests is an error saying so, retried like one.
    pub fn unreadable(&mut self, index: JobIndex, reason: &str) -> Vec<Submission> {
        self.without_report(index, TestStatus::Error, reason)
    }

    /// The outputs of batch `index`, its report with them, could not be fetched (`reason`):
    /// its tests go back to the queue as not run, saying so. That is the store's failure, not
    /// the batch's: its exit explains none of them, nor counts to stop its suite.
    pub fn report_lost(&mut self, index: JobIndex, reason: &str) -> Vec<Submission> {
        let message = format!("not run: the batch's report could not be fetched: {reason}");
        self.without_report(index, TestStatus::NotRun, &message)
    }

    /// Records every test of batch `index` as `status` for the reason `message`.
    fn without_report(
        &mut self,
        index: JobIndex,
        status: TestStatus,
        message: &str,
    ) -> Vec<Submission> {
        let Some(mut batch) = self.in_flight.remove(&index) else {
            return Vec::new();
        };
        batch.exit = None;
        let results = (batch.tests.iter())
            .map(|case| TestResult::without_report(case.clone(), status, message))
            .collect();
        self.record(batch, results)
    }

    /// Records the `results` of `batch` and returns what to submit next (see
    /// [`SuiteRun::finished`]). Once the run stopped or the batch's suite failed nothing runs
    /// again: each test ends with this attempt, those of a failed suite that did not run as
    /// errors saying why it stopped.
    fn record(&mut self, batch: InFlight, mut results: Vec<TestResult>) -> Vec<Submission> {
        let suite = batch.suite;
        if let Some(sample) = batch_sample(&batch, &results) {
            self.batch_samples.entry(suite).or_default().push(sample);
        }
        at_time_limit(&batch, &mut results);
        let results = self.explain_unreported(&batch, results);
        let results = before_cancel(&batch, results);
        self.finished
            .extend(finished_unshown(&batch, &self.suites[suite], &results));
        let settled = self.failed.get(&suite).map(not_run_message);
        let halted = self.stopped || settled.is_some();
        let retries = self.suites[suite].def.retries;
        let name = self.suites[suite].def.suite.name.clone();
        let mut requeue = Vec::new();
        let mut retry = Vec::new();
        let secrets = &self.suites[suite].def.secret_env;
        // A batch that finished some of its tests (one stopped at a test's timeout too) sends
        // the rest back without counting it: each round ends at least one test.
        let progressed = results.iter().any(|r| r.status != TestStatus::NotRun);
        for mut result in results {
            result.worker.clone_from(&batch.worker);
            mask_secrets(&mut result, secrets);
            if let (Some((message, output)), TestStatus::NotRun) = (&settled, result.status) {
                result = TestResult {
                    output: output.clone(),
                    ..TestResult::without_report(result.case, TestStatus::Error, message)
                };
            }
            let key = TestKey::new(&name, &result.case.id);
            let Some(&(s, t)) = self.position.get(&key) else {
                continue;
            };
            let status = result.status;
            let case = result.case.clone();
            let message = result.message.clone();
            let record = &mut self.records[s][t];
            record.attempts.push(result);
            let ran = ran(record);
            let again = !halted
                && match status {
                    TestStatus::NotRun if progressed => {
                        requeue.push(case);
                        true
                    }
                    TestStatus::NotRun => {
                        let count = self.requeues.entry(key).or_default();
                        *count += 1;
                        let again = *count <= MAX_REQUEUES;
                        if again {
                            requeue.push(case);
                        }
                        again
                    }
                    TestStatus::Failed | TestStatus::Error | TestStatus::TimedOut
                        if ran <= retries as usize =>
                    {
                        retry.push((case, ran as u32 + 1));
                        true
                    }
                    // A new test checked for flakiness runs again, alone, on another worker.
                    _ if self
                        .repeats
                        .get(&key)
                        .is_some_and(|&runs| ran < runs as usize) =>
                    {
                        retry.push((case, ran as u32 + 1));
                        true
                    }
                    _ => false,
                };
            // Back to the queue, nothing ended.
            if status != TestStatus::NotRun || !again {
                self.ended.push(TestEnded {
                    suite: name.clone(),
                    id: record.case.id.clone(),
                    attempt: ran as u32,
                    status,
                    message,
                    outcome: (!again).then(|| record.status()),
                });
            }
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

    /// The tests of ended batches their progress had not shown, since the last call.
    pub fn take_finished(&mut self) -> Vec<TestFinished> {
        std::mem::take(&mut self.finished)
    }

    /// The attempts that ended since the last call, in the order their reports came.
    pub fn take_ended(&mut self) -> Vec<TestEnded> {
        std::mem::take(&mut self.ended)
    }

    /// Per suite (by name), what its batches that ran every test cost beyond their tests, in
    /// the order they ended: the timing history keeps them for the next plan.
    pub fn batch_samples(&self) -> BTreeMap<String, Vec<BatchSample>> {
        (self.batch_samples.iter())
            .map(|(&s, samples)| (self.suites[s].def.suite.name.clone(), samples.clone()))
            .collect()
    }

    /// The notices since the last call, for the user.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// The suites whose batches failed the same way on different workers, in manifest order.
    pub fn failures(&self) -> Vec<SuiteFailure> {
        self.failed.values().cloned().collect()
    }

    /// `results` of `batch`, the tests its framework did not report carrying what the batch
    /// printed. A batch that ended by itself without reporting any test is remembered; when
    /// another batch of the suite (or the same one, requeued) ended the same way (the same exit
    /// code, no test reported) on another worker, the suite's failure is systematic (see
    /// [`SuiteFailure`]): said once, with the output.
    fn explain_unreported(
        &mut self,
        batch: &InFlight,
        mut results: Vec<TestResult>,
    ) -> Vec<TestResult> {
        let Some(exit) = &batch.exit else {
            return results;
        };
        let worker = batch.worker.as_deref().unwrap_or("a worker");
        let said = format!(
            "the batch exited with code {} on {worker}, its output ending:\n{}",
            exit.code, exit.tail
        );
        let reported_none = results.iter().all(TestResult::is_unreported);
        for result in results.iter_mut().filter(|r| r.is_unreported()) {
            let message = result.message.take().unwrap_or_default();
            result.message = Some(format!("{message}; {said}"));
            result.output.clone_from(&exit.tail);
        }
        if results.is_empty() || !reported_none {
            return results;
        }
        let name = self.suites[batch.suite].def.suite.name.clone();
        let silent = self.silent.entry(batch.suite).or_default();
        if silent.is_empty() {
            self.notices.push(Notice::warn(format!(
                "suite '{name}': batch '{}' reported none of its tests; {said}",
                batch.name
            )));
        }
        let earlier = silent
            .iter()
            .find(|s| s.code == exit.code && s.worker != worker);
        if let (Some(earlier), false) = (earlier, self.failed.contains_key(&batch.suite)) {
            let reason = format!(
                "its batches exit with code {} without reporting a test, on {} and on {worker}",
                exit.code, earlier.worker
            );
            self.notices.push(Notice::warn(format!(
                "suite '{name}' stops: {reason}; its tests that did not run are errors \
                 (each carries the output above)"
            )));
            self.failed.insert(
                batch.suite,
                SuiteFailure {
                    suite: name,
                    reason,
                    output: exit.tail.clone(),
                },
            );
        }
        silent.push(Silent {
            worker: worker.to_owned(),
            code: exit.code,
        });
        results
    }

    /// The new tests each suite with `detect-new-flakes` ran several times, and how many ran
    /// once (over its share of time).
    pub fn new_tests(&self) -> Vec<NewTestChecks> {
        self.new_tests.clone()
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

    /// The time limit of a batch of `tests` of suite `suite`: what its tests may take, and one
    /// per-test timeout more for the framework's start and for the batch's watchdog to stop a
    /// test at its own timeout first. What its tests may take is the sum of their timeouts (so
    /// the limit never cuts a test short), or, when every test has timing history, twice
    /// their estimates if that is less: a batch twice as slow as its history still finishes,
    /// and a test that hangs where the watchdog cannot see it (a framework without progress
    /// lines, a test that keeps printing) costs about one timeout, not the batch's sum.
    fn batch_timeout(&self, suite: usize, tests: &[TestCase]) -> u64 {
        let def = &self.suites[suite].def;
        let per_test = millis(def.timeout);
        let all = per_test.saturating_mul(tests.len() as u64);
        let estimates: Option<Vec<u64>> = tests
            .iter()
            .map(|case| {
                self.timings
                    .estimate_ms(&TestKey::new(&def.suite.name, &case.id))
            })
            .collect();
        match estimates {
            Some(ms) => {
                let sum = ms.iter().fold(0u64, |a, b| a.saturating_add(*b));
                all.min(sum.saturating_mul(2))
            }
            None => all.min(per_test.max(millis(UNMEASURED_BATCH_LIMIT))),
        }
        .saturating_add(per_test)
    }

    /// A batch of `tests` of suite `suite` at `attempt`, as submitted: away from the workers
    /// earlier attempts of its tests ran on, where there is another.
    /// How long a batch of `tests` of suite `suite` is expected to take: their measured times
    /// and the suite's measured batch cost; none if one of them has no history.
    fn expected_ms(&self, suite: usize, tests: &[TestCase]) -> Option<u64> {
        let name = &self.suites[suite].def.suite.name;
        let cost = self.timings.batch_cost(name)?;
        tests
            .iter()
            .map(|case| self.timings.estimate_ms(&TestKey::new(name, &case.id)))
            .sum::<Option<u64>>()
            .map(|ms| ms.saturating_add(cost.ms(files_of(tests))))
    }

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
        let env = batch_env(&listed.def, attempt);
        let expected_ms = self.expected_ms(suite, &tests);
        tracing::debug!(batch = %name, ?expected_ms, "batch planned");
        let spec = JobSpec {
            name: name.clone(),
            run: listed
                .listing
                .guarded_batch_command(&tests, listed.def.timeout),
            env,
            layers: listed.layers.clone(),
            timeout_ms: self.batch_timeout(suite, &tests),
            // A lost worker's batch comes back here as not run; failures are retried per test.
            retries: 0,
            outputs: vec![REPORT_FILE.to_string()],
            // No estimate: the broker keeps submission order, which is the plan's.
            estimate_ms: None,
            expected_ms,
            isolation: listed.def.isolation,
            secret_env: listed.def.secret_env.clone(),
            inherits: false,
            avoid_workers,
            session: match listed.def.session {
                true => listed.listing.session_command(),
                false => None,
            },
            // What the framework reports as it goes (most write a test at a time) comes back
            // while the batch runs, for progress.
            progress: Some(REPORT_FILE.to_string()),
        };
        let batch = InFlight {
            suite,
            tests,
            name,
            live: Live::default(),
            worker: None,
            exit: None,
            wall_ms: None,
            cancelled: false,
            timeout_ms: spec.timeout_ms,
            timed_out: false,
        };
        self.in_flight.insert(index, batch);
        Submission { index, spec }
    }
}

/// The tests of `batch` (of `suite`) that `results` say finished and its progress had not
/// shown: a line each for progress, at the batch's end.
fn finished_unshown(
    batch: &InFlight,
    suite: &ListedSuite,
    results: &[TestResult],
) -> Vec<TestFinished> {
    (results.iter())
        .filter_map(|result| finished_of(suite, result))
        .filter(|test| !batch.live.shown.contains(&test.id))
        .collect()
}

/// `result` (of a test of `suite`) as progress shows it, when its framework said how it
/// ended.
fn finished_of(suite: &ListedSuite, result: &TestResult) -> Option<TestFinished> {
    let known = result.status != TestStatus::NotRun && !result.is_unreported();
    known.then(|| TestFinished {
        suite: suite.def.suite.name.clone(),
        id: result.case.id.clone(),
        status: result.status,
        duration_ms: result.duration_ms,
    })
}

/// `results` of `batch` without the tests a cancel stopped it before: those were not
/// attempted (they end `not_run`), while those its framework reported keep their results.
fn before_cancel(batch: &InFlight, mut results: Vec<TestResult>) -> Vec<TestResult> {
    if batch.cancelled {
        results.retain(|r| r.status != TestStatus::NotRun);
    }
    results
}

/// What `batch` cost beyond its tests, when it ended by itself (not stopped, not cancelled)
/// and its framework reported every one of them: its job's wall time minus their durations,
/// with the files they came from.
fn batch_sample(batch: &InFlight, results: &[TestResult]) -> Option<BatchSample> {
    let wall_ms = batch.wall_ms?;
    let all_ran = !results.is_empty()
        && results
            .iter()
            .all(|r| r.status != TestStatus::NotRun && !r.is_unreported());
    if batch.timed_out || batch.cancelled || !all_ran {
        return None;
    }
    let tests_ms = results
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(r.duration_ms));
    Some(BatchSample {
        files: u32::try_from(files_of(&batch.tests)).unwrap_or(u32::MAX),
        overhead_ms: wall_ms.saturating_sub(tests_ms),
    })
}

/// The environment of `def`'s batches on `attempt`: the suite's, the report's path and the
/// attempt. A warm-up has the same ([`super::warm_up`]): a worker shares a session only
/// between jobs whose environments agree but for what changes per batch.
pub(super) fn batch_env(def: &SuiteDef, attempt: u32) -> BTreeMap<String, String> {
    let mut env = def.env.clone();
    env.extend([
        (REPORT_ENV.to_string(), REPORT_FILE.to_string()),
        (ATTEMPT_ENV.to_string(), attempt.to_string()),
    ]);
    env
}

/// The distinct files `tests` come from (a test whose framework names none counts for
/// none): what a batch of them collects, as the planner and the batch cost count it.
fn files_of(tests: &[TestCase]) -> usize {
    let files: std::collections::BTreeSet<&str> =
        tests.iter().filter_map(|c| c.file.as_deref()).collect();
    files.len()
}

/// The message and output of a test of suite `failure` that did not run: the suite stopped.
fn not_run_message(failure: &SuiteFailure) -> (String, String) {
    let message = format!(
        "not run: suite '{}' stopped: {}; its framework printed:\n{}",
        failure.suite, failure.reason, failure.output
    );
    (message, failure.output.clone())
}

/// The error result of a test that is never run ([`TestCase::refusal`]).
fn refused(case: &TestCase) -> Option<TestResult> {
    let why = case.refusal()?;
    let message = format!("not run: {why}");
    Some(TestResult::without_report(
        case.clone(),
        TestStatus::Error,
        &message,
    ))
}

/// `results` of a batch stopped at its time limit. A test that ran alone in it, and that the
/// report does not say finished, ran past its own timeout (the limit is longer): it is
/// `timed_out`, retried like a failure, not sent back to the queue as not run. Of several,
/// which one hung is unknown: those not reported go back to the queue saying where the
/// batch stopped (else a test that ends as not run after its requeues would not say why).
fn at_time_limit(batch: &InFlight, results: &mut [TestResult]) {
    if !batch.timed_out {
        return;
    }
    let limit = format_duration(Duration::from_millis(batch.timeout_ms));
    if let [result] = results
        && result.status == TestStatus::NotRun
    {
        result.status = TestStatus::TimedOut;
        result.duration_ms = batch.timeout_ms;
        result.message = Some(format!(
            "timed out: still running at its batch's time limit of {limit}"
        ));
        return;
    }
    for result in results.iter_mut().filter(|r| r.is_unreported()) {
        let message = result.message.take().unwrap_or_default();
        result.message = Some(format!(
            "{message}; the batch was stopped at its time limit of {limit}"
        ));
    }
}

/// `result` with the values of the suite's `secret-env` masked in what its test printed, as
/// in a job's output: the framework's report is the batch's output here.
fn mask_secrets(result: &mut TestResult, secrets: &SecretEnv) {
    if secrets.is_empty() {
        return;
    }
    result.output = mask(std::mem::take(&mut result.output), secrets);
    result.message = result.message.take().map(|m| mask(m, secrets));
}

/// Attempts of a record that ran to an end.
fn ran(record: &TestRecord) -> usize {
    record
        .attempts
        .iter()
        .filter(|a| a.status != TestStatus::NotRun)
        .count()
}

/// How many of the tests a batch did not ask for a notice names.
const UNASKED_NAMED: usize = 5;

/// The note that a batch's framework of suite `suite` reported tests it was not given
/// (`unasked`), which are ignored: their results belong to the batches that run them.
fn unasked_notice(suite: &str, unasked: &[String]) -> Notice {
    let named: Vec<&str> = unasked
        .iter()
        .take(UNASKED_NAMED)
        .map(String::as_str)
        .collect();
    let more = unasked.len().saturating_sub(UNASKED_NAMED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Notice::info(format!(
        "suite '{suite}': a batch's framework also reported {} test(s) it was not given, \
         ignored (their own batches report them): {}{more}",
        unasked.len(),
        named.join(", ")
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::suite::{Framework, Split, Suite};

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
                timeout: crate::runner::manifest::DEFAULT_TEST_TIMEOUT,
                env: BTreeMap::new(),
                secret_env: Default::default(),
                isolation: Default::default(),
                session: false,
                quarantine: Default::default(),
                new_tests: Default::default(),
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

    /// The outcome of a batch whose process exited with `code` on `worker`, printing `output`.
    fn exited(worker: &str, code: i32, output: &str) -> JobOutcome {
        JobOutcome {
            attempt: 1,
            status: if code == 0 {
                JobStatus::Passed
            } else {
                JobStatus::Failed
            },
            exit_code: Some(code),
            duration_ms: 5,
            worker: worker.into(),
            output: output.into(),
            outputs_layer: None,
            outputs_path: None,
            error: None,
        }
    }

    /// Ends batch `sub` on `worker` with exit code `code`, having printed `output` and written
    /// `report`; returns what comes next.
    fn end(
        run: &mut SuiteRun,
        sub: &Submission,
        (worker, code, output): (&str, i32, &str),
        report: Option<&[u8]>,
    ) -> Vec<Submission> {
        run.ended_on(sub.index, &exited(worker, code, output));
        run.finished(sub.index, report)
    }

    fn message_of(run: &SuiteRun, id: &str) -> String {
        let records = run.records();
        let record = records.iter().find(|r| r.case.id == id).expect("a record");
        record.entry().message.unwrap_or_default()
    }

    #[test]
    fn what_a_batch_printed_explains_the_tests_its_framework_did_not_report() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 0)], Timings::default(), 0);
        let sub = run.plan(1).remove(0);
        let printed = "collecting\nERROR: file or directory not found: 2\n";
        assert!(
            end(
                &mut run,
                &sub,
                ("w1", 4, printed),
                Some(&junit(&[("1", "pass")]))
            )
            .is_empty()
        );
        assert_eq!(status_of(&run, "1").name(), "passed");
        let message = message_of(&run, "2");
        assert!(message.starts_with("not reported"), "{message}");
        assert!(message.contains("exited with code 4 on w1"), "{message}");
        assert!(
            message.contains("ERROR: file or directory not found: 2"),
            "{message}"
        );
        assert!(
            run.take_notices().is_empty(),
            "a test was reported: no suite trouble"
        );
    }

    #[test]
    fn batches_failing_the_same_way_on_two_workers_stop_the_suite() {
        let mut run = SuiteRun::new(
            vec![
                listed("a", &["1", "2", "3", "4"], 2),
                listed("b", &["5"], 0),
            ],
            Timings::default(),
            0,
        );
        let subs = run.plan(4);
        let of_a: Vec<&Submission> = subs
            .iter()
            .filter(|s| run.in_flight[&s.index].suite == 0)
            .collect();
        assert_eq!(of_a.len(), 4, "one test a batch");
        let broken = ("w1", 2, "fatal: no config\n");
        // The first batch that reports nothing is requeued (a worker may be broken) and said.
        let again = end(&mut run, of_a[0], broken, None);
        assert_eq!(again.len(), 1);
        let notices = run.take_notices();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].text.contains("fatal: no config"), "{notices:?}");
        // Another batch on the same worker: not yet systematic.
        let again_too = end(&mut run, of_a[1], broken, None);
        assert_eq!(again_too.len(), 1);
        assert!(run.failures().is_empty());
        assert!(run.take_notices().is_empty(), "said once");
        // A batch of other tests on another worker, the same exit code: systematic.
        assert!(end(&mut run, of_a[2], ("w2", 2, "fatal: no config\n"), None).is_empty());
        let notices = run.take_notices();
        assert_eq!(notices.len(), 1, "said once: {notices:?}");
        assert!(notices[0].text.contains("suite 'a' stops"), "{notices:?}");
        let failures = run.failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].output, "fatal: no config");
        // Batches in flight end as they come, their tests as errors; nothing is retried.
        for sub in [&again[0], &again_too[0], of_a[3]] {
            assert!(end(&mut run, sub, ("w1", 2, "fatal: no config\n"), None).is_empty());
        }
        for id in ["1", "2", "3", "4"] {
            assert_eq!(status_of(&run, id).name(), "error", "{id}");
            assert!(message_of(&run, id).contains("fatal: no config"), "{id}");
        }
        assert!(run.take_notices().is_empty(), "the log has it once");
        // The other suite goes on.
        let of_b = subs
            .iter()
            .find(|s| run.in_flight.get(&s.index).is_some_and(|b| b.suite == 1));
        let of_b = of_b.expect("b in flight").clone();
        assert!(
            end(
                &mut run,
                &of_b,
                ("w1", 0, ""),
                Some(&junit(&[("5", "pass")]))
            )
            .is_empty()
        );
        assert_eq!(status_of(&run, "5").name(), "passed");
        assert!(run.is_done());
    }

    #[test]
    fn a_batch_failing_the_same_way_on_a_second_worker_stops_its_suite() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 0)], Timings::default(), 0);
        let mut sub = run.plan(1).remove(0);
        // Twice on one worker may be that worker's trouble: requeued.
        for worker in ["w1", "w1"] {
            let next = end(&mut run, &sub, (worker, 3, "crash"), None);
            assert_eq!(next.len(), 1, "requeued: the same tests each time");
            sub = next[0].clone();
        }
        assert!(run.failures().is_empty());
        // The same batch failing the same way on another worker is the suite's failure.
        assert!(end(&mut run, &sub, ("w2", 3, "crash"), None).is_empty());
        assert_eq!(run.failures().len(), 1);
        assert!(run.is_done());
    }

    #[test]
    fn every_test_of_a_stopped_suite_is_told_its_outcome_once() {
        let mut run = SuiteRun::new(
            vec![listed("a", &["1", "2", "3"], 1)],
            Timings::default(),
            0,
        );
        let subs = run.plan(3);
        let crash = |worker| (worker, 2, "fatal: no config\n");
        let mut outcomes: Vec<(String, FinalStatus)> = Vec::new();
        let mut take = |run: &mut SuiteRun| {
            (run.take_ended().into_iter())
                .filter_map(|e| Some((e.id, e.outcome?)))
                .for_each(|told| outcomes.push(told));
        };
        let requeued = end(&mut run, &subs[0], crash("w1"), None);
        take(&mut run);
        assert!(end(&mut run, &subs[1], crash("w2"), None).is_empty());
        assert_eq!(run.failures().len(), 1, "the suite stops");
        take(&mut run);
        // A batch still in flight ran its test, which failed: no retry, it ends there.
        let failed = Some(junit(&[("3", "fail")]));
        assert!(end(&mut run, &subs[2], ("w1", 1, ""), failed.as_deref()).is_empty());
        take(&mut run);
        assert!(end(&mut run, &requeued[0], crash("w2"), None).is_empty());
        take(&mut run);
        assert!(run.is_done());
        outcomes.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            outcomes,
            [
                ("1".to_string(), FinalStatus::Error),
                ("2".to_string(), FinalStatus::Error),
                ("3".to_string(), FinalStatus::Failed),
            ]
        );
        for record in run.records() {
            assert_eq!(record.entry().attempts, 1, "{record:?}");
        }
    }

    #[test]
    fn reports_the_store_lost_requeue_their_tests_and_never_stop_the_suite() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 0)], Timings::default(), 0);
        let mut sub = run.plan(1).remove(0);
        for worker in ["w1", "w2"] {
            run.ended_on(sub.index, &exited(worker, 0, "2 passed"));
            let next = run.report_lost(sub.index, "503 from the store");
            assert_eq!(next.len(), 1, "requeued");
            sub = next[0].clone();
        }
        assert!(run.failures().is_empty(), "the batches did not fail");
        assert!(run.take_notices().is_empty(), "{:?}", run.notices);
        for _ in 2..MAX_REQUEUES {
            sub = run.report_lost(sub.index, "503 from the store").remove(0);
        }
        assert!(run.report_lost(sub.index, "503 from the store").is_empty());
        let message = message_of(&run, "1");
        assert_eq!(
            message,
            "not run: the batch's report could not be fetched: 503 from the store"
        );
    }

    #[test]
    fn a_batch_killed_or_exiting_differently_is_not_the_same_failure() {
        let mut run = SuiteRun::new(
            vec![listed("a", &["1", "2", "3"], 0)],
            Timings::default(),
            0,
        );
        let subs = run.plan(3);
        assert_eq!(subs.len(), 3);
        end(&mut run, &subs[0], ("w1", 2, "x"), None);
        end(&mut run, &subs[1], ("w2", 3, "y"), None);
        let mut killed = exited("w2", 0, "z");
        (killed.status, killed.exit_code) = (JobStatus::Error, None);
        run.ended_on(subs[2].index, &killed);
        run.finished(subs[2].index, None);
        assert!(run.failures().is_empty());
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
    fn progress_shows_each_test_once_as_the_report_grows_and_the_rest_at_the_end() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 0)], Timings::default(), 0);
        let sub = run.plan(1).remove(0);
        assert_eq!(sub.spec.progress.as_deref(), Some(REPORT_FILE));
        let shown = |finished: Vec<TestFinished>| -> Vec<(String, TestStatus)> {
            finished.into_iter().map(|t| (t.id, t.status)).collect()
        };
        let one = String::from_utf8(junit(&[("1", "fail")])).unwrap();
        // Half a report shows nothing; whole, the test it names (not the one it leaves out).
        let (head, tail) = one.split_at(one.len() / 2);
        assert_eq!(shown(run.progress(sub.index, 1, head)), []);
        assert_eq!(
            shown(run.progress(sub.index, 1, tail)),
            [("1".to_string(), TestStatus::Failed)]
        );
        assert_eq!(shown(run.progress(sub.index, 1, "\n")), [], "once");
        assert_eq!(
            shown(run.progress(JobIndex(99), 1, &one)),
            [],
            "no such batch"
        );
        // Another attempt's lines start over.
        assert_eq!(shown(run.progress(sub.index, 2, &one)).len(), 1);
        // At the end, the tests progress had not shown.
        run.finished(sub.index, Some(&junit(&[("1", "fail"), ("2", "pass")])));
        assert_eq!(
            shown(run.take_finished()),
            [("2".to_string(), TestStatus::Passed)]
        );
    }

    #[test]
    fn a_report_past_the_limit_is_no_longer_read_while_its_batch_runs() {
        let mut run = SuiteRun::new(vec![listed("a", &["1"], 0)], Timings::default(), 0);
        let sub = run.plan(1).remove(0);
        let filler = " ".repeat(LIVE_REPORT_LIMIT);
        assert!(run.progress(sub.index, 1, &filler).is_empty());
        let one = String::from_utf8(junit(&[("1", "pass")])).unwrap();
        assert!(
            run.progress(sub.index, 1, &one).is_empty(),
            "not read any more"
        );
        run.finished(sub.index, Some(&junit(&[("1", "pass")])));
        assert_eq!(run.take_finished().len(), 1, "shown at the batch's end");
    }

    #[test]
    fn a_batch_that_ran_every_test_is_measured_beyond_its_tests() {
        let mut suite = listed("a", &["1", "2", "3"], 0);
        let mut cases = suite.listing.tests.clone();
        for (case, file) in cases.iter_mut().zip(["x.py", "x.py", "y.py"]) {
            case.file = Some(file.into());
        }
        suite.listing = Listing::new(&suite.def.suite, cases);
        let batch_of_2s = |report: &[u8]| {
            let mut run = SuiteRun::new(vec![suite.clone()], Timings::default(), 0);
            let sub = run.plan(1).remove(0);
            let mut outcome = exited("w1", 1, "");
            outcome.duration_ms = 2_000;
            run.ended_on(sub.index, &outcome);
            run.finished(sub.index, Some(report));
            run.batch_samples()
        };
        // Three tests of 0.5 s (one failed: it ran) from two files in a batch of 2 s.
        let all = batch_of_2s(&junit(&[("1", "pass"), ("2", "fail"), ("3", "pass")]));
        let sample = BatchSample {
            files: 2,
            overhead_ms: 500,
        };
        assert_eq!(all, BTreeMap::from([("a".to_string(), vec![sample])]));
        // A test not reported: the batch's time says nothing of its cost.
        let partial = batch_of_2s(&junit(&[("1", "pass"), ("2", "pass")]));
        assert!(partial.is_empty(), "{partial:?}");
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
    fn a_test_the_batch_did_not_ask_for_is_ignored_with_a_note() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 0)], Timings::default(), 0);
        let subs = run.plan(1);
        let report = junit(&[("1", "pass"), ("2", "pass"), ("1 neighbour", "fail")]);
        assert!(run.finished(subs[0].index, Some(&report)).is_empty());
        assert!(run.is_done());
        assert_eq!(status_of(&run, "2").name(), "passed");
        assert_eq!(
            run.records().len(),
            2,
            "the neighbour is no test of the run"
        );
        let notices = run.take_notices();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(
            notices[0]
                .text
                .contains("reported 1 test(s) it was not given")
                && notices[0].text.ends_with(": 1 neighbour"),
            "{notices:?}"
        );
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
    fn a_test_whose_id_no_program_can_be_given_is_an_error_alone() {
        let listed_ids = ["1", "nul\0in it", "line\nbreak", "2"];
        let mut run = SuiteRun::new(vec![listed("a", &listed_ids, 2)], Timings::default(), 0);
        let planned = run.plan(1);
        assert_eq!(planned.len(), 1);
        assert_eq!(ids(&planned[0], &run), ["1", "2"]);
        let report = junit(&[("1", "pass"), ("2", "pass")]);
        assert!(run.finished(planned[0].index, Some(&report)).is_empty());
        assert!(run.is_done());
        let records = run.records();
        let message = |at: usize| records[at].attempts[0].message.clone().unwrap_or_default();
        assert_eq!(status_of(&run, "1").name(), "passed");
        assert_eq!(status_of(&run, "nul\0in it").name(), "error");
        assert!(message(1).contains("NUL"), "{}", message(1));
        assert_eq!(status_of(&run, "line\nbreak").name(), "error");
        assert!(message(2).contains("line break"), "{}", message(2));
    }

    #[test]
    fn a_refused_test_is_told_ended_with_the_first_batches() {
        let mut run = SuiteRun::new(
            vec![listed("a", &["1", "nul\0in it"], 2)],
            Timings::default(),
            0,
        );
        run.plan(1);
        let ended = run.take_ended();
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0].id, "nul\0in it");
        assert_eq!(ended[0].outcome, Some(FinalStatus::Error));
        assert!(run.take_ended().is_empty(), "told once");
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

    /// A history that has seen the tests `ids` of suite `a` pass in 1 ms.
    fn seen(ids: &[&str]) -> Timings {
        let outcome = crate::history::results::TestOutcome {
            status: crate::history::results::TestStatus::Passed,
            duration_ms: Some(1),
            attempt: 1,
        };
        let keys: Vec<TestKey> = ids.iter().map(|id| TestKey::new("a", *id)).collect();
        let mut timings = Timings::default();
        timings.record_run(None, keys.iter().map(|k| (k, &outcome)));
        timings
    }

    #[test]
    fn a_new_test_runs_three_times_on_other_workers_and_is_flaky_when_outcomes_disagree() {
        let old: Vec<String> = (0..40).map(|i| format!("old{i}")).collect();
        let mut all: Vec<&str> = old.iter().map(String::as_str).collect();
        all.extend(["new-steady", "new-flaky"]);
        let mut suite = listed("a", &all, 0);
        suite.def.new_tests.detect = true;
        let old_ids: Vec<&str> = all[..40].to_vec();
        let mut run = SuiteRun::new(vec![suite], seen(&old_ids), 0);
        let first = run.plan(1).remove(0);
        assert_eq!(run.new_tests()[0].checked.len(), 2, "{:?}", run.new_tests());
        let report: Vec<(&str, &str)> = all.iter().map(|id| (*id, "pass")).collect();
        let again = end(&mut run, &first, ("w1", 0, ""), Some(&junit(&report)));
        let mut names: Vec<Vec<String>> = again.iter().map(|s| ids(s, &run)).collect();
        names.sort();
        assert_eq!(
            names,
            [["new-flaky"], ["new-steady"]],
            "only the new tests run again"
        );
        assert!(again.iter().all(|s| s.spec.avoid_workers == ["w1"]));
        assert_eq!(again[0].spec.env[ATTEMPT_ENV], "2");
        let mut third = Vec::new();
        for sub in &again {
            let id = ids(sub, &run).remove(0);
            let outcome = if id == "new-flaky" { "fail" } else { "pass" };
            third.extend(end(
                &mut run,
                sub,
                ("w2", 0, ""),
                Some(&junit(&[(&id, outcome)])),
            ));
        }
        assert_eq!(third.len(), 2, "a third run of each");
        for sub in &third {
            let id = ids(sub, &run).remove(0);
            assert!(end(&mut run, sub, ("w3", 0, ""), Some(&junit(&[(&id, "pass")]))).is_empty());
        }
        assert!(run.is_done());
        assert_eq!(status_of(&run, "new-steady").name(), "passed");
        assert_eq!(status_of(&run, "new-flaky").name(), "flaky");
        assert_eq!(status_of(&run, "old0").name(), "passed");
        // Without any history no test counts as new.
        let mut suite = listed("a", &["x"], 0);
        suite.def.new_tests.detect = true;
        let mut first_run = SuiteRun::new(vec![suite], Timings::default(), 0);
        let sub = first_run.plan(1).remove(0);
        assert!(
            first_run
                .finished(sub.index, Some(&junit(&[("x", "pass")])))
                .is_empty()
        );
        assert!(first_run.new_tests().is_empty());
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
        run.ended_on(first, &exited("w1", 1, ""));
        let next = run.finished(first, Some(&junit(&[("1", "pass"), ("2", "fail")])));
        assert_eq!(next[0].spec.avoid_workers, ["w1"]);
        run.ended_on(next[0].index, &exited("w2", 1, ""));
        let last = run.finished(next[0].index, Some(&junit(&[("2", "fail")])));
        assert_eq!(last[0].spec.avoid_workers, ["w1", "w2"]);
        run.ended_on(last[0].index, &exited("w1", 0, ""));
        assert!(
            run.finished(last[0].index, Some(&junit(&[("2", "pass")])))
                .is_empty()
        );
        let entries: Vec<_> = run.records().iter().map(TestRecord::entry).collect();
        assert_eq!(entries[0].workers, ["w1"]);
        assert_eq!(entries[1].workers, ["w1", "w2", "w1"]);
    }

    #[test]
    fn each_ended_attempt_is_told_once_with_its_outcome_when_it_was_the_last() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 1)], Timings::default(), 0);
        assert_eq!(run.tests(), 2);
        let first = run.plan(1)[0].index;
        let lost = run.finished(first, None);
        assert!(
            run.take_ended().is_empty(),
            "tests back in the queue ended nothing"
        );
        let retry = run.finished(lost[0].index, Some(&junit(&[("1", "pass"), ("2", "fail")])));
        let told = |run: &mut SuiteRun| -> Vec<(String, u32, TestStatus, Option<FinalStatus>)> {
            let ended = run.take_ended();
            ended
                .into_iter()
                .map(|e| (e.id, e.attempt, e.status, e.outcome))
                .collect()
        };
        assert_eq!(
            told(&mut run),
            [
                ("1".into(), 1, TestStatus::Passed, Some(FinalStatus::Passed)),
                ("2".into(), 1, TestStatus::Failed, None),
            ]
        );
        run.finished(retry[0].index, Some(&junit(&[("2", "pass")])));
        assert_eq!(
            told(&mut run),
            [("2".into(), 2, TestStatus::Passed, Some(FinalStatus::Flaky))]
        );
        assert!(run.take_ended().is_empty(), "told once");
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
    fn a_cancelled_batch_keeps_what_its_framework_reported_and_the_rest_is_not_run() {
        let mut suite = listed("a", &["t.py::fast", "t.py::slow"], 2);
        suite.def.suite.framework = crate::suite::Framework::Pytest;
        suite.listing = Listing::new(&suite.def.suite, suite.listing.tests.clone());
        let mut run = SuiteRun::new(vec![suite], Timings::default(), 0);
        let sub = run.plan(1).remove(0);
        run.stop();
        let mut cancelled = exited("w1", 0, "");
        (cancelled.status, cancelled.exit_code) = (JobStatus::Cancelled, None);
        run.ended_on(sub.index, &cancelled);
        // pytest's progress, cut by the cancel: `fast` had passed.
        let progress = b"t.py::fast PASSED     [ 50%]\nt.py::slow ";
        assert!(run.finished(sub.index, Some(progress)).is_empty());
        let entries: Vec<_> = run.records().iter().map(TestRecord::entry).collect();
        assert_eq!((entries[0].status, entries[0].attempts), ("passed", 1));
        assert_eq!((entries[1].status, entries[1].attempts), ("not_run", 0));
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

    /// A pytest suite `py` of tests `ids` (in `t.py`) with a per-test timeout of 3 s.
    fn pytest_suite(ids: &[&str], retries: u32) -> ListedSuite {
        let suite = Suite {
            name: "py".into(),
            framework: Framework::Pytest,
            args: Vec::new(),
        };
        let tests = ids
            .iter()
            .map(|id| TestCase {
                id: format!("t.py::{id}"),
                group: "t.py".into(),
                name: (*id).into(),
                file: Some("t.py".into()),
            })
            .collect();
        let mut listed = listed("py", &[], retries);
        listed.def.suite = suite.clone();
        listed.def.timeout = Duration::from_secs(3);
        listed.listing = Listing::new(&suite, tests);
        listed
    }

    /// pytest's progress of a batch `a`, `hang`, `b` that its watchdog stopped during `hang`.
    const STOPPED_AT_HANG: &str = "collected 3 items\n\nt.py::a PASSED   [ 33%]\nt.py::hang \n\
        [cluster-action: no test finished for the per-test timeout] 3\n";

    #[test]
    fn the_test_running_at_its_timeout_is_retried_and_the_rest_requeued_uncounted() {
        let mut run = SuiteRun::new(
            vec![pytest_suite(&["a", "hang", "b"], 1)],
            Timings::default(),
            0,
        );
        let first = run.plan(1)[0].index;
        let next = run.finished(first, Some(STOPPED_AT_HANG.as_bytes()));
        let batches: Vec<Vec<String>> = next.iter().map(|s| ids(s, &run)).collect();
        assert_eq!(batches, [vec!["t.py::b"], vec!["t.py::hang"]]);
        assert_eq!(
            next[0].spec.env[ATTEMPT_ENV], "1",
            "b goes back to the queue"
        );
        assert!(
            run.requeues.is_empty(),
            "a batch that finished a test was not lost"
        );
        assert_eq!(next[1].spec.env[ATTEMPT_ENV], "2", "hang is retried");
        let hang_alone =
            "t.py::hang \n[cluster-action: no test finished for the per-test timeout] 3\n";
        assert!(
            run.finished(next[1].index, Some(hang_alone.as_bytes()))
                .is_empty(),
            "no retry left"
        );
        let b_passed = b"<testsuites><testsuite><testcase classname=\"t\" name=\"b\"/></testsuite></testsuites>";
        assert!(run.finished(next[0].index, Some(b_passed)).is_empty());
        assert!(run.is_done());
        assert_eq!(status_of(&run, "t.py::a").name(), "passed");
        assert_eq!(status_of(&run, "t.py::hang").name(), "timed_out");
        let hang = run
            .records()
            .into_iter()
            .find(|r| r.case.id == "t.py::hang")
            .unwrap();
        assert_eq!(hang.entry().attempts, 2, "one retry");
        assert_eq!(hang.entry().duration_ms, 3000);
    }

    #[test]
    fn a_test_alone_in_a_batch_stopped_at_its_limit_timed_out_and_is_retried() {
        // Two tests, none reported: which one hung is unknown, both go back to the queue.
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 1)], Timings::default(), 0);
        let first = run.plan(1)[0].index;
        run.timed_out(first);
        let next = run.finished(first, None);
        assert_eq!(ids(&next[0], &run), ["1", "2"]);
        // One test: it is the one.
        let mut run = SuiteRun::new(vec![listed("a", &["1"], 1)], Timings::default(), 0);
        let first = run.plan(1)[0].index;
        run.timed_out(first);
        let retry = run.finished(first, None);
        assert_eq!(
            retry[0].spec.env[ATTEMPT_ENV], "2",
            "retried like a failure"
        );
        run.timed_out(retry[0].index);
        assert!(run.finished(retry[0].index, None).is_empty());
        assert_eq!(status_of(&run, "1").name(), "timed_out");
        let entry = run.records()[0].entry();
        assert_eq!(entry.attempts, 2);
        let message = entry.message.unwrap();
        assert!(message.contains("time limit of 20m"), "{message}");
    }

    #[test]
    fn tests_of_a_batch_stopped_at_its_limit_say_so_when_they_end_not_run() {
        let mut run = SuiteRun::new(vec![listed("a", &["1", "2"], 0)], Timings::default(), 0);
        let mut index = run.plan(1)[0].index;
        for _ in 0..MAX_REQUEUES {
            run.timed_out(index);
            index = run.finished(index, None)[0].index;
        }
        run.timed_out(index);
        assert!(run.finished(index, None).is_empty());
        assert_eq!(status_of(&run, "1").name(), "error");
        let message = message_of(&run, "1");
        assert!(
            message.starts_with("not run: the batch stopped before reporting this test; ")
                && message.ends_with("the batch was stopped at its time limit of 30m"),
            "{message}"
        );
    }

    #[test]
    fn a_batch_may_take_its_tests_timeouts_or_twice_their_history_and_one_timeout_more() {
        let mut timings = Timings::default();
        let outcome = |ms| crate::history::results::TestOutcome {
            status: crate::history::results::TestStatus::Passed,
            duration_ms: Some(ms),
            attempt: 1,
        };
        let (k1, k2) = (TestKey::new("py", "t.py::a"), TestKey::new("py", "t.py::b"));
        let (o1, o2) = (outcome(100), outcome(400));
        timings.record_run(None, [(&k1, &o1), (&k2, &o2)]);
        let suite = || pytest_suite(&["a", "b", "c"], 0);
        let run = SuiteRun::new(vec![suite()], timings, 0);
        let case = |id: &str| {
            run.case(&TestKey::new("py", format!("t.py::{id}")))
                .unwrap()
        };
        // Measured: 2 × (100 + 400) ms, and 3 s for the start and the watchdog.
        assert_eq!(run.batch_timeout(0, &[case("a"), case("b")]), 4_000);
        // One test without history: each test's 3 s, and 3 s more.
        assert_eq!(run.batch_timeout(0, &[case("a"), case("c")]), 9_000);
        // A slow measured test: never more than its timeout, and 3 s more.
        let mut slow = Timings::default();
        let o = outcome(60_000);
        slow.record_run(None, [(&k1, &o)]);
        let run = SuiteRun::new(vec![suite()], slow, 0);
        let a = run.case(&k1).unwrap();
        assert_eq!(run.batch_timeout(0, &[a]), 6_000);
        // Many tests without history: at most the unmeasured limit, and one timeout more.
        let many: Vec<String> = (0..1_000).map(|n| format!("t{n}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let run = SuiteRun::new(vec![pytest_suite(&many, 0)], Timings::default(), 0);
        let cases: Vec<TestCase> = run.records().into_iter().map(|r| r.case).collect();
        assert_eq!(
            run.batch_timeout(0, &cases),
            millis(UNMEASURED_BATCH_LIMIT) + 3_000
        );
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
