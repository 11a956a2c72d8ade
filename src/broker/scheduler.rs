//! The broker's decisions, as a pure state machine: which job goes to which worker, what
//! happens when a job fails or a worker is lost, when a runner's work is done.
//!
//! It does no I/O. Each event returns the messages to send ([`Effect`]); the async shell in
//! `broker::mod` delivers them. That keeps every scheduling rule unit-testable and
//! deterministic. The event's time enters through [`Scheduler::at`] (nearly every event may
//! assign work, and an assignment to a free slot starts a round-trip measurement), so tests
//! choose it.
//!
//! Time, as in every state machine here: a `std::time::Instant` the shell reads from its clock
//! at each event and hands in; a machine never reads a clock, and the deadlines it returns are
//! such instants (the shell sleeps until them). Lengths are `Duration`s; milliseconds only on
//! the wire.
//!
//! Pipelining: each worker is kept [`Dispatch`]ed enough work beyond its slots to cover its
//! round trip (sized from what the broker measures: the assign → started round trip of that
//! worker, over the mean job time), bounded so that a lost worker strands little; none until
//! the workers expected to join have ([`Dispatch::expected_workers`]). A job whose duration
//! is expected (a suite batch from history) is prefetched to the worker where a slot is
//! expected to free first, as a single queue over all slots would run it, or waits in the
//! queue when a worker whose pipeline is full frees a slot sooner. When the
//! queue runs dry and a worker has a free slot, unstarted prefetched work is taken back from
//! a worker that holds more than it can run ([`BrokerToWorker::TakeBack`]); the worker answers
//! with what it gave up, and an attempt it had started meanwhile keeps running there. A
//! prefetched job is taken back too when a shorter one starts elsewhere and ends before it
//! would start where it waits: the estimates guessed wrong which slot frees first.
//!
//! A job whose process ended and whose outputs its worker uploads ([`Scheduler::job_uploading`])
//! stays that worker's until its result, but holds none of its slots.
//!
//! Fencing: a worker starts assigned work only under a lease ([`BrokerToWorker::Lease`])
//! shorter than the silence after which the broker declares it lost, so a lost worker starts
//! nothing it was given; a late result from a worker declared lost is dropped.
//!
//! Retries elsewhere: a job avoids the workers its attempts failed on or were lost with, and
//! those its spec names (`avoid_workers`: where a failed test's earlier attempts ran). It waits
//! in the queue for another worker's room while later jobs go out, and goes to an avoided
//! worker only when no other is connected; take-back moves work only to a worker that may run
//! it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::notice::Notice;
use crate::proto::{
    AttemptRef, BrokerToRunner, BrokerToWorker, DefaultsId, JobDefaults, JobId, JobIndex,
    JobOutcome, JobSpec, JobStatus, Submission,
};

/// The most jobs kept beyond a worker's slots, per slot, however short jobs are: what a lost
/// worker can strand until the peer timeout.
const MAX_EXTRA_PER_SLOT: u32 = 32;
/// Pipelines cover this many measured round trips (room for jitter).
const ROUND_TRIPS_COVERED: f64 = 2.0;
/// Weight of a new sample in the running means.
const SAMPLE_WEIGHT: f64 = 0.2;

/// How the scheduler pipelines work and fences workers.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// Jobs given to a worker beyond its slots until the broker has measured its round trip
    /// and job times (then the pipeline is sized from those); 0 turns prefetching off.
    pub prefetch: u32,
    /// How long a lease lets a worker start assigned work; shorter than the peer timeout after
    /// which the broker declares a silent worker lost.
    pub lease: Duration,
    /// How many workers are expected to join (0: unknown). Until that many have, no worker
    /// gets work beyond its slots: the first to join would otherwise take the queue's first
    /// jobs (a plan's longest) beyond its slots and run them one after another while the
    /// workers that join a moment later take what is left.
    pub expected_workers: u32,
}

/// A connected peer's id (its stream's peer id).
pub type PeerId = String;

/// Something the shell must do: send a message, or log a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send to a worker.
    ToWorker(PeerId, BrokerToWorker),
    /// Send to a runner.
    ToRunner(PeerId, BrokerToRunner),
    /// Tell the broker's log.
    Notice(Notice),
}

/// Where a job stands.
#[derive(Debug)]
enum JobState {
    Queued,
    /// Assigned to a worker (boxed: most jobs wait queued, and those stay small).
    Assigned(Box<Placement>),
}

/// Where an assigned job is.
#[derive(Debug)]
struct Placement {
    worker: PeerId,
    /// The worker said it started.
    started: bool,
    /// When it said so, as far as the broker knows the time.
    started_at: Option<Instant>,
    /// Asked back from the worker, and for whom; it answers with `Released` or `Started`.
    taking_back: Option<TakingBack>,
    /// The order of assignments (the newest are taken back first: they start last).
    order: u64,
    /// When it was sent to a free slot: its `Started` measures the round trip.
    probe: Option<Instant>,
}

/// Why a job was asked back from the worker holding it.
#[derive(Debug)]
enum TakingBack {
    /// Other workers have free slots the queue cannot fill: it goes to the queue.
    ForFreeSlots,
    /// It is expected to start sooner on this worker (see
    /// [`Scheduler::take_back_overtaken`]): it goes there, even beyond that worker's
    /// pipeline depth (the worker starts the longest of its waiting jobs first).
    For(PeerId),
}

#[derive(Debug)]
struct Job {
    /// Shared by every job of the runner.
    runner: Arc<str>,
    /// The runner's own id for the job (its manifest index).
    index: JobIndex,
    /// The spec as submitted, shared with every assignment of it.
    spec: Arc<JobSpec>,
    /// The runner's shared defaults it inherits, if it does.
    defaults: Option<(DefaultsId, Arc<JobDefaults>)>,
    /// Attempts started so far (the next assignment is attempt `attempts + 1`).
    attempts: u32,
    /// Of those, attempts lost with their worker: the infrastructure's, not the job's, so
    /// they do not use up its `retries` (they have a budget of their own).
    lost: u32,
    state: JobState,
    /// Set when the runner cancelled it; a late result then reports `Cancelled`.
    cancelled: bool,
    /// The workers (by name) attempts of it failed on or were lost with: like the spec's
    /// `avoid_workers`, its retries go elsewhere when another worker is connected.
    failed_on: Vec<String>,
}

impl Job {
    /// Whether the job would rather not run on `w` (an earlier attempt of it failed there).
    fn avoids(&self, w: &Worker) -> bool {
        self.spec.avoid_workers.contains(&w.name) || self.failed_on.contains(&w.name)
    }
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
    /// Jobs assigned and not finished (running, prefetched, or uploading their outputs).
    assigned: BTreeSet<JobId>,
    /// Those of `assigned` whose process ended and whose outputs are being uploaded: they
    /// hold no slot.
    uploading: BTreeSet<JobId>,
    /// The measured assign → started round trip (a running mean).
    round_trip: Option<Duration>,
    /// The shared defaults it was sent (each once).
    defaults: BTreeSet<DefaultsId>,
}

impl Worker {
    /// Jobs that hold a slot or wait for one: assigned, minus those uploading outputs.
    fn holding(&self) -> usize {
        self.assigned.len() - self.uploading.len()
    }
}

#[derive(Debug, Default)]
struct Runner {
    /// Jobs without a final outcome.
    pending: BTreeSet<JobId>,
    /// All submitted.
    submitted_all: bool,
    /// `AllDone` was sent.
    done_sent: bool,
    /// What its jobs that inherit share ([`RunnerMsg::Defaults`](crate::proto::RunnerMsg)).
    defaults: Option<(DefaultsId, Arc<JobDefaults>)>,
}

