//! `index.ckpt`: the manifest of a clean close. It names the segments the
//! close sealed, where the last one's frames end, and the gate sets. It
//! deliberately holds no per-event data: the index lives on disk once, in
//! the segment footers, so an event costs its frame plus one footer entry.
//!
//! Layout: `"FBATCK" | u16 LE version (2) | u32 LE CRC32(body) | u64 LE body length | body`,
//! body = `varint segment count, segment ids, varint frames end of the last segment`.

use crate::store::segment::codec::{envelope, open_envelope, Cursor, PutBytes, ShortRead};

/// File name of the checkpoint.
pub const CHECKPOINT_FILE: &str = "index.ckpt";
pub(crate) const MAGIC: &[u8; 6] = b"FBATCK";
pub(crate) const VERSION: u16 = 2;

/// A decoded checkpoint.
pub(crate) struct Checkpoint {
    /// Segments sealed by the close, in order.
    pub segments: Vec<u64>,
    /// Where the frames of the last segment end.
    pub frames_end: u64,
}

/// Encodes a checkpoint.
pub(crate) fn encode(segments: &[u64], frames_end: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + segments.len() * 4);
    body.put_varint(segments.len() as u64);
    for id in segments {
        body.put_varint(*id);
    }
    body.put_varint(frames_end);
    envelope(MAGIC, VERSION, &body)
}

/// Decodes a checkpoint; `Err` says why it cannot be trusted.
pub(crate) fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
    let body = open_envelope(bytes, MAGIC, VERSION)?;
    decode_body(body).map_err(|e| format!("truncated at {}", e.0))
}

fn decode_body(body: &[u8]) -> Result<Checkpoint, ShortRead> {
    let mut c = Cursor::new(body);
    let n = c.varint("segment count")?;
    let segments = (0..n).map(|_| c.varint("segment id")).collect::<Result<Vec<_>, _>>()?;
    let frames_end = c.varint("frames end")?;
    if !c.rest().is_empty() {
        return Err(ShortRead("trailing bytes"));
    }
    Ok(Checkpoint { segments, frames_end })
}
