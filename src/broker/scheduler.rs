//! The broker's decisions, as a pure state machine: which job goes to which worker, what
//! happens when a job fails or a worker is lost, when a runner's work is done.
//!
//! It does no I/O. Each event returns the messages to send ([`Effect`]); the async shell in
//! `broker::mod` delivers them. That keeps every scheduling rule unit-testable and
//! deterministic.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use crate::proto::{
    BrokerToRunner, BrokerToWorker, JobId, JobIndex, JobOutcome, JobSpec, JobStatus, Submission,
};

/// A connected peer's id (its stream's peer id).
pub type PeerId = String;

/// A message the shell must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send to a worker.
    ToWorker(PeerId, BrokerToWorker),
    /// Send to a runner.
    ToRunner(PeerId, BrokerToRunner),
}

/// Where a job stands.
#[derive(Debug)]
enum JobState {
    Queued,
    /// Assigned to a worker; `started` once the worker said so.
    Assigned {
        worker: PeerId,
        started: bool,
    },
}

#[derive(Debug)]
struct Job {
    runner: PeerId,
    /// The runner's own id for the job (its manifest index).
    index: JobIndex,
    /// The spec as submitted.
    spec: JobSpec,
    /// Attempts started so far (the next assignment is attempt `attempts + 1`).
    attempts: u32,
    state: JobState,
    /// Set when the runner cancelled it; a late result then reports `Cancelled`.
    cancelled: bool,
}

/// A queue entry: longest estimate first; jobs without an estimate after those with one, in
/// submission order.
#[derive(Debug, PartialEq, Eq)]
struct Queued {
    estimate: Option<u64>,
    /// Global ids are given in submission order.
    global: JobId,
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // `None < Some(_)`: estimated jobs come first, the longest first; then earliest first.
        self.estimate
            .cmp(&other.estimate)
            .then_with(|| other.global.cmp(&self.global))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
struct Worker {
    /// The name it gave (what jobs see as `CLUSTER_WORKER`), for reports and messages.
    name: String,
    slots: u32,
    /// Jobs assigned and not finished (running or prefetched).
    assigned: BTreeSet<JobId>,
}

#[derive(Debug, Default)]
struct Runner {
    /// Jobs without a final outcome.
    pending: BTreeSet<JobId>,
    /// All submitted.
    submitted_all: bool,
    /// `AllDone` was sent.
    done_sent: bool,
}

/// The broker's state.
#[derive(Debug)]
pub struct Scheduler {
    prefetch: u32,
    jobs: HashMap<JobId, Job>,
    queue: BinaryHeap<Queued>,
    workers: BTreeMap<PeerId, Worker>,
    runners: BTreeMap<PeerId, Runner>,
    next_global: JobId,
    stop_requested: bool,
}

impl Scheduler {
    /// A scheduler that gives each worker up to `prefetch` jobs beyond its slots, so that a
    /// worker never waits a poll round-trip for its next job while work is queued.
    pub fn new(prefetch: u32) -> Self {
        Self {
            prefetch,
            jobs: HashMap::new(),
            queue: BinaryHeap::new(),
            workers: BTreeMap::new(),
            runners: BTreeMap::new(),
            next_global: JobId(0),
            stop_requested: false,
        }
    }

    /// Connected workers and their total slots.
    pub fn capacity(&self) -> (u32, u32) {
        let slots = self.workers.values().map(|w| w.slots).sum();
        (self.workers.len() as u32, slots)
    }

    /// Jobs queued or assigned, over all runners.
    pub fn unfinished(&self) -> usize {
        self.runners.values().map(|r| r.pending.len()).sum()
    }

    /// Connected runners.
    pub fn runner_count(&self) -> usize {
        self.runners.len()
    }

    /// True once a stop was requested and no runner has work left: the shell should tell
    /// every worker to exit and stop.
    pub fn should_stop(&self) -> bool {
        self.stop_requested && self.unfinished() == 0
    }

    /// A worker said hello, naming itself `name`.
    pub fn worker_joined(&mut self, peer: PeerId, name: String, slots: u32) -> Vec<Effect> {
        let mut fx = vec![Effect::ToWorker(peer.clone(), BrokerToWorker::Welcome)];
        self.workers.insert(
            peer,
            Worker {
                name,
                slots: slots.max(1),
                assigned: BTreeSet::new(),
            },
        );
        self.announce_capacity(&mut fx);
        self.fill(&mut fx);
        fx
    }

