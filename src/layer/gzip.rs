//! A deterministic gzip writer whose compression level can change between tar entries, so
//! that incompressible files are stored (copied into stored deflate blocks at memory speed)
//! while the rest is deflated at a fast level, all in one gzip member that any gunzip reads.
//!
//! Deterministic: the header has no name, no time and a fixed OS byte, and the deflate engine
//! is fed fixed-size chunks, so the bytes depend only on what is written and when the level
//! changes.

use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input is handed to the deflate engine in chunks of this size.
const CHUNK: usize = 64 * 1024;

/// The gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown".
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Writes one gzip member to `out`; call [`GzipWriter::finish`] to end it.
pub(crate) struct GzipWriter<W: Write> {
    out: W,
    deflate: Compress,
    level: u32,
    crc: crc32fast::Hasher,
    len: u64,
    pending: Vec<u8>,
    compressed: Vec<u8>,
}

impl<W: Write> GzipWriter<W> {
    /// Starts a member at `level` (0 stores, 9 is smallest).
    pub(crate) fn new(mut out: W, level: u32) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        Ok(Self {
            out,
            deflate: Compress::new(Compression::new(level), false),
            level,
            crc: crc32fast::Hasher::new(),
            len: 0,
            pending: Vec::with_capacity(CHUNK),
            compressed: Vec::with_capacity(CHUNK + 1024),
        })
    }

    /// Compresses what follows at `level`. Pending input is flushed with the old level to a
    /// byte boundary (a sync point) and a fresh deflate engine continues the stream: deflate
    /// blocks are independent but for back-references, and the new engine makes none into
    /// what came before, so the concatenation is one valid deflate stream.
    pub(crate) fn set_level(&mut self, level: u32) -> io::Result<()> {
        if level == self.level {
            return Ok(());
        }
        self.feed(FlushCompress::Sync)?;
        self.deflate = Compress::new(Compression::new(level), false);
        self.level = level;
        Ok(())
    }

    /// Ends the member (deflate end, CRC-32, length) and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.feed(FlushCompress::Finish)?;
        let crc = self.crc.clone().finalize();
        // The gzip trailer holds the length modulo 2^32.
        let len = (self.len & 0xffff_ffff) as u32;
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        Ok(self.out)
    }

    /// Compresses all of `pending` with `flush` and writes the output.
    fn feed(&mut self, flush: FlushCompress) -> io::Result<()> {
        let mut input = &self.pending[..];
        loop {
            self.compressed.clear();
            let before_in = self.deflate.total_in();
            let status = self
                .deflate
                .compress_vec(input, &mut self.compressed, flush)
                .map_err(io::Error::other)?;
            let consumed =
                usize::try_from(self.deflate.total_in() - before_in).map_err(io::Error::other)?;
            input = &input[consumed..];
            self.out.write_all(&self.compressed)?;
            let output_full = self.compressed.len() == self.compressed.capacity();
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => input.is_empty() && !output_full,
            };
            if done {
                break;
            }
        }
        self.pending.clear();
        Ok(())
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        if self.pending.len() == CHUNK {
            self.feed(FlushCompress::None)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn level_changes_round_trip_through_a_standard_gunzip() {
        let text = b"a line of very compressible text\n".repeat(10_000);
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut gz = GzipWriter::new(Vec::new(), 1).unwrap();
        gz.write_all(&text).unwrap();
        gz.set_level(0).unwrap();
        gz.write_all(&noise).unwrap();
        gz.set_level(1).unwrap();
        gz.write_all(&text).unwrap();
        let packed = gz.finish().unwrap();
        let expected = [&text[..], &noise[..], &text[..]].concat();
        assert_eq!(gunzip(&packed), expected);
        assert!(
            packed.len() < noise.len() + text.len() / 4,
            "{}",
            packed.len()
        );
    }

    #[test]
    fn stored_data_is_not_deflated() {
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let mut gz = GzipWriter::new(Vec::new(), 0).unwrap();
        gz.write_all(&noise).unwrap();
        let packed = gz.finish().unwrap();
        // Stored blocks add 5 bytes per 64 KiB at most, plus header and trailer.
        assert!(packed.len() < noise.len() + 100, "{}", packed.len());
        assert_eq!(gunzip(&packed), noise);
    }
}
