//! Flags and plumbing shared by the cluster subcommands: the cluster id, stream timings, the
//! artifact store from the environment, and signals.

use std::time::Duration;

use clap::Args;

use cluster_action::runner::duration::parse_duration;
use cluster_action::store::{ArtifactStore, StoreConfig};
use cluster_action::stream::{Namespace, StreamConfig};

use super::exit::ExitError;

/// `--cluster` and the stream timings.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Cluster id: several clusters can share one workflow run. Letters, digits, '-' and '_'.
    #[arg(long, default_value = "default", env = "CLUSTER_ACTION_CLUSTER")]
    pub cluster: String,
    /// Longest pause between polls of an idle stream (e.g. 500ms, 1s).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub poll_max: Duration,
    /// Send a keepalive when nothing else was sent for this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub keepalive: Duration,
    /// Declare a peer dead (and requeue a lost worker's jobs) after this long without a word.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub peer_timeout: Duration,
    /// `--keep` and `--retention`.
    #[command(flatten)]
    pub cleanup: super::cleanup::CleanupArgs,
}

impl ClusterArgs {
    /// The stream names: this cluster in this run attempt (`GITHUB_RUN_ATTEMPT`, default 1).
    pub fn namespace(&self) -> anyhow::Result<Namespace> {
        let ok = !self.cluster.is_empty()
            && self.cluster.len() <= 64
            && self
                .cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(ExitError::bad_input(format!(
                "--cluster '{}' is not a valid cluster id: use 1 to 64 letters, digits, '-' or '_'",
                self.cluster
            )));
        }
        let attempt = std::env::var("GITHUB_RUN_ATTEMPT")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "1".into());
        Ok(Namespace {
            cluster: self.cluster.clone(),
            attempt,
        })
    }

    /// Stream timings from the flags (exit 2 when they cannot work together).
    pub fn stream(&self) -> anyhow::Result<StreamConfig> {
        let cfg = StreamConfig {
            poll_max: self.poll_max,
            keepalive: self.keepalive,
            peer_timeout: self.peer_timeout,
            ..StreamConfig::default()
        };
        cfg.validate().map_err(|e| {
            ExitError::bad_input(format!(
                "{e}\n(--keepalive {:?} must be less than half of --peer-timeout {:?}, and --poll-max more than 0)",
                self.keepalive, self.peer_timeout
            ))
        })?;
        Ok(cfg)
    }

    /// These flags again, for the worker processes that `local` starts.
    pub fn to_worker_args(&self) -> Vec<String> {
        vec![
            "--poll-max".into(),
            format!("{}ms", self.poll_max.as_millis()),
            "--keepalive".into(),
            format!("{}ms", self.keepalive.as_millis()),
            "--peer-timeout".into(),
            format!("{}ms", self.peer_timeout.as_millis()),
        ]
    }
}

/// The artifact store from `ACTIONS_RESULTS_URL` and `ACTIONS_RUNTIME_TOKEN` (exit 2 if unusable).
pub fn store_from_env() -> anyhow::Result<ArtifactStore> {
    let cfg = StoreConfig::from_env().map_err(|e| {
        ExitError::bad_input(format!(
            "{e}\n(in a workflow, run cluster-action through its action, which passes these on; locally, use `cluster-action local`)"
        ))
    })?;
    Ok(ArtifactStore::new(cfg)?)
}

/// Completes on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A default name for this process in logs and reports: `$GITHUB_JOB` or the host name, and a
/// random suffix (matrix jobs share `$GITHUB_JOB`, and fresh runner machines often share pids).
pub fn default_name(role: &str) -> String {
    let base = std::env::var("GITHUB_JOB")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| role.to_string());
    let suffix: u32 = rand::random_range(0..0x100_0000);
    format!("{base}-{suffix:06x}")
}
