//! Artifact names of a cluster's streams, and the validation that keeps them legal.
//!
//! - `ca.<cluster>.<attempt>.listen`: published by the listener.
//! - `ca.<cluster>.<attempt>.<peer>.up.<n>`: segment `n` of client `peer`'s stream to the listener.
//! - `ca.<cluster>.<attempt>.<peer>.down.<n>`: segment `n` of the listener's stream to `peer`.
//!
//! Cluster ids and attempts are restricted to `[A-Za-z0-9_-]` (1 to 64 characters): no dots, so
//! a name splits unambiguously, and none of the characters artifact names forbid
//! (`" : < > | * ? \ /`, CR, LF).

use std::fmt;

use super::StreamError;
use crate::seal::{self, ClusterKeys, FrameSeal};

/// Length of a peer id in hex characters (64 random bits).
const PEER_ID_LEN: usize = 16;
/// Longest cluster id or attempt.
const MAX_PART_LEN: usize = 64;

/// Names of one cluster's streams: `ca.<cluster>.<attempt>.…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The cluster id (the `--cluster` flag).
    pub cluster: String,
    /// The run attempt (`GITHUB_RUN_ATTEMPT`, 1 when unset).
    pub attempt: String,
}

impl Namespace {
    /// A validated namespace.
    pub fn new(cluster: &str, attempt: &str) -> Result<Self, StreamError> {
        let ns = Self {
            cluster: cluster.to_string(),
            attempt: attempt.to_string(),
        };
        ns.validate()?;
        Ok(ns)
    }

    /// The namespace of `cluster` in this run attempt (`GITHUB_RUN_ATTEMPT`, "1" when unset),
    /// so a re-run never meets the streams of an earlier attempt.
    pub fn from_env(cluster: &str) -> Result<Self, StreamError> {
        let attempt = std::env::var("GITHUB_RUN_ATTEMPT")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "1".to_string());
        Self::new(cluster, &attempt)
    }

    /// Checks that both parts are legal in artifact names and split unambiguously.
    pub fn validate(&self) -> Result<(), StreamError> {
        check_part("cluster id", &self.cluster)?;
        check_part("run attempt", &self.attempt)
    }

    /// The listen artifact's name.
    pub(crate) fn listen_name(&self) -> String {
        format!("{self}.listen")
    }

    /// The artifact a listener publishes when it closes for good.
    pub(crate) fn closed_name(&self) -> String {
        format!("{self}.closed")
    }

    /// The segment names of `peer`'s stream in `direction`.
    pub(crate) fn segments(&self, peer: &str, direction: Direction) -> SegmentNames {
        SegmentNames {
            base: format!("{self}.{peer}.{}", direction.as_str()),
            direction,
            ns: self.clone(),
        }
    }

    /// The peer id if `name` is the first up-stream segment of a client of this namespace.
    pub(crate) fn up0_peer<'a>(&self, name: &'a str) -> Option<&'a str> {
        let rest = name.strip_prefix(&format!("{self}."))?;
        let peer = rest.strip_suffix(".up.0")?;
        is_peer_id(peer).then_some(peer)
    }

    /// The namespace of `name` when it is a name this module makes for some cluster (a listen
    /// or closed marker, a stream segment); none for any other name, also one that merely
    /// starts with `ca.` (a user's `ca.crt`).
    pub fn of_artifact(name: &str) -> Option<Self> {
        let mut parts = name.strip_prefix("ca.")?.splitn(3, '.');
        let (cluster, attempt, rest) = (parts.next()?, parts.next()?, parts.next()?);
        let ns = Self::new(cluster, attempt).ok()?;
        let ours = match rest.split('.').collect::<Vec<_>>()[..] {
            ["listen"] | ["closed"] => true,
            [peer, "up" | "down", n] => {
                is_peer_id(peer) && n.parse::<u64>().is_ok_and(|v| v.to_string() == n)
            }
            _ => false,
        };
        ours.then_some(ns)
    }
}

/// Whether `text` is a peer id as [`new_peer_id`] makes them.
fn is_peer_id(text: &str) -> bool {
    text.len() == PEER_ID_LEN && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `ca.<cluster>.<attempt>`: the common prefix of every name in the namespace.
impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ca.{}.{}", self.cluster, self.attempt)
    }
}

