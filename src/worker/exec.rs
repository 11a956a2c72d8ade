//! Running one job attempt: a process group, a time limit, captured output.
//!
//! The job is `bash -c <command>` in its own process group, so the whole tree it starts can be
//! signalled at once: at its time limit, when it is cancelled, when the future running it is
//! dropped, and after it exits (background processes it left behind must not outlive it).
//!
//! A command too long for one argument (the kernel refuses any over 128 KiB; a suite batch
//! names all its tests in its command) is a script bash reads from a file it inherits instead
//! ([`LONGEST_ARGUMENT`]).
//!
//! Processes that leave the group (`setsid`) are caught by [`contain`]: they carry the job's
//! mark, are adopted by this process once the job's shell is gone, and are killed when the job
//! ends.
//!
//! The group is only ever signalled while its leader (the bash process) is not yet reaped: a
//! zombie leader keeps its pid, and so the group id, from being reused by an unrelated process.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{Fuse, FusedFuture};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::credentials::HIDDEN_VARS;
use crate::proto::{Isolation, JobStatus};
use crate::worker::output::TailBuffer;
use crate::worker::{contain, sandbox};

/// The longest command passed as `bash -c`'s argument; a longer one is written to an unnamed
/// file that bash inherits and runs as its script (`bash /dev/fd/N`, so `$0` is that path): the
/// kernel refuses a single argument over 128 KiB (`MAX_ARG_STRLEN`), and arguments and
/// environment together share a limit too.
pub const LONGEST_ARGUMENT: usize = 64 * 1024;

/// How much a job may print and how it is stopped.
#[derive(Debug, Clone)]
pub struct ExecLimits {
    /// Bytes of output (stdout and stderr together) kept; the tail is kept.
    pub output_limit: usize,
    /// Time between SIGTERM and SIGKILL when a job is stopped, to let it clean up.
    pub kill_grace: Duration,
    /// How long output is still read after the job exited and its group was killed. Only a
    /// process that left the group (e.g. with `setsid`) can hold the output pipe open longer.
    pub drain: Duration,
}

impl Default for ExecLimits {
    /// 1 MiB of output, 2 s to terminate, 1 s to drain.
    fn default() -> Self {
        ExecLimits {
            output_limit: 1 << 20,
            kill_grace: Duration::from_secs(2),
            drain: Duration::from_secs(1),
        }
    }
}

/// How one run of a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// Passed, Failed, TimedOut or Cancelled (never Error: that is an [`ExecError`]).
    pub status: JobStatus,
    /// The exit code of the job's shell, when it exited rather than being killed by a signal.
    pub exit_code: Option<i32>,
    /// The tail of stdout and stderr, merged as written, with notes from the executor.
    pub output: String,
}

/// Why a job could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `bash` could not be started (missing directory, missing bash, resource limits).
    #[error("cannot start `bash -c` in {}: {source}", dir.display())]
    Spawn {
        /// The job directory.
        dir: PathBuf,
        /// The system's reason.
        source: io::Error,
    },
    /// The job asked for `isolation: sandbox` and this machine cannot give it.
    #[error("isolation: sandbox is not available on this worker: {reason}")]
    NoSandbox {
        /// Why, and what allows it.
        reason: String,
    },
    /// An operating-system call around the job failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The system's reason.
        source: io::Error,
    },
}

impl ExecError {
    fn io(context: &'static str) -> impl FnOnce(io::Error) -> ExecError {
        move |source| ExecError::Io { context, source }
    }
}

