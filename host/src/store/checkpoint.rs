//! `index.ckpt`: the whole index as of a clean close, so the next open reads
//! one file instead of every footer.
//!
//! Layout: `"FBATCK" | u16 LE version (1) | u32 LE CRC32(body) | u64 LE body length | body`,
//! body = `varint covered segment count, segment ids, varint frames end of the
//! last covered segment, varint string count, strings, varint gate-set count,
//! (varint id, varint length, bytes)*, varint entry count, entries` (entries in
//! sequence order, with segment ids).

use crate::store::index::IndexEntry;
use crate::store::segment::codec::{Cursor, PutBytes, ShortRead};
use crate::store::segment::entry_codec::{get_entry, put_entry};
use std::collections::HashMap;
use std::sync::Arc;

/// File name of the checkpoint.
pub const CHECKPOINT_FILE: &str = "index.ckpt";
const MAGIC: &[u8; 6] = b"FBATCK";
const VERSION: u16 = 1;
const PREAMBLE: usize = 6 + 2 + 4 + 8;

/// A checkpoint whose header is decoded; its entries are read in chunks
/// by [`Checkpoint::load_entries`] so they never all sit in memory twice.
pub(crate) struct Checkpoint<'a> {
    /// Segments whose every committed event is in the entries.
    pub segments: Vec<u64>,
    /// Where the frames of the last covered segment end.
    pub frames_end: u64,
    pub gate_sets: Vec<(u32, Vec<u8>)>,
    strings: Vec<Arc<str>>,
    entries: Cursor<'a>,
    count: u64,
}

impl Checkpoint<'_> {
    /// Hands the entries (in sequence order, prev hashes zero) to `sink`
    /// in chunks of at most `chunk`.
    pub(crate) fn load_entries(
        &mut self,
        chunk: usize,
        mut sink: impl FnMut(Vec<IndexEntry>) -> Result<(), crate::store::StoreError>,
    ) -> Result<(), crate::store::StoreError> {
        let corrupt =
            |e: ShortRead| crate::store::StoreError::corrupt(0, format!("checkpoint entry: {}", e.0));
        let mut left = self.count;
        while left > 0 {
            let n = left.min(chunk as u64);
            let mut batch = Vec::with_capacity(n as usize);
            for _ in 0..n {
                batch.push(get_entry(&mut self.entries, &self.strings, None).map_err(corrupt)?);
            }
            sink(batch)?;
            left -= n;
        }
        if !self.entries.rest().is_empty() {
            return Err(crate::store::StoreError::corrupt(0, "checkpoint: trailing bytes"));
        }
        Ok(())
    }
}

/// Encodes a checkpoint of `entries` (all visible entries, in order).
pub(crate) fn encode(
    segments: &[u64],
    frames_end: u64,
    gate_sets: &[(u32, Vec<u8>)],
    entries: &[IndexEntry],
) -> Vec<u8> {
    let mut ids: HashMap<Arc<str>, u32> = HashMap::new();
    let mut strings: Vec<Arc<str>> = Vec::new();
    let mut refs = Vec::with_capacity(entries.len());
    for e in entries {
        let mut id_of = |s: &Arc<str>| {
            *ids.entry(Arc::clone(s)).or_insert_with(|| {
                strings.push(Arc::clone(s));
                (strings.len() - 1) as u32
            })
        };
        refs.push((id_of(e.coord.entity_arc()), id_of(e.coord.scope_arc())));
    }
    let mut body = Vec::with_capacity(64 + entries.len() * 80);
    body.put_varint(segments.len() as u64);
    for id in segments {
        body.put_varint(*id);
    }
    body.put_varint(frames_end);
    body.put_varint(strings.len() as u64);
    for s in &strings {
        body.put_str(s);
    }
    body.put_varint(gate_sets.len() as u64);
    for (id, bytes) in gate_sets {
        body.put_varint(u64::from(*id));
        body.put_varint(bytes.len() as u64);
        body.extend_from_slice(bytes);
    }
    body.put_varint(entries.len() as u64);
    for (e, r) in entries.iter().zip(refs) {
        put_entry(&mut body, e, r, true);
    }
    let mut out = Vec::with_capacity(PREAMBLE + body.len());
    out.extend_from_slice(MAGIC);
    out.put_u16(VERSION);
    out.put_u32(crc32fast::hash(&body));
    out.put_u64(body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// Decodes a checkpoint's header; `Err` says why it cannot be trusted.
pub(crate) fn decode<'a>(
    bytes: &'a [u8],
    intern: &dyn Fn(&str) -> Arc<str>,
) -> Result<Checkpoint<'a>, String> {
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
    decode_head(body, intern).map_err(short)
}

fn decode_head<'a>(body: &'a [u8], intern: &dyn Fn(&str) -> Arc<str>) -> Result<Checkpoint<'a>, ShortRead> {
    let mut c = Cursor::new(body);
    let n = c.varint("segment count")?;
    let segments = (0..n).map(|_| c.varint("segment id")).collect::<Result<Vec<_>, _>>()?;
    let frames_end = c.varint("frames end")?;
    let n = c.varint("string count")?;
    let strings = (0..n).map(|_| c.str("string").map(intern)).collect::<Result<Vec<_>, _>>()?;
    let n = c.varint("gate set count")?;
    let mut gate_sets = Vec::new();
    for _ in 0..n {
        let id = c.varint_u32("gate set id")?;
        let len = usize::try_from(c.varint("gate set length")?).map_err(|_| ShortRead("gate set"))?;
        gate_sets.push((id, c.take(len, "gate set")?.to_vec()));
    }
    let count = c.varint("entry count")?;
    let entries = Cursor::new(c.rest());
    Ok(Checkpoint { segments, frames_end, gate_sets, strings, entries, count })
}
