//! Flags and plumbing shared by the cluster subcommands: the cluster id, stream timings, the
//! artifact store from the environment, and signals.

use std::time::Duration;

use clap::Args;

use cluster_action::broker::BrokerConfig;
use cluster_action::credentials::SECRET_VAR;
use cluster_action::duration::parse_duration;
use cluster_action::seal::ClusterKeys;
use cluster_action::store::{ArtifactStore, StoreConfig};
use cluster_action::stream::{Namespace, StreamConfig};

use super::exit::Failure;

/// `local --poll-max`'s default: one machine answers fast, so polls can be frequent.
pub const LOCAL_POLL_MAX: &str = "100ms";
/// `local --peer-timeout`'s default: a lost worker on this machine is noticed soon.
pub const LOCAL_PEER_TIMEOUT: &str = "10s";
/// `local` sends this many keepalives per peer timeout, so one lost append never looks like
/// a lost peer.
pub const LOCAL_KEEPALIVES_PER_PEER_TIMEOUT: u32 = 4;
/// The shortest keepalive `local` uses, however short its peer timeout.
pub const LOCAL_MIN_KEEPALIVE: Duration = Duration::from_millis(100);
/// How long `local`'s runner waits for its own embedded broker's listener.
pub const LOCAL_BROKER_WAIT: Duration = Duration::from_secs(30);
/// The idle timeout of a broker embedded in a runner (`run --embed-broker`, `local`): it
/// lives as long as its runner, so this only bounds a runner that hangs.
pub const EMBEDDED_BROKER_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Prints the stream flags `local` gives its worker processes with its default timings, one
/// a line, so scripts/bench can build the same cluster from separate processes.
pub fn print_local_flags() -> Result<i32, Failure> {
    let poll_max = parse_duration(LOCAL_POLL_MAX).map_err(Failure::bad_input)?;
    let peer_timeout = parse_duration(LOCAL_PEER_TIMEOUT).map_err(Failure::bad_input)?;
    for flag in ClusterArgs::local(poll_max, peer_timeout).to_worker_args() {
        println!("{flag}");
    }
    Ok(super::exit::OK)
}

/// `--cluster` and the stream timings.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Cluster id: several clusters can share one workflow run. Letters, digits, '-' and '_'.
    #[arg(long, default_value = "default", env = "CLUSTER_ACTION_CLUSTER")]
    pub cluster: String,
    /// Longest pause between polls of an idle stream (e.g. 500ms, 1s).
    #[arg(long, default_value = shown(StreamConfig::default().poll_max), value_parser = parse_duration, value_name = "DURATION")]
    pub poll_max: Duration,
    /// Longest pause between polls of a stream that carried no message for --idle-after: the
    /// longest a job sent to an idle worker waits to be seen. At least --poll-max.
    #[arg(long, default_value = shown(StreamConfig::default().idle_poll_max), value_parser = parse_duration, value_name = "DURATION")]
    pub idle_poll_max: Duration,
    /// How long a stream carries no message before its polls slow to --idle-poll-max (not
    /// where a message is owed: a runner's stream, a busy worker's, the broker's to a runner).
    #[arg(long, default_value = shown(StreamConfig::default().idle_after), value_parser = parse_duration, value_name = "DURATION")]
    pub idle_after: Duration,
    /// Send a keepalive when nothing else was sent for this long.
    #[arg(long, default_value = shown(StreamConfig::default().keepalive), value_parser = parse_duration, value_name = "DURATION")]
    pub keepalive: Duration,
    /// Declare a peer dead (and requeue a lost worker's jobs) after this long without a word.
    #[arg(long, default_value = shown(StreamConfig::default().peer_timeout), value_parser = parse_duration, value_name = "DURATION")]
    pub peer_timeout: Duration,
    /// `--keep` and `--retention`.
    #[command(flatten)]
    pub cleanup: super::cleanup::CleanupArgs,
}