/// Runs `bash -c cmd` (see [`LONGEST_ARGUMENT`] for a long `cmd`) in `dir` with the worker's environment (less [`HIDDEN_VARS`]) plus `env`, stdin from
/// `/dev/null`, until it exits, `timeout` passes or `cancel` completes.
///
/// `cancel` completing cancels the job; pass [`std::future::pending`] for a job that cannot be
/// cancelled. On timeout or cancellation the job's process group gets SIGTERM, then SIGKILL
/// after [`ExecLimits::kill_grace`]. Whatever is still running in the group when the job ends
/// is killed. Dropping the returned future kills the group too.
///
/// Stdout and stderr share one pipe, so the output is in the order the job wrote it; only its
/// last [`ExecLimits::output_limit`] bytes are kept.
pub async fn run_job<K, V>(
    cmd: &str,
    dir: &Path,
    env: impl IntoIterator<Item = (K, V)>,
    isolation: Isolation,
    timeout: Duration,
    limits: &ExecLimits,
    cancel: impl Future<Output = ()>,
) -> Result<Execution, ExecError>
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let (pipe, stdout, stderr) =
        output_pipe().map_err(ExecError::io("cannot create the output pipe"))?;
    let mark = (isolation != Isolation::None).then(contain::Mark::new);
    let mut command = Command::new("bash");
    for var in HIDDEN_VARS {
        command.env_remove(var);
    }
    // Kept open until bash has started: it holds a long command.
    let script = if cmd.len() > LONGEST_ARGUMENT {
        let script = script_file(cmd).map_err(ExecError::io("cannot write the job's command"))?;
        let fd = script.as_raw_fd();
        command.arg(format!("/dev/fd/{fd}"));
        // SAFETY: `inherit` makes one async-signal-safe call and does not allocate.
        unsafe { command.pre_exec(move || inherit(fd)) };
        Some(script)
    } else {
        command.arg("-c").arg(cmd);
        None
    };
    command
        .current_dir(dir)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if let Some(mark) = &mark {
        contain::become_subreaper();
        command.env(contain::MARK_VAR, mark.value());
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(libc::pid_t::MAX);
        // SAFETY: `in_child` makes only async-signal-safe calls and does not allocate.
        unsafe { command.pre_exec(move || contain::in_child(parent)) };
    }
    if matches!(isolation, Isolation::Sandbox | Isolation::SandboxNoNetwork) {
        sandbox::available().map_err(|reason| ExecError::NoSandbox { reason })?;
        let dir =
            std::path::absolute(dir).map_err(ExecError::io("cannot resolve the job directory"))?;
        let network = isolation == Isolation::Sandbox;
        let mut sandbox = sandbox::Sandbox::new(&dir, network)
            .map_err(ExecError::io("cannot prepare the sandbox"))?;
        // SAFETY: `enter` makes only async-signal-safe calls and does not allocate.
        unsafe { command.pre_exec(move || sandbox.enter()) };
    }
    let child = command.spawn().map_err(|source| ExecError::Spawn {
        dir: dir.to_path_buf(),
        source,
    })?;
    // The command holds our copies of the pipe's write end; the end of output is only seen
    // once the job's processes are the only writers left.
    drop(command);
    drop(script);
    let mut group = Group::new(child)?;
    contain::spawned(group.pgid);
    let mut tail = TailBuffer::new(limits.output_limit);
    let (ending, exit, killed) =
        supervise(&mut group, pipe, &mut tail, timeout, limits, cancel, mark).await?;

    let mut output = tail.into_string();
    if killed > 0 {
        note(
            &mut output,
            &format!("killed {killed} process(es) the job left running outside its process group"),
        );
    }
    let status = match ending {
        Ending::Exited if exit.success() => JobStatus::Passed,
        Ending::Exited => {
            if let Some(signal) = exit.signal() {
                note(&mut output, &format!("killed by signal {signal}"));
            }
            JobStatus::Failed
        }
        Ending::TimedOut => {
            let limit = timeout.as_secs_f64();
            note(
                &mut output,
                &format!("time limit of {limit}s reached, killed"),
            );
            JobStatus::TimedOut
        }
        Ending::Cancelled => {
            note(&mut output, "cancelled, killed");
            JobStatus::Cancelled
        }
    };
    Ok(Execution {
        status,
        exit_code: exit.code(),
        output,
    })
}

/// Waits for the job to end (stopping it at its time limit or on cancellation), kills what is
/// left of its group and what left the group, and reaps it; reads its output into `tail` all
/// along. Also returns how many processes outside the group were killed.
async fn supervise(
    group: &mut Group,
    pipe: pipe::Receiver,
    tail: &mut TailBuffer,
    timeout: Duration,
    limits: &ExecLimits,
    cancel: impl Future<Output = ()>,
    mark: Option<contain::Mark>,
) -> Result<(Ending, ExitStatus, usize), ExecError> {
    let mut capture = pin!(capture(pipe, tail).fuse());
    let ending = alongside(capture.as_mut(), async {
        tokio::select! {
            exited = group.exited() => exited.map(|()| Ending::Exited),
            () = tokio::time::sleep(timeout) => Ok(Ending::TimedOut),
            () = cancel => Ok(Ending::Cancelled),
        }
    })
    .await??;
    if ending != Ending::Exited {
        group.signal(libc::SIGTERM);
        let grace = tokio::time::timeout(limits.kill_grace, group.exited());
        if let Ok(exited) = alongside(capture.as_mut(), grace).await? {
            exited?;
        } else {
            group.signal(libc::SIGKILL);
            alongside(capture.as_mut(), group.exited()).await??;
        }
    }
    // Background processes the job left behind, in its group and out of it.
    group.signal(libc::SIGKILL);
    let killed = match mark {
        Some(mark) => {
            let pgid = group.pgid;
            tokio::task::spawn_blocking(move || contain::kill_leftovers(mark, pgid))
                .await
                .unwrap_or(0)
        }
        None => 0,
    };
    if !capture.is_terminated()
        && let Ok(read) = tokio::time::timeout(limits.drain, capture.as_mut()).await
    {
        read?;
    }
    Ok((ending, group.reap().await?, killed))
}