    /// A worker is gone (timed out or disconnected): its jobs go back to the queue. A job that
    /// had started counts the attempt; it fails with `Error` once out of attempts.
    pub fn worker_lost(&mut self, peer: &str, reason: &str) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(worker) = self.workers.remove(peer) else {
            return fx;
        };
        for &global in &worker.assigned {
            let Some(job) = self.jobs.get_mut(&global) else {
                continue;
            };
            let started = matches!(job.state, JobState::Assigned { started: true, .. });
            if !started {
                // Never ran there: the attempt it was given is handed out again.
                job.attempts -= 1;
            }
            if job.cancelled {
                let outcome = synthetic(job, &worker.name, JobStatus::Cancelled, None);
                self.finish(global, outcome, &mut fx);
            } else if started && job.attempts >= max_attempts_after_loss(&job.spec) {
                let msg = format!(
                    "worker {} was lost while running the job ({reason}); no attempts left",
                    worker.name
                );
                let outcome = synthetic(job, &worker.name, JobStatus::Error, Some(msg));
                self.finish(global, outcome, &mut fx);
            } else {
                self.requeue(global);
            }
        }
        self.announce_capacity(&mut fx);
        self.fill(&mut fx);
        fx
    }

    /// A worker started an attempt.
    pub fn job_started(&mut self, peer: &str, global: JobId, attempt: u32) -> Vec<Effect> {
        let (Some(job), Some(w)) = (self.jobs.get_mut(&global), self.workers.get(peer)) else {
            return Vec::new();
        };
        match &mut job.state {
            JobState::Assigned { worker, started } if worker == peer && job.attempts == attempt => {
                *started = true;
                vec![Effect::ToRunner(
                    job.runner.clone(),
                    BrokerToRunner::Started {
                        index: job.index,
                        attempt,
                        worker: w.name.clone(),
                    },
                )]
            }
            _ => Vec::new(),
        }
    }

    /// A worker finished an attempt: final, or retried while attempts remain.
    pub fn job_finished(
        &mut self,
        peer: &str,
        global: JobId,
        mut outcome: JobOutcome,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let current = self.jobs.get(&global).is_some_and(|job| {
            matches!(&job.state, JobState::Assigned { worker, .. } if worker == peer)
                && job.attempts == outcome.attempt
        });
        if !current {
            return fx; // a stale attempt (its worker was declared lost): ignore
        }
        if let Some(w) = self.workers.get_mut(peer) {
            w.assigned.remove(&global);
        }
        let Some(job) = self.jobs.get_mut(&global) else {
            return fx;
        };
        let retry = matches!(outcome.status, JobStatus::Failed | JobStatus::TimedOut)
            && !job.cancelled
            && job.attempts < 1 + job.spec.retries;
        if retry {
            self.requeue(global);
        } else {
            if job.cancelled {
                outcome.status = JobStatus::Cancelled;
            }
            self.finish(global, outcome, &mut fx);
        }
        self.fill(&mut fx);
        fx
    }

    /// A runner said hello.
    pub fn runner_joined(&mut self, peer: PeerId) -> Vec<Effect> {
        let (workers, slots) = self.capacity();
        self.runners.insert(peer.clone(), Runner::default());
        vec![Effect::ToRunner(
            peer,
            BrokerToRunner::Welcome { workers, slots },
        )]
    }

    /// A runner submitted jobs (named by the runner's own indexes).
    pub fn submit(&mut self, peer: &str, jobs: Vec<Submission>) -> Vec<Effect> {
        let mut fx = Vec::new();
        if !self.runners.contains_key(peer) {
            return fx;
        }
        for Submission { index, spec } in jobs {
            let global = self.next_global;
            self.next_global.0 += 1;
            let job = Job {
                runner: peer.to_string(),
                index,
                spec,
                attempts: 0,
                state: JobState::Queued,
                cancelled: false,
            };
            self.jobs.insert(global, job);
            if let Some(r) = self.runners.get_mut(peer) {
                r.pending.insert(global);
            }
            self.requeue(global);
        }
        self.fill(&mut fx);
        fx
    }

