//! The frame envelope as a public, low-level API (batpak 0.3.0's
//! `frame_encode` / `frame_decode`), over this crate's own frame format:
//! `[u32 LE body length][u32 LE CRC32 of body][body]`. Frames the store
//! writes carry records (docs/design.md, "Frames"); `frame_encode` frames
//! any serialisable value as JSON, and `frame_decode` hands back whatever
//! body a frame holds, after checking its length and CRC.

use super::frame::{FRAME_HEADER_LEN, MAX_FRAME_BODY};
use crate::store::StoreError;
use serde::Serialize;

/// Why bytes are not a whole, intact frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameDecodeError {
    /// Fewer bytes than a frame header (8).
    TooShort,
    /// The header announces more body bytes than are present (or than any
    /// frame may hold).
    Truncated {
        /// Bytes the header announces (header included).
        expected_len: usize,
        /// Bytes present.
        available: usize,
    },
    /// The body does not match the CRC32 in the header.
    CrcMismatch {
        /// The CRC32 the header records.
        expected: u32,
        /// The CRC32 of the body present.
        actual: u32,
    },
}

impl std::fmt::Display for FrameDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort => write!(f, "fewer than {FRAME_HEADER_LEN} bytes: no frame header"),
            Self::Truncated { expected_len, available } => {
                write!(f, "frame of {expected_len} bytes truncated to {available}")
            }
            Self::CrcMismatch { expected, actual } => {
                write!(f, "frame CRC mismatch: header says {expected:08x}, body hashes to {actual:08x}")
            }
        }
    }
}

impl std::error::Error for FrameDecodeError {}

/// Frames `value` serialised as JSON: header (length, CRC32) and body.
pub fn frame_encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let body = serde_json::to_vec(value)?;
    if body.len() > MAX_FRAME_BODY {
        return Err(StoreError::Configuration(format!(
            "frame body of {} bytes exceeds the largest frame ({MAX_FRAME_BODY})",
            body.len()
        )));
    }
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The body of the frame at the start of `bytes` and the bytes the frame
/// takes (header included). Never reads past `bytes` and allocates nothing.
pub fn frame_decode(bytes: &[u8]) -> Result<(&[u8], usize), FrameDecodeError> {
    let header = bytes.get(..FRAME_HEADER_LEN).ok_or(FrameDecodeError::TooShort)?;
    let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, expected) = (word(0) as usize, word(4));
    let total = FRAME_HEADER_LEN.saturating_add(len);
    let body = bytes
        .get(FRAME_HEADER_LEN..total)
        .filter(|_| len <= MAX_FRAME_BODY)
        .ok_or(FrameDecodeError::Truncated { expected_len: total, available: bytes.len() })?;
    let actual = crc32fast::hash(body);
    if actual != expected {
        return Err(FrameDecodeError::CrcMismatch { expected, actual });
    }
    Ok((body, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_every_typed_error() {
        let value = serde_json::json!({"amount": 10, "note": "ünïcode"});
        let frame = frame_encode(&value).unwrap();
        let (body, used) = frame_decode(&frame).unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(serde_json::from_slice::<serde_json::Value>(body).unwrap(), value);
        assert_eq!(frame_decode(&frame[..5]), Err(FrameDecodeError::TooShort));
        assert_eq!(
            frame_decode(&frame[..frame.len() - 1]),
            Err(FrameDecodeError::Truncated { expected_len: frame.len(), available: frame.len() - 1 })
        );
        let mut bad = frame.clone();
        *bad.last_mut().unwrap() ^= 0x40;
        assert!(matches!(frame_decode(&bad), Err(FrameDecodeError::CrcMismatch { .. })));
        // A header claiming 4 GiB is a truncation, not an allocation.
        let huge = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3];
        assert!(matches!(frame_decode(&huge), Err(FrameDecodeError::Truncated { .. })));
        // Trailing bytes belong to the next frame.
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(frame_decode(&two).unwrap().1, frame.len());
    }

    proptest! {
        #[test]
        fn any_bytes_give_a_frame_or_a_typed_error(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok((body, used)) = frame_decode(&bytes) {
                prop_assert!(used <= bytes.len() && body.len() + 8 == used);
            }
        }
    }
}
