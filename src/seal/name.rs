//! Keyed content addresses: HMAC-SHA256, so that a name tells nothing to whoever lacks the key.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A running HMAC-SHA256.
pub(crate) type KeyedHasher = Hmac<Sha256>;

/// A fresh keyed hasher under `key`.
pub(crate) fn keyed_hasher(key: &[u8; 32]) -> KeyedHasher {
    KeyedHasher::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn keyed_hash(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut mac = keyed_hasher(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `hasher`'s result equals the lowercase-hex `expected` (compared in constant time).
pub(crate) fn matches_hex(hasher: KeyedHasher, expected: &str) -> bool {
    hex::decode(expected).is_ok_and(|tag| hasher.verify_slice(&tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231_and_compares_hex() {
        // RFC 4231 test case 2 uses a 4-byte key; HMAC pads keys, so a zero-padded 32-byte
        // key gives the same result.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let tag = keyed_hash(&key, b"what do ya want for nothing?");
        let hex_tag = hex::encode(tag);
        assert_eq!(
            hex_tag,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let hasher = |data: &[u8]| {
            let mut h = keyed_hasher(&key);
            h.update(data);
            h
        };
        assert!(matches_hex(
            hasher(b"what do ya want for nothing?"),
            &hex_tag
        ));
        assert!(!matches_hex(
            hasher(b"what do ya want for nothing!"),
            &hex_tag
        ));
        assert!(!matches_hex(hasher(b"what do ya want for nothing?"), "zz"));
    }
}
