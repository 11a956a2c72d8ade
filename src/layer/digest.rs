//! SHA-256 digests, the names of layers, and the writer that computes them while packing.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::LayerError;

/// A layer's SHA-256, lowercase hex.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Digest(pub String);

impl Digest {
    /// Parses a digest received from elsewhere (a job message, the command line): it becomes a
    /// directory name in the cache, so anything but 64 lowercase hex digits is refused.
    pub fn parse(hex: &str) -> Result<Self, LayerError> {
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid {
            Ok(Self(hex.to_owned()))
        } else {
            Err(LayerError::InvalidDigest(hex.to_owned()))
        }
    }

    /// The digest of a file's bytes, read as a stream.
    pub fn of_file(path: &Path) -> Result<Self, LayerError> {
        let context = || format!("hashing '{}'", path.display());
        let mut file = File::open(path).map_err(|e| LayerError::io(context(), e))?;
        let mut hashing = HashingWriter::new(io::sink());
        io::copy(&mut file, &mut hashing).map_err(|e| LayerError::io(context(), e))?;
        Ok(hashing.finish().1)
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Passes bytes on to `inner` and hashes exactly the bytes `inner` accepted.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The inner writer (not flushed) and the digest of everything written.
    pub(crate) fn finish(self) -> (W, Digest) {
        (self.inner, Digest(hex::encode(self.hasher.finalize())))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes bytes on from `inner` and hashes exactly the bytes read.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads what is left (so trailing bytes count too) and returns the digest of it all.
    pub(crate) fn finish(mut self) -> io::Result<Digest> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(Digest(hex::encode(self.hasher.finalize())))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_lowercase_sha256_hex() {
        let good = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Digest::parse(good).unwrap().0, good);
        for bad in [
            "",
            "../x",
            &good.to_uppercase(),
            &good[1..],
            &format!("{good}0"),
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(LayerError::InvalidDigest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn hashing_reader_hashes_what_is_read_and_what_is_left() {
        let mut r = HashingReader::new(&b"abc"[..]);
        let mut first = [0u8; 1];
        r.read_exact(&mut first).unwrap();
        assert_eq!(
            r.finish().unwrap().0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hashing_writer_hashes_what_it_writes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (bytes, digest) = w.finish();
        assert_eq!(bytes, b"abc");
        assert_eq!(
            digest.0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
