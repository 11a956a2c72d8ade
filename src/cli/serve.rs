//! `cluster-action serve` and `cluster-action token`: the local artifact service and tokens for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use cluster_action::serve::{self, ServeConfig};
use cluster_action::token::{BackendIds, make_token};

use super::exit;

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; loopback only (the service trusts unsigned tokens).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Keep blobs in this directory (default: a temporary directory removed on exit).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Delay added to every request, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_ms: u64,
    /// Fraction of requests answered 500/503 before they take effect (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = fraction)]
    fail_rate: f64,
    /// Fraction of requests answered 429 with Retry-After before they take effect (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = fraction)]
    throttle_rate: f64,
    /// Seed for the fault injection's random choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most appends per append blob (Azure: 50000).
    #[arg(long, default_value_t = 50_000)]
    max_appends: u64,
    /// Largest append block in bytes (Azure: 4 MiB).
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    max_append_bytes: u64,
    /// How long signed URLs stay valid, in seconds.
    #[arg(long, default_value_t = 6 * 3600, value_name = "SECS")]
    url_ttl_secs: u64,
}

/// Flags of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The workflowRunBackendId the token speaks for.
    #[arg(long, default_value = "local-run")]
    run: String,
    /// The workflowJobRunBackendId the token speaks for.
    #[arg(long)]
    job: String,
}

/// A fraction from 0.0 to 1.0 (`--fail-rate`, `--throttle-rate`).
fn fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number: give a fraction from 0.0 to 1.0"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{value} is out of range: give a fraction from 0.0 to 1.0"
        ))
    }
}

/// Runs the service until SIGINT/SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<i32, exit::Failure> {
    let cfg = ServeConfig {
        addr: args.addr,
        data_dir: args.data_dir,
        latency: Duration::from_millis(args.latency_ms),
        fail_rate: args.fail_rate,
        throttle_rate: args.throttle_rate,
        seed: args.seed,
        max_append_bytes: args.max_append_bytes,
        max_appends: args.max_appends,
        url_ttl: Duration::from_secs(args.url_ttl_secs),
    };
    serve::run_until_signal(cfg, serve::announce_on_stdout)
        .await
        .map_err(exit::Failure::Serve)?;
    Ok(exit::OK)
}

/// Prints a token for the local service.
pub fn token(args: TokenArgs) -> Result<i32, exit::Failure> {
    println!(
        "{}",
        make_token(&BackendIds {
            run: args.run,
            job: args.job
        })
    );
    Ok(exit::OK)
}
