//! The worker's decisions, as a pure state machine: which assigned attempt starts when a slot
//! is free, what a cancel or a take-back does to a queued, running or uploading attempt, what
//! is reported, when the worker ends.
//!
//! It does no I/O. Each event returns the [`Effect`]s the shell in `worker::mod` carries out
//! (send a message, start or kill an attempt, end), as `broker::scheduler` does for the broker.
//! Attempts are keyed by job id *and* attempt number, so that a stale message about an
//! earlier attempt never touches a later one.
//!
//! Time: an `std::time::Instant` the shell hands in with each event that needs it; no clock is
//! read here (the convention of every state machine, see `broker::scheduler`).
//!
//! Fencing: an assigned attempt starts only under a lease ([`BrokerToWorker::Lease`]), valid
//! for a while after this worker *sent* the request it answers. The broker declares a worker
//! lost only after a longer silence, so a worker that was stalled (SIGSTOP, a frozen VM) or cut
//! off finds its lease run out and starts nothing the broker has since given to others.
//! The lease is checked twice: when an attempt is taken from the queue, and again when its
//! job directory is ready and its process is about to be spawned ([`Machine::ready`]):
//! fetching layers takes time, and a fence can come in between. A stall is told in the log
//! by the shell's stall watch, a timer that fires every quarter lease: firing a whole lease
//! late, it was stalled ([`Machine::awake`]).
//!
//! An attempt's states:
//!
//! | state | holds a slot | entered by | left by |
//! |---|---|---|---|
//! | queued | no | `Assign` | a free slot under the lease (→ running); `TakeBack` (→ released); `Cancel` (→ reported cancelled) |
//! | running | yes | [`Machine::tick`], a message or an ended attempt filling a free slot | its process ending (→ uploading, or reported); `Cancel` or a signal (killed, reported) |
//! | uploading | no | its process ended with outputs ([`Machine::attempt_ran`]) | [`Machine::upload_ended`] (→ reported); `Cancel` or a signal (reported at once) |
//!
//! A running attempt waits for its directory first, then launches only under the lease
//! ([`Machine::ready`]).
//!
//! Uploading: an attempt whose process ended with outputs to bring back frees its slot at
//! once and waits, *uploading*, until its outputs are in the store ([`Effect::Upload`]); only
//! then is its result sent. At most [`crate::budget::pending_uploads_max`] attempts upload at
//! once: a worker with that many starts nothing new (backpressure, so that staged files and
//! held outcomes stay bounded). An uploading attempt is never run again: a cancel reports it
//! cancelled at once, a signal reports it with its outputs lost, a take-back never touches it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::layer::Digest;
use crate::notice::Notice;
use crate::proto::{
    AttemptRef, BrokerToWorker, DefaultsId, JobDefaults, JobId, JobOutcome, JobSpec, JobStatus,
    WorkerMsg,
};

/// One attempt the broker gave this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The broker's id of the job.
    pub id: JobId,
    /// The attempt number.
    pub attempt: u32,
    /// What to run.
    pub job: Arc<JobSpec>,
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this message to the broker.
    Send(WorkerMsg),
    /// Start preparing this attempt (its `Started` message was sent just before); it asks
    /// [`Machine::ready`] before it spawns its process.
    Start(Assignment),
    /// The prepared attempt of this job may spawn its process, before `until` (the lease's
    /// end): past it, it asks again.
    Launch {
        /// The job.
        id: JobId,
        /// The end of the lease it launches under.
        until: Instant,
    },
    /// Kill the running attempt of this job; it ends `Cancelled` and is reported then.
    Kill(JobId),
    /// Upload the staged outputs of this job's attempt (its process ended; `Uploading` was
    /// sent just before); the shell answers with [`Machine::upload_ended`].
    Upload(JobId),
    /// Stop: kill what runs, close the stream and end this way.
    End(Ending),
    /// Tell the worker's log.
    Notice(Notice),
}

/// Why the worker ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The broker told it to exit: the cluster stopped.
    Exited,
    /// SIGINT/SIGTERM: running attempts are killed, the broker requeues them.
    Interrupted,
    /// The broker refused this worker.
    Refused(String),
}

/// The lease under which assigned attempts may start.
#[derive(Debug)]
struct Lease {
    /// The next request's number (the hello was request 0).
    next_seq: u64,
    /// When each unanswered request was sent.
    asked: BTreeMap<u64, Instant>,
    /// Starting is allowed before this instant.
    until: Option<Instant>,
    /// How long a lease lasts, as the broker last said (until it says, nothing starts).
    valid: Duration,
    /// A warning about an expired lease was given and no lease came since.
    warned: bool,
}

impl Lease {
    fn holds(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// Whether a request that may still bring a usable lease is on its way.
    fn asking(&self, now: Instant) -> bool {
        self.asked
            .values()
            .any(|&sent| self.valid.is_zero() || now < sent + self.valid)
    }

    /// Whether a request has gone unanswered for a whole lease.
    fn overdue(&self, now: Instant) -> bool {
        self.asked.values().any(|&sent| sent + self.valid <= now)
    }

    /// A new request, sent now.
    fn ask(&mut self, now: Instant) -> WorkerMsg {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.asked.insert(seq, now);
        WorkerMsg::Renew { seq }
    }

    /// The broker answered request `seq`.
    fn granted(&mut self, seq: u64, valid: Duration) {
        let Some(sent) = self.asked.remove(&seq) else {
            return;
        };
        // Older requests can only bring shorter leases.
        self.asked.retain(|&s, _| s > seq);
        self.valid = valid;
        self.until = self.until.max(Some(sent + valid));
        self.warned = false;
    }
}

/// The worker's state: attempts waiting for a slot and attempts running.
#[derive(Debug)]
pub struct Machine {
    name: String,
    slots: usize,
    /// Assigned attempts waiting for a slot, oldest first, each with when it came.
    queue: VecDeque<(Assignment, Instant)>,
    /// Running attempts: job id → attempt number.
    running: BTreeMap<JobId, u32>,
    /// Running attempts whose directory is ready, waiting for a lease to spawn their process:
    /// since when.
    waiting_launch: BTreeMap<JobId, Instant>,
    /// Attempts whose process ended, waiting for their outputs' upload: their outcomes.
    uploading: BTreeMap<JobId, JobOutcome>,
    /// The most attempts uploading before nothing new starts.
    max_uploading: usize,
    lease: Lease,
    /// The broker is gone: nothing starts.
    broker_lost: bool,
    /// The runners' shared defaults the broker sent, by the name assignments use: one copy
    /// per runner of the cluster, kept for the worker's life (a late retry may still name
    /// them).
    defaults: BTreeMap<DefaultsId, Arc<JobDefaults>>,
    /// When the shell's stall watch last fired ([`Machine::awake`]).
    awake: Instant,
}

impl Machine {
    /// A worker named `name` running up to `slots` attempts at once (at least one), whose
    /// hello (lease request 0) was sent at `hello_sent`.
    pub fn new(name: impl Into<String>, slots: u32, hello_sent: Instant) -> Self {
        Self {
            name: name.into(),
            slots: (slots as usize).max(1),
            queue: VecDeque::new(),
            running: BTreeMap::new(),
            waiting_launch: BTreeMap::new(),
            uploading: BTreeMap::new(),
            max_uploading: crate::budget::pending_uploads_max(slots),
            lease: Lease {
                next_seq: 1,
                asked: BTreeMap::from([(0, hello_sent)]),
                until: None,
                valid: Duration::ZERO,
                warned: false,
            },
            broker_lost: false,
            defaults: BTreeMap::new(),
            awake: hello_sent,
        }
    }