/// The broker's state.
#[derive(Debug)]
pub struct Scheduler {
    dispatch: Dispatch,
    /// The time of the event being handled, as the shell last said ([`Scheduler::at`]); none
    /// before it first did (then nothing is measured).
    now: Option<Instant>,
    /// The mean duration of an attempt, in seconds (a running mean).
    job_secs: Option<f64>,
    /// Counts assignments (their `order`).
    assignments: u64,
    /// The names of the workers that joined so far (for [`Dispatch::expected_workers`]).
    joined: BTreeSet<String>,
    jobs: HashMap<JobId, Job>,
    queue: BinaryHeap<Queued>,
    workers: BTreeMap<PeerId, Worker>,
    runners: BTreeMap<PeerId, Runner>,
    next_global: JobId,
    next_defaults: DefaultsId,
    stop_requested: bool,
}

impl Scheduler {
    /// A scheduler that pipelines work as `dispatch` says.
    pub fn new(dispatch: Dispatch) -> Self {
        Self {
            dispatch,
            now: None,
            job_secs: None,
            assignments: 0,
            joined: BTreeSet::new(),
            jobs: HashMap::new(),
            queue: BinaryHeap::new(),
            workers: BTreeMap::new(),
            runners: BTreeMap::new(),
            next_global: JobId(0),
            next_defaults: DefaultsId(0),
            stop_requested: false,
        }
    }

