//! The 500-artifact budget: GitHub lets one job create at most [`ARTIFACTS_PER_JOB`]
//! artifacts, and every stream segment, marker, layer and outputs layer is one. Each process
//! of a cluster is one GitHub job, so each plans against its own budget.
//!
//! - The runner's job creates the manifest's layers, its stream, the reports and, with an
//!   embedded broker, the broker's markers and one down-stream per peer: [`check_layers`]
//!   refuses up front (exit 2, with the count) a manifest whose layers cannot fit beside
//!   [`RUNNER_RESERVE`].
//! - A worker's job creates its stream and its outputs layers. Workers pack the outputs of
//!   several jobs into one layer (see `worker::outputs_pack`). A job frees its slot when its
//!   process ends, and its outputs wait, staged, for a flush; at most [`pending_uploads_max`]
//!   wait (a worker with that many starts nothing new until a flush takes them), which bounds
//!   the disk and memory they hold. A flush takes every job waiting, and first waits up to
//!   [`outputs_linger`] for that many; the wait grows as [`OUTPUTS_BUDGET`] runs out, so
//!   thousands of jobs stay within the budget even on one slot. Only a worker that has spent
//!   all of it refuses outputs: each such job is reported as an error naming the limit, never
//!   dropped silently.

use std::path::Path;
use std::time::Duration;

/// GitHub's limit on the artifacts one job may create ("Maximum of 500 artifacts per job",
/// actions/upload-artifact's README).
pub const ARTIFACTS_PER_JOB: u32 = 500;

/// What the runner's job keeps for other than layers: its stream's segments, the reports
/// (`ca-timings`, `ca-results-…`), and an embedded broker's listen and closed markers and
/// down-streams (one per peer: a matrix of up to about 90 workers, with some rotations).
pub const RUNNER_RESERVE: u32 = 100;

/// What a worker's job keeps for its stream (segments after rotations).
pub const WORKER_STREAM_RESERVE: u32 = 20;

/// Outputs layers one worker may upload.
pub const OUTPUTS_BUDGET: u32 = ARTIFACTS_PER_JOB - WORKER_STREAM_RESERVE;

/// Jobs per slot whose outputs may wait for an upload (at least [`MIN_PENDING_UPLOADS`], at
/// most [`MAX_PENDING_UPLOADS`] per worker).
const PENDING_UPLOADS_PER_SLOT: usize = 8;
const MIN_PENDING_UPLOADS: usize = 16;
const MAX_PENDING_UPLOADS: usize = 256;

/// The most jobs of a worker with `slots` whose process ended and whose outputs wait to be
/// uploaded: the worker starts nothing new while that many wait, and a flush takes up to that
/// many at once.
pub fn pending_uploads_max(slots: u32) -> usize {
    let slots = usize::try_from(slots).unwrap_or(usize::MAX).max(1);
    slots
        .saturating_mul(PENDING_UPLOADS_PER_SLOT)
        .clamp(MIN_PENDING_UPLOADS, MAX_PENDING_UPLOADS)
}

/// The shortest and longest wait of an outputs flush for more finished jobs.
const MIN_LINGER: Duration = Duration::from_millis(50);
const MAX_LINGER: Duration = Duration::from_secs(2);

/// A manifest whose uploads do not fit in the runner's budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{manifest}: the jobs use {layers} layers, and each is an artifact of the runner's job: with \
     {RUNNER_RESERVE} more for streams and reports that is {total}, over GitHub's limit of \
     {ARTIFACTS_PER_JOB} artifacts per job; merge layers so that at most {max} remain"
)]
pub struct OverBudget {
    /// The manifest's path.
    pub manifest: String,
    /// Distinct layers the jobs use.
    pub layers: u32,
    /// Artifacts the runner's job would need.
    pub total: u32,
    /// The most layers that fit.
    pub max: u32,
}

/// The runner's upload plan of the manifest at `manifest`, whose jobs use `layers` distinct
/// layers: the number of layer artifacts it needs, or why they do not fit. Pure: called
/// before anything is packed or uploaded.
pub fn check_layers(manifest: &Path, layers: u32) -> Result<u32, OverBudget> {
    let max = ARTIFACTS_PER_JOB - RUNNER_RESERVE;
    if layers > max {
        return Err(OverBudget {
            manifest: manifest.display().to_string(),
            layers,
            total: layers.saturating_add(RUNNER_RESERVE),
            max,
        });
    }
    Ok(layers)
}

/// How long the next outputs flush of a worker that has made `flushes` may wait for a full
/// batch ([`pending_uploads_max`] jobs): `MIN_LINGER` in the first quarter of [`OUTPUTS_BUDGET`], then
/// doubling every 1/16 of it up to `MAX_LINGER`; `None` once the budget is spent.
pub fn outputs_linger(flushes: u32) -> Option<Duration> {
    if flushes >= OUTPUTS_BUDGET {
        return None;
    }
    let steps = flushes.saturating_sub(OUTPUTS_BUDGET / 4) / (OUTPUTS_BUDGET / 16).max(1);
    let linger = MIN_LINGER.saturating_mul(1 << steps.min(16));
    Some(linger.min(MAX_LINGER))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_manifest_fits_up_to_the_budget_and_is_refused_with_its_count_beyond() {
        let manifest = Path::new("m.yml");
        assert_eq!(check_layers(manifest, 0), Ok(0));
        assert_eq!(check_layers(manifest, 400), Ok(400));
        let e = check_layers(manifest, 600).unwrap_err();
        assert_eq!((e.layers, e.total, e.max), (600, 700, 400));
        let msg = e.to_string();
        assert!(
            msg.contains("m.yml")
                && msg.contains("600 layers")
                && msg.contains("700")
                && msg.contains("limit of 500"),
            "{msg}"
        );
    }

    #[test]
    fn pending_uploads_grow_with_slots_within_bounds() {
        assert_eq!(pending_uploads_max(0), MIN_PENDING_UPLOADS);
        assert_eq!(pending_uploads_max(1), MIN_PENDING_UPLOADS);
        assert_eq!(pending_uploads_max(4), 32);
        assert_eq!(pending_uploads_max(1000), MAX_PENDING_UPLOADS);
    }

    #[test]
    fn flushes_linger_longer_as_the_outputs_budget_runs_out() {
        assert_eq!(outputs_linger(0), Some(MIN_LINGER));
        assert_eq!(outputs_linger(OUTPUTS_BUDGET / 4 - 1), Some(MIN_LINGER));
        let lingers: Vec<Duration> = (OUTPUTS_BUDGET / 4..OUTPUTS_BUDGET)
            .map(|f| outputs_linger(f).unwrap())
            .collect();
        assert!(lingers.windows(2).all(|w| w[0] <= w[1]));
        assert!(lingers[lingers.len() / 2] > MIN_LINGER);
        assert_eq!(*lingers.last().unwrap(), MAX_LINGER);
        assert_eq!(outputs_linger(OUTPUTS_BUDGET), None);
    }
}
