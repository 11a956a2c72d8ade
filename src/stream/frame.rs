//! The wire format of a stream segment: a sequence of self-checking frames.
//!
//! Layout (big-endian): `[u8 version][u8 kind][u64 seq][u32 len][u32 crc32][len bytes payload]`.
//! The CRC covers the first 14 header bytes *and* the payload, so a flipped bit in the sequence
//! number or kind is caught as surely as one in the payload.
//!
//! Sequence numbers count *message frames* ([`Kind::Data`], [`Kind::Part`], [`Kind::Shutdown`]):
//! each gets the previous one plus 1, across segments. Control frames ([`Kind::Keepalive`],
//! [`Kind::Rotate`]) carry the sequence number of the last message frame written before them and
//! consume none, so they may be lost or duplicated without opening a gap, and a keepalive tells
//! the reader early if a message frame before it went missing.
//!
//! Sealed frames (with a cluster secret) set [`SEALED`] in the kind byte and carry
//! [`crate::seal::FrameSeal`]'s form of the payload; `len` and the CRC cover those sealed bytes,
//! the seal authenticates the header. A reader with a secret refuses unsealed frames and one
//! without refuses sealed ones ([`crate::seal::open_frame`]): peers must agree.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::seal::{FRAME_OVERHEAD, FrameSeal, SealError, open_frame};

/// The only frame version this build reads and writes.
pub(crate) const VERSION: u8 = 1;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 18;
/// Largest payload of one frame and largest reassembled message (64 MiB): bounds what a
/// garbled length field can make a reader buffer.
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;
/// Bytes covered by the CRC before the payload (everything in the header but the CRC).
const CRC_COVERED_HEADER: usize = 14;
/// The kind byte's flag of a sealed frame.
const SEALED: u8 = 0x80;

/// Bytes a frame takes beyond its payload: the header, and the seal's overhead if sealed.
pub(crate) fn overhead(seal: Option<&FrameSeal>) -> usize {
    HEADER_LEN + seal.map_or(0, |_| FRAME_OVERHEAD)
}

/// Why the bytes at the front of a segment are not a usable frame.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Not a frame at all (version, kind, length or checksum).
    Garbled(String),
    /// A well-formed frame whose seal was refused.
    Refused(SealError),
}

/// What a frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A whole message, or the last part of one that began with [`Kind::Part`] frames.
    Data = 1,
    /// A non-final part of a message too big for one append.
    Part = 2,
    /// "Still here"; empty payload.
    Keepalive = 3,
    /// The writer closed the stream; nothing follows. Empty payload.
    Shutdown = 4,
    /// The writer continues in the segment whose index is the payload (u64); last frame of a segment.
    Rotate = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Data,
            2 => Self::Part,
            3 => Self::Keepalive,
            4 => Self::Shutdown,
            5 => Self::Rotate,
            _ => return None,
        })
    }

    /// Whether frames of this kind take a fresh sequence number (and so are deduplicated).
    pub(crate) fn is_message(self) -> bool {
        matches!(self, Self::Data | Self::Part | Self::Shutdown)
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: Kind,
    pub(crate) seq: u64,
    pub(crate) payload: Bytes,
    /// Bytes the frame took in the segment.
    pub(crate) wire_len: usize,
}

impl Frame {
    /// The segment index a [`Kind::Rotate`] frame points to.
    pub(crate) fn rotate_target(&self) -> Result<u64, String> {
        let bytes: [u8; 8] = self.payload[..]
            .try_into()
            .map_err(|_| format!("rotate frame with {} payload bytes", self.payload.len()))?;
        Ok(u64::from_be_bytes(bytes))
    }
}

/// Appends the encoding of one frame to `out`, sealed with `seal` if given. `payload` must
/// not exceed [`MAX_PAYLOAD`].
pub(crate) fn encode(
    kind: Kind,
    seq: u64,
    payload: &[u8],
    seal: Option<&FrameSeal>,
    out: &mut BytesMut,
) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let start = out.len();
    let len = overhead(seal) - HEADER_LEN + payload.len();
    out.reserve(HEADER_LEN + len);
    out.put_u8(VERSION);
    out.put_u8(kind as u8 | if seal.is_some() { SEALED } else { 0 });
    out.put_u64(seq);
    out.put_u32(len as u32);
    let sealed;
    let body = match seal {
        Some(seal) => {
            let mut buf = BytesMut::new();
            seal.seal(&out[start..start + CRC_COVERED_HEADER], payload, &mut buf);
            sealed = buf;
            &sealed[..]
        }
        None => payload,
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start..start + CRC_COVERED_HEADER]);
    crc.update(body);
    out.put_u32(crc.finalize());
    out.put_slice(body);
}

