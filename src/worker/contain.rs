//! Containment of a job's processes: everything a job starts dies with the job, and with the
//! process that ran it, even processes that left the job's process group (`setsid`).
//!
//! A process group alone does not hold a job: `setsid` daemons leave it, and when the worker
//! dies (SIGKILL, OOM, a job killing its parent) the group lives on. Three mechanisms close
//! that, all without privileges (Linux; elsewhere only the process group applies):
//!
//! 1. **A mark.** Every job process inherits `CLUSTER_ACTION_JOB_MARK=<owner pid>.<seq>` in its
//!    environment, naming the process that ran it and the attempt.
//! 2. **Subreapers.** The job's shell is a child subreaper, so orphans of a running job stay
//!    below it; the process running jobs is one too, so what a finished job left behind (its
//!    shell is gone) is re-parented to it. When a job ends, [`kill_leftovers`] kills every
//!    adopted child that carries the mark of a job no longer running, and what they started.
//! 3. **A parent-death signal.** The job's shell gets SIGKILL when the thread that started it
//!    dies. What else a dead worker's jobs left running carries the worker's pid in its mark:
//!    whoever waits for the worker (`local`, the action's wrapper on a Node that spawns the
//!    binary) calls [`kill_marked_by`], which scans `/proc` once for it. A worker nobody waits
//!    for (the wrapper replaced itself with it) starts its own [`start_guard`]: a child that
//!    notices its end, however it ends, and does the same.
//!
//! A process that clears its environment *and* leaves the group escapes only while its worker
//! lives and only until it ends; `isolation` with namespaces is the airtight option.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The environment variable every process of a job inherits.
pub const MARK_VAR: &str = "CLUSTER_ACTION_JOB_MARK";

/// How many rounds of killing [`kill_leftovers`] and [`kill_marked_by`] make: each round kills
/// what it sees, and the children of the killed are seen in the next one.
const ROUNDS: usize = 64;

/// The mark of one job attempt of this process; removed from the running set when dropped.
#[derive(Debug)]
pub struct Mark {
    seq: u64,
    value: String,
}

impl Mark {
    /// A new mark for a job about to start, counted as running until dropped.
    pub fn new() -> Mark {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let seq = NEXT.fetch_add(1, Ordering::Relaxed);
        running()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq);
        Mark {
            seq,
            value: format!("{}.{seq}", std::process::id()),
        }
    }

    /// The value of [`MARK_VAR`] for this job.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl Default for Mark {
    fn default() -> Self {
        Mark::new()
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        running()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.seq);
    }
}

/// The job shells this process spawned and has not reaped: the async runtime owns their
/// reaping (also of those whose job was dropped), so the leftover sweep never touches them.
fn leaders() -> &'static Mutex<HashSet<libc::pid_t>> {
    static LEADERS: OnceLock<Mutex<HashSet<libc::pid_t>>> = OnceLock::new();
    LEADERS.get_or_init(Mutex::default)
}

/// Notes a job's shell just spawned (see [`kill_leftovers`]).
pub fn spawned(pid: libc::pid_t) {
    leaders()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(pid);
}

/// Notes that a job's shell was reaped: its pid may now be reused.
pub fn reaped(pid: libc::pid_t) {
    leaders()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&pid);
}

/// The sequence numbers of this process's jobs that are running.
fn running() -> &'static Mutex<HashSet<u64>> {
    static RUNNING: OnceLock<Mutex<HashSet<u64>>> = OnceLock::new();
    RUNNING.get_or_init(Mutex::default)
}

/// Makes this process a child subreaper (once), so that processes a finished job left behind
/// are re-parented to it instead of to init, where [`kill_leftovers`] finds them.
pub fn become_subreaper() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: prctl with integer arguments has no memory-safety preconditions.
            if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
                tracing::warn!(
                    "cannot become a child subreaper ({}): processes a job leaves behind outside its process group may outlive it",
                    io::Error::last_os_error()
                );
            }
        }
    });
}

/// Prepares the job's shell between fork and exec: it dies when the thread that started it
/// does (the worker), and it adopts the orphans of its own job. Makes only async-signal-safe
/// calls and does not allocate, as `CommandExt::pre_exec` requires; `parent` is the pid of
/// the process that forked.
pub fn in_child(parent: libc::pid_t) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments has no memory-safety preconditions and is
        // async-signal-safe.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    signalled_when_parent_dies(libc::SIGKILL, parent)
}

/// Between fork and exec: `signal` reaches this child when the thread that forked it ends
/// (with its process, however that ends), and an error when `parent` (the pid of the process
/// that forked) is already gone, since the signal would then never come. Async-signal-safe
/// and allocation-free, as `CommandExt::pre_exec` requires. Linux only; elsewhere a no-op.
pub fn signalled_when_parent_dies(signal: libc::c_int, parent: libc::pid_t) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl and getppid with integer arguments have no memory-safety
        // preconditions and are async-signal-safe.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (signal, parent);
    Ok(())
}

