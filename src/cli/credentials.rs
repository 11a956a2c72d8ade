//! Keeps the artifact credentials and the cluster secret out of what other processes can read
//! of this one.
//!
//! GitHub hands `ACTIONS_RUNTIME_TOKEN` and `ACTIONS_RESULTS_URL` to the action through the
//! environment, and the wrapper passes the secret as `CLUSTER_SECRET` and the `token` input as
//! `GITHUB_TOKEN` (all of them are [`HIDDEN_VARS`]); `/proc/<pid>/environ` shows the environment a process *started* with to
//! every process of the same user, however the process changes its variables later. A job is
//! such a process. So, before anything else runs (one thread, nothing has read the
//! environment yet), the entries of the credential variables in that initial block are
//! overwritten with NUL bytes, the variables are set again (the C library keeps the copies on
//! the heap, which `/proc` does not show), and the process is made non-dumpable, which also
//! closes `/proc/<pid>/mem` and ptrace to processes of the same user.

use std::ffi::OsString;

use cluster_action::credentials::HIDDEN_VARS;

/// Hides the credential variables of this process as the module says. Must run first in
/// `main`, while the process has one thread.
pub fn hide() {
    #[cfg(target_os = "linux")]
    {
        let values: Vec<(&str, OsString)> = HIDDEN_VARS
            .iter()
            .filter_map(|&name| std::env::var_os(name).map(|v| (name, v)))
            .collect();
        if values.is_empty() {
            return;
        }
        if let Err(e) = scrub_initial_environ(HIDDEN_VARS) {
            eprintln!("warning: cannot hide the artifact credentials from /proc: {e}");
        }
        for (name, value) in values {
            // SAFETY: called first in `main`, before any other thread exists.
            unsafe { std::env::set_var(name, value) };
        }
        // SAFETY: prctl with integer arguments has no memory-safety preconditions.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }
}

/// Overwrites, in the environment block this process started with, every `NAME=value` entry
/// whose name is in `names` with NUL bytes.
#[cfg(target_os = "linux")]
fn scrub_initial_environ(names: &[&str]) -> std::io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name start at field 3 (state); env_start and env_end are
    // fields 50 and 51.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> std::io::Result<usize> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no field {n} in /proc/self/stat")))
    };
    let (start, end) = (field(50)?, field(51)?);
    if end <= start {
        return Ok(());
    }
    // SAFETY: [env_start, env_end) is this process's initial environment block, mapped and
    // writable (it is on the initial stack). No Rust value refers to it; the C library's
    // `environ` array points into it, and an entry turned into an empty string is one that
    // lookups skip. One thread runs, so nothing reads it meanwhile.
    let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    let mut at = 0;
    while at < block.len() {
        let len = block[at..]
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(block.len() - at);
        let entry = &block[at..at + len];
        let hidden = names.iter().any(|name| {
            entry.len() > name.len()
                && entry.starts_with(name.as_bytes())
                && entry[name.len()] == b'='
        });
        if hidden {
            block[at..at + len].fill(0);
        }
        at += len + 1;
    }
    Ok(())
}
