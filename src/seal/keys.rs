//! Key derivation: one 256-bit key per purpose and direction, from the secret, the run id and
//! the cluster id (HKDF-SHA256), and the key id by which peers recognise a shared secret.

use std::fmt;
use std::sync::Arc;

use hkdf::Hkdf;
use sha2::Sha256;

use super::frame::FrameSeal;
use super::layer::LayerSeal;
use super::{SealError, name};

/// HKDF salt: versions the whole derivation.
const SALT: &[u8] = b"cluster-action seal v1";
/// Bytes of the key id carried in clear by every sealed frame.
pub(crate) const KEY_ID_LEN: usize = 8;

/// Which way a stream flows (frames up and down are sealed under different keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client (worker, runner) to broker.
    Up,
    /// Broker to client.
    Down,
}

/// Every key of one cluster of one run. Cheap to clone; `Debug` shows only the key id.
#[derive(Clone)]
pub struct ClusterKeys(Arc<Keys>);

struct Keys {
    frames_up: [u8; 32],
    frames_down: [u8; 32],
    layers: [u8; 32],
    layer_nonces: [u8; 32],
    names: [u8; 32],
    key_id: [u8; KEY_ID_LEN],
}

impl ClusterKeys {
    /// Derives the keys of cluster `cluster` in run `run_id` from `secret`.
    pub fn derive(secret: &[u8], run_id: &str, cluster: &str) -> Result<Self, SealError> {
        if secret.is_empty() {
            return Err(SealError::BadSecret(
                "CLUSTER_SECRET is empty: set a secret, or unset the variable".into(),
            ));
        }
        let hkdf = Hkdf::<Sha256>::new(Some(SALT), secret);
        let key = |purpose: &str| {
            let mut info = Vec::new();
            for part in [purpose, run_id, cluster] {
                // Length-prefixed, so no two (purpose, run, cluster) triples share an info.
                info.extend_from_slice(&(part.len() as u64).to_be_bytes());
                info.extend_from_slice(part.as_bytes());
            }
            let mut okm = [0u8; 32];
            hkdf.expand(&info, &mut okm)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            okm
        };
        let id_key = key("key id");
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&name::keyed_hash(&id_key, b"cluster-action key id")[..KEY_ID_LEN]);
        Ok(Self(Arc::new(Keys {
            frames_up: key("frames up"),
            frames_down: key("frames down"),
            layers: key("layers"),
            layer_nonces: key("layer nonces"),
            names: key("names"),
            key_id,
        })))
    }

    /// The key id: a public fingerprint of the derived keys (not of the secret alone), shown
    /// in mismatch messages and carried by every sealed frame.
    pub fn key_id(&self) -> String {
        hex::encode(self.0.key_id)
    }

    /// The seal of the frames of stream `stream` (its segment base name) flowing `direction`.
    pub fn frames(&self, direction: Direction, stream: &str) -> FrameSeal {
        let key = match direction {
            Direction::Up => &self.0.frames_up,
            Direction::Down => &self.0.frames_down,
        };
        FrameSeal::new(key, self.0.key_id, stream)
    }

    /// The seal of layers and their names.
    pub fn layers(&self) -> LayerSeal {
        LayerSeal::new(&self.0.layers, self.0.layer_nonces, self.0.names)
    }
}

impl fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKeys(key id {})", self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_changes_every_key() {
        let base = ClusterKeys::derive(b"s3cret", "42", "default").unwrap();
        for other in [
            ClusterKeys::derive(b"s3cret!", "42", "default").unwrap(),
            ClusterKeys::derive(b"s3cret", "43", "default").unwrap(),
            ClusterKeys::derive(b"s3cret", "42", "other").unwrap(),
            // Length prefixes: moving bytes between run id and cluster id changes the keys.
            ClusterKeys::derive(b"s3cret", "42d", "efault").unwrap(),
        ] {
            assert_ne!(base.key_id(), other.key_id());
            assert_ne!(base.0.frames_up, other.0.frames_up);
            assert_ne!(base.0.layers, other.0.layers);
            assert_ne!(base.0.names, other.0.names);
        }
        let again = ClusterKeys::derive(b"s3cret", "42", "default").unwrap();
        assert_eq!(base.key_id(), again.key_id());
        assert_eq!(base.0.frames_down, again.0.frames_down);
    }

    #[test]
    fn purposes_and_directions_get_separate_keys() {
        let k = ClusterKeys::derive(b"s3cret", "42", "default").unwrap();
        let all = [
            k.0.frames_up,
            k.0.frames_down,
            k.0.layers,
            k.0.layer_nonces,
            k.0.names,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn refuses_an_empty_secret_and_hides_keys_in_debug() {
        assert!(ClusterKeys::derive(b"", "1", "c").is_err());
        let k = ClusterKeys::derive(b"s3cret", "42", "default").unwrap();
        let shown = format!("{k:?}");
        assert_eq!(shown, format!("ClusterKeys(key id {})", k.key_id()));
        assert_eq!(k.key_id().len(), 16);
    }
}
