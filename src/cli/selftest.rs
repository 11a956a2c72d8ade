//! `cluster-action selftest transport`: the flags of the transport check between two jobs of
//! one workflow run ([`cluster_action::selftest`]). Hidden from help.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use cluster_action::duration::parse_duration;
use cluster_action::selftest::{self, Role, TransportCheck};

use super::common::{ClusterArgs, store_from_env};
use super::exit;

/// Which end of the stream this job is.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Publish the listen artifact, accept one peer, answer its pings, publish the layer.
    Listen,
    /// Connect to the listener, ping it, fetch and verify the layer.
    Connect,
}

/// Flags of `selftest transport`.
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// This job's end of the stream.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// Messages to send each way.
    #[arg(long, default_value_t = 100)]
    messages: u32,
    /// A directory both jobs hold identical copies of: shipped as a layer and compared.
    #[arg(long, value_name = "DIR")]
    layer_dir: PathBuf,
    /// How long to wait for the other side.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    wait: Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Runs one side of the transport check; exit 0 when everything arrived intact.
pub async fn transport(args: TransportArgs) -> Result<i32, exit::Failure> {
    let store = store_from_env()?;
    let ns = args.cluster.namespace()?;
    let cfg = args.cluster.stream()?;
    if !args.layer_dir.is_dir() {
        return Err(exit::Failure::bad_input(format!(
            "--layer-dir {} is not a directory",
            args.layer_dir.display()
        )));
    }
    let check = TransportCheck {
        role: match args.role {
            RoleArg::Listen => Role::Listen,
            RoleArg::Connect => Role::Connect,
        },
        messages: args.messages,
        layer_dir: args.layer_dir,
        wait: args.wait,
    };
    selftest::transport(store, ns, cfg, &check, &mut |line| println!("{line}")).await?;
    Ok(exit::OK)
}
