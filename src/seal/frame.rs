//! Sealing of one stream frame's payload: `[key id (8)][nonce (24)][ciphertext + tag (16)]`.
//!
//! The nonce is 192 random bits, fresh for every frame: no counter state, so a writer that
//! restarts, rotates segments or retries an append can never reuse one. The associated data is
//! the stream's name and the frame header (version, kind, sequence number, length), so a frame
//! cannot be moved to another stream, direction or position, nor change kind, unnoticed. The key
//! id in clear lets a reader tell "another secret" from "tampered with".

use bytes::{BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::keys::KEY_ID_LEN;
use super::{SealError, refuse};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed payload has beyond its plaintext.
pub const FRAME_OVERHEAD: usize = KEY_ID_LEN + NONCE_LEN + TAG_LEN;

/// Seals and opens the frames of one stream direction.
#[derive(Clone)]
pub struct FrameSeal {
    cipher: XChaCha20Poly1305,
    key_id: [u8; KEY_ID_LEN],
    stream: String,
}

impl std::fmt::Debug for FrameSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FrameSeal({}, key id {})",
            self.stream,
            hex::encode(self.key_id)
        )
    }
}

impl FrameSeal {
    pub(crate) fn new(key: &[u8; 32], key_id: [u8; KEY_ID_LEN], stream: &str) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&(*key).into()),
            key_id,
            stream: stream.to_string(),
        }
    }

    fn aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.stream.len() + 1 + header.len());
        aad.extend_from_slice(self.stream.as_bytes());
        aad.push(0);
        aad.extend_from_slice(header);
        aad
    }

    /// Appends the sealed form of `plain` (`plain.len() + FRAME_OVERHEAD` bytes) to `out`;
    /// `header` is the frame header that precedes it, which is authenticated too.
    pub fn seal(&self, header: &[u8], plain: &[u8], out: &mut BytesMut) {
        out.reserve(FRAME_OVERHEAD + plain.len());
        out.put_slice(&self.key_id);
        out.put_slice(&seal_with_random_nonce(
            &self.cipher,
            plain,
            &self.aad(header),
        ));
    }

    /// The plaintext of a sealed payload that followed `header`.
    pub fn open(&self, header: &[u8], sealed: &[u8]) -> Result<Bytes, SealError> {
        if sealed.len() < FRAME_OVERHEAD {
            return Err(SealError::forged(format!(
                "a frame of '{}' ({} bytes, shorter than a seal)",
                self.stream,
                sealed.len()
            )));
        }
        let (key_id, rest) = sealed.split_at(KEY_ID_LEN);
        if key_id != self.key_id {
            return Err(refuse(SealError::OtherSecret {
                ours: hex::encode(self.key_id),
                theirs: hex::encode(key_id),
            }));
        }
        open_with_nonce(&self.cipher, rest, &self.aad(header))
            .map(Bytes::from)
            .ok_or_else(|| SealError::forged(format!("a frame of '{}'", self.stream)))
    }
}

/// `[nonce (24)][ciphertext + tag]` of `plain` under `cipher` with associated data `aad`, the
/// nonce 192 fresh random bits (no counter state to lose or repeat).
pub(crate) fn seal_with_random_nonce(
    cipher: &XChaCha20Poly1305,
    plain: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
        .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
    [&nonce[..], &sealed].concat()
}

