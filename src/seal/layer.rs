//! Sealing of a layer file, streamed in chunks so memory stays bounded whatever its size.
//!
//! Format: `[magic "ca-seal1"][nonce prefix (19)]` then chunks of 64 KiB of plaintext (the last
//! one shorter, possibly empty), each followed by its 16-byte tag. Chunk `i` is sealed with
//! nonce `prefix ‖ i (u32, big-endian) ‖ last (0 or 1)` and the header as associated data (the
//! STREAM construction): a dropped, repeated or reordered chunk, or a file cut at a chunk
//! boundary, fails authentication.
//!
//! The prefix is an HMAC of the plaintext under its own key, so sealing is deterministic: equal
//! layers seal to equal bytes (and names), different layers get different prefixes. The name is
//! the HMAC-SHA256 of the sealed bytes under the names key.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::Mac;
use sha2::{Digest as _, Sha256};

use super::SealError;
use super::name::{KeyedHasher, keyed_hasher, matches_hex};

const MAGIC: &[u8; 8] = b"ca-seal1";
const PREFIX_LEN: usize = 19;
const HEADER_LEN: usize = MAGIC.len() + PREFIX_LEN;
/// Plaintext bytes per chunk.
const CHUNK: usize = 64 * 1024;
const TAG_LEN: usize = 16;

/// Seals layer files and checks their names.
#[derive(Clone)]
pub struct LayerSeal {
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; 32],
    names_key: [u8; 32],
}

impl std::fmt::Debug for LayerSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerSeal")
    }
}

/// A sealed layer file's name and checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedLayer {
    /// HMAC-SHA256 of the sealed bytes under the names key, lowercase hex: the layer's name.
    pub name: String,
    /// SHA-256 of the sealed bytes, lowercase hex (what the store is told the upload hashes to).
    pub sha256: String,
}

impl LayerSeal {
    pub(crate) fn new(key: &[u8; 32], nonce_key: [u8; 32], names_key: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&(*key).into()),
            nonce_key,
            names_key,
        }
    }

    /// Seals the file `plain` into a new file `sealed` (two reads of `plain`: one for the
    /// nonce prefix, one to encrypt).
    pub fn seal_file(&self, plain: &Path, sealed: &Path) -> Result<SealedLayer, SealError> {
        let open = |path: &Path| {
            File::open(path)
                .map(BufReader::new)
                .map_err(|e| SealError::io(format!("opening '{}'", path.display()), e))
        };
        let reading = |e| SealError::io(format!("reading '{}'", plain.display()), e);
        let writing = |e| SealError::io(format!("writing '{}'", sealed.display()), e);
        let mut prefix_mac = keyed_hasher(&self.nonce_key);
        std::io::copy(&mut open(plain)?, &mut MacWriter(&mut prefix_mac)).map_err(reading)?;
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()..].copy_from_slice(&prefix_mac.finalize().into_bytes()[..PREFIX_LEN]);

        let file = File::create(sealed).map_err(writing)?;
        let mut out = Hashed::new(BufWriter::new(file), &self.names_key);
        out.write_all(&header).map_err(writing)?;
        let mut input = open(plain)?;
        let mut current = read_chunk(&mut input, CHUNK).map_err(reading)?;
        for index in 0u32.. {
            let next = read_chunk(&mut input, CHUNK).map_err(reading)?;
            let last = next.is_empty();
            let chunk = self
                .cipher
                .encrypt(
                    &nonce(&header, index, last),
                    Payload {
                        msg: &current,
                        aad: &header,
                    },
                )
                .expect("XChaCha20-Poly1305 seals any chunk");
            out.write_all(&chunk).map_err(writing)?;
            if last {
                break;
            }
            current = next;
        }
        out.finish().map_err(writing)
    }

    /// Opens the sealed file `sealed`, which must be named `name`, into a new file `plain`.
    /// On error `plain` may hold a part of the plaintext: the caller discards it.
    pub fn open_file(&self, sealed: &Path, name: &str, plain: &Path) -> Result<(), SealError> {
        let reading = |e| SealError::io(format!("reading '{}'", sealed.display()), e);
        let writing = |e| SealError::io(format!("writing '{}'", plain.display()), e);
        let forged = |what: String| SealError::forged(format!("layer {name}: {what}"));
        let file = File::open(sealed).map_err(reading)?;
        let mut input = BufReader::new(file);
        let mut name_mac = keyed_hasher(&self.names_key);
        let header = read_chunk(&mut input, HEADER_LEN).map_err(reading)?;
        name_mac.update(&header);
        if header.len() < HEADER_LEN || !header.starts_with(MAGIC) {
            return Err(forged("no seal header".into()));
        }
        let mut out = BufWriter::new(File::create(plain).map_err(writing)?);
        let mut current = read_chunk(&mut input, CHUNK + TAG_LEN).map_err(reading)?;
        for index in 0u32.. {
            name_mac.update(&current);
            let next = read_chunk(&mut input, CHUNK + TAG_LEN).map_err(reading)?;
            let last = next.is_empty();
            let chunk = self
                .cipher
                .decrypt(
                    &nonce(&header, index, last),
                    Payload {
                        msg: &current,
                        aad: &header,
                    },
                )
                .map_err(|_| forged(format!("chunk {index}")))?;
            out.write_all(&chunk).map_err(writing)?;
            if last {
                break;
            }
            current = next;
        }
        out.flush().map_err(writing)?;
        if !matches_hex(name_mac, name) {
            return Err(forged("its bytes do not match its name".into()));
        }
        Ok(())
    }
}

