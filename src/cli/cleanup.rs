//! `--keep` and `--retention` (what a cluster leaves in the store), and `cluster-action gc`.

use std::time::Duration;

use clap::Args;

use cluster_action::cleanup::{self, Keep};
use cluster_action::store::{ArtifactStore, DEFAULT_RETENTION};

use super::common::store_from_env;
use super::exit;

/// The shortest and longest `--retention` (GitHub's artifact retention is 1 to 90 days).
const RETENTION_DAYS: std::ops::RangeInclusive<u64> = 1..=90;

/// `--keep` and `--retention`.
#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// What a clean stop leaves in the run's artifact store: reports (the timing history and
    /// results artifacts), all (delete nothing) or none.
    #[arg(long, default_value = Keep::default().to_string(), env = "CLUSTER_ACTION_KEEP", value_parser = parse_keep)]
    pub keep: Keep,
    /// How long what this process creates is kept if nobody deletes it (a crashed cluster's
    /// leftovers): 1 to 90 days, as days (`3`) or a duration (`36h`, `2days`).
    #[arg(long, default_value = (DEFAULT_RETENTION.as_secs() / 86_400).to_string(), env = "CLUSTER_ACTION_RETENTION", value_parser = parse_retention, value_name = "DAYS")]
    pub retention: Duration,
}

impl Default for CleanupArgs {
    fn default() -> Self {
        Self {
            keep: Keep::default(),
            retention: DEFAULT_RETENTION,
        }
    }
}

impl CleanupArgs {
    /// The store from the environment, creating artifacts with this retention.
    pub fn store(&self) -> Result<ArtifactStore, exit::Failure> {
        Ok(store_from_env()?.with_retention(Some(self.retention)))
    }
}

fn parse_keep(s: &str) -> Result<Keep, String> {
    s.parse().map_err(|e: cleanup::KeepError| e.to_string())
}

fn parse_retention(s: &str) -> Result<Duration, String> {
    let retention = match s.parse::<u64>() {
        Ok(days) => Duration::from_secs(days.saturating_mul(86_400)),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("'{s}' is not a number of days or a duration such as 36h: {e}"))?,
    };
    let (min, max) = (
        RETENTION_DAYS.start() * 86_400,
        RETENTION_DAYS.end() * 86_400,
    );
    if !(min..=max).contains(&retention.as_secs()) {
        return Err(format!(
            "'{s}' is outside 1 to 90 days, the retention GitHub allows for artifacts"
        ));
    }
    Ok(retention)
}

/// Flags of `gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// What to leave: reports (default) or none (reports go too); all makes gc a no-op.
    #[arg(long, default_value = Keep::default().to_string(), value_parser = parse_keep)]
    keep: Keep,
}

/// Deletes the run's cluster-action leftovers: exit 0 when all are gone, 3 when the store
/// could not be listed or some could not be deleted (each is named).
pub async fn gc(args: GcArgs) -> Result<i32, exit::Failure> {
    let store = store_from_env()?;
    let listed = store.list(None).await?;
    let report = cleanup::delete(&store, cleanup::leftovers(listed, args.keep)).await;
    for failure in &report.failed {
        eprintln!("warning: {failure}");
    }
    eprintln!(
        "gc: deleted {} artifact(s), {} could not be deleted",
        report.deleted,
        report.failed.len()
    );
    Ok(if report.failed.is_empty() {
        exit::OK
    } else {
        exit::INFRA
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_days_or_a_duration_within_github_bounds() {
        assert_eq!(parse_retention("1").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_retention("36h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        for bad in ["0", "12h", "91", "soon"] {
            let e = parse_retention(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }
}
