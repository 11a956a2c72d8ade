//! Sealed history: the timing history and attempt results a sealed cluster keeps for later
//! runs (`ca-timings…`, `ca-results-…` in plain text without a secret).
//!
//! A later run must read them, so their keys cannot depend on the run id or the cluster id as
//! the cluster's keys do ([`crate::seal::ClusterKeys`]): they come from the secret alone, by
//! HKDF-SHA256 under a salt of their own (`cluster-action history v1`) and one info label per
//! purpose (`history documents`, `history names`), so they share nothing with any cluster key.
//!
//! - Name: `ca-history-<32 hex>`, the first 128 bits of an HMAC-SHA256, under the names key,
//!   of the document's plain artifact name (which says cluster, workflow or attempt). A reader
//!   without the key learns only that it is history; a later run with the key computes the
//!   same name and lists it (by name, as the plain history is listed).
//! - Contents: a zip with one file, [`SEALED_FILE`], holding `[nonce (24)][ciphertext + tag]`:
//!   XChaCha20-Poly1305 with a fresh random 192-bit nonce per document (documents are few; a
//!   collision is expected only after about 2^96), the plain artifact name as associated data,
//!   so a document cannot pass for another one (results for timings, one attempt's for
//!   another's).
//!
//! Another secret gives other names: its history is simply not found, and the run goes on with
//! estimates in one line, as with no history at all; a document that fails authentication is
//! refused ([`SealError::Forged`]), counted, and treated as unreadable.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::seal::{SealError, keyed_hash, open_with_nonce, seal_with_random_nonce};

/// HKDF salt of the history keys: versions their derivation, apart from the cluster keys'.
const SALT: &[u8] = b"cluster-action history v1";
/// The prefix of every sealed history artifact.
pub const HISTORY_ARTIFACT: &str = "ca-history-";
/// The file inside a sealed history artifact's zip.
pub const SEALED_FILE: &str = "history.sealed";
/// Bytes of the name's HMAC shown (128 bits).
const NAME_BYTES: usize = 16;

/// Whether `name` is a sealed history artifact's, as [`HistorySeal::name`] makes them: the
/// prefix and 32 lowercase hex.
pub fn is_history_artifact(name: &str) -> bool {
    name.strip_prefix(HISTORY_ARTIFACT).is_some_and(|hex| {
        hex.len() == 2 * NAME_BYTES && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The keys of a secret's history. `Debug` shows no key.
#[derive(Clone)]
pub struct HistorySeal {
    cipher: XChaCha20Poly1305,
    names: [u8; 32],
}

impl std::fmt::Debug for HistorySeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HistorySeal")
    }
}

impl HistorySeal {
    /// The history keys of `secret` (the same for every run and cluster).
    pub fn derive(secret: &[u8]) -> Result<Self, SealError> {
        if secret.is_empty() {
            return Err(SealError::BadSecret(
                "CLUSTER_SECRET is empty: set a secret, or unset the variable".into(),
            ));
        }
        let hkdf = Hkdf::<Sha256>::new(Some(SALT), secret);
        let key = |info: &[u8]| {
            let mut okm = [0u8; 32];
            hkdf.expand(info, &mut okm)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            okm
        };
        Ok(Self {
            cipher: XChaCha20Poly1305::new(&key(b"history documents").into()),
            names: key(b"history names"),
        })
    }

    /// The sealed artifact name of the history document whose plain name is `plain`.
    pub fn name(&self, plain: &str) -> String {
        let tag = keyed_hash(&self.names, plain.as_bytes());
        format!("{HISTORY_ARTIFACT}{}", hex::encode(&tag[..NAME_BYTES]))
    }

    /// The sealed form of document `plain_name`'s bytes `document`.
    pub fn seal(&self, plain_name: &str, document: &[u8]) -> Vec<u8> {
        seal_with_random_nonce(&self.cipher, document, plain_name.as_bytes())
    }

    /// The document `plain_name` from its sealed form; refused when it fails authentication.
    pub fn open(&self, plain_name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        open_with_nonce(&self.cipher, sealed, plain_name.as_bytes()).ok_or_else(|| {
            SealError::forged(format!("the history document {}", self.name(plain_name)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_secret_reads_its_history_in_any_later_run() {
        let sealed = HistorySeal::derive(b"s3cret")
            .unwrap()
            .seal("ca-timings-c", b"{}");
        let later = HistorySeal::derive(b"s3cret").unwrap();
        assert_eq!(later.open("ca-timings-c", &sealed).unwrap(), b"{}");
        assert_eq!(
            later.name("ca-timings-c"),
            HistorySeal::derive(b"s3cret").unwrap().name("ca-timings-c")
        );
    }

    #[test]
    fn names_say_only_that_it_is_history() {
        let seal = HistorySeal::derive(b"s3cret").unwrap();
        let name = seal.name("ca-timings-default-ci.yml");
        let hex = name.strip_prefix(HISTORY_ARTIFACT).unwrap();
        assert_eq!(hex.len(), 2 * NAME_BYTES);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(is_history_artifact(&name));
        for other in [
            "ca-history-of-the-project",
            &format!("{name}0"),
            &name.to_uppercase(),
        ] {
            assert!(!is_history_artifact(other), "{other}");
        }
        assert!(!name.contains("default") && !name.contains("ci.yml"));
        assert_ne!(name, seal.name("ca-results-default-1"));
        let other = HistorySeal::derive(b"other").unwrap();
        assert_ne!(name, other.name("ca-timings-default-ci.yml"));
    }

    #[test]
    fn another_secret_another_name_or_a_tampered_document_is_refused() {
        let seal = HistorySeal::derive(b"s3cret").unwrap();
        let mut sealed = seal.seal("ca-timings-c", b"{\"tests\": []}");
        let other = HistorySeal::derive(b"other").unwrap();
        assert!(matches!(
            other.open("ca-timings-c", &sealed),
            Err(SealError::Forged { .. })
        ));
        assert!(
            seal.open("ca-results-c-1", &sealed).is_err(),
            "bound to its name"
        );
        assert!(seal.open("ca-timings-c", &sealed[..10]).is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(seal.open("ca-timings-c", &sealed).is_err());
    }

    #[test]
    fn every_document_gets_a_fresh_nonce_and_an_empty_secret_is_refused() {
        let seal = HistorySeal::derive(b"s3cret").unwrap();
        let (a, b) = (seal.seal("n", b"same"), seal.seal("n", b"same"));
        assert_ne!(a[..24], b[..24], "the nonces differ");
        assert_ne!(a, b);
        assert!(HistorySeal::derive(b"").is_err());
    }
}
