//! Subcommands of the binary. Each maps its flags onto a library configuration and turns the
//! library's errors into a message on stderr and a documented exit code.

mod cleanup;
mod cluster;
mod common;
pub mod credentials;
pub mod deadline;
pub mod exit;
mod history;
mod plan;
mod run;
mod selftest;
mod serve;
mod suites;

use std::time::Duration;

use clap::{Parser, Subcommand};

use cluster_action::duration::parse_duration;

/// Turns the jobs of one GitHub Actions workflow run into a compute cluster that talks only
/// through the run's artifact store.
#[derive(Debug, Parser)]
#[command(name = "cluster-action", version, about, long_about = None, after_help = exit::HELP)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive such as
    /// `cluster_action::stream=debug`). Overrides RUST_LOG. Default: warn.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Stop after this long, as on SIGTERM (a run cancels its jobs and writes its reports,
    /// exit 130), and SIGKILL --kill-grace later if still running. Default: no limit.
    #[arg(long, global = true, value_parser = positive_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// With --timeout: how long after its SIGTERM the process is killed.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub kill_grace: Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a whole cluster on this machine (artifact service, broker, N worker processes,
    /// runner) and run a manifest on it. SIGINT or SIGTERM cancels the run (exit 130); the
    /// workers end with this process however it ends.
    Local(run::LocalArgs),
    /// Run a manifest on the cluster: upload layers, submit jobs, follow them, report.
    Run(run::RunArgs),
    /// How many machines to give a run: lists its suites, predicts the wall time of 1 to
    /// --max-workers machines from the timing history, and answers the fewest that meet
    /// --target (else the knee); with --step-outputs, as `workers` and `matrix` for a workflow.
    Plan(plan::PlanArgs),
    /// Run the broker: accept workers and runners, schedule jobs.
    Broker(cluster::BrokerArgs),
    /// Run a worker: take jobs from the broker and run them.
    Worker(cluster::WorkerArgs),
    /// Tell the cluster's broker to stop; every worker then exits 0.
    Stop(cluster::StopArgs),
    /// Serve a local artifact service (Twirp + blob) on loopback, for tests and `act`-free
    /// local clusters. Prints `ACTIONS_RESULTS_URL=...` as its first line when ready.
    Serve(serve::ServeArgs),
    /// Delete the run's cluster-action leftovers (streams, markers, layers of every cluster;
    /// reports unless --keep none), e.g. after a crashed cluster. Exit 0 when all are gone,
    /// 3 when the store cannot be listed or some artifact could not be deleted.
    Gc(cleanup::GcArgs),
    /// Print a runtime token that the local service accepts as the given run and job.
    Token(serve::TokenArgs),
    /// Waits for process OWNER to end, then kills what its jobs left running (started by a
    /// worker; hidden: not part of the user's API).
    #[command(hide = true)]
    Guard {
        /// The worker's pid.
        #[arg(long)]
        owner: u32,
    },
    /// Checks of a setup, run by the end-to-end tests (hidden: not part of the user's API).
    #[command(subcommand, hide = true)]
    Selftest(SelftestCommand),
}

/// The checks of `selftest`.
#[derive(Debug, Subcommand)]
pub enum SelftestCommand {
    /// Two jobs exchange stream messages both ways and a layer through the artifact store.
    Transport(selftest::TransportArgs),
    /// Prints the stream flags `local` gives its workers, one a line (scripts/bench builds
    /// the same cluster from separate processes with them).
    LocalFlags,
}

/// A duration longer than zero (a limit of 0 would stop the process at once).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("0 would stop the process at once: give a longer duration".into()),
        d => Ok(d),
    }
}

/// Sets up `tracing` on stderr: `--log-level`, else `RUST_LOG`, else warnings only. Colours
/// only on a terminal (and not with `NO_COLOR`), so log files and pipes get plain text.
pub fn init_logging(level: Option<&str>) {
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let filter = level
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

/// Runs one subcommand and returns the process exit code.
pub async fn dispatch(command: Command) -> i32 {
    let result = match command {
        Command::Local(args) => run::local(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Plan(args) => plan::plan(args).await,
        Command::Broker(args) => cluster::broker(args).await,
        Command::Worker(args) => cluster::worker(args).await,
        Command::Stop(args) => cluster::stop(args).await,
        Command::Gc(args) => cleanup::gc(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Token(args) => serve::token(args),
        Command::Guard { owner } => {
            let guard =
                tokio::task::spawn_blocking(move || cluster_action::worker::contain::guard(owner));
            Ok(guard.await.map_or(exit::INFRA, |_| 0))
        }
        Command::Selftest(SelftestCommand::Transport(args)) => selftest::transport(args).await,
        Command::Selftest(SelftestCommand::LocalFlags) => common::print_local_flags(),
    };
    match result {
        Ok(code) => code,
        Err(failure) => exit::report(&failure),
    }
}