    /// A runner has submitted everything.
    pub fn end_of_submission(&mut self, peer: &str) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Some(r) = self.runners.get_mut(peer) {
            r.submitted_all = true;
        }
        self.check_runner_done(peer, &mut fx);
        fx
    }

    /// A runner cancels its work: queued jobs end `Cancelled` now, running ones are killed and
    /// end `Cancelled` when their worker reports.
    pub fn cancel(&mut self, peer: &str) -> Vec<Effect> {
        let mut fx = Vec::new();
        let pending: Vec<JobId> = self
            .runners
            .get(peer)
            .map(|r| r.pending.iter().copied().collect())
            .unwrap_or_default();
        for global in pending {
            let Some(job) = self.jobs.get_mut(&global) else {
                continue;
            };
            job.cancelled = true;
            match &job.state {
                JobState::Queued => {
                    let outcome = synthetic(job, "", JobStatus::Cancelled, None);
                    self.finish(global, outcome, &mut fx);
                }
                JobState::Assigned { worker, .. } => {
                    fx.push(Effect::ToWorker(
                        worker.clone(),
                        BrokerToWorker::Cancel { id: global },
                    ));
                }
            }
        }
        self.queue.retain(|q| {
            self.jobs
                .get(&q.global)
                .is_some_and(|j| matches!(j.state, JobState::Queued))
        });
        fx
    }

    /// A runner is gone: its work is cancelled (nobody is left to report to).
    pub fn runner_lost(&mut self, peer: &str) -> Vec<Effect> {
        let fx = self
            .cancel(peer)
            .into_iter()
            .filter(|e| !matches!(e, Effect::ToRunner(p, _) if p == peer))
            .collect();
        // Jobs still running stay accounted to the runner until their workers report.
        if self.runners.get(peer).is_some_and(|r| r.pending.is_empty()) {
            self.runners.remove(peer);
        }
        fx
    }

    /// A runner asked to stop the cluster once all work is done.
    pub fn request_stop(&mut self) {
        self.stop_requested = true;
    }

    /// The `Exit` messages for every worker, when stopping.
    pub fn exit_all(&self) -> Vec<Effect> {
        self.workers
            .keys()
            .map(|w| Effect::ToWorker(w.clone(), BrokerToWorker::Exit))
            .collect()
    }

    fn requeue(&mut self, global: JobId) {
        if let Some(job) = self.jobs.get_mut(&global) {
            job.state = JobState::Queued;
            self.queue.push(Queued {
                estimate: job.spec.estimate_ms,
                global,
            });
        }
    }

    /// Records a final outcome and tells the runner.
    fn finish(&mut self, global: JobId, outcome: JobOutcome, fx: &mut Vec<Effect>) {
        let Some(job) = self.jobs.get_mut(&global) else {
            return;
        };
        let index = job.index;
        let runner = job.runner.clone();
        if let Some(r) = self.runners.get_mut(&runner) {
            r.pending.remove(&global);
        }
        fx.push(Effect::ToRunner(
            runner.clone(),
            BrokerToRunner::Finished { index, outcome },
        ));
        self.jobs.remove(&global);
        self.check_runner_done(&runner, fx);
    }

    fn check_runner_done(&mut self, peer: &str, fx: &mut Vec<Effect>) {
        if let Some(r) = self.runners.get_mut(peer)
            && r.submitted_all
            && r.pending.is_empty()
            && !r.done_sent
        {
            r.done_sent = true;
            fx.push(Effect::ToRunner(peer.to_string(), BrokerToRunner::AllDone));
        }
    }

    fn announce_capacity(&self, fx: &mut Vec<Effect>) {
        let (workers, slots) = self.capacity();
        for r in self.runners.keys() {
            fx.push(Effect::ToRunner(
                r.clone(),
                BrokerToRunner::Workers { workers, slots },
            ));
        }
    }

    /// Hands queued jobs out: first to free slots (the emptiest worker first), then up to
    /// `prefetch` extra per worker.
    fn fill(&mut self, fx: &mut Vec<Effect>) {
        for limit_extra in [0, self.prefetch] {
            while !self.queue.is_empty() {
                let target = self
                    .workers
                    .iter()
                    .filter(|(_, w)| (w.assigned.len() as u32) < w.slots + limit_extra)
                    .max_by_key(|(_, w)| {
                        (
                            i64::from(w.slots) - w.assigned.len() as i64,
                            std::cmp::Reverse(w.assigned.len()),
                        )
                    })
                    .map(|(p, _)| p.clone());
                let Some(worker) = target else { break };
                let Some(q) = self.queue.pop() else { break };
                let Some(job) = self.jobs.get_mut(&q.global) else {
                    continue;
                };
                if !matches!(job.state, JobState::Queued) {
                    continue; // a stale queue entry
                }
                job.attempts += 1;
                job.state = JobState::Assigned {
                    worker: worker.clone(),
                    started: false,
                };
                let spec = job.spec.clone();
                let attempt = job.attempts;
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.assigned.insert(q.global);
                }
                fx.push(Effect::ToWorker(
                    worker,
                    BrokerToWorker::Assign {
                        id: q.global,
                        job: spec,
                        attempt,
                    },
                ));
            }
        }
    }
}

