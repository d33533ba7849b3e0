//! Reading a segment file by position: where its frames end (the footer
//! start), and one event frame, CRC-checked. Below the index and the
//! reader; both recovery and the writer use it.

use crate::store::data_dir::DataDir;
use crate::store::entry::DiskPos;
use crate::store::segment::file::SEGMENT_HEADER_LEN;
use crate::store::segment::footer::{self, FOOTER_TRAILER_LEN};
use crate::store::segment::frame::{self, EventRecord, FrameError};
use crate::store::StoreError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// A crashed last segment the writer appends to instead of starting a new
/// one; it is sealed (footer written) at its rotation or at close.
pub(crate) struct Resume {
    pub id: u64,
    /// End of its last committed unit (the file is cut here).
    pub len: u64,
    /// Sequence of its first event, or the next sequence if it has none.
    pub first_seq: u64,
    /// Its string table, in id order (ids are dense).
    pub strings: Vec<Arc<str>>,
    /// Its gate-set records.
    pub gate_sets: Vec<(u32, Vec<u8>)>,
}

/// Where the frames of segment `id` end.
pub(crate) fn frames_end(dir: &DataDir, id: u64) -> Result<u64, StoreError> {
    Ok(footer_bounds(&dir.open_segment(id)?)?.1)
}

/// File length and where its frames end (the footer start, if it has one).
pub(crate) fn footer_bounds(file: &File) -> Result<(u64, u64), StoreError> {
    let len = file.metadata()?.len();
    if len < (SEGMENT_HEADER_LEN + FOOTER_TRAILER_LEN) as u64 {
        return Ok((len, len));
    }
    let mut trailer = [0u8; FOOTER_TRAILER_LEN];
    file.read_exact_at(&mut trailer, len - FOOTER_TRAILER_LEN as u64)?;
    match footer::footer_start(&trailer) {
        Some(start) if (SEGMENT_HEADER_LEN as u64..len).contains(&start) => Ok((len, start)),
        _ => Ok((len, len)),
    }
}

/// The payload bytes of the event framed at `pos` (opens the file itself).
pub(crate) fn read_payload(dir: &DataDir, pos: DiskPos) -> Result<Vec<u8>, StoreError> {
    let bytes = read_frame(&dir.open_segment(pos.segment_id)?, pos)?;
    Ok(decode_event(&bytes, pos)?.payload.to_vec())
}

/// The bytes of the frame at `pos`.
pub(crate) fn read_frame(file: &File, pos: DiskPos) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; pos.length as usize];
    file.read_exact_at(&mut buf, pos.offset)?;
    Ok(buf)
}

/// The event in `bytes` (one frame read from `pos`); a CRC failure names the
/// segment and offset.
pub(crate) fn decode_event(bytes: &[u8], pos: DiskPos) -> Result<EventRecord<'_>, StoreError> {
    frame::decode_event_frame(bytes).map_err(|e| match e {
        FrameError::Crc { .. } => StoreError::CrcMismatch { segment_id: pos.segment_id, offset: pos.offset },
        e => StoreError::corrupt(pos.segment_id, format!("offset {}: {e}", pos.offset)),
    })
}