    /// Attempts running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Attempts whose outputs are being uploaded now.
    pub fn uploading(&self) -> usize {
        self.uploading.len()
    }

    /// A message from the broker, received at `now`.
    pub fn message(&mut self, msg: BrokerToWorker, now: Instant) -> Vec<Effect> {
        match msg {
            BrokerToWorker::Welcome => Vec::new(),
            BrokerToWorker::Assign {
                id,
                job,
                attempt,
                defaults,
            } if !self.broker_lost => match self.inherited(job, defaults) {
                Ok(job) => {
                    self.enqueue(Assignment { id, attempt, job }, now);
                    self.fill(now)
                }
                Err(why) => {
                    let outcome = not_run(&self.name, attempt, JobStatus::Error, Some(why));
                    vec![Effect::Send(WorkerMsg::Finished { id, outcome })]
                }
            },
            BrokerToWorker::Defaults { id, defaults } => {
                self.defaults.insert(id, defaults);
                Vec::new()
            }
            BrokerToWorker::Lease { seq, valid_ms } => {
                // The stall watch starts with the first lease (joining may take long).
                if self.lease.valid.is_zero() {
                    self.awake = now;
                }
                self.lease.granted(seq, Duration::from_millis(valid_ms));
                let mut fx = self.launch_or_ask(now);
                fx.extend(self.fill(now));
                fx
            }
            BrokerToWorker::TakeBack { jobs } => self.take_back(&jobs),
            BrokerToWorker::Assign { .. } => Vec::new(),
            BrokerToWorker::Cancel { id } => self.cancel(id),
            BrokerToWorker::Exit => vec![Effect::End(Ending::Exited)],
            BrokerToWorker::Refused { reason } => vec![Effect::End(Ending::Refused(reason))],
        }
    }

    /// `job` as it runs: with the runner's shared `defaults` merged in by the manifest's rule
    /// (its own variables win), when it inherits them.
    fn inherited(
        &self,
        job: Arc<JobSpec>,
        defaults: Option<DefaultsId>,
    ) -> Result<Arc<JobSpec>, String> {
        let Some(id) = defaults else {
            return Ok(job);
        };
        let Some(shared) = self.defaults.get(&id) else {
            return Err(format!(
                "the broker assigned the job with shared defaults {} it never sent to this \
                 worker",
                id.0
            ));
        };
        let mut spec = Arc::unwrap_or_clone(job);
        shared.merge_into(&mut spec.env, &mut spec.secret_env);
        spec.inherits = false;
        Ok(Arc::new(spec))
    }

    /// SIGINT or SIGTERM arrived: what runs is killed (the broker gives it to others), but an
    /// attempt whose process ended is reported now, its outputs lost, never run again.
    pub fn interrupted(&mut self) -> Vec<Effect> {
        let mut fx: Vec<Effect> = std::mem::take(&mut self.uploading)
            .into_iter()
            .map(|(id, mut outcome)| {
                outputs_lost(
                    &mut outcome,
                    JobStatus::Error,
                    "the worker was stopped (SIGINT/SIGTERM) before they were uploaded".into(),
                );
                Effect::Send(WorkerMsg::Finished { id, outcome })
            })
            .collect();
        fx.push(Effect::End(Ending::Interrupted));
        fx
    }

    /// When the shell should call [`Machine::tick`] though nothing else happens: while work
    /// waits in the queue, at half the lease (to renew it before it runs out, so that a slot
    /// freed by a long job starts the next one without waiting a round trip to the broker),
    /// or when an unanswered renewal may be given up and asked again. `None` while nothing
    /// waits or no lease was ever granted.
    pub fn renewal_due(&self) -> Option<Instant> {
        if self.queue.is_empty() || self.broker_lost {
            return None;
        }
        let until = self.lease.until?;
        Some(match self.lease.asked.values().max() {
            Some(&sent) => sent + self.lease.valid,
            None => until.checked_sub(self.lease.valid / 2).unwrap_or(until),
        })
    }

    /// When the shell should call [`Machine::awake`] next: every quarter of a lease, once the
    /// broker said how long one lasts (`None` before).
    pub fn awake_due(&self) -> Option<Instant> {
        (!self.lease.valid.is_zero()).then(|| self.awake + self.lease.valid / 4)
    }

    /// The shell's stall watch fired at `now` (due at [`Machine::awake_due`]). A whole lease
    /// since it last fired means this process did not run meanwhile (SIGSTOP, a frozen VM):
    /// whatever it held, its lease ran out, and the broker may have declared it lost. Said
    /// once until a lease comes, like the warning about a start the lease fences, which only
    /// work waiting gives: this one is the sign of a stall also for a worker that was idle or
    /// whose slots were all running.
    pub fn awake(&mut self, now: Instant) -> Vec<Effect> {
        let gap = now.saturating_duration_since(self.awake);
        self.awake = now;
        if self.lease.valid.is_zero() || gap < self.lease.valid || self.lease.warned {
            return Vec::new();
        }
        self.lease.warned = true;
        vec![Effect::Notice(Notice::warn(format!(
            "this worker did not run for {:.1}s (it was stopped or frozen): its lease ran out, \
             so it starts nothing it was given before until the broker renews it, and the \
             broker may have given its jobs to other workers",
            gap.as_secs_f64()
        )))]
    }

