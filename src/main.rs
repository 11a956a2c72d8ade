//! TEMPORARY command line for testing `serve` (the lead replaces it with the real CLI).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cluster_action::serve::{self, ServeConfig};
use cluster_action::token::{BackendIds, make_token};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the local artifact service until SIGINT/SIGTERM.
    Serve {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        #[arg(long, default_value_t = 0.0)]
        throttle_rate: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 50_000)]
        max_appends: u64,
        #[arg(long, default_value_t = 4 * 1024 * 1024)]
        max_append_bytes: u64,
        #[arg(long, default_value_t = 6 * 3600)]
        url_ttl_secs: u64,
    },
    /// Prints an unsigned runtime token for the local service.
    Token {
        #[arg(long)]
        run: String,
        #[arg(long)]
        job: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            addr,
            data_dir,
            latency_ms,
            fail_rate,
            throttle_rate,
            seed,
            max_appends,
            max_append_bytes,
            url_ttl_secs,
        } => {
            let cfg = ServeConfig {
                addr,
                data_dir,
                latency: Duration::from_millis(latency_ms),
                fail_rate,
                throttle_rate,
                seed,
                max_append_bytes,
                max_appends,
                url_ttl: Duration::from_secs(url_ttl_secs),
            };
            serve::run_until_signal(cfg, serve::announce_on_stdout).await
        }
        Command::Token { run, job } => {
            println!("{}", make_token(&BackendIds { run, job }));
            Ok(())
        }
    }
}