fn check_part(what: &str, value: &str) -> Result<(), StreamError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if value.is_empty() || value.len() > MAX_PART_LEN || !value.chars().all(legal) {
        return Err(StreamError::Config(format!(
            "invalid {what} {value:?}: use 1 to {MAX_PART_LEN} characters of A-Z, a-z, 0-9, '_' and '-'"
        )));
    }
    Ok(())
}

/// A fresh random peer id (16 hex characters).
pub(crate) fn new_peer_id() -> String {
    format!("{:0width$x}", rand::random::<u64>(), width = PEER_ID_LEN)
}

/// Which way a stream flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Client to listener.
    Up,
    /// Listener to client.
    Down,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// The segment names of one direction of one connection: `<base>.<n>`.
#[derive(Debug, Clone)]
pub(crate) struct SegmentNames {
    base: String,
    direction: Direction,
    /// The namespace: once its listener closed for good, no new segment is worth creating.
    ns: Namespace,
}

impl SegmentNames {
    /// The seal of this stream's frames under `keys` (none without a secret).
    pub(crate) fn seal(&self, keys: Option<&ClusterKeys>) -> Option<FrameSeal> {
        let direction = match self.direction {
            Direction::Up => seal::Direction::Up,
            Direction::Down => seal::Direction::Down,
        };
        keys.map(|keys| keys.frames(direction, &self.base))
    }

    /// The name of segment `n`.
    pub(crate) fn segment(&self, n: u64) -> String {
        format!("{}.{n}", self.base)
    }

    /// The namespace the stream belongs to.
    pub(crate) fn namespace(&self) -> &Namespace {
        &self.ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_names() {
        let ns = Namespace::new("tests_1-a", "2").unwrap();
        assert_eq!(ns.listen_name(), "ca.tests_1-a.2.listen");
        let peer = new_peer_id();
        assert_eq!(peer.len(), 16);
        let up = ns.segments(&peer, Direction::Up);
        let down = ns.segments(&peer, Direction::Down);
        assert_eq!(up.segment(0), format!("ca.tests_1-a.2.{peer}.up.0"));
        assert_eq!(down.segment(7), format!("ca.tests_1-a.2.{peer}.down.7"));
        assert_eq!(ns.up0_peer(&up.segment(0)), Some(peer.as_str()));
        assert_eq!(ns.up0_peer(&up.segment(1)), None);
        assert_eq!(ns.up0_peer(&down.segment(0)), None);
        assert_eq!(ns.up0_peer(&ns.listen_name()), None);
        let other = Namespace::new("tests_1-a", "3").unwrap();
        assert_eq!(other.up0_peer(&up.segment(0)), None);
        assert_eq!(ns.up0_peer("ca.tests_1-a.2.not-hex-not-hex!.up.0"), None);
    }

    #[test]
    fn only_names_this_module_makes_have_a_namespace() {
        let ns = Namespace::new("c-1_x", "2").unwrap();
        let peer = new_peer_id();
        for name in [
            ns.listen_name(),
            ns.closed_name(),
            ns.segments(&peer, Direction::Up).segment(0),
            ns.segments(&peer, Direction::Down).segment(17),
        ] {
            assert_eq!(Namespace::of_artifact(&name), Some(ns.clone()), "{name}");
        }
        for name in [
            "ca.crt",
            "ca.pem",
            "ca.c.1",
            "ca.c.1.notes",
            "ca.c.1.listen.bak",
            "ca.c.1.0123456789abcdef.up",
            "ca.c.1.0123456789abcdef.up.01",
            "ca.c.1.0123456789abcdef.sideways.0",
            "ca.c.1.0123456789abcdeg.up.0",
            "ca.c!.1.listen",
            "cb.c.1.listen",
        ] {
            assert_eq!(Namespace::of_artifact(name), None, "{name}");
        }
    }

    #[test]
    fn rejects_illegal_cluster_ids() {
        for bad in ["", "a.b", "a/b", "a:b", "a b", "ü", "a\nb", &"x".repeat(65)] {
            let err = Namespace::new(bad, "1").unwrap_err();
            assert!(err.to_string().contains("invalid cluster id"), "{err}");
        }
        assert!(Namespace::new("ok", "1.5").is_err());
        assert!(Namespace::new(&"x".repeat(64), "1").is_ok());
    }
}