    /// Time passed to `now` with nothing else happening (see [`Machine::renewal_due`]).
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        self.fill(now)
    }

    /// The broker is gone (its stream ended or failed): no attempt it gave starts any more,
    /// since nobody would take its result and the broker, if it comes back, gives them to
    /// others. Returns the prefetched attempts dropped.
    pub fn broker_gone(&mut self) -> usize {
        self.broker_lost = true;
        let dropped = self.queue.len();
        self.queue.clear();
        dropped
    }

    /// The attempt of job `id` has its directory ready at `now` and is about to spawn its
    /// process: it may ([`Effect::Launch`]) while the lease holds and the broker is there;
    /// otherwise it waits for the next lease, which is asked for.
    pub fn ready(&mut self, id: JobId, now: Instant) -> Vec<Effect> {
        if !self.running.contains_key(&id) {
            return Vec::new();
        }
        self.waiting_launch.insert(id, now);
        self.launch_or_ask(now)
    }

    /// Launches every prepared attempt while the lease holds (and the broker is there), or
    /// asks for a lease for them.
    fn launch_or_ask(&mut self, now: Instant) -> Vec<Effect> {
        if self.waiting_launch.is_empty() || self.broker_lost {
            return Vec::new();
        }
        let mut fx = Vec::new();
        match self.lease.until {
            Some(until) if now < until => fx.extend(
                std::mem::take(&mut self.waiting_launch)
                    .into_keys()
                    .map(|id| Effect::Launch { id, until }),
            ),
            _ => self.fenced(now, &mut fx),
        }
        fx
    }

    /// Running attempt `attempt` of job `id` wrote progress `lines`: they go to the broker
    /// while the attempt runs here and the broker is there.
    pub fn progress(&mut self, id: JobId, attempt: u32, lines: String) -> Vec<Effect> {
        if self.running.get(&id) != Some(&attempt) || self.broker_lost {
            return Vec::new();
        }
        vec![Effect::Send(WorkerMsg::Progress { id, attempt, lines })]
    }

    /// A running attempt ended with `outcome` at `now`: report it and use the slot.
    pub fn attempt_ended(&mut self, id: JobId, outcome: JobOutcome, now: Instant) -> Vec<Effect> {
        if self.running.get(&id) != Some(&outcome.attempt) {
            return Vec::new();
        }
        self.running.remove(&id);
        self.waiting_launch.remove(&id);
        let mut fx = vec![Effect::Send(WorkerMsg::Finished { id, outcome })];
        fx.extend(self.fill(now));
        fx
    }

    /// A running attempt's process ended with `outcome` and outputs staged for upload, at
    /// `now`: its slot is free, and its result waits for the upload.
    pub fn attempt_ran(&mut self, id: JobId, outcome: JobOutcome, now: Instant) -> Vec<Effect> {
        if self.running.get(&id) != Some(&outcome.attempt) {
            return Vec::new();
        }
        self.running.remove(&id);
        let attempt = outcome.attempt;
        self.uploading.insert(id, outcome);
        let mut fx = vec![
            Effect::Send(WorkerMsg::Uploading { id, attempt }),
            Effect::Upload(id),
        ];
        fx.extend(self.fill(now));
        fx
    }

    /// The upload of attempt `attempt` of job `id` ended at `now`: with the layer holding its
    /// outputs and their directory in it, or why they are lost (every retry spent, or a
    /// refusal no retry helps); its result goes to the broker now.
    pub fn upload_ended(
        &mut self,
        id: JobId,
        attempt: u32,
        uploaded: Result<(Digest, String), String>,
        now: Instant,
    ) -> Vec<Effect> {
        if self.uploading.get(&id).is_none_or(|o| o.attempt != attempt) {
            return Vec::new();
        }
        let Some(mut outcome) = self.uploading.remove(&id) else {
            return Vec::new();
        };
        match uploaded {
            Ok((layer, path)) => {
                outcome.outputs_layer = Some(layer);
                outcome.outputs_path = Some(path);
            }
            Err(e) => outputs_lost(&mut outcome, JobStatus::Error, e),
        }
        let mut fx = vec![Effect::Send(WorkerMsg::Finished { id, outcome })];
        fx.extend(self.fill(now));
        fx
    }

    /// The task running an attempt of job `id` failed (it panicked): the attempt is reported
    /// as an error, so that the job is not left waiting for an answer forever.
    pub fn attempt_failed(&mut self, id: JobId, reason: &str, now: Instant) -> Vec<Effect> {
        let Some(&attempt) = self.running.get(&id) else {
            return Vec::new();
        };
        let why = format!("the worker's job task failed: {reason}");
        let outcome = not_run(&self.name, attempt, JobStatus::Error, Some(why));
        self.attempt_ended(id, outcome, now)
    }

    /// Cancel: a queued attempt is dropped and reported `Cancelled` now; a running one is
    /// killed and reported when it ends.
    fn cancel(&mut self, id: JobId) -> Vec<Effect> {
        if let Some(pos) = self.queue.iter().position(|(a, _)| a.id == id) {
            let Some((dropped, _)) = self.queue.remove(pos) else {
                return Vec::new();
            };
            let outcome = not_run(&self.name, dropped.attempt, JobStatus::Cancelled, None);
            return vec![Effect::Send(WorkerMsg::Finished { id, outcome })];
        }
        if self.running.contains_key(&id) {
            return vec![Effect::Kill(id)];
        }
        // Its process ended: nothing to kill, and its outputs are no longer wanted.
        if let Some(mut outcome) = self.uploading.remove(&id) {
            outcome.status = JobStatus::Cancelled;
            return vec![Effect::Send(WorkerMsg::Finished { id, outcome })];
        }
        Vec::new()
    }

    /// Take-back: the attempts still queued are given up; the others have started (their
    /// `Started` went out before this answer) or ended, and stay here.
    fn take_back(&mut self, jobs: &[AttemptRef]) -> Vec<Effect> {
        let mut released = Vec::new();
        self.queue.retain(|(a, _)| {
            let asked = jobs.iter().any(|r| r.id == a.id && r.attempt == a.attempt);
            if asked {
                released.push(AttemptRef {
                    id: a.id,
                    attempt: a.attempt,
                });
            }
            !asked
        });
        vec![Effect::Send(WorkerMsg::Released { jobs: released })]
    }