/// What ended the wait for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited,
    TimedOut,
    Cancelled,
}

/// An unnamed file holding `cmd` as a script, read from its start; its first line closes the
/// descriptor bash inherited it by (bash reads the script through its own), so the job's
/// processes do not inherit it too.
fn script_file(cmd: &str) -> io::Result<std::fs::File> {
    use std::io::{Seek, Write};
    let mut file = tempfile::tempfile()?;
    let fd = file.as_raw_fd();
    write!(file, "exec {fd}<&-\n{cmd}")?;
    file.rewind()?;
    Ok(file)
}

/// Lets the child inherit descriptor `fd` (between fork and exec).
fn inherit(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process holds, with integer arguments.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Appends an executor note on its own line.
fn note(output: &mut String, text: &str) {
    if !output.is_empty() && !output.ends_with('\n') {
        output.push('\n');
    }
    output.push_str("[cluster-action: ");
    output.push_str(text);
    output.push_str("]\n");
}

/// One pipe for both stdout and stderr, so the job's writes arrive in the order it made them:
/// our reading end, and two writing ends for the job.
fn output_pipe() -> io::Result<(pipe::Receiver, io::PipeWriter, io::PipeWriter)> {
    let (reader, stdout) = io::pipe()?;
    let stderr = stdout.try_clone()?;
    Ok((
        pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?,
        stdout,
        stderr,
    ))
}

/// Reads the job's output pipe into `tail` until every writer has closed it.
async fn capture(mut pipe: pipe::Receiver, tail: &mut TailBuffer) -> Result<(), ExecError> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = pipe
            .read(&mut buf)
            .await
            .map_err(ExecError::io("cannot read the job's output"))?;
        if n == 0 {
            return Ok(());
        }
        tail.push(&buf[..n]);
    }
}

/// Runs `work` to completion while still reading output (so a job writing more than a pipe
/// holds is never blocked while we wait for it). A read error ends the wait.
async fn alongside<C, T>(
    mut capture: Pin<&mut Fuse<C>>,
    work: impl Future<Output = T>,
) -> Result<T, ExecError>
where
    C: Future<Output = Result<(), ExecError>>,
{
    let mut work = pin!(work);
    loop {
        tokio::select! {
            read = capture.as_mut(), if !capture.is_terminated() => read?,
            done = &mut work => return Ok(done),
        }
    }
}

/// The job's process group, led by the bash process. Dropping it before the leader is reaped
/// kills the group. (A warm session's process is one too: see `worker::session`.)
pub(crate) struct Group {
    child: Child,
    /// The leader's pid, which is also the group id.
    pub(crate) pgid: libc::pid_t,
    reaped: bool,
}

impl Group {
    /// The group `child` leads (spawned with `process_group(0)`).
    pub(crate) fn new(child: Child) -> Result<Self, ExecError> {
        let pgid = child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .ok_or_else(|| ExecError::Io {
                context: "the job's process has no pid",
                source: io::Error::from(io::ErrorKind::NotFound),
            })?;
        Ok(Group {
            child,
            pgid,
            reaped: false,
        })
    }

    /// Sends `signal` to every process in the group.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        // SAFETY: killpg has no memory-safety preconditions. The leader is not reaped yet, so
        // `pgid` still names the job's group and no other.
        if unsafe { libc::killpg(self.pgid, signal) } == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                tracing::warn!(pgid = self.pgid, signal, %err, "cannot signal the job's process group");
            }
        }
    }

    /// Completes when the leader has exited, leaving it a zombie (not reaped), so the group id
    /// stays ours until [`Group::reap`].
    pub(crate) async fn exited(&self) -> Result<(), ExecError> {
        let mut sigchld = signal(SignalKind::child())
            .map_err(ExecError::io("cannot listen for the job's exit"))?;
        // The listener exists before the check, so an exit right after it is not missed.
        while !self.has_exited()? {
            sigchld.recv().await;
        }
        Ok(())
    }

    /// Whether the leader has exited (it stays a zombie until [`Group::reap`]).
    pub(crate) fn has_exited(&self) -> Result<bool, ExecError> {
        loop {
            // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into it only.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is valid for writes; WNOWAIT leaves the child waitable.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pgid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
                )
            };
            if r == 0 {
                // SAFETY: waitid succeeded, so `info` is initialised; si_pid is 0 when the
                // child has not exited yet (WNOHANG).
                return Ok(unsafe { info.si_pid() } != 0);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(ExecError::Io {
                    context: "cannot wait for the job's process",
                    source: err,
                });
            }
        }
    }

    /// Collects the exited leader's status; the group id is free for reuse afterwards.
    pub(crate) async fn reap(&mut self) -> Result<ExitStatus, ExecError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(ExecError::io("cannot wait for the job's process"))?;
        self.reaped = true;
        contain::reaped(self.pgid);
        Ok(status)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
        }
    }
}