/// The nonce of chunk `index`: the header's prefix, the counter, the last-chunk flag.
fn nonce(header: &[u8], index: u32, last: bool) -> XNonce {
    let mut nonce = [0u8; 24];
    nonce[..PREFIX_LEN].copy_from_slice(&header[MAGIC.len()..]);
    nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
    nonce[23] = u8::from(last);
    XNonce::from(nonce)
}

/// Reads up to `len` bytes (fewer only at the end of the input).
fn read_chunk(input: &mut impl Read, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    input.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Feeds written bytes to a MAC.
struct MacWriter<'a>(&'a mut KeyedHasher);

impl Write for MacWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer that computes the sealed file's name and SHA-256 as it goes.
struct Hashed<W> {
    inner: W,
    name: KeyedHasher,
    sha256: Sha256,
}

impl<W: Write> Hashed<W> {
    fn new(inner: W, names_key: &[u8; 32]) -> Self {
        Self {
            inner,
            name: keyed_hasher(names_key),
            sha256: Sha256::new(),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.name.update(buf);
        self.sha256.update(buf);
        self.inner.write_all(buf)
    }

    fn finish(mut self) -> std::io::Result<SealedLayer> {
        self.inner.flush()?;
        Ok(SealedLayer {
            name: hex::encode(self.name.finalize().into_bytes()),
            sha256: hex::encode(self.sha256.finalize()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::ClusterKeys;

    fn seal(secret: &[u8]) -> LayerSeal {
        ClusterKeys::derive(secret, "42", "default")
            .unwrap()
            .layers()
    }

    struct Sealed {
        dir: tempfile::TempDir,
        layer: SealedLayer,
        plain: Vec<u8>,
    }

    impl Sealed {
        fn new(seal: &LayerSeal, plain: Vec<u8>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("plain"), &plain).unwrap();
            let layer = seal
                .seal_file(&dir.path().join("plain"), &dir.path().join("sealed"))
                .unwrap();
            Self { dir, layer, plain }
        }

        fn bytes(&self) -> Vec<u8> {
            std::fs::read(self.dir.path().join("sealed")).unwrap()
        }

        /// Opens `bytes` as this layer's sealed file.
        fn open(&self, seal: &LayerSeal, bytes: &[u8]) -> Result<Vec<u8>, SealError> {
            let path = self.dir.path().join("candidate");
            std::fs::write(&path, bytes).unwrap();
            let out = self.dir.path().join("opened");
            seal.open_file(&path, &self.layer.name, &out)?;
            Ok(std::fs::read(out).unwrap())
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_any_size() {
        let seal = seal(b"k");
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK] {
            let sealed = Sealed::new(&seal, pattern(len));
            let bytes = sealed.bytes();
            let chunks = len.div_ceil(CHUNK).max(1);
            assert_eq!(
                bytes.len(),
                HEADER_LEN + len + chunks * TAG_LEN,
                "len {len}"
            );
            assert_eq!(sealed.open(&seal, &bytes).unwrap(), sealed.plain);
            assert_eq!(
                sealed.layer.sha256,
                hex::encode(Sha256::digest(&bytes)),
                "len {len}"
            );
        }
    }

    #[test]
    fn is_deterministic_per_content_and_hides_it() {
        let seal = seal(b"k");
        let a = Sealed::new(&seal, b"marker-abcdef marker-abcdef".to_vec());
        let again = Sealed::new(&seal, b"marker-abcdef marker-abcdef".to_vec());
        let b = Sealed::new(&seal, b"marker-abcdeg marker-abcdef".to_vec());
        assert_eq!(a.bytes(), again.bytes());
        assert_eq!(a.layer, again.layer);
        assert_ne!(a.layer.name, b.layer.name);
        // Different contents, different nonce prefixes.
        assert_ne!(a.bytes()[..HEADER_LEN], b.bytes()[..HEADER_LEN]);
        assert!(!a.bytes().windows(6).any(|w| w == b"marker"));
        // The name is not the plain SHA-256 of anything the reader has.
        assert_ne!(a.layer.name, hex::encode(Sha256::digest(&a.plain)));
        assert_ne!(a.layer.name, a.layer.sha256);
    }

    #[test]
    fn rejects_a_flip_in_every_region() {
        let seal = seal(b"k");
        let sealed = Sealed::new(&seal, pattern(CHUNK + 100));
        let bytes = sealed.bytes();
        // The magic, the prefix, the first chunk's body and tag, the last chunk, the last byte.
        let positions = [
            0,
            9,
            HEADER_LEN,
            HEADER_LEN + CHUNK + 3,
            HEADER_LEN + CHUNK + TAG_LEN + 5,
        ];
        for pos in positions.into_iter().chain([bytes.len() - 1]) {
            for bit in [0, 7] {
                let mut bad = bytes.clone();
                bad[pos] ^= 1 << bit;
                let err = sealed.open(&seal, &bad).unwrap_err();
                assert!(matches!(err, SealError::Forged { .. }), "byte {pos}: {err}");
            }
        }
    }

    #[test]
    fn detects_truncation_reordering_and_a_wrong_key_or_name() {
        let seal = seal(b"k");
        let sealed = Sealed::new(&seal, pattern(3 * CHUNK + 10));
        let bytes = sealed.bytes();
        let step = CHUNK + TAG_LEN;
        // Cut at a chunk boundary: every remaining chunk authenticates, but none says "last".
        for cut in [HEADER_LEN + step, HEADER_LEN + 3 * step, bytes.len() - 1, 5] {
            assert!(sealed.open(&seal, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut swapped = bytes[..HEADER_LEN].to_vec();
        swapped.extend_from_slice(&bytes[HEADER_LEN + step..HEADER_LEN + 2 * step]);
        swapped.extend_from_slice(&bytes[HEADER_LEN..HEADER_LEN + step]);
        swapped.extend_from_slice(&bytes[HEADER_LEN + 2 * step..]);
        assert!(sealed.open(&seal, &swapped).is_err());
        assert!(matches!(
            sealed.open(&self::seal(b"other"), &bytes),
            Err(SealError::Forged { .. })
        ));
        let mut renamed = Sealed::new(&seal, pattern(10));
        renamed.layer.name = sealed.layer.name.clone();
        let other_bytes = renamed.bytes();
        let err = renamed.open(&seal, &other_bytes).unwrap_err();
        assert!(err.to_string().contains("do not match its name"), "{err}");
    }
}