impl ClusterArgs {
    /// The stream names: this cluster in this run attempt (exit 2 when either is not a legal
    /// part of an artifact name, or the attempt is not a whole number).
    pub fn namespace(&self) -> Result<Namespace, Failure> {
        if let Ok(attempt) = std::env::var("GITHUB_RUN_ATTEMPT")
            && !attempt.is_empty()
            && !attempt.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Failure::bad_input(format!(
                "GITHUB_RUN_ATTEMPT {attempt:?} is not a run attempt: GitHub sets it to a \
                 whole number (1 for the first attempt); unset it or fix it"
            )));
        }
        Namespace::from_env(&self.cluster).map_err(|e| {
            Failure::bad_input(format!(
                "{e}\n(the cluster id comes from --cluster or CLUSTER_ACTION_CLUSTER, the run attempt from GITHUB_RUN_ATTEMPT)"
            ))
        })
    }

    /// The cluster `local` runs: its own cluster id, and a keepalive that fits
    /// [`LOCAL_KEEPALIVES_PER_PEER_TIMEOUT`] times into `peer_timeout`.
    pub fn local(poll_max: Duration, peer_timeout: Duration) -> Self {
        Self {
            cluster: "local".into(),
            poll_max,
            idle_poll_max: StreamConfig::default().idle_poll_max,
            idle_after: StreamConfig::default().idle_after,
            keepalive: (peer_timeout / LOCAL_KEEPALIVES_PER_PEER_TIMEOUT).max(LOCAL_MIN_KEEPALIVE),
            peer_timeout,
            cleanup: super::cleanup::CleanupArgs::default(),
        }
    }

    /// Stream timings from the flags (exit 2 when they cannot work together), and the
    /// cluster's keys from `CLUSTER_SECRET`. Looking for new peers starts at a fifth of
    /// `--poll-max` (between the stream's fastest poll and the default's 200ms): a cluster
    /// that polls its streams often (`local`'s 100ms) finds its peers as fast, where a
    /// runner's first look for its broker's answer otherwise waits 200ms and then 400ms.
    pub fn stream(&self) -> Result<StreamConfig, Failure> {
        let defaults = StreamConfig::default();
        let cfg = StreamConfig {
            discovery_min: (self.poll_max / 5).clamp(defaults.poll_min, defaults.discovery_min),
            poll_max: self.poll_max,
            idle_poll_max: self.idle_poll_max,
            idle_after: self.idle_after,
            keepalive: self.keepalive,
            peer_timeout: self.peer_timeout,
            seal: seal_from_env(&self.cluster)?,
            ..defaults
        };
        cfg.validate()
            .map_err(|source| Failure::StreamSettings {
                source,
                flags: format!(
                    "--keepalive {:?} must be less than half of --peer-timeout {:?}, and --poll-max more than 0",
                    self.keepalive, self.peer_timeout
                ),
            })?;
        Ok(cfg)
    }

    /// These flags again, for the worker processes that `local` starts.
    pub fn to_worker_args(&self) -> Vec<String> {
        vec![
            "--poll-max".into(),
            format!("{}ms", self.poll_max.as_millis()),
            "--idle-poll-max".into(),
            format!("{}ms", self.idle_poll_max.as_millis()),
            "--idle-after".into(),
            format!("{}ms", self.idle_after.as_millis()),
            "--keepalive".into(),
            format!("{}ms", self.keepalive.as_millis()),
            "--peer-timeout".into(),
            format!("{}ms", self.peer_timeout.as_millis()),
        ]
    }
}

/// The cluster's keys from `CLUSTER_SECRET`, bound to this run (`GITHUB_RUN_ID`, `local`
/// when unset) and `cluster`; `None` without a secret.
fn seal_from_env(cluster: &str) -> Result<Option<ClusterKeys>, Failure> {
    use std::os::unix::ffi::OsStrExt;
    let Some(secret) = std::env::var_os(SECRET_VAR) else {
        return Ok(None);
    };
    let run_id = std::env::var("GITHUB_RUN_ID")
        .ok()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| "local".into());
    let keys = ClusterKeys::derive(secret.as_bytes(), &run_id, cluster)
        .map_err(|e| Failure::bad_input(e.to_string()))?;
    Ok(Some(keys))
}

/// Prints one warning annotation when the repository is public and no secret is set. The
/// runner calls it (it is the one that sends the jobs), so a cluster warns once, not once per
/// worker.
pub fn warn_if_readable() {
    if std::env::var_os(SECRET_VAR).is_none() && repository_is_public() {
        println!("{PUBLIC_WARNING}");
    }
}

