//! Sealing: with a cluster secret (`CLUSTER_SECRET`), every stream frame and every layer is
//! encrypted and authenticated (XChaCha20-Poly1305), and layer names are keyed hashes of the
//! sealed bytes, so a reader of the run's artifacts without the secret learns nothing.
//!
//! Modules: `keys` (HKDF-SHA256 derivation of one key per purpose and direction, and the key
//! id peers compare), `frame` (one stream frame: random 192-bit nonces), `layer` (a layer file
//! in 64 KiB chunks, STREAM-like: a nonce prefix, a chunk counter and a last-chunk flag), `name`
//! (HMAC-SHA256 content addresses), `history` (the timing history and results a sealed
//! cluster keeps for later runs, under keys from the secret alone).
//!
//! Nonces never repeat under one key: frame nonces are 192 random bits each (a collision is
//! expected only after about 2^96 frames, so restarts, rotations and retries are harmless); a
//! layer's nonce prefix is an HMAC of its plaintext, so two layers share a prefix only when
//! their bytes are equal (then their sealed bytes are equal too: deterministic sealing, which
//! keeps upload-if-absent working), and chunks within a layer differ by their counter; history
//! documents take 192 random bits each, like frames.
//!
//! Key schedule: the cluster's keys (`keys`) come from the secret, the run id and the cluster
//! id, so nothing sealed in one run or cluster opens in another; the history keys (`history`)
//! come from the secret alone under a salt of their own, since a later run must read them.
//!
//! Every authentication failure is refused, counted ([`refused`]) and reported; none is used.

mod frame;
mod history;
mod keys;
mod layer;
mod name;

use std::sync::atomic::{AtomicU64, Ordering};

pub use frame::{FRAME_OVERHEAD, FrameSeal, open_frame};
pub use history::{HISTORY_ARTIFACT, HistorySeal, SEALED_FILE, is_history_artifact};
pub use keys::{ClusterKeys, Direction};
pub use layer::{LayerSeal, SealedLayer};

/// The environment variable that holds the cluster secret (never a flag: every process can
/// read another's argv).
pub const SECRET_VAR: &str = "CLUSTER_SECRET";

/// Authentication failures seen by this process.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many frames and layers this process refused because they failed authentication.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Counts one refusal and logs it; returns the error for `?`.
fn refuse(error: SealError) -> SealError {
    let n = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(refused = n, "refused sealed data: {error}");
    error
}

/// The fix named by every mismatch message.
const SAME_SECRET: &str = "give every job of the cluster the same CLUSTER_SECRET (action input `secret: ${{ secrets.CLUSTER_SECRET }}`), or none to all";

/// Why sealed data was refused.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The peer seals with another secret (or another run or cluster id): the key ids differ.
    #[error("the peer seals with another secret (its key id {theirs}, ours {ours}): {SAME_SECRET}")]
    OtherSecret {
        /// Our key id.
        ours: String,
        /// The key id the peer's frame carries.
        theirs: String,
    },
    /// The peer sends unsealed frames while this side has a secret.
    #[error(
        "the peer sends without a secret, but this side has CLUSTER_SECRET (key id {ours}): {SAME_SECRET}"
    )]
    PeerHasNoSecret {
        /// Our key id.
        ours: String,
    },
    /// The peer seals its frames while this side has no secret.
    #[error(
        "the peer seals with a secret (key id {theirs}), but this side has no CLUSTER_SECRET: {SAME_SECRET}"
    )]
    WeHaveNoSecret {
        /// The key id the peer's frame carries.
        theirs: String,
    },
    /// The bytes fail authentication: tampered with, truncated or reordered.
    #[error("{what} failed authentication (tampered with, truncated or reordered): refused")]
    Forged {
        /// What was refused.
        what: String,
    },
    /// Reading or writing a layer file.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An unusable secret.
    #[error("{0}")]
    BadSecret(String),
}

impl SealError {
    /// Whether the peers disagree about the secret (a configuration error, exit 2) rather
    /// than the data being damaged (exit 3).
    pub fn is_mismatch(&self) -> bool {
        matches!(
            self,
            Self::OtherSecret { .. } | Self::PeerHasNoSecret { .. } | Self::WeHaveNoSecret { .. }
        )
    }

    fn forged(what: impl Into<String>) -> Self {
        refuse(Self::Forged { what: what.into() })
    }

    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
