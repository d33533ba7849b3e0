//! `index.ckpt`: the manifest of a clean close. It names the segments the
//! close sealed, where the last one's frames end, and the gate sets. It
//! deliberately holds no per-event data: the index lives on disk once, in
//! the segment footers, so an event costs its frame plus one footer entry.
//!
//! Layout: `"FBATCK" | u16 LE version (2) | u32 LE CRC32(body) | u64 LE body length | body`,
//! body = `varint segment count, segment ids, varint frames end of the last segment`.

use crate::store::segment::codec::{Cursor, PutBytes, ShortRead};

/// File name of the checkpoint.
pub const CHECKPOINT_FILE: &str = "index.ckpt";
const MAGIC: &[u8; 6] = b"FBATCK";
const VERSION: u16 = 2;

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
    let mut out = Vec::with_capacity(20 + body.len());
    out.extend_from_slice(MAGIC);
    out.put_u16(VERSION);
    out.put_u32(crc32fast::hash(&body));
    out.put_u64(body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// Decodes a checkpoint; `Err` says why it cannot be trusted.
pub(crate) fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
    let mut c = Cursor::new(bytes);
    let short = |e: ShortRead| format!("truncated at {}", e.0);
    if c.take(6, "magic").map_err(short)? != MAGIC {
        return Err("bad magic".into());
    }
    if c.u16("version").map_err(short)? != VERSION {
        return Err("unsupported version".into());
    }
    let crc = c.u32("crc").map_err(short)?;
    let len = usize::try_from(c.u64("length").map_err(short)?).map_err(|_| "length".to_string())?;
    let body = c.take(len, "body").map_err(short)?;
    if crc32fast::hash(body) != crc {
        return Err("CRC mismatch".into());
    }
    decode_body(body).map_err(short)
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
