//! Exactly-once, in-order delivery from frames that may repeat: sequence checking and the
//! reassembly of messages split into parts.
//!
//! Frames repeat when an append is retried after its answer was lost, or when the writer
//! re-sends a failed append in a new segment; a repeated frame has a sequence number already
//! taken and is dropped. A number further ahead than the next means frames were lost: an error,
//! never a silent gap.

use bytes::{Bytes, BytesMut};

use super::frame::{Frame, Kind, MAX_PAYLOAD};

/// What one frame amounts to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Nothing to deliver (a duplicate, a keepalive, or a part of a message).
    Nothing,
    /// A whole message.
    Message(Bytes),
    /// The writer continues in this segment.
    Rotate(u64),
    /// The writer closed the stream.
    Shutdown,
}

/// The reader's position in the stream of message frames.
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    /// The sequence number of the last message frame taken (0 before the first).
    last_seq: u64,
    /// Parts of a message still being reassembled.
    message: BytesMut,
}

impl Sequencer {
    /// Applies one frame to the sequence and reassembly state: drops duplicates, refuses gaps.
    pub(crate) fn take(&mut self, frame: Frame) -> Result<Taken, String> {
        let expected = self.last_seq + 1;
        if !frame.kind.is_message() {
            // Control frames carry the last message seq written before them.
            if frame.seq > self.last_seq {
                return Err(format!(
                    "message frames {expected}..={} are missing",
                    frame.seq
                ));
            }
            return Ok(match frame.kind {
                Kind::Rotate => Taken::Rotate(frame.rotate_target()?),
                _ => Taken::Nothing,
            });
        }
        if frame.seq < expected {
            return Ok(Taken::Nothing); // a duplicate from a retried append or a re-send
        }
        if frame.seq > expected {
            return Err(format!(
                "sequence gap: expected frame {expected}, found {}",
                frame.seq
            ));
        }
        self.last_seq = frame.seq;
        if self.message.len() + frame.payload.len() > MAX_PAYLOAD {
            return Err(format!("message exceeds the limit of {MAX_PAYLOAD} bytes"));
        }
        Ok(match frame.kind {
            Kind::Part => {
                self.message.extend_from_slice(&frame.payload);
                Taken::Nothing
            }
            Kind::Data if self.message.is_empty() => Taken::Message(frame.payload),
            Kind::Data => {
                self.message.extend_from_slice(&frame.payload);
                Taken::Message(self.message.split().freeze())
            }
            _ => Taken::Shutdown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: Kind, seq: u64, payload: &[u8]) -> Frame {
        Frame {
            kind,
            seq,
            payload: Bytes::copy_from_slice(payload),
            wire_len: crate::stream::frame::HEADER_LEN + payload.len(),
        }
    }

    fn message(m: &[u8]) -> Taken {
        Taken::Message(Bytes::copy_from_slice(m))
    }

    #[test]
    fn drops_repeats_and_reassembles_parts() {
        let mut s = Sequencer::default();
        assert_eq!(s.take(frame(Kind::Keepalive, 0, b"")), Ok(Taken::Nothing));
        assert_eq!(s.take(frame(Kind::Data, 1, b"a")), Ok(message(b"a")));
        assert_eq!(s.take(frame(Kind::Data, 1, b"a")), Ok(Taken::Nothing));
        assert_eq!(s.take(frame(Kind::Part, 2, b"b")), Ok(Taken::Nothing));
        assert_eq!(s.take(frame(Kind::Part, 3, b"c")), Ok(Taken::Nothing));
        // The parts re-sent after a failed append are not counted twice.
        assert_eq!(s.take(frame(Kind::Part, 3, b"c")), Ok(Taken::Nothing));
        assert_eq!(s.take(frame(Kind::Data, 4, b"d")), Ok(message(b"bcd")));
        let mut rotate = frame(Kind::Rotate, 4, &7u64.to_be_bytes());
        assert_eq!(s.take(rotate.clone()), Ok(Taken::Rotate(7)));
        rotate.seq = 3;
        assert_eq!(s.take(rotate), Ok(Taken::Rotate(7)));
        assert_eq!(s.take(frame(Kind::Shutdown, 5, b"")), Ok(Taken::Shutdown));
    }

    #[test]
    fn refuses_gaps() {
        let mut s = Sequencer::default();
        assert_eq!(s.take(frame(Kind::Data, 1, b"a")), Ok(message(b"a")));
        let err = s.take(frame(Kind::Data, 3, b"c")).unwrap_err();
        assert!(err.contains("expected frame 2, found 3"), "{err}");
        // A keepalive that claims more message frames than arrived reveals a lost tail.
        let err = s.take(frame(Kind::Keepalive, 2, b"")).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }
}