/// Ends the mark of a job that just ended (`ended`, whose process group was `pgid`) and kills
/// what finished jobs of this process left behind: adopted children carrying the mark of a
/// job of ours that is no longer running, and everything they started, and reaps them.
/// Returns how many of them were the ended job's own and ran outside its group (which its
/// group kill reached already): another job's leftovers found on the way are killed, but
/// not counted against this one. Blocking: call it from a blocking thread.
pub fn kill_leftovers(ended: Mark, pgid: libc::pid_t) -> usize {
    let own = ended.value.clone();
    drop(ended);
    // One at a time: a stray is ours to reap, and only until it is reaped is its pid its own.
    // Two jobs ending together would otherwise both kill and reap the same stray, and the
    // second `waitpid` could reap (and its kill hit) a new job's shell that reused the pid.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let prefix = format!("{}.", std::process::id());
    let mut killed = 0;
    for _ in 0..ROUNDS {
        // The order of the two checks matters. A job's shell is noted as a leader before its
        // mark can stop running (its job drops the mark only after the shell exited), and it
        // stays a leader until its job reaped it, after its own sweep, which waits for this
        // one. So a shell whose mark was seen stale is seen a leader when looked up *after*:
        // a set of leaders taken before the marks were read could miss a shell that started
        // and ended meanwhile, which would then be reaped here, its job left with ECHILD.
        let strays: Vec<(libc::pid_t, String)> = own_children()
            .into_iter()
            .filter_map(|pid| mark_of(pid).map(|mark| (pid, mark)))
            .filter(|(_, mark)| {
                mark.strip_prefix(&prefix)
                    .and_then(|seq| seq.parse::<u64>().ok())
                    .is_some_and(|seq| !is_running(seq))
            })
            .filter(|(pid, _)| !is_leader(*pid))
            .collect();
        if strays.is_empty() {
            break;
        }
        for (pid, mark) in &strays {
            if *mark == own && running_outside(*pid, pgid) {
                killed += 1;
            }
            kill(*pid);
        }
        for (pid, _) in &strays {
            reap(*pid);
        }
    }
    killed
}

/// Starts the guard of this process (`cluster-action guard --owner <pid>`, the same binary):
/// it holds the read end of a pipe whose write end only this process has (close-on-exec, so no
/// job inherits it), and when that ends, as it does however this process ends (SIGKILL, OOM),
/// it calls [`kill_marked_by`] for it. In its own process group (a Ctrl-C to the step's group
/// does not stop it first) and without the credentials in its environment. Linux only.
pub fn start_guard() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let started = std::env::current_exe().and_then(|exe| {
            let mut cmd = Command::new(exe);
            cmd.args(["guard", "--owner", &std::process::id().to_string()])
                .stdin(Stdio::piped())
                // Holding none of the step's output pipes, it delays no reader's end of file.
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            for var in crate::credentials::HIDDEN_VARS {
                cmd.env_remove(var);
            }
            cmd.spawn()
        });
        match started {
            // The write end stays open, unused, until this process ends.
            Ok(mut child) => std::mem::forget(child.stdin.take()),
            Err(e) => tracing::warn!(
                "cannot start the guard that kills what this worker's jobs leave if it dies ({e}): such processes may outlive it"
            ),
        }
    }
}

/// The guard's side of [`start_guard`]: deaf to the signals that stop a step (it must outlive
/// its owner), it waits until its stdin ends, then kills what `owner`'s jobs left running.
/// Returns how many it killed.
pub fn guard(owner: u32) -> usize {
    use std::io::Read;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: setting a signal to SIG_IGN has no memory-safety preconditions.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let mut stdin = io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    kill_marked_by(owner)
}

/// Kills every process on this machine whose mark names `owner` (a worker that exited), for
/// the process that waited for it. Returns how many it killed.
pub fn kill_marked_by(owner: u32) -> usize {
    let prefix = format!("{owner}.");
    let mut killed = 0;
    for _ in 0..ROUNDS {
        let marked: Vec<libc::pid_t> = all_pids()
            .into_iter()
            .filter(|&pid| mark_of(pid).is_some_and(|m| m.starts_with(&prefix)))
            .collect();
        if marked.is_empty() {
            break;
        }
        // Killed processes that are not our children are reaped by their new parent: wait
        // until each has exited before looking again, so its children are re-parented.
        let pidfds: Vec<Option<std::os::fd::OwnedFd>> =
            marked.iter().map(|&pid| pidfd(pid)).collect();
        for (&pid, fd) in marked.iter().zip(&pidfds) {
            match fd {
                Some(fd) => signal_pidfd(fd),
                None => kill(pid),
            }
        }
        killed += marked.len();
        for fd in pidfds.iter().flatten() {
            wait_exited(fd);
        }
    }
    killed
}

fn is_leader(pid: libc::pid_t) -> bool {
    leaders()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&pid)
}

fn is_running(seq: u64) -> bool {
    running()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&seq)
}

/// The value of [`MARK_VAR`] in the environment `pid` started with, if readable.
fn mark_of(pid: libc::pid_t) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{MARK_VAR}=");
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(key.as_bytes()))
        .map(|value| OsStr::from_bytes(value).to_string_lossy().into_owned())
}

/// Whether `pid` still runs (is no zombie) in a process group other than `pgid`.
fn running_outside(pid: libc::pid_t, pgid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // After the command name: state, ppid, pgrp, ...
    let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
    let state = fields.next();
    let group = fields.nth(1).and_then(|g| g.parse::<libc::pid_t>().ok());
    !matches!(state, Some("Z" | "X")) && group != Some(pgid)
}

/// This process's children, from every thread's `children` list.
fn own_children() -> Vec<libc::pid_t> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<libc::pid_t>().ok()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Every process id in `/proc`.
fn all_pids() -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&pid: &libc::pid_t| pid as u32 != std::process::id())
        .collect()
}

fn kill(pid: libc::pid_t) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Reaps an adopted child (it is ours, so only we can).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is valid for writes.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r != -1 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// A pidfd for `pid` (Linux 5.3+): signals through it cannot reach a reused pid, and it
/// becomes readable when the process exits.
fn pidfd(pid: libc::pid_t) -> Option<std::os::fd::OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative result is a descriptor we own.
        (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

fn signal_pidfd(fd: &std::os::fd::OwnedFd) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// Waits (at most a second) until the process behind `fd` has exited.
fn wait_exited(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut poll, 1, 1000) };
}