/// Attempts a job may use when workers get lost: its retries, but at least one requeue, since
/// a lost runner machine is not the job's fault.
fn max_attempts_after_loss(spec: &JobSpec) -> u32 {
    1 + spec.retries.max(1)
}

/// An outcome the broker makes up for a job no worker reported on.
fn synthetic(job: &Job, worker: &str, status: JobStatus, error: Option<String>) -> JobOutcome {
    JobOutcome {
        attempt: job.attempts,
        status,
        exit_code: None,
        duration_ms: 0,
        worker: worker.to_string(),
        output: String::new(),
        outputs_layer: None,
        outputs_path: None,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(index: u64, estimate_ms: Option<u64>, retries: u32) -> Submission {
        Submission {
            index: JobIndex(index),
            spec: job(index, estimate_ms, retries),
        }
    }

    fn job(index: u64, estimate_ms: Option<u64>, retries: u32) -> JobSpec {
        JobSpec {
            secret_env: Default::default(),
            name: format!("job-{index}"),
            run: "true".into(),
            env: BTreeMap::new(),
            layers: Vec::new(),
            timeout_ms: 1000,
            retries,
            outputs: Vec::new(),
            estimate_ms,
            isolation: Default::default(),
        }
    }

    fn outcome(attempt: u32, status: JobStatus) -> JobOutcome {
        JobOutcome {
            attempt,
            status,
            exit_code: Some(i32::from(status != JobStatus::Passed)),
            duration_ms: 1,
            worker: "w".into(),
            output: String::new(),
            outputs_layer: None,
            outputs_path: None,
            error: None,
        }
    }

    /// (worker, global id, attempt, runner-local id) of every assignment in `fx`.
    fn assigns(fx: &[Effect]) -> Vec<(String, JobId, u32, String)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::ToWorker(w, BrokerToWorker::Assign { id, job, attempt }) => {
                    Some((w.clone(), *id, *attempt, job.name.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// (runner index, outcome) of every final outcome in `fx`.
    fn finished(fx: &[Effect]) -> Vec<(JobIndex, JobOutcome)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::ToRunner(_, BrokerToRunner::Finished { index, outcome }) => {
                    Some((*index, outcome.clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn longest_estimate_first_then_manifest_order() {
        let mut s = Scheduler::new(0);
        s.runner_joined("r".into());
        s.submit(
            "r",
            vec![
                spec(0, None, 0),
                spec(1, Some(10), 0),
                spec(2, None, 0),
                spec(3, Some(500), 0),
            ],
        );
        let fx = s.worker_joined("w".into(), "w".into(), 4);
        let names: Vec<_> = assigns(&fx).into_iter().map(|a| a.3).collect();
        assert_eq!(names, ["job-3", "job-1", "job-0", "job-2"]);
    }

    #[test]
    fn fills_free_slots_before_prefetching() {
        let mut s = Scheduler::new(1);
        s.runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), 2);
        s.worker_joined("b".into(), "b".into(), 2);
        let fx = s.submit("r", (0..6).map(|i| spec(i, None, 0)).collect());
        let a = assigns(&fx);
        assert_eq!(a.len(), 6, "4 slots + 1 prefetch each");
        // The first four fill both workers' slots evenly before any prefetch.
        let first4: Vec<_> = a[..4].iter().map(|x| x.0.as_str()).collect();
        assert_eq!(first4.iter().filter(|w| **w == "a").count(), 2);
        let more = s.submit("r", vec![spec(6, None, 0)]);
        assert!(
            assigns(&more).is_empty(),
            "no worker has room beyond slots + prefetch"
        );
    }

    #[test]
    fn failed_job_is_retried_then_reported_once() {
        let mut s = Scheduler::new(0);
        s.runner_joined("r".into());
        s.worker_joined("w".into(), "w".into(), 1);
        let fx = s.submit("r", vec![spec(7, None, 1)]);
        let (_, g, attempt, _) = assigns(&fx)[0].clone();
        assert_eq!(attempt, 1);
        let fx = s.job_finished("w", g, outcome(1, JobStatus::Failed));
        assert!(finished(&fx).is_empty());
        assert_eq!(assigns(&fx)[0].2, 2, "second attempt");
        let mut fx = s.job_finished("w", g, outcome(2, JobStatus::Failed));
        fx.extend(s.end_of_submission("r"));
        let done = finished(&fx);
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].0, done[0].1.attempt, done[0].1.status),
            (JobIndex(7), 2, JobStatus::Failed)
        );
        assert!(fx.contains(&Effect::ToRunner("r".into(), BrokerToRunner::AllDone)));
    }

    #[test]
    fn lost_worker_jobs_run_elsewhere_and_stale_results_are_ignored() {
        let mut s = Scheduler::new(0);
        s.runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), 1);
        let fx = s.submit("r", vec![spec(0, None, 0)]);
        let (_, g, _, _) = assigns(&fx)[0].clone();
        s.job_started("a", g, 1);
        assert!(
            assigns(&s.worker_lost("a", "timeout")).is_empty(),
            "no other worker yet"
        );
        let fx = s.worker_joined("b".into(), "b".into(), 1);
        assert_eq!(assigns(&fx)[0].2, 2, "the lost attempt counts");
        // A late result from the lost worker changes nothing.
        assert!(finished(&s.job_finished("a", g, outcome(1, JobStatus::Passed))).is_empty());
        let done = finished(&s.job_finished("b", g, outcome(2, JobStatus::Passed)));
        assert_eq!(
            (done[0].1.attempt, done[0].1.status),
            (2, JobStatus::Passed)
        );
        assert_eq!(s.unfinished(), 0);
    }

    #[test]
    fn reports_name_workers_by_their_names() {
        let mut s = Scheduler::new(0);
        s.runner_joined("r".into());
        s.worker_joined("peer-a".into(), "machine-a".into(), 1);
        let fx = s.submit("r", vec![spec(0, None, 0)]);
        let g = assigns(&fx)[0].1;
        let fx = s.job_started("peer-a", g, 1);
        assert!(fx.contains(&Effect::ToRunner(
            "r".into(),
            BrokerToRunner::Started {
                index: JobIndex(0),
                attempt: 1,
                worker: "machine-a".into()
            }
        )));
        s.worker_lost("peer-a", "timeout");
        s.worker_joined("peer-b".into(), "machine-b".into(), 1);
        s.job_started("peer-b", g, 2);
        let done = finished(&s.worker_lost("peer-b", "timeout"));
        assert_eq!(
            (done[0].1.status, done[0].1.worker.as_str()),
            (JobStatus::Error, "machine-b")
        );
        assert!(
            done[0]
                .1
                .error
                .as_deref()
                .unwrap()
                .contains("worker machine-b was lost")
        );
    }

    #[test]
    fn prefetched_job_of_lost_worker_keeps_its_attempt() {
        let mut s = Scheduler::new(1);
        s.runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), 1);
        s.submit("r", vec![spec(0, None, 0), spec(1, None, 0)]);
        s.worker_lost("a", "gone");
        let fx = s.worker_joined("b".into(), "b".into(), 2);
        let attempts: Vec<u32> = assigns(&fx).iter().map(|a| a.2).collect();
        assert_eq!(attempts, [1, 1]);
    }

    #[test]
    fn cancel_reports_queued_now_and_running_when_the_worker_answers() {
        let mut s = Scheduler::new(0);
        s.runner_joined("r".into());
        s.worker_joined("w".into(), "w".into(), 1);
        let fx = s.submit("r", vec![spec(0, None, 3), spec(1, None, 0)]);
        let (_, running, _, _) = assigns(&fx)[0].clone();
        s.end_of_submission("r");
        let fx = s.cancel("r");
        assert_eq!(finished(&fx).len(), 1, "the queued job");
        assert!(fx.contains(&Effect::ToWorker(
            "w".into(),
            BrokerToWorker::Cancel { id: running }
        )));
        let fx = s.job_finished("w", running, outcome(1, JobStatus::Failed));
        assert_eq!(
            finished(&fx)[0].1.status,
            JobStatus::Cancelled,
            "not retried"
        );
        assert!(fx.contains(&Effect::ToRunner("r".into(), BrokerToRunner::AllDone)));
    }

    #[test]
    fn stop_waits_for_work_and_exits_every_worker() {
        let mut s = Scheduler::new(0);
        s.runner_joined("r".into());
        s.worker_joined("w".into(), "w".into(), 1);
        let fx = s.submit("r", vec![spec(0, None, 0)]);
        s.request_stop();
        assert!(!s.should_stop());
        s.job_finished("w", assigns(&fx)[0].1, outcome(1, JobStatus::Passed));
        assert!(s.should_stop());
        assert_eq!(
            s.exit_all(),
            [Effect::ToWorker("w".into(), BrokerToWorker::Exit)]
        );
    }
}