/// The encoding of a [`Kind::Rotate`] frame pointing at segment `next`.
pub(crate) fn encode_rotate(seq: u64, next: u64, seal: Option<&FrameSeal>, out: &mut BytesMut) {
    encode(Kind::Rotate, seq, &next.to_be_bytes(), seal, out);
}

/// Takes the next complete frame off the front of `buf`, opening it with `seal` (this side's
/// seal of the stream, if it has a secret).
///
/// `Ok(None)` means more bytes are needed (`buf` is left untouched); `Err` describes why the
/// bytes at the front of `buf` are not a usable frame. Header errors are reported as soon as
/// the header is complete, without waiting for a payload that may never come.
pub(crate) fn decode(
    buf: &mut BytesMut,
    seal: Option<&FrameSeal>,
) -> Result<Option<Frame>, DecodeError> {
    let garbled = DecodeError::Garbled;
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut header = &buf[..HEADER_LEN];
    let version = header.get_u8();
    if version != VERSION {
        return Err(garbled(format!(
            "unsupported frame version {version} (this build speaks {VERSION})"
        )));
    }
    let kind_byte = header.get_u8();
    let kind = Kind::from_byte(kind_byte & !SEALED)
        .ok_or_else(|| garbled(format!("unknown frame kind {kind_byte}")))?;
    let seq = header.get_u64();
    let len = header.get_u32() as usize;
    let crc = header.get_u32();
    if len > MAX_PAYLOAD + FRAME_OVERHEAD {
        return Err(garbled(format!(
            "frame length {len} exceeds the limit of {MAX_PAYLOAD} bytes"
        )));
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&buf[..CRC_COVERED_HEADER]);
    hasher.update(&buf[HEADER_LEN..HEADER_LEN + len]);
    let actual = hasher.finalize();
    if actual != crc {
        return Err(garbled(format!(
            "checksum mismatch (header says {crc:08x}, content has {actual:08x})"
        )));
    }
    let header: [u8; CRC_COVERED_HEADER] = buf[..CRC_COVERED_HEADER]
        .try_into()
        .expect("the buffer holds a whole header");
    let mut frame = buf.split_to(HEADER_LEN + len).freeze();
    frame.advance(HEADER_LEN);
    let payload =
        open_frame(seal, kind_byte & SEALED != 0, &header, frame).map_err(DecodeError::Refused)?;
    Ok(Some(Frame {
        kind,
        seq,
        payload,
        wire_len: HEADER_LEN + len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(kind: Kind, seq: u64, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode(kind, seq, payload, None, &mut out);
        out
    }

    #[test]
    fn round_trips_every_kind() {
        let mut buf = BytesMut::new();
        encode(Kind::Data, 1, b"hello", None, &mut buf);
        encode(Kind::Part, 2, &[7; 1000], None, &mut buf);
        encode(Kind::Keepalive, 2, b"", None, &mut buf);
        encode_rotate(2, 9, None, &mut buf);
        encode(Kind::Shutdown, 3, b"", None, &mut buf);
        let mut frames = Vec::new();
        while let Some(f) = decode(&mut buf, None).unwrap() {
            frames.push(f);
        }
        assert!(buf.is_empty());
        let kinds: Vec<_> = frames.iter().map(|f| (f.kind, f.seq)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Data, 1),
                (Kind::Part, 2),
                (Kind::Keepalive, 2),
                (Kind::Rotate, 2),
                (Kind::Shutdown, 3)
            ]
        );
        assert_eq!(&frames[0].payload[..], b"hello");
        assert_eq!(frames[1].payload.len(), 1000);
        assert_eq!(frames[3].rotate_target().unwrap(), 9);
    }

    #[test]
    fn waits_for_a_frame_split_anywhere() {
        let whole = encoded(Kind::Data, 5, b"split me");
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(decode(&mut buf, None).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed at cut {cut}");
            buf.extend_from_slice(&whole[cut..]);
            let frame = decode(&mut buf, None).unwrap().unwrap();
            assert_eq!(&frame.payload[..], b"split me");
        }
    }

    #[test]
    fn rejects_every_single_bit_flip() {
        let whole = encoded(Kind::Data, 5, b"payload");
        for byte in 0..whole.len() {
            for bit in 0..8 {
                let mut buf = whole.clone();
                buf[byte] ^= 1 << bit;
                // A flip in the length may make the frame look longer (incomplete): also fine,
                // it never yields a frame.
                assert!(
                    !matches!(decode(&mut buf, None), Ok(Some(_))),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    fn garbled(result: Result<Option<Frame>, DecodeError>) -> String {
        match result {
            Err(DecodeError::Garbled(reason)) => reason,
            other => panic!("not garbled: {other:?}"),
        }
    }

    fn keys(secret: &[u8]) -> crate::seal::ClusterKeys {
        crate::seal::ClusterKeys::derive(secret, "1", "c").unwrap()
    }

    #[test]
    fn sealed_frames_round_trip_and_authenticate_every_bit() {
        let seal = keys(b"k").frames(crate::seal::Direction::Up, "ca.c.1.p.up");
        let mut whole = BytesMut::new();
        encode(Kind::Data, 5, b"secret payload", Some(&seal), &mut whole);
        encode_rotate(5, 1, Some(&seal), &mut whole);
        assert!(!whole.windows(6).any(|w| w == b"secret"));
        let mut buf = whole.clone();
        let data = decode(&mut buf, Some(&seal)).unwrap().unwrap();
        assert_eq!((&data.payload[..], data.seq), (&b"secret payload"[..], 5));
        assert_eq!(data.wire_len, HEADER_LEN + FRAME_OVERHEAD + 14);
        let rotate = decode(&mut buf, Some(&seal)).unwrap().unwrap();
        assert_eq!(rotate.rotate_target().unwrap(), 1);
        let first = data.wire_len;
        for byte in 0..first {
            let mut bad = BytesMut::from(&whole[..first]);
            bad[byte] ^= 1;
            assert!(
                !matches!(decode(&mut bad, Some(&seal)), Ok(Some(_))),
                "flip in byte {byte} went unnoticed"
            );
        }
        // A flip that keeps the CRC right (an attacker recomputes it) is caught by the seal.
        let mut forged = BytesMut::from(&whole[..first]);
        forged[2 + 7] ^= 1; // the sequence number
        let crc = {
            let mut h = crc32fast::Hasher::new();
            h.update(&forged[..CRC_COVERED_HEADER]);
            h.update(&forged[HEADER_LEN..]);
            h.finalize()
        };
        forged[CRC_COVERED_HEADER..HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode(&mut forged, Some(&seal)),
            Err(DecodeError::Refused(SealError::Forged { .. }))
        ));
    }

    #[test]
    fn peers_that_disagree_about_the_secret_are_refused() {
        let seal = keys(b"k").frames(crate::seal::Direction::Up, "s");
        let other = keys(b"other").frames(crate::seal::Direction::Up, "s");
        let mut sealed = BytesMut::new();
        encode(Kind::Data, 1, b"hello", Some(&seal), &mut sealed);
        let mismatch = |result: Result<Option<Frame>, DecodeError>| matches!(result, Err(DecodeError::Refused(e)) if e.is_mismatch());
        assert!(mismatch(decode(&mut sealed.clone(), None)));
        assert!(mismatch(decode(&mut sealed.clone(), Some(&other))));
        assert!(mismatch(decode(
            &mut encoded(Kind::Data, 1, b"hello"),
            Some(&seal)
        )));
    }

    #[test]
    fn names_what_is_wrong() {
        let mut bad_version = encoded(Kind::Data, 1, b"x");
        bad_version[0] = 2;
        assert!(garbled(decode(&mut bad_version, None)).contains("version 2"));

        let mut bad_kind = encoded(Kind::Data, 1, b"x");
        bad_kind[1] = 99;
        assert!(garbled(decode(&mut bad_kind, None)).contains("kind 99"));

        let mut too_long = encoded(Kind::Data, 1, b"x");
        too_long[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(garbled(decode(&mut too_long, None)).contains("exceeds"));

        let mut bad_crc = encoded(Kind::Data, 1, b"x");
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert!(garbled(decode(&mut bad_crc, None)).contains("checksum"));

        let rotate = Frame {
            kind: Kind::Rotate,
            seq: 0,
            payload: Bytes::from_static(b"abc"),
            wire_len: 21,
        };
        assert!(rotate.rotate_target().is_err());
    }
}