/// The plaintext of [`seal_with_random_nonce`]'s `sealed`, or `None` when it fails
/// authentication (or is too short to hold a nonce).
pub(crate) fn open_with_nonce(
    cipher: &XChaCha20Poly1305,
    sealed: &[u8],
    aad: &[u8],
) -> Option<Vec<u8>> {
    let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// Opens a payload read from a stream whose header says it is `sealed` (or not), with this
/// side's seal if it has a secret: a disagreement is a mismatch of secrets, refused.
pub fn open_frame(
    seal: Option<&FrameSeal>,
    sealed: bool,
    header: &[u8],
    payload: Bytes,
) -> Result<Bytes, SealError> {
    match (seal, sealed) {
        (None, false) => Ok(payload),
        (Some(seal), true) => seal.open(header, &payload),
        (Some(seal), false) => Err(refuse(SealError::PeerHasNoSecret {
            ours: hex::encode(seal.key_id),
        })),
        (None, true) => Err(refuse(SealError::WeHaveNoSecret {
            theirs: hex::encode(&payload[..KEY_ID_LEN.min(payload.len())]),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{ClusterKeys, Direction};

    fn keys(secret: &[u8]) -> ClusterKeys {
        ClusterKeys::derive(secret, "42", "default").unwrap()
    }

    fn sealed(seal: &FrameSeal, header: &[u8], plain: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        seal.seal(header, plain, &mut out);
        out
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let seal = keys(b"k").frames(Direction::Up, "ca.c.1.p.up");
        for plain in [&b""[..], b"hello", &[7u8; 5000]] {
            let out = sealed(&seal, b"header", plain);
            assert_eq!(out.len(), plain.len() + FRAME_OVERHEAD);
            if plain.len() >= 4 {
                assert!(!out.windows(4).any(|w| w == &plain[..4]));
            }
            assert_eq!(&seal.open(b"header", &out).unwrap()[..], plain);
        }
    }

    #[test]
    fn rejects_a_flip_of_every_bit() {
        let seal = keys(b"k").frames(Direction::Up, "ca.c.1.p.up");
        let out = sealed(&seal, b"header", b"payload");
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[byte] ^= 1 << bit;
                let err = seal.open(b"header", &bad).unwrap_err();
                // A flip in the key id reads as another secret; anywhere else as forged.
                if byte < KEY_ID_LEN {
                    assert!(err.is_mismatch(), "{err}");
                } else {
                    assert!(matches!(err, SealError::Forged { .. }), "{err}");
                }
            }
        }
        for bit in 0..8 {
            let mut header = *b"header";
            header[3] ^= 1 << bit;
            assert!(seal.open(&header, &out).is_err());
        }
        assert!(seal.open(b"header", &out[..out.len() - 1]).is_err());
        assert!(seal.open(b"header", &out[..FRAME_OVERHEAD - 1]).is_err());
    }

    #[test]
    fn binds_stream_direction_and_key() {
        let k = keys(b"k");
        let up = k.frames(Direction::Up, "ca.c.1.p.up");
        let out = sealed(&up, b"h", b"x");
        assert!(matches!(
            k.frames(Direction::Down, "ca.c.1.p.up").open(b"h", &out),
            Err(SealError::Forged { .. })
        ));
        assert!(matches!(
            k.frames(Direction::Up, "ca.c.1.q.up").open(b"h", &out),
            Err(SealError::Forged { .. })
        ));
        let other = keys(b"other").frames(Direction::Up, "ca.c.1.p.up");
        let err = other.open(b"h", &out).unwrap_err();
        assert!(matches!(err, SealError::OtherSecret { .. }), "{err}");
        assert!(err.to_string().contains(&k.key_id()), "{err}");
    }

    #[test]
    fn nonces_never_repeat() {
        let seal = keys(b"k").frames(Direction::Down, "s");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let out = sealed(&seal, b"h", b"same message");
            let nonce = out[KEY_ID_LEN..KEY_ID_LEN + NONCE_LEN].to_vec();
            assert!(seen.insert(nonce), "a nonce repeated");
        }
        // Two seals of one stream (a restarted writer) draw fresh nonces too.
        let restarted = keys(b"k").frames(Direction::Down, "s");
        let out = sealed(&restarted, b"h", b"same message");
        assert!(!seen.contains(&out[KEY_ID_LEN..KEY_ID_LEN + NONCE_LEN]));
    }

    #[test]
    fn a_disagreement_about_sealing_is_a_mismatch() {
        let seal = keys(b"k").frames(Direction::Up, "s");
        let out = sealed(&seal, b"h", b"x").freeze();
        let err = open_frame(None, true, b"h", out.clone()).unwrap_err();
        assert!(matches!(err, SealError::WeHaveNoSecret { .. }) && err.is_mismatch());
        let err = open_frame(Some(&seal), false, b"h", Bytes::from_static(b"x")).unwrap_err();
        assert!(matches!(err, SealError::PeerHasNoSecret { .. }) && err.is_mismatch());
        assert_eq!(&open_frame(Some(&seal), true, b"h", out).unwrap()[..], b"x");
        let before = crate::seal::refused();
        let _ = open_frame(None, true, b"h", Bytes::new());
        assert!(crate::seal::refused() > before);
    }
}
