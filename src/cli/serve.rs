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
    /// Address to listen on; loopback only (the service trusts unsigned tokens), anything
    /// else is refused with exit 2 and no flag allows it.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Keep blobs in this directory (default: a temporary directory removed on exit).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Delay added to every request, in milliseconds (the median, with --latency-sigma).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_ms: u64,
    /// Spread the delays lognormally around --latency-ms: each is latency-ms × e^(SIGMA·Z),
    /// Z standard normal (0: constant; 0.5 puts the 95th percentile at 2.3 × the median).
    #[arg(long, default_value_t = 0.0, value_name = "SIGMA")]
    latency_sigma: f64,
    /// The delay of a request in the tail, in milliseconds (with --latency-tail-rate).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_tail_ms: u64,
    /// Fraction of requests delayed --latency-tail-ms instead (0.0 to 1.0), e.g. 0.01.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = fraction)]
    latency_tail_rate: f64,
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
    /// Most artifacts one job may create; the next create is refused as GitHub refuses it
    /// (GitHub: 500).
    #[arg(long, default_value_t = serve::MAX_ARTIFACTS_PER_JOB, value_name = "N")]
    max_artifacts_per_job: u32,
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
    if !args.addr.ip().is_loopback() {
        return Err(exit::Failure::bad_input(format!(
            "--addr {}: the service trusts unsigned tokens, so it serves loopback only; give \
             127.0.0.1:PORT or [::1]:PORT (to reach it from elsewhere, forward a port to it)",
            args.addr
        )));
    }
    if !(0.0..f64::INFINITY).contains(&args.latency_sigma) {
        return Err(exit::Failure::bad_input(format!(
            "--latency-sigma {} is out of range: give a spread of 0 (constant delays) or more",
            args.latency_sigma
        )));
    }
    let cfg = ServeConfig {
        addr: args.addr,
        data_dir: args.data_dir,
        latency: serve::Latency {
            median: Duration::from_millis(args.latency_ms),
            sigma: args.latency_sigma,
            tail: Duration::from_millis(args.latency_tail_ms),
            tail_rate: args.latency_tail_rate,
        },
        fail_rate: args.fail_rate,
        throttle_rate: args.throttle_rate,
        seed: args.seed,
        max_append_bytes: args.max_append_bytes,
        max_appends: args.max_appends,
        url_ttl: Duration::from_secs(args.url_ttl_secs),
        max_artifacts_per_job: args.max_artifacts_per_job,
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