    /// Queues `next` for a slot: after the attempts assigned before it, but before those whose
    /// expected time ([`JobSpec::expected_ms`]) is shorter than its own. The broker hands
    /// jobs out longest first, and a job taken back from a busy worker can be assigned here
    /// after a shorter one: it starts first, as the queue would have started it.
    fn enqueue(&mut self, next: Assignment, now: Instant) {
        let at = next.job.expected_ms().and_then(|ms| {
            (self.queue.iter()).position(|(a, _)| a.job.expected_ms().is_some_and(|m| m < ms))
        });
        self.queue
            .insert(at.unwrap_or(self.queue.len()), (next, now));
    }

    /// Starts queued attempts, in the order they were queued, while slots are free, fewer
    /// than the most attempts upload, and the lease holds; asks for a lease when it does not,
    /// or before it runs out while work waits.
    fn fill(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        while self.running.len() < self.slots
            && self.uploading.len() < self.max_uploading
            && !self.queue.is_empty()
        {
            if !self.lease.holds(now) {
                self.fenced(now, &mut fx);
                return fx;
            }
            let Some((next, _)) = self.queue.pop_front() else {
                break;
            };
            self.running.insert(next.id, next.attempt);
            fx.push(Effect::Send(WorkerMsg::Started {
                id: next.id,
                attempt: next.attempt,
            }));
            fx.push(Effect::Start(next));
        }
        // Renew early while work waits, so that the next start does not wait a round trip.
        if self.renewal_due().is_some_and(|due| now >= due) {
            fx.push(Effect::Send(self.lease.ask(now)));
        }
        fx
    }

    /// Work waits but the lease does not hold: ask for one (once), and warn when the lease ran
    /// out though work had waited long enough for a renewal to come (the worker asks at half
    /// the lease while work waits): the worker was stalled or cut off from the broker. A lease
    /// that lapsed while nothing waited is normal (nothing is renewed then): asked again
    /// quietly.
    fn fenced(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let waited_since = self
            .queue
            .front()
            .map(|(_, since)| *since)
            .into_iter()
            .chain(self.waiting_launch.values().copied())
            .min();
        // Renewed in time, the lease would hold: work waited while a renewal was due, or a
        // request went unanswered for a whole lease.
        let stalled = match (self.lease.until, waited_since) {
            (Some(until), Some(since)) => {
                since + self.lease.valid / 2 <= until || self.lease.overdue(now)
            }
            _ => false,
        };
        if stalled && !self.lease.warned {
            self.lease.warned = true;
            fx.push(Effect::Notice(Notice::warn(format!(
                "this worker's lease ran out (it was stalled or cut off from the broker): \
                 starting nothing it was given before until the broker renews it ({} queued, \
                 {} prepared)",
                self.queue.len(),
                self.waiting_launch.len()
            ))));
        }
        if !self.lease.asking(now) {
            fx.push(Effect::Send(self.lease.ask(now)));
        }
    }
}

/// Marks `outcome` as having lost its outputs (`why`): a passing attempt ends `status` (an
/// error, or a timeout or cancel that came while they were found).
pub(crate) fn outputs_lost(outcome: &mut JobOutcome, status: JobStatus, why: String) {
    outcome.output.push_str(&format!(
        "\n[cluster-action: outputs not brought back: {why}]"
    ));
    if outcome.status == JobStatus::Passed {
        outcome.status = status;
        outcome.error = Some(why);
    }
}

