//! Segment files: names, the 32-byte header, and listing a data directory.

use crate::store::StoreError;
use cap_std::fs::Dir;

/// Magic bytes at the start of every segment.
pub const SEGMENT_MAGIC: &[u8; 4] = b"FBAT";
/// File extension of segments.
pub const SEGMENT_EXTENSION: &str = "fbat";
/// The on-disk format version this build writes and reads.
pub const SEGMENT_FORMAT_VERSION: u16 = 2;
/// Length of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;

/// The file name of segment `id`: at least six digits, zero-padded.
pub fn segment_filename(id: u64) -> String {
    format!("{id:06}.{SEGMENT_EXTENSION}")
}

/// The segment id a file name stands for, if it is a segment name.
pub fn parse_segment_filename(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".fbat")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The fixed header of a segment file (the fields of batpak 0.3.0's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentHeader {
    /// Format version ([`SEGMENT_FORMAT_VERSION`]).
    pub version: u16,
    /// Reserved, 0.
    pub flags: u16,
    /// When the segment was created, nanoseconds since the epoch. The file
    /// stores microseconds, so a decoded value is a multiple of 1000.
    pub created_ns: i64,
    /// The segment's id (matches its file name).
    pub segment_id: u64,
}

impl SegmentHeader {
    pub(crate) fn new(segment_id: u64, created_us: i64) -> Self {
        Self {
            version: SEGMENT_FORMAT_VERSION,
            flags: 0,
            segment_id,
            created_ns: created_us.saturating_mul(1000),
        }
    }

    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..4].copy_from_slice(SEGMENT_MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.segment_id.to_le_bytes());
        out[16..24].copy_from_slice(&(self.created_ns / 1000).to_le_bytes());
        let crc = crc32fast::hash(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8], expected_id: u64) -> Result<Self, StoreError> {
        let corrupt = |d: &str| StoreError::corrupt(expected_id, format!("segment header: {d}"));
        let h = bytes.get(..SEGMENT_HEADER_LEN).ok_or_else(|| corrupt("file shorter than header"))?;
        if &h[0..4] != SEGMENT_MAGIC {
            return Err(corrupt("bad magic"));
        }
        let le64 = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[r]);
            u64::from_le_bytes(b)
        };
        let stored_crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
        if crc32fast::hash(&h[..28]) != stored_crc {
            return Err(corrupt("header CRC mismatch"));
        }
        let header = Self {
            version: u16::from_le_bytes([h[4], h[5]]),
            flags: u16::from_le_bytes([h[6], h[7]]),
            segment_id: le64(8..16),
            created_ns: (le64(16..24) as i64).saturating_mul(1000),
        };
        if header.version != SEGMENT_FORMAT_VERSION {
            return Err(corrupt(&format!("unsupported version {}", header.version)));
        }
        if header.segment_id != expected_id {
            return Err(corrupt(&format!("header names segment {}", header.segment_id)));
        }
        Ok(header)
    }
}

/// Ids of every segment file in `dir`, sorted numerically.
pub(crate) fn list_segments(dir: &Dir) -> Result<Vec<u64>, StoreError> {
    let mut ids = Vec::new();
    for entry in dir.entries()? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_segment_filename) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_numerically_past_six_digits() {
        assert_eq!(segment_filename(7), "000007.fbat");
        assert_eq!(parse_segment_filename("1000000.fbat"), Some(1_000_000));
        assert_eq!(parse_segment_filename("12.fbat"), None);
        assert_eq!(parse_segment_filename("000001.fbat.tmp"), None);
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader::new(42, 1234);
        let mut bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes, 42).ok(), Some(h));
        assert!(SegmentHeader::decode(&bytes, 43).is_err());
        bytes[9] ^= 1;
        assert!(SegmentHeader::decode(&bytes, 42).is_err());
    }
}
