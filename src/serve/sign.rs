//! Signed blob URLs: what lets a holder of a URL read or write one blob until it expires,
//! without a token, like Azure's SAS URLs on github.com.
//!
//! A URL is `{base}blob/artifacts/{id}?sig=<hex>&se=<unix seconds>&sp=<r|w>`, where `sig` is
//! HMAC-SHA256 over the blob id, the permission and the expiry under a key drawn at random
//! when the process starts (so URLs die with the service). The path has three segments
//! because the Azure SDK reads loopback URLs as `/{account}/{container}/{blob}`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// What a signed URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// GET and HEAD (download URLs, `sp=r`).
    Read,
    /// PUT (upload URLs, `sp=w`).
    Write,
}

impl Access {
    fn letter(self) -> &'static str {
        match self {
            Access::Read => "r",
            Access::Write => "w",
        }
    }
}

/// The signature parameters of a blob request's query.
#[derive(Debug, Default)]
pub(super) struct SignedQuery<'a> {
    /// `sig`.
    pub sig: Option<&'a str>,
    /// `se`.
    pub se: Option<&'a str>,
    /// `sp`.
    pub sp: Option<&'a str>,
}

/// Why a signed URL does not allow a request.
#[derive(Debug, thiserror::Error)]
pub(super) enum SignatureError {
    /// `sig`, `se` or `sp` missing, or `se` not a number.
    #[error("the URL is not signed (expected sig, se and sp query parameters)")]
    Unsigned,
    /// The signature does not match the blob, permission and expiry.
    #[error("signature did not match: the URL was not issued by this service or was altered")]
    BadSignature,
    /// The URL expired.
    #[error("signed expiry time [{0}] (unix seconds) has passed")]
    Expired(u64),
    /// A read URL used to write or the reverse.
    #[error("the URL grants permission '{granted}', this request needs '{needed}'")]
    WrongPermission {
        /// What the URL grants.
        granted: String,
        /// What the request needs.
        needed: &'static str,
    },
}

/// Issues and checks signed URLs with a per-process key.
#[derive(Debug)]
pub(super) struct Signer {
    key: [u8; 32],
}

impl Signer {
    /// A signer with a fresh random key.
    pub(super) fn new() -> Self {
        Self {
            key: rand::random(),
        }
    }

    /// A URL under `base` (ending in '/') granting `access` to blob `id` for `ttl`.
    pub(super) fn url(&self, base: &str, id: u64, access: Access, ttl: Duration) -> String {
        let expiry = (SystemTime::now() + ttl)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sp = access.letter();
        let sig = self.signature(id, sp, expiry);
        format!("{base}blob/artifacts/{id}?sig={sig}&se={expiry}&sp={sp}")
    }

    /// Checks that `query` grants `access` to blob `id` now. A URL is valid strictly before
    /// its expiry second, so a zero TTL gives URLs that are already expired.
    pub(super) fn check(
        &self,
        id: u64,
        query: &SignedQuery<'_>,
        access: Access,
    ) -> Result<(), SignatureError> {
        let (Some(sig), Some(se), Some(sp)) = (query.sig, query.se, query.sp) else {
            return Err(SignatureError::Unsigned);
        };
        let expiry: u64 = se.parse().map_err(|_| SignatureError::Unsigned)?;
        if !constant_time_eq(sig.as_bytes(), self.signature(id, sp, expiry).as_bytes()) {
            return Err(SignatureError::BadSignature);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if now >= Duration::from_secs(expiry) {
            return Err(SignatureError::Expired(expiry));
        }
        if sp != access.letter() {
            return Err(SignatureError::WrongPermission {
                granted: sp.to_string(),
                needed: access.letter(),
            });
        }
        Ok(())
    }

    fn signature(&self, id: u64, sp: &str, expiry: u64) -> String {
        hex::encode(hmac_sha256(
            &self.key,
            format!("{id}\n{sp}\n{expiry}").as_bytes(),
        ))
    }
}

/// HMAC-SHA256 (RFC 2104) for keys no longer than the 64-byte block, which ours always is.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        inner_pad[i] ^= k;
        outer_pad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_1() {
        // Key: 20 bytes of 0x0b (zero-padded to our 32-byte key, which HMAC pads anyway).
        let mut key = [0u8; 32];
        key[..20].fill(0x0b);
        assert_eq!(
            hex::encode(hmac_sha256(&key, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    fn query(url: &str) -> (u64, Vec<(String, String)>) {
        let url = url::Url::parse(url).unwrap();
        let id = url
            .path_segments()
            .unwrap()
            .next_back()
            .unwrap()
            .parse()
            .unwrap();
        (id, url.query_pairs().into_owned().collect())
    }

    fn check(signer: &Signer, url: &str, access: Access) -> Result<(), SignatureError> {
        let (id, pairs) = query(url);
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let q = SignedQuery {
            sig: get("sig"),
            se: get("se"),
            sp: get("sp"),
        };
        signer.check(id, &q, access)
    }

    #[test]
    fn issued_urls_check_and_altered_ones_do_not() {
        let signer = Signer::new();
        let hour = Duration::from_secs(3600);
        let url = signer.url("http://127.0.0.1:1/", 7, Access::Write, hour);
        assert!(url.starts_with("http://127.0.0.1:1/blob/artifacts/7?sig="));
        check(&signer, &url, Access::Write).unwrap();
        assert!(matches!(
            check(&signer, &url, Access::Read),
            Err(SignatureError::WrongPermission { .. })
        ));
        let other_blob = url.replace("/7?", "/8?");
        assert!(matches!(
            check(&signer, &other_blob, Access::Write),
            Err(SignatureError::BadSignature)
        ));
        let other_key = Signer::new();
        assert!(check(&other_key, &url, Access::Write).is_err());
        let expired = signer.url("http://127.0.0.1:1/", 7, Access::Read, Duration::ZERO);
        assert!(matches!(
            check(&signer, &expired, Access::Read),
            Err(SignatureError::Expired(_))
        ));
    }
}
