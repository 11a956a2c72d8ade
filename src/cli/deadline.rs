//! `--timeout`: a time limit for the whole process, as the action's `timeout` input asks.
//!
//! At the deadline the process sends itself SIGTERM, so it stops as on any SIGTERM (a run
//! cancels its jobs, writes its reports and exits 130), and SIGKILL if it is still there
//! `--kill-grace` later. The process keeps its own time, rather than whoever started it, so
//! that the action's wrapper can replace itself with the binary (`dist/index.js`) and leave no
//! process above it that holds the artifact credentials.

use std::time::Duration;

/// Starts the clock: SIGTERM to this process after `timeout`, SIGKILL `grace` after that.
pub fn start(timeout: Duration, grace: Duration) {
    let spawned = std::thread::Builder::new()
        .name("timeout".into())
        .spawn(move || {
            std::thread::sleep(timeout);
            let message = format!(
                "cluster-action ran longer than its --timeout ({timeout:?}): stopping it (SIGTERM, then SIGKILL after {grace:?})"
            );
            if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
                println!("::error::{message}");
            } else {
                eprintln!("error: {message}");
            }
            signal_self(libc::SIGTERM);
            std::thread::sleep(grace);
            signal_self(libc::SIGKILL);
        });
    if let Err(e) = spawned {
        eprintln!("warning: cannot start the --timeout clock ({e}): no time limit");
    }
}

fn signal_self(signal: libc::c_int) {
    // SAFETY: kill with this process's id and a signal number has no memory-safety
    // preconditions.
    unsafe { libc::kill(libc::getpid(), signal) };
}