/// The outcome of an attempt that did not run (cancelled while queued, or could not start).
pub(crate) fn not_run(
    worker: &str,
    attempt: u32,
    status: JobStatus,
    error: Option<String>,
) -> JobOutcome {
    JobOutcome {
        attempt,
        status,
        exit_code: None,
        duration_ms: 0,
        worker: worker.to_string(),
        output: error.clone().unwrap_or_default(),
        outputs_layer: None,
        outputs_path: None,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SecretEnv;

    /// The instant `ms` milliseconds into a test.
    fn at(ms: u64) -> Instant {
        static BASE: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
        *BASE + Duration::from_millis(ms)
    }

    /// A worker whose hello (at 0) the broker answered with a lease of 10 s.
    fn leased(name: &str, slots: u32) -> Machine {
        let mut w = Machine::new(name, slots, at(0));
        assert!(w.message(lease(0, 10_000), at(0)).is_empty());
        w
    }

    fn lease(seq: u64, valid_ms: u64) -> BrokerToWorker {
        BrokerToWorker::Lease { seq, valid_ms }
    }

    fn spec(name: &str) -> JobSpec {
        JobSpec::new(name, "true", 1000)
    }

    fn assign(id: u64, attempt: u32) -> BrokerToWorker {
        BrokerToWorker::Assign {
            id: JobId(id),
            attempt,
            job: Arc::new(spec(&format!("job-{id}"))),
            defaults: None,
        }
    }

    #[test]
    fn an_inheriting_job_runs_with_its_runner_s_defaults_under_its_own_env() {
        let mut w = leased("w", 2);
        let shared = JobDefaults {
            env: [("A", "default"), ("B", "default")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            secret_env: SecretEnv([("S".to_string(), "s".to_string())].into()),
        };
        let defaults = BrokerToWorker::Defaults {
            id: DefaultsId(3),
            defaults: Arc::new(shared),
        };
        assert!(w.message(defaults, at(1)).is_empty());
        let mut job = spec("j");
        job.env.insert("B".into(), "own".into());
        job.inherits = true;
        let inherit = |id| BrokerToWorker::Assign {
            id: JobId(id),
            attempt: 1,
            job: Arc::new(job.clone()),
            defaults: Some(DefaultsId(3)),
        };
        let fx = w.message(inherit(1), at(2));
        let Some(Effect::Start(a)) = fx.last() else {
            panic!("{fx:?}");
        };
        let env: Vec<(&str, &str)> = a.job.env.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(env, [("A", "default"), ("B", "own")]);
        assert_eq!(a.job.secret_env.0["S"], "s");
        assert_eq!(
            started(&w.message(inherit(2), at(3))),
            [(2, 1)],
            "sent once, used by every job"
        );
    }

    #[test]
    fn a_longer_job_assigned_later_starts_before_shorter_ones_waiting() {
        let mut w = leased("w", 1);
        let expecting = |id: u64, ms: Option<u64>| BrokerToWorker::Assign {
            id: JobId(id),
            attempt: 1,
            job: Arc::new(JobSpec {
                expected_ms: ms,
                ..spec(&format!("job-{id}"))
            }),
            defaults: None,
        };
        assert_eq!(
            started(&w.message(expecting(1, Some(1_000)), at(1))),
            [(1, 1)]
        );
        for (id, ms) in [
            (2, Some(1_000)),
            (3, None),
            (4, Some(5_000)),
            (5, Some(1_000)),
        ] {
            assert!(started(&w.message(expecting(id, ms), at(2))).is_empty());
        }
        // The 5 s job first; the others in the order they came (one without an expected time
        // keeps its place).
        let mut order = Vec::new();
        let mut ended = 1;
        for now in 3..7 {
            let fx = w.attempt_ended(JobId(ended), passed(1), at(now));
            let [(next, 1)] = started(&fx)[..] else {
                panic!("{fx:?}");
            };
            order.push(next);
            ended = next;
        }
        assert_eq!(order, [4, 2, 3, 5]);
    }

    #[test]
    fn progress_goes_to_the_broker_only_for_the_attempt_running_here() {
        let mut w = leased("w", 1);
        assert_eq!(started(&w.message(assign(1, 2), at(1))), [(1, 2)]);
        let progress = |attempt| WorkerMsg::Progress {
            id: JobId(1),
            attempt,
            lines: "a\n".into(),
        };
        assert_eq!(
            w.progress(JobId(1), 2, "a\n".into()),
            [Effect::Send(progress(2))]
        );
        assert!(
            w.progress(JobId(1), 1, "a\n".into()).is_empty(),
            "an older attempt"
        );
        assert!(
            w.progress(JobId(7), 2, "a\n".into()).is_empty(),
            "another job"
        );
        w.attempt_ended(JobId(1), passed(2), at(2));
        assert!(w.progress(JobId(1), 2, "a\n".into()).is_empty(), "ended");
    }

    #[test]
    fn a_job_naming_defaults_never_sent_ends_as_an_error_and_runs_nothing() {
        let mut w = leased("w", 1);
        let fx = w.message(
            BrokerToWorker::Assign {
                id: JobId(1),
                attempt: 1,
                job: Arc::new(spec("j")),
                defaults: Some(DefaultsId(9)),
            },
            at(1),
        );
        assert_eq!(finished(&fx), [(1, JobStatus::Error)]);
        assert!(started(&fx).is_empty());
    }

    fn passed(attempt: u32) -> JobOutcome {
        JobOutcome {
            status: JobStatus::Passed,
            exit_code: Some(0),
            ..not_run("w", attempt, JobStatus::Passed, None)
        }
    }

    /// (id, attempt) of every attempt started in `fx`.
    fn started(fx: &[Effect]) -> Vec<(u64, u32)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Start(a) => Some((a.id.0, a.attempt)),
                _ => None,
            })
            .collect()
    }

    /// (id, status) of every `Finished` sent in `fx`.
    fn finished(fx: &[Effect]) -> Vec<(u64, JobStatus)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send(WorkerMsg::Finished { id, outcome }) => Some((id.0, outcome.status)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_attempt_starts_when_a_slot_is_free_and_says_so_first() {
        let mut w = leased("w", 1);
        let fx = w.message(assign(4, 2), at(1));
        assert_eq!(
            fx[0],
            Effect::Send(WorkerMsg::Started {
                id: JobId(4),
                attempt: 2
            })
        );
        assert_eq!(started(&fx), [(4, 2)]);
        assert!(
            started(&w.message(assign(5, 1), at(1))).is_empty(),
            "no free slot"
        );
        assert_eq!(w.running(), 1);
    }

    #[test]
    fn prefetched_attempts_start_in_assignment_order_as_slots_free() {
        let mut w = leased("w", 2);
        for id in 0..5 {
            w.message(assign(id, 1), at(1));
        }
        assert_eq!(w.running(), 2);
        let fx = w.attempt_ended(JobId(1), passed(1), at(1));
        assert_eq!(finished(&fx), [(1, JobStatus::Passed)]);
        assert_eq!(started(&fx), [(2, 1)]);
        assert_eq!(
            started(&w.attempt_ended(JobId(0), passed(1), at(1))),
            [(3, 1)]
        );
    }

    #[test]
    fn zero_slots_still_run_one_attempt() {
        let mut w = leased("w", 0);
        assert_eq!(started(&w.message(assign(0, 1), at(1))), [(0, 1)]);
    }

    #[test]
    fn cancel_drops_a_queued_attempt_and_reports_it_cancelled_at_once() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        w.message(assign(1, 3), at(1));
        let fx = w.message(BrokerToWorker::Cancel { id: JobId(1) }, at(1));
        assert_eq!(finished(&fx), [(1, JobStatus::Cancelled)]);
        match &fx[0] {
            Effect::Send(WorkerMsg::Finished { outcome, .. }) => {
                assert_eq!((outcome.attempt, outcome.worker.as_str()), (3, "w"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            started(&w.attempt_ended(JobId(0), passed(1), at(1))).is_empty(),
            "the dropped attempt never starts"
        );
    }

    #[test]
    fn cancel_kills_a_running_attempt_which_is_reported_when_it_ends() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        assert_eq!(
            w.message(BrokerToWorker::Cancel { id: JobId(0) }, at(1)),
            [Effect::Kill(JobId(0))]
        );
        let cancelled = not_run("w", 1, JobStatus::Cancelled, None);
        assert_eq!(
            finished(&w.attempt_ended(JobId(0), cancelled, at(1))),
            [(0, JobStatus::Cancelled)]
        );
    }

    #[test]
    fn cancel_of_an_unknown_job_does_nothing() {
        let mut w = leased("w", 1);
        assert!(
            w.message(BrokerToWorker::Cancel { id: JobId(9) }, at(1))
                .is_empty()
        );
    }

    #[test]
    fn a_stale_attempt_s_end_is_not_reported() {
        let mut w = leased("w", 1);
        w.message(assign(0, 2), at(1));
        assert!(w.attempt_ended(JobId(0), passed(1), at(1)).is_empty());
        assert_eq!(w.running(), 1);
    }

    #[test]
    fn a_failed_job_task_is_reported_as_an_error() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        let fx = w.attempt_failed(JobId(0), "panicked", at(1));
        assert_eq!(finished(&fx), [(0, JobStatus::Error)]);
        assert_eq!(w.running(), 0);
    }

    #[test]
    fn a_lost_broker_s_prefetched_attempts_never_start() {
        let mut w = leased("w", 1);
        for id in 0..3 {
            w.message(assign(id, 1), at(1));
        }
        assert_eq!(w.broker_gone(), 2, "two were waiting for the slot");
        let fx = w.attempt_ended(JobId(0), passed(1), at(1));
        assert!(started(&fx).is_empty(), "{fx:?}");
        assert!(started(&w.message(assign(7, 1), at(1))).is_empty());
    }

    /// A layer digest for tests.
    fn digest() -> Digest {
        Digest("ab".repeat(32))
    }

    /// Job `id`'s attempt 1 ran on a leased 1-slot worker and uploads its outputs now.
    fn uploading_one(id: u64) -> Machine {
        let mut w = leased("w", 1);
        w.message(assign(id, 1), at(1));
        w.attempt_ran(JobId(id), passed(1), at(2));
        w
    }

    #[test]
    fn an_attempt_whose_process_ended_frees_its_slot_while_its_outputs_upload() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        w.message(assign(1, 1), at(1));
        let fx = w.attempt_ran(JobId(0), passed(1), at(2));
        assert_eq!(
            fx[..2],
            [
                Effect::Send(WorkerMsg::Uploading {
                    id: JobId(0),
                    attempt: 1
                }),
                Effect::Upload(JobId(0)),
            ]
        );
        assert!(finished(&fx).is_empty(), "no result before the upload");
        assert_eq!(started(&fx), [(1, 1)], "the slot went to the next job");
        assert_eq!((w.running(), w.uploading()), (1, 1));
    }

    #[test]
    fn the_result_is_sent_when_the_outputs_are_uploaded_with_their_layer() {
        let mut w = uploading_one(0);
        let uploaded = Ok((digest(), ".cluster-action-outputs/0".to_string()));
        let fx = w.upload_ended(JobId(0), 1, uploaded, at(3));
        match &fx[..] {
            [Effect::Send(WorkerMsg::Finished { id, outcome })] => {
                assert_eq!((id.0, outcome.status), (0, JobStatus::Passed));
                assert_eq!(outcome.outputs_layer, Some(digest()));
                assert_eq!(
                    outcome.outputs_path.as_deref(),
                    Some(".cluster-action-outputs/0")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(w.uploading(), 0);
    }

    #[test]
    fn a_lost_upload_makes_a_passed_attempt_an_error_naming_why() {
        let mut w = uploading_one(0);
        let fx = w.upload_ended(JobId(0), 1, Err("limit of 500 artifacts".into()), at(3));
        match &fx[..] {
            [Effect::Send(WorkerMsg::Finished { outcome, .. })] => {
                assert_eq!(outcome.status, JobStatus::Error);
                assert_eq!(outcome.error.as_deref(), Some("limit of 500 artifacts"));
                assert!(outcome.output.contains("outputs not brought back"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_worker_with_too_many_uploads_waiting_starts_nothing_until_one_ends() {
        let mut w = leased("w", 1);
        let max = crate::budget::pending_uploads_max(1) as u64;
        for id in 0..=max {
            w.message(assign(id, 1), at(1));
        }
        for id in 0..max {
            let fx = w.attempt_ran(JobId(id), passed(1), at(2));
            let next = if id + 1 < max {
                vec![(id + 1, 1)]
            } else {
                vec![]
            };
            assert_eq!(started(&fx), next, "after job {id}");
        }
        assert_eq!((w.running(), w.uploading()), (0, max as usize));
        let fx = w.upload_ended(JobId(0), 1, Ok((digest(), "d".into())), at(3));
        assert_eq!(finished(&fx), [(0, JobStatus::Passed)]);
        assert_eq!(
            started(&fx),
            [(max, 1)],
            "one upload ended: one more starts"
        );
    }

    #[test]
    fn cancel_reports_an_uploading_attempt_at_once_and_its_late_upload_is_ignored() {
        let mut w = uploading_one(0);
        let fx = w.message(BrokerToWorker::Cancel { id: JobId(0) }, at(3));
        assert_eq!(
            finished(&fx),
            [(0, JobStatus::Cancelled)],
            "nothing to kill"
        );
        let late = w.upload_ended(JobId(0), 1, Ok((digest(), "d".into())), at(4));
        assert!(finished(&late).is_empty());
    }

    #[test]
    fn a_signal_reports_uploading_attempts_with_their_outputs_lost_never_to_run_again() {
        let mut w = uploading_one(0);
        let fx = w.interrupted();
        assert_eq!(finished(&fx), [(0, JobStatus::Error)]);
        assert_eq!(fx.last(), Some(&Effect::End(Ending::Interrupted)));
    }

    #[test]
    fn take_back_and_a_stale_upload_never_touch_an_uploading_attempt() {
        let mut w = uploading_one(0);
        let asked = vec![AttemptRef {
            id: JobId(0),
            attempt: 1,
        }];
        let fx = w.message(BrokerToWorker::TakeBack { jobs: asked }, at(3));
        assert_eq!(fx, [Effect::Send(WorkerMsg::Released { jobs: vec![] })]);
        assert!(
            w.upload_ended(JobId(0), 2, Err("x".into()), at(3))
                .is_empty()
        );
        assert!(
            w.attempt_ran(JobId(0), passed(1), at(3)).is_empty(),
            "not running"
        );
        assert_eq!(w.uploading(), 1);
    }

    #[test]
    fn an_upload_ends_even_after_the_lease_ran_out() {
        let mut w = uploading_one(0);
        let fx = w.upload_ended(JobId(0), 1, Ok((digest(), "d".into())), at(60_000));
        assert_eq!(finished(&fx), [(0, JobStatus::Passed)]);
    }

    #[test]
    fn exit_ends_the_worker_without_reporting_what_runs() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        assert_eq!(
            w.message(BrokerToWorker::Exit, at(1)),
            [Effect::End(Ending::Exited)]
        );
    }

    #[test]
    fn a_signal_or_a_refusal_ends_the_worker() {
        let mut w = leased("w", 1);
        assert_eq!(w.interrupted(), [Effect::End(Ending::Interrupted)]);
        let refused = BrokerToWorker::Refused {
            reason: "version".into(),
        };
        assert_eq!(
            w.message(refused, at(1)),
            [Effect::End(Ending::Refused("version".into()))]
        );
    }

    /// The `Renew` requests sent in `fx`.
    fn renewals(fx: &[Effect]) -> Vec<u64> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send(WorkerMsg::Renew { seq }) => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn nothing_starts_before_the_broker_answers_the_hello() {
        let mut w = Machine::new("w", 1, at(0));
        assert!(started(&w.message(assign(0, 1), at(5))).is_empty());
        assert_eq!(started(&w.message(lease(0, 10_000), at(6))), [(0, 1)]);
    }

    #[test]
    fn a_worker_whose_lease_ran_out_starts_nothing_it_was_given_before() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        w.message(assign(1, 1), at(2));
        // Stalled past the lease (counted from the hello at 0): job 1 must not start.
        let fx = w.attempt_ended(JobId(0), passed(1), at(30_000));
        assert_eq!(finished(&fx), [(0, JobStatus::Passed)]);
        assert!(started(&fx).is_empty(), "fenced");
        assert_eq!(renewals(&fx), [1], "asks for a new lease");
        assert_eq!(
            warnings(&fx).len(),
            1,
            "job 1 waited through the lease: said"
        );
        assert!(warnings(&fx)[0].starts_with("this worker's lease ran out"));
        assert!(
            warnings(&w.tick(at(30_050))).is_empty(),
            "said once until a lease comes"
        );
        // A lease answering a request sent before the stall is no lease now.
        assert!(started(&w.message(lease(0, 10_000), at(30_001))).is_empty());
        // Only an answer to the request sent after the stall lets it start again.
        assert_eq!(started(&w.message(lease(1, 10_000), at(30_100))), [(1, 1)]);
    }

    /// The texts of the warnings in `fx`.
    fn warnings(fx: &[Effect]) -> Vec<&str> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Notice(n) if n.level == crate::notice::Level::Warn => Some(&*n.text),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn work_given_to_a_worker_whose_lease_lapsed_while_idle_waits_for_a_lease_without_a_warning() {
        let mut w = leased("w", 1);
        // Nothing waited while the lease ran out (nothing is renewed then): a new assignment
        // asks for a lease, as at a run's end when a retry comes to an idle worker.
        let fx = w.message(assign(0, 1), at(30_000));
        assert!(started(&fx).is_empty(), "fenced");
        assert_eq!(renewals(&fx), [1]);
        assert!(
            warnings(&fx).is_empty(),
            "a lapse while idle is normal: {fx:?}"
        );
        assert_eq!(started(&w.message(lease(1, 10_000), at(30_100))), [(0, 1)]);
    }

    #[test]
    fn a_renewal_unanswered_for_a_whole_lease_is_warned_of() {
        let mut w = leased("w", 1);
        // Work waits from late in the lease: the renewal is asked at once, then nothing
        // answers.
        assert_eq!(started(&w.message(assign(0, 1), at(9_000))), [(0, 1)]);
        assert_eq!(renewals(&w.message(assign(1, 1), at(9_000))), [1]);
        let fx = w.attempt_ended(JobId(0), passed(1), at(10_500));
        assert!(started(&fx).is_empty(), "fenced");
        assert!(
            warnings(&fx).is_empty(),
            "the answer may still come: {fx:?}"
        );
        let fx = w.tick(at(19_000));
        assert_eq!(warnings(&fx).len(), 1, "{fx:?}");
        assert_eq!(renewals(&fx), [2], "asked again");
    }

    #[test]
    fn a_worker_that_did_not_run_for_a_whole_lease_says_so_whatever_it_held() {
        let mut w = leased("w", 1);
        assert_eq!(w.awake_due(), Some(at(2_500)), "every quarter lease");
        assert!(w.awake(at(2_600)).is_empty(), "on time");
        // Idle (nothing queued, nothing waits for a lease), then stopped for 30 s.
        let fx = w.awake(at(32_600));
        assert_eq!(warnings(&fx).len(), 1, "{fx:?}");
        assert!(warnings(&fx)[0].contains("did not run for 30.0s"), "{fx:?}");
        assert!(warnings(&fx)[0].contains("lease ran out"), "{fx:?}");
        assert_eq!(w.awake_due(), Some(at(35_100)));
        // Said once: the work given next waits for a lease without another warning.
        assert!(warnings(&w.awake(at(70_000))).is_empty(), "said once");
        let fx = w.message(assign(0, 1), at(70_001));
        assert!(started(&fx).is_empty(), "fenced");
        assert!(warnings(&fx).is_empty(), "{fx:?}");
        // A lease comes: the next stall is said again.
        assert_eq!(started(&w.message(lease(1, 10_000), at(70_100))), [(0, 1)]);
        assert_eq!(warnings(&w.awake(at(90_000))).len(), 1);
    }

    #[test]
    fn the_stall_watch_starts_with_the_first_lease() {
        let mut w = Machine::new("w", 1, at(0));
        assert_eq!(w.awake_due(), None, "no lease length yet");
        // The broker answered the hello a minute later (a worker waits for its broker).
        w.message(lease(0, 10_000), at(60_000));
        assert_eq!(w.awake_due(), Some(at(62_500)));
        assert!(w.awake(at(62_500)).is_empty(), "joining late is no stall");
    }

    #[test]
    fn a_late_answer_counts_from_when_the_request_was_sent() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        w.message(assign(1, 1), at(1));
        let fx = w.attempt_ended(JobId(0), passed(1), at(10_500));
        assert_eq!(renewals(&fx), [1]);
        // The answer arrives after the lease it grants (sent at 10.5 s, 10 s) has run out.
        let fx = w.message(lease(1, 10_000), at(21_000));
        assert!(started(&fx).is_empty());
        assert_eq!(renewals(&fx), [2], "asks again");
    }

    #[test]
    fn the_lease_is_renewed_early_while_work_waits() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        assert!(
            renewals(&w.message(assign(1, 1), at(2))).is_empty(),
            "fresh lease"
        );
        let fx = w.message(assign(2, 1), at(6_000));
        assert_eq!(renewals(&fx), [1], "half of it gone, work waiting");
        assert!(
            renewals(&w.message(assign(3, 1), at(6_001))).is_empty(),
            "already asked"
        );
        w.message(lease(1, 10_000), at(6_100));
        assert_eq!(
            started(&w.attempt_ended(JobId(0), passed(1), at(12_000))),
            [(1, 1)]
        );
    }

    /// The jobs launched in `fx`, with the end of their lease.
    fn launched(fx: &[Effect]) -> Vec<(u64, Instant)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Launch { id, until } => Some((id.0, *until)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_prepared_attempt_launches_at_once_while_the_lease_holds() {
        let mut w = leased("w", 1);
        assert_eq!(started(&w.message(assign(0, 1), at(1))), [(0, 1)]);
        let fx = w.ready(JobId(0), at(2_000));
        assert_eq!(launched(&fx), [(0, at(10_000))]);
        assert!(renewals(&fx).is_empty());
    }

    #[test]
    fn a_lease_that_ran_out_while_the_job_was_prepared_holds_back_its_launch() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        // Its layers took until after the lease (the worker was stalled meanwhile).
        let fx = w.ready(JobId(0), at(12_000));
        assert!(launched(&fx).is_empty(), "fenced: {fx:?}");
        assert_eq!(renewals(&fx), [1], "asks for a new lease");
        assert!(
            launched(&w.message(lease(0, 10_000), at(12_001))).is_empty(),
            "an answer to a request from before is no lease now"
        );
        let fx = w.message(lease(1, 10_000), at(12_100));
        assert_eq!(launched(&fx), [(0, at(22_000))]);
        assert!(
            launched(&w.message(lease(1, 10_000), at(12_200))).is_empty(),
            "once"
        );
    }

    #[test]
    fn a_lease_that_comes_too_late_for_a_prepared_attempt_is_asked_for_again() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        assert_eq!(renewals(&w.ready(JobId(0), at(12_000))), [1]);
        // The answer arrives after the lease it grants (asked at 12 s, 10 s) has run out.
        let fx = w.message(lease(1, 10_000), at(23_000));
        assert!(launched(&fx).is_empty());
        assert_eq!(renewals(&fx), [2], "asks again, though no work is queued");
        assert_eq!(
            launched(&w.message(lease(2, 10_000), at(23_100))),
            [(0, at(33_000))]
        );
    }

    #[test]
    fn nothing_launches_once_the_broker_is_gone() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        w.broker_gone();
        let fx = w.ready(JobId(0), at(2));
        assert!(fx.is_empty(), "{fx:?}");
    }

    #[test]
    fn an_attempt_that_ended_while_it_waited_to_launch_never_launches() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        assert!(launched(&w.ready(JobId(0), at(12_000))).is_empty());
        assert_eq!(
            w.message(BrokerToWorker::Cancel { id: JobId(0) }, at(12_001)),
            [Effect::Kill(JobId(0))]
        );
        let cancelled = not_run("w", 1, JobStatus::Cancelled, None);
        w.attempt_ended(JobId(0), cancelled, at(12_002));
        assert!(launched(&w.message(lease(1, 10_000), at(12_100))).is_empty());
        assert!(
            w.ready(JobId(0), at(12_200)).is_empty(),
            "a stale request changes nothing"
        );
    }

    #[test]
    fn a_worker_with_queued_work_renews_its_lease_at_half_time_though_nothing_happens() {
        let mut w = leased("w", 1);
        assert_eq!(w.renewal_due(), None, "nothing waits: no renewal");
        assert_eq!(started(&w.message(assign(1, 1), at(1_000))), [(1, 1)]);
        assert_eq!(w.renewal_due(), None, "the only job runs: nothing waits");
        assert!(started(&w.message(assign(2, 1), at(2_000))).is_empty());
        assert_eq!(w.renewal_due(), Some(at(5_000)), "half of the 10 s lease");
        assert_eq!(
            w.tick(at(5_000)),
            [Effect::Send(WorkerMsg::Renew { seq: 1 })]
        );
        // The renewal is on its way: nothing is asked again until it may be given up.
        assert_eq!(w.renewal_due(), Some(at(15_000)));
        assert!(w.tick(at(6_000)).is_empty());
        // Answered: the lease runs from when the request was sent, to 15 s.
        assert!(w.message(lease(1, 10_000), at(6_500)).is_empty());
        assert_eq!(w.renewal_due(), Some(at(10_000)));
        // Job 1 ends after the first lease ran out: job 2 starts at once, no round trip.
        let fx = w.attempt_ended(JobId(1), passed(1), at(12_000));
        assert_eq!(started(&fx), [(2, 1)]);
        assert_eq!(w.renewal_due(), None);
    }

    #[test]
    fn an_unanswered_renewal_is_asked_again_once_it_could_no_longer_help() {
        let mut w = leased("w", 1);
        w.message(assign(1, 1), at(0));
        w.message(assign(2, 1), at(0));
        assert_eq!(
            w.tick(at(5_000)),
            [Effect::Send(WorkerMsg::Renew { seq: 1 })]
        );
        assert_eq!(w.renewal_due(), Some(at(15_000)));
        let fx = w.tick(at(15_000));
        assert!(
            fx.contains(&Effect::Send(WorkerMsg::Renew { seq: 2 })),
            "{fx:?}"
        );
    }

    #[test]
    fn take_back_gives_up_only_attempts_that_have_not_started() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        w.message(assign(1, 1), at(1));
        w.message(assign(2, 2), at(1));
        let asked = [0, 1, 2].map(|id| AttemptRef {
            id: JobId(id),
            attempt: if id == 2 { 2 } else { 1 },
        });
        let fx = w.message(
            BrokerToWorker::TakeBack {
                jobs: asked.to_vec(),
            },
            at(2),
        );
        assert_eq!(
            fx,
            [Effect::Send(WorkerMsg::Released {
                jobs: asked[1..].to_vec()
            })],
            "job 0 runs here; 1 and 2 are given up"
        );
        assert!(
            started(&w.attempt_ended(JobId(0), passed(1), at(3))).is_empty(),
            "a released attempt never starts"
        );
    }

    #[test]
    fn take_back_of_an_attempt_that_started_meanwhile_keeps_it_running() {
        let mut w = leased("w", 1);
        w.message(assign(0, 1), at(1));
        w.message(assign(1, 1), at(1));
        // Job 0 ends and job 1 starts before the take-back (sent by the broker meanwhile) arrives.
        let fx = w.attempt_ended(JobId(0), passed(1), at(2));
        assert_eq!(started(&fx), [(1, 1)]);
        let asked = vec![AttemptRef {
            id: JobId(1),
            attempt: 1,
        }];
        let fx = w.message(BrokerToWorker::TakeBack { jobs: asked }, at(3));
        assert_eq!(fx, [Effect::Send(WorkerMsg::Released { jobs: vec![] })]);
        assert_eq!(w.running(), 1);
        assert_eq!(
            finished(&w.attempt_ended(JobId(1), passed(1), at(4))),
            [(1, JobStatus::Passed)]
        );
    }
}
