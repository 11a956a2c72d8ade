//! The `cluster-action` command line: parses flags, sets up logging, and hands each
//! subcommand to its module in `cli`. Exit codes are documented in [`cli::exit`].

use clap::Parser;

mod cli;

fn main() {
    cli::credentials::hide();
    let args = cli::Cli::parse();
    cli::init_logging(args.log_level.as_deref());
    if let Some(timeout) = args.timeout {
        cli::deadline::start(timeout, args.kill_grace);
    }
    let code = match tokio::runtime::Runtime::new() {
        Ok(rt) => {
            let code = rt.block_on(cli::dispatch(args.command));
            // Dropping the runtime drops every task, and with them the guards that kill the
            // process groups of jobs still running.
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
            // What jobs started outside their process groups and still runs (a job dropped
            // while its shell was being killed) goes with this process.
            cluster_action::worker::contain::kill_marked_by(std::process::id());
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            cli::exit::INFRA
        }
    };
    std::process::exit(code);
}