/// What a public repository without a secret exposes, and the fix.
const PUBLIC_WARNING: &str = "::warning title=cluster-action: this cluster is readable by anyone::\
This repository is public and no secret is set, so job commands, environments, output and \
layer files travel as plain artifacts of this run that anyone signed in to GitHub can \
download until they expire. Add a repository secret CLUSTER_SECRET and pass it to every \
cluster-action step: `with: secret: ${{ secrets.CLUSTER_SECRET }}`.";

/// Whether `GITHUB_EVENT_PATH`'s event says `repository.private: false`.
fn repository_is_public() -> bool {
    let Some(path) = std::env::var_os("GITHUB_EVENT_PATH") else {
        return false;
    };
    let event = cluster_action::history::github::read_event(std::path::Path::new(&path));
    event.is_some_and(|e| e["repository"]["private"] == serde_json::Value::Bool(false))
}

/// The artifact store from `ACTIONS_RESULTS_URL` and `ACTIONS_RUNTIME_TOKEN` (exit 2 if unusable).
pub fn store_from_env() -> Result<ArtifactStore, Failure> {
    let cfg = StoreConfig::from_env().map_err(Failure::Environment)?;
    Ok(ArtifactStore::new(cfg)?)
}

/// A future that completes on the first SIGINT or SIGTERM. The signals are caught from this
/// call on, not from the first poll: call it before starting anything that must not outlive
/// this process (`local`'s workers), so that a signal in between cancels the run instead of
/// ending the process at once.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + use<> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let listen = |kind: SignalKind| {
        signal(kind)
            .inspect_err(|e| tracing::warn!("cannot catch {kind:?} ({e}): it ends this process"))
            .ok()
    };
    let (interrupt, terminate) = (
        listen(SignalKind::interrupt()),
        listen(SignalKind::terminate()),
    );
    async fn received(signal: Option<Signal>) {
        match signal {
            Some(mut signal) => drop(signal.recv().await),
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            () = received(interrupt) => {}
            () = received(terminate) => {}
        }
    }
}

/// The CPUs of this machine (at least 1): the default slots of a worker.
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// `--broker-wait` of `run` and `worker`.
#[derive(Debug, Clone, Args)]
pub struct BrokerWaitArg {
    /// Wait this long for the broker to appear (the jobs of a workflow start in any order).
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub broker_wait: Duration,
}

/// `--prefetch` of `broker`, `run --embed-broker` and `local`: the flag of [`BrokerConfig`]'s
/// `prefetch`.
#[derive(Debug, Clone, Args)]
pub struct PrefetchArg {
    /// Jobs given to a worker beyond its slots until its round trip is measured (then sized
    /// from it, to cover the round trip); 0 turns prefetching off (`run`: only with --embed-broker).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub prefetch: u32,
}

/// The configuration of a broker of `cluster` (`broker`, and the one `run --embed-broker`
/// and `local` embed).
pub fn broker_config(
    cluster: &ClusterArgs,
    idle_timeout: Duration,
    prefetch: &PrefetchArg,
) -> Result<BrokerConfig, Failure> {
    Ok(BrokerConfig {
        ns: cluster.namespace()?,
        stream: cluster.stream()?,
        idle_timeout,
        prefetch: prefetch.prefetch,
        expected_workers: 0,
        keep: cluster.cleanup.keep,
    })
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

/// `d` as a duration flag is written (`1h30m`, `6s`, `100ms`), so that a flag's default can be
/// the library's own value and `--help` still shows it.
pub fn shown(d: Duration) -> String {
    let mut ms = d.as_millis();
    let mut text = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            text.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if text.is_empty() { "0s".into() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_duration_parses_back_to_itself() {
        let defaults = StreamConfig::default();
        for d in [
            defaults.poll_max,
            defaults.idle_poll_max,
            defaults.idle_after,
            defaults.keepalive,
            defaults.peer_timeout,
            Duration::ZERO,
            Duration::from_millis(5_400_250),
        ] {
            assert_eq!(parse_duration(&shown(d)), Ok(d), "{}", shown(d));
        }
        assert_eq!(shown(Duration::from_secs(60)), "1m");
        assert_eq!(shown(Duration::from_millis(5_400_250)), "1h30m250ms");
    }
}