    /// Sets the time of the next event (the shell calls it with the clock; tests choose it).
    pub fn at(&mut self, now: Instant) -> &mut Self {
        self.now = Some(now);
        self
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

    /// Whether worker `peer` holds jobs whose results it owes (running, prefetched or
    /// uploading their outputs): the broker then reads its stream at the busy pace.
    pub fn holds_work(&self, peer: &str) -> bool {
        self.workers
            .get(peer)
            .is_some_and(|w| !w.assigned.is_empty())
    }

    /// A worker said hello, naming itself `name`.
    pub fn worker_joined(&mut self, peer: PeerId, name: String, slots: u32) -> Vec<Effect> {
        let mut fx = vec![
            Effect::ToWorker(peer.clone(), BrokerToWorker::Welcome),
            Effect::ToWorker(peer.clone(), self.lease(0)),
        ];
        self.joined.insert(name.clone());
        self.workers.insert(
            peer,
            Worker {
                name,
                slots: slots.max(1),
                assigned: BTreeSet::new(),
                uploading: BTreeSet::new(),
                round_trip: None,
                defaults: BTreeSet::new(),
            },
        );
        self.announce_capacity(&mut fx);
        self.fill(&mut fx);
        fx
    }

    /// A worker asks for a fresh lease; a worker declared lost gets none.
    pub fn renew(&self, peer: &str, seq: u64) -> Vec<Effect> {
        if !self.workers.contains_key(peer) {
            return Vec::new();
        }
        vec![Effect::ToWorker(peer.to_string(), self.lease(seq))]
    }

    fn lease(&self, seq: u64) -> BrokerToWorker {
        BrokerToWorker::Lease {
            seq,
            valid_ms: self.dispatch.lease.as_millis() as u64,
        }
    }

    /// A worker is gone (timed out or disconnected): its jobs go back to the queue. A job that
    /// had started counts a lost attempt (not one of its retries); it fails with `Error` once
    /// out of those.
    pub fn worker_lost(&mut self, peer: &str, reason: &str) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(worker) = self.workers.remove(peer) else {
            return fx;
        };
        for &global in &worker.assigned {
            let Some(job) = self.jobs.get_mut(&global) else {
                continue;
            };
            let started = matches!(&job.state, JobState::Assigned(p) if p.started);
            if started {
                job.lost += 1;
                job.failed_on.push(worker.name.clone());
            } else {
                // Never ran there: the attempt it was given is handed out again.
                job.attempts -= 1;
            }
            if job.cancelled {
                let outcome = synthetic(job, &worker.name, JobStatus::Cancelled, None);
                self.finish(global, outcome, &mut fx);
            } else if started && job.lost >= max_losses(&job.spec) {
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
        let (Some(job), Some(w)) = (self.jobs.get_mut(&global), self.workers.get_mut(peer)) else {
            return Vec::new();
        };
        match &mut job.state {
            JobState::Assigned(p) if p.worker == peer && job.attempts == attempt => {
                p.started = true;
                p.started_at = self.now;
                // A take-back that crossed the start: the attempt runs here.
                p.taking_back = None;
                if let (Some(sent), Some(now)) = (p.probe.take(), self.now) {
                    let sample = now.saturating_duration_since(sent).as_secs_f64();
                    let mean = running_mean(w.round_trip.map(|d| d.as_secs_f64()), sample);
                    w.round_trip = Some(Duration::from_secs_f64(mean));
                }
                let mut fx = vec![Effect::ToRunner(
                    job.runner.to_string(),
                    BrokerToRunner::Started {
                        index: job.index,
                        attempt,
                        worker: w.name.clone(),
                    },
                )];
                if let (Some(ms), Some(now)) = (job.spec.expected_ms(), self.now) {
                    self.take_back_overtaken(peer, ms, now, &mut fx);
                }
                fx
            }
            _ => Vec::new(),
        }
    }

    /// A worker's running attempt wrote progress lines: they go to the job's runner, when the
    /// attempt is still the job's current one on that worker.
    pub fn job_progress(
        &mut self,
        peer: &str,
        global: JobId,
        attempt: u32,
        lines: String,
    ) -> Vec<Effect> {
        let Some(job) = self.jobs.get(&global) else {
            return Vec::new();
        };
        match &job.state {
            JobState::Assigned(p) if p.worker == peer && p.started && job.attempts == attempt => {
                vec![Effect::ToRunner(
                    job.runner.to_string(),
                    BrokerToRunner::Progress {
                        index: job.index,
                        attempt,
                        lines,
                    },
                )]
            }
            _ => Vec::new(),
        }
    }

    /// A worker's attempt ended its process and uploads its outputs: its slot is free (the
    /// job stays the worker's until `Finished`).
    pub fn job_uploading(&mut self, peer: &str, global: JobId, attempt: u32) -> Vec<Effect> {
        let mut fx = Vec::new();
        let current = self.jobs.get(&global).is_some_and(|job| {
            matches!(&job.state, JobState::Assigned(p) if p.worker == peer && p.started)
                && job.attempts == attempt
        });
        if current && let Some(w) = self.workers.get_mut(peer) {
            w.uploading.insert(global);
            self.fill(&mut fx);
        }
        fx
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
            matches!(&job.state, JobState::Assigned(p) if p.worker == peer)
                && job.attempts == outcome.attempt
        });
        if !current {
            fx.push(Effect::Notice(Notice::info(format!(
                "dropping a late result of job {global} attempt {} from worker {}: not the \
                 job's current attempt (its worker was declared lost, or the job was given to \
                 another)",
                outcome.attempt, outcome.worker
            ))));
            return fx;
        }
        if outcome.status != JobStatus::Cancelled {
            let secs = Duration::from_millis(outcome.duration_ms).as_secs_f64();
            self.job_secs = Some(running_mean(self.job_secs, secs));
        }
        let worker = self.workers.get_mut(peer).map(|w| {
            w.assigned.remove(&global);
            w.uploading.remove(&global);
            w.name.clone()
        });
        let Some(job) = self.jobs.get_mut(&global) else {
            return fx;
        };
        let retry = matches!(outcome.status, JobStatus::Failed | JobStatus::TimedOut)
            && !job.cancelled
            && job.attempts - job.lost < 1 + job.spec.retries;
        if retry {
            job.failed_on.extend(worker);
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

    /// A worker answered a take-back with the attempts it gave up: they never started and
    /// never will there, so they go back to the queue with their attempt unspent.
    pub fn released(&mut self, peer: &str, attempts: &[AttemptRef]) -> Vec<Effect> {
        let mut fx = Vec::new();
        for r in attempts {
            let Some(job) = self.jobs.get_mut(&r.id) else {
                continue;
            };
            let JobState::Assigned(p) = &mut job.state else {
                continue;
            };
            if p.worker != peer || p.started || job.attempts != r.attempt {
                continue;
            }
            let why = p.taking_back.take();
            if let Some(w) = self.workers.get_mut(peer) {
                w.assigned.remove(&r.id);
            }
            job.attempts -= 1;
            if job.cancelled {
                let outcome = synthetic(job, "", JobStatus::Cancelled, None);
                self.finish(r.id, outcome, &mut fx);
                continue;
            }
            job.state = JobState::Queued;
            let job = &self.jobs[&r.id];
            match why {
                Some(TakingBack::For(to))
                    if (self.workers.get(&to)).is_some_and(|w| self.may_run_on(job, w)) =>
                {
                    self.assign(r.id, to, &mut fx);
                }
                _ => self.requeue(r.id),
            }
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

    /// A runner sent what its jobs share: kept once, and handed to each worker once, before
    /// the first of those jobs it is given.
    pub fn defaults(&mut self, peer: &str, defaults: JobDefaults) {
        if let Some(r) = self.runners.get_mut(peer) {
            let id = self.next_defaults;
            self.next_defaults.0 += 1;
            r.defaults = Some((id, Arc::new(defaults)));
        }
    }

    /// A runner submitted jobs (named by the runner's own indexes).
    pub fn submit(&mut self, peer: &str, jobs: Vec<Submission>) -> Vec<Effect> {
        let mut fx = Vec::new();
        if !self.runners.contains_key(peer) {
            return fx;
        }
        let runner: Arc<str> = Arc::from(peer);
        let defaults = self.runners.get(peer).and_then(|r| r.defaults.clone());
        for Submission { index, spec } in jobs {
            let global = self.next_global;
            self.next_global.0 += 1;
            let job = Job {
                runner: Arc::clone(&runner),
                index,
                defaults: defaults.clone().filter(|_| spec.inherits),
                spec: Arc::new(spec),
                attempts: 0,
                lost: 0,
                state: JobState::Queued,
                cancelled: false,
                failed_on: Vec::new(),
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
                JobState::Assigned(p) => {
                    fx.push(Effect::ToWorker(
                        p.worker.clone(),
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
        let runner = job.runner.to_string();
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

    /// Hands queued jobs out: first to free slots (the emptiest worker first), then up to each
    /// worker's pipeline depth. A job that would rather not run where there is room (a retry,
    /// see [`Scheduler::may_run_on`]) waits in the queue while later jobs go out. Then takes
    /// back prefetched work for free slots the queue cannot use.
    fn fill(&mut self, fx: &mut Vec<Effect>) {
        let mut waiting = Vec::new();
        for prefetching in [false, true] {
            while let Some(q) = self.queue.pop() {
                let Some(job) = self.jobs.get(&q.global) else {
                    continue; // a stale queue entry
                };
                match self.next_target(job, prefetching) {
                    Target::Worker(worker) => self.assign(q.global, worker, fx),
                    // The jobs after it would wait for the same slot: they are not looked at
                    // again on every event while it frees.
                    Target::SoonerElsewhere => {
                        self.queue.push(q);
                        break;
                    }
                    Target::None
                        if self.workers.values().any(|w| self.has_room(w, prefetching)) =>
                    {
                        waiting.push(q);
                    }
                    Target::None => {
                        self.queue.push(q);
                        break;
                    }
                }
            }
            self.queue.extend(waiting.drain(..));
        }
        self.take_back(fx);
    }

    /// Whether `w` takes another job: below its slots, or when `prefetching`, below its
    /// pipeline depth.
    fn has_room(&self, w: &Worker, prefetching: bool) -> bool {
        let extra = if prefetching { self.extra(w) } else { 0 };
        (w.holding() as u32) < w.slots + extra
    }

    /// Whether `job` may go to `w`: a job goes to a worker it avoids (one an earlier attempt
    /// failed on) only when every connected worker is one (never starved: a lone worker
    /// runs its retries), and otherwise waits for another.
    fn may_run_on(&self, job: &Job, w: &Worker) -> bool {
        !job.avoids(w) || self.workers.values().all(|other| job.avoids(other))
    }

    /// The worker `job` goes to next: of those it may run on (see [`Scheduler::may_run_on`]),
    /// the one with the most free slots, or when `prefetching`, the one where it is expected
    /// to start soonest (see [`Scheduler::expected_start`]), else the one furthest below its
    /// pipeline depth.
    ///
    /// A job prefetched by its expected start stays in the queue
    /// ([`Target::SoonerElsewhere`]) when a worker whose pipeline is full is expected to free
    /// a slot for it sooner than it would start where there is room: given to the worker with
    /// room, it would wait there behind busy slots while shorter jobs start elsewhere, and be
    /// taken back or end the run late. It goes to the first slot that frees.
    fn next_target(&self, job: &Job, prefetching: bool) -> Target {
        let room = (self.workers.iter())
            .filter(|(_, w)| self.has_room(w, prefetching) && self.may_run_on(job, w));
        if prefetching
            && job.spec.expected_ms().is_some()
            && let Some(now) = self.now
            && let Some(starts) = (room.clone())
                .map(|(peer, w)| Some((self.expected_start(w, now)?, peer)))
                .collect::<Option<Vec<_>>>()
        {
            let Some((start, peer, here)) = (starts.into_iter().min())
                .and_then(|(start, peer)| Some((start, peer, self.workers.get(peer)?)))
            else {
                return Target::None;
            };
            let sooner_elsewhere = (self.workers.iter())
                .filter(|(other, w)| *other != peer && self.may_run_on(job, w))
                .filter_map(|(_, w)| Some(self.expected_start(w, now)? + trips(here, w)))
                .any(|elsewhere| elsewhere < start);
            return match sooner_elsewhere {
                true => Target::SoonerElsewhere,
                false => Target::Worker(peer.clone()),
            };
        }
        room.max_by_key(|(_, w)| {
            (
                i64::from(w.slots) - w.holding() as i64,
                Reverse(w.holding()),
            )
        })
        .map_or(Target::None, |(p, _)| Target::Worker(p.clone()))
    }

    /// When a job given to `w` at `now` is expected to start (see [`Scheduler::expected_starts`]).
    fn expected_start(&self, w: &Worker, now: Instant) -> Option<Instant> {
        self.expected_starts(w, now).map(|(_, next)| next)
    }

    /// When the jobs waiting on `w` at `now` are expected to start, and a job given to it
    /// next, from the expected durations of the jobs it holds
    /// ([`JobSpec::expected_ms`](crate::proto::JobSpec::expected_ms)): each running job frees
    /// its slot when it is expected to end, and the jobs waiting there take the slots longest
    /// first, as the worker starts them. None when one of them has no expected duration:
    /// prefetching then goes by room.
    fn expected_starts(
        &self,
        w: &Worker,
        now: Instant,
    ) -> Option<(Vec<(JobId, Instant)>, Instant)> {
        let mut free: BinaryHeap<Reverse<Instant>> = BinaryHeap::new();
        let mut waiting = Vec::new();
        for id in w.assigned.difference(&w.uploading) {
            let job = self.jobs.get(id)?;
            let JobState::Assigned(p) = &job.state else {
                continue;
            };
            let ms = Duration::from_millis(job.spec.expected_ms()?);
            match p.started_at {
                Some(at) => free.push(Reverse((at + ms).max(now))),
                None => waiting.push((p.order, *id, ms)),
            }
        }
        while free.len() < w.slots as usize {
            free.push(Reverse(now));
        }
        // As the worker starts them: longest first, then in the order they were given.
        waiting.sort_unstable_by_key(|&(order, _, ms)| (Reverse(ms), order));
        let mut starts = Vec::with_capacity(waiting.len());
        for (_, id, ms) in waiting {
            let Reverse(at) = free.pop()?;
            starts.push((id, at));
            free.push(Reverse(at + ms));
        }
        free.pop().map(|Reverse(next)| (starts, next))
    }

    /// A job of `ms` expected started on `peer` at `now`: a longer job given to another worker
    /// ahead of time, and expected to start there only after this one ends (and a take-back's
    /// round trips), is taken back for this worker (see [`TakingBack::For`]). Prefetching guesses
    /// where a slot frees first from the estimates; when a slot frees early elsewhere, its
    /// worker takes the queue's next, shorter jobs, and the longer one held behind busy slots
    /// would start last and end the run late (a 2.4 s batch started 2 s after the others' last
    /// in a run of 8 slots). The queue hands out the longest first; this keeps it so.
    fn take_back_overtaken(&mut self, peer: &str, ms: u64, now: Instant, fx: &mut Vec<Effect>) {
        let Some(here) = self.workers.get(peer) else {
            return;
        };
        let ends = now + Duration::from_millis(ms);
        let mut longest: Option<(u64, JobId, PeerId)> = None;
        for (other, w) in self.workers.iter().filter(|(other, _)| *other != peer) {
            let Some((starts, _)) = self.expected_starts(w, now) else {
                continue;
            };
            let trips = trips(here, w);
            for (id, start) in starts {
                let Some(job) = self.jobs.get(&id) else {
                    continue;
                };
                let JobState::Assigned(p) = &job.state else {
                    continue;
                };
                let job_ms = job.spec.expected_ms().unwrap_or(0);
                if start > ends.max(now + trips)
                    && job_ms > ms
                    && p.taking_back.is_none()
                    && self.may_run_on(job, here)
                    && longest.as_ref().is_none_or(|(most, _, _)| job_ms > *most)
                {
                    longest = Some((job_ms, id, other.clone()));
                }
            }
        }
        let Some((_, id, holder)) = longest else {
            return;
        };
        if let Some(asked) = self.taking_back(id, TakingBack::For(peer.into())) {
            let jobs = vec![asked];
            fx.push(Effect::ToWorker(holder, BrokerToWorker::TakeBack { jobs }));
        }
    }

    /// Marks the assigned job `id` as asked back from its worker `why`: the attempt to name
    /// in the `TakeBack`, or none when it is not assigned.
    fn taking_back(&mut self, id: JobId, why: TakingBack) -> Option<AttemptRef> {
        let job = self.jobs.get_mut(&id)?;
        let JobState::Assigned(p) = &mut job.state else {
            return None;
        };
        p.taking_back = Some(why);
        Some(AttemptRef {
            id,
            attempt: job.attempts,
        })
    }

    fn assign(&mut self, global: JobId, worker: PeerId, fx: &mut Vec<Effect>) {
        let (Some(job), Some(w)) = (self.jobs.get_mut(&global), self.workers.get_mut(&worker))
        else {
            return;
        };
        if !matches!(job.state, JobState::Queued) {
            return; // a stale queue entry
        }
        let free_slot = (w.holding() as u32) < w.slots;
        self.assignments += 1;
        job.attempts += 1;
        job.state = JobState::Assigned(Box::new(Placement {
            worker: worker.clone(),
            started: false,
            started_at: None,
            taking_back: None,
            order: self.assignments,
            probe: self.now.filter(|_| free_slot),
        }));
        w.assigned.insert(global);
        if let Some((id, defaults)) = &job.defaults
            && w.defaults.insert(*id)
        {
            let defaults = Arc::clone(defaults);
            let msg = BrokerToWorker::Defaults { id: *id, defaults };
            fx.push(Effect::ToWorker(worker.clone(), msg));
        }
        fx.push(Effect::ToWorker(
            worker,
            BrokerToWorker::Assign {
                id: global,
                job: Arc::clone(&job.spec),
                attempt: job.attempts,
                defaults: job.defaults.as_ref().map(|(id, _)| *id),
            },
        ));
    }

    /// Jobs kept assigned to `w` beyond its slots: enough to cover its round trip at the mean
    /// job time (the slots finish `round trip / job time` jobs each while the next assignment
    /// travels), at least one, at most [`MAX_EXTRA_PER_SLOT`] per slot; `prefetch` until both
    /// are measured; none until the expected workers joined.
    fn extra(&self, w: &Worker) -> u32 {
        if self.joined.len() < self.dispatch.expected_workers as usize {
            return 0;
        }
        let prefetch = self.dispatch.prefetch;
        let (Some(round_trip), Some(job_secs)) = (w.round_trip, self.job_secs) else {
            return prefetch;
        };
        if prefetch == 0 {
            return 0;
        }
        let jobs_per_trip = round_trip.as_secs_f64() / job_secs.max(0.001);
        let want = (ROUND_TRIPS_COVERED * jobs_per_trip * f64::from(w.slots)).ceil();
        (want as u32).clamp(1, MAX_EXTRA_PER_SLOT * w.slots)
    }

    /// Free slots the queue cannot use: asks workers holding more than their slots for
    /// unstarted work, as much as other workers have free slots (the newest assignments first:
    /// they start last), and only work a worker with a free slot may run.
    fn take_back(&mut self, fx: &mut Vec<Effect>) {
        let idle: Vec<&Worker> = self
            .workers
            .values()
            .filter(|w| (w.holding() as u32) < w.slots)
            .collect();
        let free: usize = idle
            .iter()
            .map(|w| (w.slots as usize).saturating_sub(w.holding()))
            .sum();
        if free == 0 {
            return;
        }
        let mut candidates: Vec<(PeerId, Vec<(u64, JobId)>)> = Vec::new();
        let mut asked = 0;
        for (peer, w) in &self.workers {
            let mut unstarted = Vec::new();
            let mut in_flight = 0;
            for id in &w.assigned {
                let Some(job) = self.jobs.get(id) else {
                    continue;
                };
                match &job.state {
                    JobState::Assigned(p) if p.taking_back.is_some() => in_flight += 1,
                    JobState::Assigned(p)
                        if !p.started && idle.iter().any(|w| self.may_run_on(job, w)) =>
                    {
                        unstarted.push((p.order, *id));
                    }
                    _ => {}
                }
            }
            asked += in_flight;
            let excess = w.holding() - in_flight;
            let excess = excess.saturating_sub(w.slots as usize).min(unstarted.len());
            unstarted.sort_unstable();
            candidates.push((peer.clone(), unstarted.split_off(unstarted.len() - excess)));
        }
        let mut want = free.saturating_sub(asked);
        let mut chosen: BTreeMap<PeerId, Vec<AttemptRef>> = BTreeMap::new();
        // One at a time from whoever holds the most, so that no worker is emptied first.
        while want > 0 {
            let Some((peer, jobs)) = candidates
                .iter_mut()
                .filter(|(_, jobs)| !jobs.is_empty())
                .max_by_key(|(_, jobs)| jobs.len())
            else {
                break;
            };
            let Some((_, id)) = jobs.pop() else { break };
            want -= 1;
            if let Some(asked) = self.taking_back(id, TakingBack::ForFreeSlots) {
                chosen.entry(peer.clone()).or_default().push(asked);
            }
        }
        for (peer, jobs) in chosen {
            fx.push(Effect::ToWorker(peer, BrokerToWorker::TakeBack { jobs }));
        }
    }
}

/// Where the next queued job goes ([`Scheduler::next_target`]).
enum Target {
    /// To this worker.
    Worker(PeerId),
    /// Nowhere yet: no worker it may run on has room.
    None,
    /// Nowhere yet: a slot frees sooner on a worker without room, and it waits for it.
    SoonerElsewhere,
}

/// What moving a job between workers `a` and `b` may cost: two round trips of the slower one
/// (a take-back and its release, or an assignment and its start).
fn trips(a: &Worker, b: &Worker) -> Duration {
    2 * a
        .round_trip
        .unwrap_or_default()
        .max(b.round_trip.unwrap_or_default())
}

/// A running mean with the weight [`SAMPLE_WEIGHT`] on the new sample.
fn running_mean(mean: Option<f64>, sample: f64) -> f64 {
    mean.map_or(sample, |m| m + SAMPLE_WEIGHT * (sample - m))
}

/// Attempts of a job that may be lost with their workers before it is given up as an error:
/// one more than its retries, and at least two, since a lost runner machine is not the job's
/// fault (a job that kills every worker it runs on is stopped by this bound).
fn max_losses(spec: &JobSpec) -> u32 {
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

    /// A scheduler prefetching 1 job per worker, with runner `r` and workers `a` and `b` of
    /// `slots` slots each, joined at the instant returned.
    fn two_workers(slots: u32) -> (Scheduler, Instant) {
        let mut s = sched(1);
        let t0 = Instant::now();
        s.at(t0).runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), slots);
        s.worker_joined("b".into(), "b".into(), slots);
        (s, t0)
    }

    /// A scheduler with this initial prefetch and a 30 s lease.
    fn sched(prefetch: u32) -> Scheduler {
        Scheduler::new(Dispatch {
            prefetch,
            lease: Duration::from_secs(30),
            expected_workers: 0,
        })
    }

    fn spec(index: u64, estimate_ms: Option<u64>, retries: u32) -> Submission {
        Submission {
            index: JobIndex(index),
            spec: job(index, estimate_ms, retries),
        }
    }

    /// Job `index`, expected to take `ms` from its history.
    fn expected(ms: u64, index: u64) -> Submission {
        Submission {
            index: JobIndex(index),
            spec: JobSpec {
                expected_ms: Some(ms),
                ..job(index, None, 0)
            },
        }
    }

    fn job(index: u64, estimate_ms: Option<u64>, retries: u32) -> JobSpec {
        JobSpec {
            retries,
            estimate_ms,
            ..JobSpec::new(format!("job-{index}"), "true", 1000)
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
                Effect::ToWorker(
                    w,
                    BrokerToWorker::Assign {
                        id, job, attempt, ..
                    },
                ) => Some((w.clone(), *id, *attempt, job.name.clone())),
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
    fn a_runner_s_defaults_go_to_each_worker_once_before_its_first_inheriting_job() {
        let mut s = sched(0);
        s.runner_joined("r".into());
        s.runner_joined("plain".into());
        let shared = JobDefaults {
            env: BTreeMap::from([("BIG".into(), "x".repeat(1000))]),
            secret_env: Default::default(),
        };
        s.defaults("r", shared.clone());
        s.worker_joined("a".into(), "a".into(), 2);
        s.worker_joined("b".into(), "b".into(), 2);
        let inheriting = |i| {
            let mut job = spec(i, None, 0);
            job.spec.inherits = true;
            job
        };
        let mut fx = s.submit("r", (0..3).map(inheriting).collect());
        fx.extend(s.submit("plain", vec![spec(9, None, 0)]));
        let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for effect in &fx {
            if let Effect::ToWorker(w, msg) = effect {
                let what = match msg {
                    BrokerToWorker::Defaults { id, defaults } => {
                        assert_eq!(**defaults, shared);
                        format!("defaults {}", id.0)
                    }
                    BrokerToWorker::Assign { job, defaults, .. } => {
                        format!("{} {defaults:?}", job.name)
                    }
                    _ => continue,
                };
                sent.entry(w.clone()).or_default().push(what);
            }
        }
        let firsts: Vec<&str> = sent.values().map(|msgs| msgs[0].as_str()).collect();
        assert_eq!(firsts, ["defaults 0", "defaults 0"], "{sent:?}");
        let copies = sent
            .values()
            .flatten()
            .filter(|m| m.starts_with("defaults"))
            .count();
        assert_eq!(copies, 2, "one copy per worker, not per job: {sent:?}");
        let plain: Vec<&String> = sent
            .values()
            .flatten()
            .filter(|m| m.starts_with("job-9"))
            .collect();
        assert_eq!(
            plain,
            ["job-9 None"],
            "another runner's job inherits nothing"
        );
    }

    #[test]
    fn longest_estimate_first_then_manifest_order() {
        let mut s = sched(0);
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
        let mut s = sched(1);
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
    fn a_prefetched_job_goes_where_a_slot_is_expected_to_free_first() {
        // Two workers of two slots run four jobs, one of them short; a fifth job goes to the
        // worker of the short one, whichever that is.
        for short in 0..4 {
            let (mut s, t0) = two_workers(2);
            let four = (0..4).map(|i| expected(if i == short { 1_000 } else { 5_000 }, i));
            let fx = s.submit("r", four.collect());
            let running = assigns(&fx);
            assert_eq!(running.len(), 4);
            for (peer, id, attempt, _) in &running {
                s.job_started(peer, *id, *attempt);
            }
            let fx = s
                .at(t0 + Duration::from_millis(10))
                .submit("r", vec![expected(2_000, 4)]);
            let prefetched = assigns(&fx);
            let holder = &running
                .iter()
                .find(|a| a.3 == format!("job-{short}"))
                .unwrap()
                .0;
            assert_eq!(prefetched.len(), 1);
            assert_eq!(&prefetched[0].0, holder, "short job {short}");
        }
    }

    #[test]
    fn a_job_waits_in_the_queue_for_a_slot_that_frees_sooner_than_where_there_is_room() {
        // Two workers of one slot each start a 5 s job and a 1 s job; a 0.5 s job is then
        // prefetched where the 1 s one runs, which fills that worker's pipeline.
        let (mut s, t0) = two_workers(1);
        let running = assigns(&s.submit("r", vec![expected(5_000, 0), expected(1_000, 1)]));
        for (peer, id, attempt, _) in &running {
            s.job_started(peer, *id, *attempt);
        }
        let short = running.iter().find(|a| a.3 == "job-1").unwrap().0.clone();
        let half = assigns(&s.submit("r", vec![expected(500, 2)]));
        assert_eq!(half.iter().map(|a| &a.0).collect::<Vec<_>>(), [&short]);
        // A 3 s job would start at 5 s where there is room, but a slot frees at 1.5 s on the
        // full worker: it waits in the queue…
        assert!(assigns(&s.submit("r", vec![expected(3_000, 3)])).is_empty());
        // …and goes there once the 1 s job ended and the 0.5 s one started; nothing is taken
        // back.
        let ended = s.at(t0 + Duration::from_secs(1)).job_finished(
            &short,
            running.iter().find(|a| a.0 == short).unwrap().1,
            outcome(1, JobStatus::Passed),
        );
        let fx = [ended, s.job_started(&short, half[0].1, 1)].concat();
        let given: Vec<_> = assigns(&fx).into_iter().map(|a| (a.0, a.3)).collect();
        assert_eq!(given, [(short.clone(), "job-3".to_string())]);
        assert!(taken_back(&fx).is_empty(), "{fx:?}");
    }

    #[test]
    fn a_longer_job_held_behind_busy_slots_is_taken_back_when_a_shorter_one_starts_elsewhere() {
        // Two workers of one slot each run a 5 s job, b's started first. A 3 s job is then
        // prefetched to b (expected to free first), a 1 s job to a.
        let setup = || {
            let (mut s, t0) = two_workers(1);
            let fx = s.submit("r", vec![expected(5_000, 0), expected(5_000, 1)]);
            let running = assigns(&fx);
            let on = |w: &str| running.iter().find(|a| a.0 == w).unwrap().clone();
            let (running_a, running_b) = (on("a"), on("b"));
            s.job_started("b", running_b.1, 1);
            let half = t0 + Duration::from_millis(500);
            s.at(half).job_started("a", running_a.1, 1);
            let fx = s.submit("r", vec![expected(3_000, 2), expected(1_000, 3)]);
            let given = assigns(&fx);
            let id = |name: &str| given.iter().find(|a| a.3 == name).unwrap().clone();
            let (three, one) = (id("job-2"), id("job-3"));
            assert_eq!((three.0.as_str(), one.0.as_str()), ("b", "a"));
            (s, t0, running_a, three, one)
        };
        let took_back = |fx: &[Effect]| -> Vec<(String, JobId)> {
            fx.iter()
                .filter_map(|e| match e {
                    Effect::ToWorker(w, BrokerToWorker::TakeBack { jobs }) => {
                        Some(jobs.iter().map(|j| (w.clone(), j.id)).collect::<Vec<_>>())
                    }
                    _ => None,
                })
                .flatten()
                .collect()
        };
        // a's job ends at 1 s, 4 s early: a starts its 1 s job, due to end at 2 s, while the
        // 3 s job waits on b until 5 s. It is taken back from b…
        let (mut s, t0, running_a, three, one) = setup();
        let ok = outcome(1, JobStatus::Passed);
        s.at(t0 + Duration::from_secs(1))
            .job_finished("a", running_a.1, ok.clone());
        let fx = s.job_started("a", one.1, 1);
        assert_eq!(took_back(&fx), [("b".to_string(), three.1)]);
        // …and, once b gives it up, prefetched to a, where a slot frees first.
        let fx = s.released(
            "b",
            &[AttemptRef {
                id: three.1,
                attempt: 1,
            }],
        );
        assert_eq!(
            assigns(&fx)
                .iter()
                .map(|a| (a.0.as_str(), a.1))
                .collect::<Vec<_>>(),
            [("a", three.1)]
        );
        // Ending as expected, a starts its 1 s job at 5.5 s, after b's slot frees at 5 s: the
        // 3 s job stays on b.
        let (mut s, t0, running_a, _, one) = setup();
        s.at(t0 + Duration::from_millis(5_500))
            .job_finished("a", running_a.1, ok);
        let fx = s.job_started("a", one.1, 1);
        assert!(took_back(&fx).is_empty(), "{fx:?}");
    }

    #[test]
    fn a_job_taken_back_for_a_worker_goes_to_it_even_when_its_prefetch_is_full() {
        // Two workers of one slot each start a job at once: `a` one of 5.5 s, `b` one of 5 s.
        // A 3 s job is then prefetched to b (its slot frees first), a 1 s job to a.
        let (mut s, t0) = two_workers(1);
        let running = assigns(&s.submit("r", vec![expected(5_500, 0), expected(5_000, 1)]));
        let (a, b) = (running[0].0.clone(), running[1].0.clone());
        s.job_started(&a, running[0].1, 1);
        s.job_started(&b, running[1].1, 1);
        let given = assigns(&s.submit("r", vec![expected(3_000, 2), expected(1_000, 3)]));
        let id = |name: &str| given.iter().find(|g| g.3 == name).unwrap().clone();
        let (three, one) = (id("job-2"), id("job-3"));
        assert_eq!((&three.0, &one.0), (&b, &a));
        // A 0.5 s job waits in the queue: both workers hold as much as they prefetch.
        assert!(assigns(&s.submit("r", vec![expected(500, 4)])).is_empty());
        // a's job ends at 1 s: a takes the 0.5 s job and starts its 1 s one. Its prefetch is
        // full again, but the 3 s job would start on b only at 5 s, and on a at 2 s.
        let fx = s.at(t0 + Duration::from_secs(1)).job_finished(
            &a,
            running[0].1,
            outcome(1, JobStatus::Passed),
        );
        assert_eq!(
            assigns(&fx).iter().map(|g| &g.3).collect::<Vec<_>>(),
            ["job-4"]
        );
        let fx = s.job_started(&a, one.1, 1);
        let three_back = AttemptRef {
            id: three.1,
            attempt: 1,
        };
        assert_eq!(taken_back(&fx), [(b.clone(), vec![three_back])]);
        // Given up by b, it goes to a, the worker it was taken back for, not back to b.
        let fx = s.released(&b, &[three_back]);
        let to: Vec<_> = assigns(&fx).into_iter().map(|g| (g.0, g.1)).collect();
        assert_eq!(to, [(a, three.1)]);
    }

    #[test]
    fn no_prefetch_until_the_expected_workers_joined() {
        let mut s = Scheduler::new(Dispatch {
            prefetch: 2,
            lease: Duration::from_secs(30),
            expected_workers: 2,
        });
        s.runner_joined("r".into());
        s.submit("r", (0..10).map(|i| spec(i, None, 0)).collect());
        // The first to join takes the first jobs for its slots, and no more.
        let first = s.worker_joined("a".into(), "a".into(), 2);
        let names: Vec<_> = assigns(&first).into_iter().map(|a| a.3).collect();
        assert_eq!(names, ["job-0", "job-1"]);
        // The next jobs go to the second one's slots; then both prefetch.
        let second = s.worker_joined("b".into(), "b".into(), 2);
        let got: Vec<_> = assigns(&second).into_iter().map(|a| (a.0, a.3)).collect();
        assert_eq!(
            got[..2],
            [("b".into(), "job-2".into()), ("b".into(), "job-3".into())]
        );
        let per = |w: &str| got.iter().filter(|(p, _)| p == w).count();
        assert_eq!((per("a"), per("b")), (2, 4), "{got:?}");
    }
    #[test]
    fn a_job_uploading_its_outputs_frees_its_slot_and_its_result_still_counts() {
        let mut s = sched(0);
        s.runner_joined("r".into());
        s.worker_joined("w".into(), "w".into(), 1);
        let fx = s.submit("r", (0..2).map(|i| spec(i, None, 0)).collect());
        let (_, g, attempt, _) = assigns(&fx)[0].clone();
        assert_eq!(assigns(&fx).len(), 1, "one slot, no prefetch");
        assert!(
            assigns(&s.job_uploading("w", g, attempt)).is_empty(),
            "not started yet: a stale message"
        );
        s.job_started("w", g, attempt);
        let fx = s.job_uploading("w", g, attempt);
        assert_eq!(assigns(&fx).len(), 1, "the slot is free for the next job");
        let done = finished(&s.job_finished("w", g, outcome(1, JobStatus::Passed)));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].1.status, JobStatus::Passed);
    }

    #[test]
    fn a_worker_holds_work_from_its_assignment_until_its_result_through_the_upload() {
        let mut s = sched(0);
        s.runner_joined("r".into());
        s.worker_joined("w".into(), "w".into(), 1);
        assert!(!s.holds_work("w"), "nothing assigned yet");
        let fx = s.submit("r", vec![spec(0, None, 0)]);
        let (_, g, attempt, _) = assigns(&fx)[0].clone();
        assert!(s.holds_work("w"), "assigned, not started");
        s.job_started("w", g, attempt);
        s.job_uploading("w", g, attempt);
        assert!(
            s.holds_work("w"),
            "its result is still owed while it uploads"
        );
        s.job_finished("w", g, outcome(1, JobStatus::Passed));
        assert!(!s.holds_work("w"), "nothing owed");
        assert!(!s.holds_work("nobody"));
    }

    #[test]
    fn failed_job_is_retried_then_reported_once() {
        let mut s = sched(0);
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

    /// Two workers of one slot each running job 0 (one retry) and job 1; job 0 has just
    /// failed. Returns the scheduler, job 0's worker and id, and job 1's worker and id.
    fn failed_beside_a_busy_worker() -> (Scheduler, PeerId, JobId, PeerId, JobId) {
        let mut s = sched(0);
        s.runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), 1);
        s.worker_joined("b".into(), "b".into(), 1);
        let fx = s.submit("r", vec![spec(0, Some(20), 1), spec(1, Some(10), 0)]);
        let placed = assigns(&fx);
        let on = |name: &str| placed.iter().find(|a| a.3 == name).unwrap().clone();
        let ((first, flaky, _, _), (other, steady, _, _)) = (on("job-0"), on("job-1"));
        assert_ne!(first, other);
        s.job_started(&first, flaky, 1);
        s.job_started(&other, steady, 1);
        let fx = s.job_finished(&first, flaky, outcome(1, JobStatus::Failed));
        assert!(assigns(&fx).is_empty(), "not again on {first}");
        (s, first, flaky, other, steady)
    }

    #[test]
    fn a_failed_job_is_retried_on_another_worker_and_waits_for_it_while_later_jobs_run() {
        let (mut s, first, flaky, other, steady) = failed_beside_a_busy_worker();
        // A later job takes the free worker meanwhile.
        let fx = s.submit("r", vec![spec(2, None, 0)]);
        let later: Vec<_> = assigns(&fx).into_iter().map(|a| (a.0, a.3)).collect();
        assert_eq!(later, [(first.clone(), "job-2".to_string())]);
        // The other worker frees its slot: the retry goes there.
        let fx = s.job_finished(&other, steady, outcome(1, JobStatus::Passed));
        let retry: Vec<_> = assigns(&fx).into_iter().map(|a| (a.0, a.1, a.2)).collect();
        assert_eq!(retry, [(other, flaky, 2)]);
    }

    #[test]
    fn a_retry_runs_on_the_worker_it_failed_on_once_no_other_is_connected() {
        let (mut s, first, flaky, other, _) = failed_beside_a_busy_worker();
        // The other worker is lost: the retry is not starved, it runs where it failed.
        let fx = s.worker_lost(&other, "gone");
        let got: Vec<_> = assigns(&fx).into_iter().map(|a| (a.0, a.1, a.2)).collect();
        assert_eq!(got, [(first, flaky, 2)]);
    }

    #[test]
    fn a_runners_avoid_list_steers_a_job_away_unless_only_those_workers_are_there() {
        let avoiding = |index, names: &[&str]| {
            let mut sub = spec(index, None, 0);
            sub.spec.avoid_workers = names.iter().map(|n| n.to_string()).collect();
            sub
        };
        let mut s = sched(0);
        s.runner_joined("r".into());
        s.worker_joined("peer-a".into(), "machine-a".into(), 4);
        s.worker_joined("peer-b".into(), "machine-b".into(), 1);
        let fx = s.submit("r", vec![avoiding(0, &["machine-a"])]);
        assert_eq!(assigns(&fx)[0].0, "peer-b", "named by worker name");
        let mut s = sched(0);
        s.runner_joined("r".into());
        s.worker_joined("peer-a".into(), "machine-a".into(), 1);
        let fx = s.submit("r", vec![avoiding(0, &["machine-a", "machine-gone"])]);
        assert_eq!(assigns(&fx)[0].0, "peer-a");
    }

    #[test]
    fn work_is_taken_back_only_for_a_worker_that_may_run_it() {
        let mut s = sched(1);
        s.runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), 1);
        s.worker_joined("b".into(), "b".into(), 1);
        let fx = s.submit("r", vec![spec(0, Some(20), 0), spec(1, Some(10), 0)]);
        let placed = assigns(&fx);
        let (busy_a, busy_b) = (placed[0].clone(), placed[1].clone());
        s.job_started(&busy_a.0, busy_a.1, 1);
        s.job_started(&busy_b.0, busy_b.1, 1);
        let mut retry = spec(2, None, 0);
        retry.spec.avoid_workers = vec![busy_a.0.clone()];
        let fx = s.submit("r", vec![retry]);
        let prefetched = assigns(&fx);
        assert_eq!(prefetched[0].0, busy_b.0, "prefetched where it may run");
        // The avoided worker idles: it is not given the retry behind the other's back.
        let fx = s.job_finished(&busy_a.0, busy_a.1, outcome(1, JobStatus::Passed));
        assert!(taken_back(&fx).is_empty(), "{fx:?}");
        // A third worker may run it: it is asked back for that one.
        let fx = s.worker_joined("c".into(), "c".into(), 1);
        let asked = taken_back(&fx);
        assert_eq!(asked.len(), 1);
        assert_eq!(
            (asked[0].0.as_str(), asked[0].1[0].id),
            (busy_b.0.as_str(), prefetched[0].1)
        );
        let fx = s.released(&busy_b.0, &asked[0].1);
        assert_eq!(assigns(&fx)[0].0, "c");
    }

    #[test]
    fn lost_worker_jobs_run_elsewhere_and_stale_results_are_ignored() {
        let mut s = sched(0);
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
        // A late result from the lost worker changes nothing: the log says it was dropped.
        let fx = s.job_finished("a", g, outcome(1, JobStatus::Passed));
        assert!(
            matches!(&fx[..], [Effect::Notice(n)] if n.level == crate::notice::Level::Info
                && n.text.starts_with("dropping a late result")),
            "{fx:?}"
        );
        let done = finished(&s.job_finished("b", g, outcome(2, JobStatus::Passed)));
        assert_eq!(
            (done[0].1.attempt, done[0].1.status),
            (2, JobStatus::Passed)
        );
        assert_eq!(s.unfinished(), 0);
    }

    #[test]
    fn attempts_lost_with_their_workers_do_not_use_up_the_retries_of_a_failing_job() {
        let mut s = sched(0);
        s.runner_joined("r".into());
        let fx = s.submit("r", vec![spec(0, None, 2)]);
        assert!(assigns(&fx).is_empty());
        // Attempt 1 fails; its retry (attempt 2, on the same worker) and attempt 3 are lost
        // with their workers.
        let fx = s.worker_joined("a".into(), "a".into(), 1);
        let (_, g, _, _) = assigns(&fx)[0].clone();
        s.job_started("a", g, 1);
        let fx = s.job_finished("a", g, outcome(1, JobStatus::Failed));
        assert_eq!(assigns(&fx)[0].2, 2, "retried");
        s.job_started("a", g, 2);
        assert!(finished(&s.worker_lost("a", "timeout")).is_empty());
        let fx = s.worker_joined("b".into(), "b".into(), 1);
        assert_eq!(assigns(&fx)[0].2, 3);
        s.job_started("b", g, 3);
        assert!(finished(&s.worker_lost("b", "timeout")).is_empty());
        // One of its two retries is still its own: attempts 4 and 5 fail as a fault-free
        // run's second and third do.
        let fx = s.worker_joined("c".into(), "c".into(), 1);
        assert_eq!(assigns(&fx)[0].2, 4);
        s.job_started("c", g, 4);
        let fx = s.job_finished("c", g, outcome(4, JobStatus::Failed));
        assert_eq!(assigns(&fx)[0].2, 5, "retried");
        s.job_started("c", g, 5);
        let done = finished(&s.job_finished("c", g, outcome(5, JobStatus::Failed)));
        assert_eq!(
            (done[0].1.attempt, done[0].1.status),
            (5, JobStatus::Failed)
        );
    }

    #[test]
    fn a_job_lost_with_every_worker_it_runs_on_ends_as_an_error() {
        let mut s = sched(0);
        s.runner_joined("r".into());
        let fx = s.submit("r", vec![spec(0, None, 0)]);
        assert!(assigns(&fx).is_empty());
        let mut ended = Vec::new();
        for (worker, attempt) in [("a", 1), ("b", 2)] {
            let fx = s.worker_joined(worker.into(), worker.into(), 1);
            let (_, g, got, _) = assigns(&fx)[0].clone();
            assert_eq!(got, attempt);
            s.job_started(worker, g, attempt);
            ended = finished(&s.worker_lost(worker, "timeout"));
        }
        assert_eq!(ended.len(), 1, "two losses, at least one requeue: given up");
        assert_eq!(ended[0].1.status, JobStatus::Error);
    }

    #[test]
    fn reports_name_workers_by_their_names() {
        let mut s = sched(0);
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
    fn progress_reaches_the_runner_only_from_the_attempt_running_the_job() {
        let mut s = sched(0);
        s.runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), 1);
        s.worker_joined("b".into(), "b".into(), 1);
        let fx = s.submit("r", vec![spec(0, None, 0)]);
        let (peer, g) = (assigns(&fx)[0].0.clone(), assigns(&fx)[0].1);
        let other = if peer == "a" { "b" } else { "a" };
        let lines = || "one\n".to_string();
        assert_eq!(s.job_progress(&peer, g, 1, lines()), [], "not started yet");
        s.job_started(&peer, g, 1);
        assert_eq!(
            s.job_progress(&peer, g, 1, lines()),
            [Effect::ToRunner(
                "r".into(),
                BrokerToRunner::Progress {
                    index: JobIndex(0),
                    attempt: 1,
                    lines: lines()
                }
            )]
        );
        assert_eq!(s.job_progress(&peer, g, 2, lines()), [], "another attempt");
        assert_eq!(s.job_progress(other, g, 1, lines()), [], "another worker");
    }

    #[test]
    fn prefetched_job_of_lost_worker_keeps_its_attempt() {
        let mut s = sched(1);
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
        let mut s = sched(0);
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
    fn stop_waits_for_work() {
        let mut s = sched(0);
        s.runner_joined("r".into());
        s.worker_joined("w".into(), "w".into(), 1);
        let fx = s.submit("r", vec![spec(0, None, 0)]);
        s.request_stop();
        assert!(!s.should_stop());
        s.job_finished("w", assigns(&fx)[0].1, outcome(1, JobStatus::Passed));
        assert!(s.should_stop());
    }

    /// The instant `ms` milliseconds into a test.
    fn at(ms: u64) -> Instant {
        static BASE: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
        *BASE + Duration::from_millis(ms)
    }

    /// The attempts asked back from each worker in `fx`.
    fn taken_back(fx: &[Effect]) -> Vec<(String, Vec<AttemptRef>)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::ToWorker(w, BrokerToWorker::TakeBack { jobs }) => {
                    Some((w.clone(), jobs.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn passed_in(attempt: u32, ms: u64) -> JobOutcome {
        JobOutcome {
            duration_ms: ms,
            ..outcome(attempt, JobStatus::Passed)
        }
    }

    /// A runner with `n` queued jobs and one worker `w` with `slots` slots, whose first job took
    /// `job_ms` and whose round trip (assign → started) took `trip_ms`.
    fn measured(prefetch: u32, slots: u32, n: u64, trip_ms: u64, job_ms: u64) -> Scheduler {
        let mut s = sched(prefetch);
        s.at(at(0)).runner_joined("r".into());
        s.submit("r", (0..n).map(|i| spec(i, None, 0)).collect());
        let fx = s.worker_joined("w".into(), "w".into(), slots);
        let first = assigns(&fx)[0].1;
        s.at(at(trip_ms)).job_started("w", first, 1);
        s.at(at(trip_ms + job_ms))
            .job_finished("w", first, passed_in(1, job_ms));
        s
    }

    fn assigned_to(s: &Scheduler, worker: &str) -> usize {
        s.workers.get(worker).map_or(0, |w| w.assigned.len())
    }

    #[test]
    fn pipeline_depth_covers_the_measured_round_trip() {
        // Before measurements: slots + the configured prefetch.
        let mut s = sched(2);
        s.runner_joined("r".into());
        s.submit("r", (0..100).map(|i| spec(i, None, 0)).collect());
        s.worker_joined("w".into(), "w".into(), 2);
        assert_eq!(assigned_to(&s, "w"), 4);
        // 400 ms round trip, 50 ms jobs, 2 slots: 2 trips × 8 jobs per trip × 2 slots = 32.
        let s = measured(2, 2, 100, 400, 50);
        assert_eq!(assigned_to(&s, "w"), 2 + 32);
        // Long jobs need no more than one extra.
        let s = measured(2, 2, 100, 400, 60_000);
        assert_eq!(assigned_to(&s, "w"), 2 + 1);
    }

    #[test]
    fn pipeline_depth_is_bounded_so_a_lost_worker_strands_little() {
        // 1 s round trip, 1 ms jobs would want 4,000 extra: capped per slot.
        let s = measured(2, 2, 1_000, 1_000, 1);
        assert_eq!(assigned_to(&s, "w"), (2 + 2 * MAX_EXTRA_PER_SLOT) as usize);
    }

    #[test]
    fn prefetch_zero_turns_pipelining_off() {
        let s = measured(0, 2, 100, 400, 50);
        assert_eq!(assigned_to(&s, "w"), 2);
    }

    #[test]
    fn an_idle_worker_takes_back_only_unstarted_prefetched_work() {
        let mut s = sched(3);
        s.runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), 1);
        let fx = s.submit("r", (0..4).map(|i| spec(i, None, 0)).collect());
        let ids: Vec<JobId> = assigns(&fx).iter().map(|a| a.1).collect();
        assert_eq!(ids.len(), 4, "1 slot + 3 prefetched, all on a");
        s.job_started("a", ids[0], 1);
        // b joins with 2 free slots and the queue is dry: the two newest unstarted come back.
        let fx = s.worker_joined("b".into(), "b".into(), 2);
        assert!(assigns(&fx).is_empty());
        let asked = taken_back(&fx);
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].0, "a");
        let asked_ids: Vec<JobId> = asked[0].1.iter().map(|r| r.id).collect();
        assert_eq!(asked_ids, [ids[3], ids[2]]);
        assert!(!asked_ids.contains(&ids[0]), "never the running one");
        // Asked once: further events do not ask again while the answer travels.
        assert!(taken_back(&s.job_started("a", ids[1], 1)).is_empty());
        // a gave both up: they go to b with their attempt unspent.
        let fx = s.released("a", &asked[0].1);
        let got: Vec<_> = assigns(&fx).into_iter().map(|a| (a.0, a.2)).collect();
        assert_eq!(got, [("b".to_string(), 1), ("b".to_string(), 1)]);
    }

    #[test]
    fn a_take_back_that_crosses_a_start_leaves_the_job_running_where_it_started() {
        let mut s = sched(1);
        s.runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), 1);
        let fx = s.submit("r", (0..2).map(|i| spec(i, None, 0)).collect());
        let ids: Vec<JobId> = assigns(&fx).iter().map(|a| a.1).collect();
        let fx = s.worker_joined("b".into(), "b".into(), 1);
        let asked = taken_back(&fx)[0].1.clone();
        assert_eq!(asked[0].id, ids[1]);
        // Meanwhile a finished job 0 and started job 1, then read the take-back: it gives up
        // nothing, and its Started arrived first.
        s.job_finished("a", ids[0], outcome(1, JobStatus::Passed));
        s.job_started("a", ids[1], 1);
        let fx = s.released("a", &[]);
        assert!(assigns(&fx).is_empty(), "job 1 is not given to b");
        // Even a confused answer naming the started job cannot move it.
        assert!(assigns(&s.released("a", &asked)).is_empty());
        let done = finished(&s.job_finished("a", ids[1], outcome(1, JobStatus::Passed)));
        assert_eq!((done[0].0, done[0].1.attempt), (JobIndex(1), 1));
        assert_eq!(s.unfinished(), 0);
    }

    #[test]
    fn no_take_back_while_work_is_queued() {
        let mut s = sched(2);
        s.runner_joined("r".into());
        s.worker_joined("a".into(), "a".into(), 1);
        s.submit("r", (0..10).map(|i| spec(i, None, 0)).collect());
        let fx = s.worker_joined("b".into(), "b".into(), 1);
        assert!(taken_back(&fx).is_empty());
        assert_eq!(assigns(&fx).len(), 3, "b gets queued work instead");
    }

    #[test]
    fn a_lost_worker_gets_no_lease_and_its_late_result_is_dropped() {
        let mut s = sched(0);
        s.runner_joined("r".into());
        let fx = s.worker_joined("a".into(), "a".into(), 1);
        assert!(fx.contains(&Effect::ToWorker(
            "a".into(),
            BrokerToWorker::Lease {
                seq: 0,
                valid_ms: 30_000
            }
        )));
        assert_eq!(
            s.renew("a", 3),
            [Effect::ToWorker(
                "a".into(),
                BrokerToWorker::Lease {
                    seq: 3,
                    valid_ms: 30_000
                }
            )]
        );
        let g = assigns(&s.submit("r", vec![spec(0, None, 0)]))[0].1;
        s.worker_lost("a", "timeout");
        assert!(s.renew("a", 4).is_empty(), "fenced: no lease");
        let fx = s.worker_joined("b".into(), "b".into(), 1);
        assert_eq!(assigns(&fx)[0].2, 1, "never started on a: same attempt");
        // a's late result for the same attempt number is not b's.
        let fx = s.job_finished("a", g, outcome(1, JobStatus::Passed));
        assert!(finished(&fx).is_empty());
        assert_eq!(s.unfinished(), 1);
    }
}
