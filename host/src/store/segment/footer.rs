//! The segment footer ("SIDX"): a copy of the segment's index entries, written
//! when a segment is sealed (rotation or clean close) so the next open can
//! load the segment without reading its frames.
//!
//! Layout (little-endian):
//! `[body][u32 CRC32 of body][u64 footer start][u32 entry count]["SIDX"]`,
//! with body = `u8 version (2), varint string count, strings, varint gate-set
//! count, (varint id, varint length, bytes)*, varint entry count, varint
//! first sequence, entries` (entry layout: `entry_codec`). The last 16 bytes are the trailer.
//! Version 2 has consecutive sequences (entry i is `first + i`); version 3,
//! written for compacted segments whose sequences have gaps, puts `varint
//! gap` (sequence − previous sequence − 1) before each entry.

use super::codec::{Cursor, PutBytes};
use super::entry_codec::{get_entry, put_entry, DeltaState};
use crate::store::entry::{IndexEntry, LoadedEntry};
use crate::store::StoreError;
use std::sync::Arc;

/// Gate-set records: (id, body).
pub(crate) type GateSetRecords = Vec<(u32, Vec<u8>)>;

/// Magic closing every footer.
pub const FOOTER_MAGIC: &[u8; 4] = b"SIDX";
/// Bytes of the fixed trailer at the very end of the file.
pub const FOOTER_TRAILER_LEN: usize = 16;
/// Consecutive sequences.
const FOOTER_DENSE: u8 = 2;
/// Sequences with gaps (compacted segments).
const FOOTER_SPARSE: u8 = 3;

/// Encodes the footer for a segment that ends at `footer_start`. `refs`
/// gives an entry's (entity, scope) string-table references, or says why
/// it has none (a bug: every entry's strings were framed in the segment);
/// `anchored` says whether its previous hash must be stored (compaction
/// removed the event it chains from).
pub(crate) fn encode(
    footer_start: u64,
    strings: &[Arc<str>],
    gate_sets: &[(u32, Vec<u8>)],
    entries: &[IndexEntry],
    refs: impl Fn(&IndexEntry) -> Result<(u32, u32), String>,
    anchored: impl Fn(&IndexEntry) -> bool,
) -> Result<Vec<u8>, String> {
    let count = u32::try_from(entries.len()).map_err(|_| "more than 2^32 entries in one footer")?;
    let mut out = Vec::with_capacity(64 + entries.len() * 80);
    let dense = entries.windows(2).all(|w| w[1].global_sequence == w[0].global_sequence + 1);
    out.put_u8(if dense { FOOTER_DENSE } else { FOOTER_SPARSE });
    out.put_varint(strings.len() as u64);
    for s in strings {
        out.put_str(s);
    }
    out.put_varint(gate_sets.len() as u64);
    for (id, body) in gate_sets {
        out.put_varint(u64::from(*id));
        out.put_varint(body.len() as u64);
        out.extend_from_slice(body);
    }
    out.put_varint(entries.len() as u64);
    out.put_varint(entries.first().map_or(0, |e| e.global_sequence));
    let mut st = DeltaState::default();
    let mut next_seq = entries.first().map_or(0, |e| e.global_sequence);
    for e in entries {
        if !dense {
            out.put_varint(e.global_sequence - next_seq);
        }
        next_seq = e.global_sequence + 1;
        put_entry(&mut out, e, refs(e)?, anchored(e), &mut st);
    }
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out.put_u64(footer_start);
    out.put_u32(count);
    out.extend_from_slice(FOOTER_MAGIC);
    Ok(out)
}

/// Where the footer of a segment's bytes starts, if it has a trailer.
pub(crate) fn footer_start(bytes: &[u8]) -> Option<u64> {
    let trailer = bytes.len().checked_sub(FOOTER_TRAILER_LEN).and_then(|at| bytes.get(at..))?;
    if &trailer[12..16] != FOOTER_MAGIC {
        return None;
    }
    let mut start = [0u8; 8];
    start.copy_from_slice(&trailer[0..8]);
    Some(u64::from_le_bytes(start))
}

/// Gives the shared copy of a name and its store-wide string id.
pub(crate) type Resolver<'a> = dyn Fn(&str) -> Result<(Arc<str>, u32), String> + 'a;
/// Receives decoded entries (names as store-wide string ids).
pub(crate) type Sink<'a> = dyn FnMut(Vec<LoadedEntry>) -> Result<(), StoreError> + 'a;

/// Entries handed to the sink at a time while a footer is decoded (about
/// 0.8 MiB of decoded entries; a few are in flight at once).
const SINK_CHUNK: u64 = 4 * 1024;
/// Bytes of footer checked between two reports to `done_with`.
const CRC_WINDOW: usize = 4 << 20;

/// Decodes a footer. `region` holds the file's bytes from `start` (the
/// footer start named by the trailer) to its end. Entries (prev hashes zero
/// unless anchored)
/// go to `sink` in chunks, after the whole footer's CRC has been checked;
/// `reserve` is told the entry count first. `done_with(range)` says that
/// these bytes of `region` will not be read again in the current pass (the
/// CRC pass, then the decoding pass), so a mapped caller can drop them from
/// memory. Returns the gate-set records.
pub(crate) fn decode(
    region: &[u8],
    start: u64,
    segment_id: u64,
    intern: &Resolver<'_>,
    reserve: &mut dyn FnMut(u64),
    sink: &mut Sink<'_>,
    done_with: &mut dyn FnMut(std::ops::Range<usize>),
) -> Result<GateSetRecords, StoreError> {
    let corrupt = |d: &str| StoreError::corrupt(segment_id, format!("footer at {start}: {d}"));
    let body_len = region
        .len()
        .checked_sub(FOOTER_TRAILER_LEN + 4)
        .ok_or_else(|| corrupt("shorter than its trailer"))?;
    let body = &region[..body_len];
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&region[body_len..body_len + 4]);
    let mut hasher = crc32fast::Hasher::new();
    let mut checked = 0;
    for window in body.chunks(CRC_WINDOW) {
        hasher.update(window);
        done_with(checked..checked + window.len());
        checked += window.len();
    }
    if hasher.finalize() != u32::from_le_bytes(crc) {
        return Err(corrupt("CRC mismatch"));
    }
    let mut c = Cursor::new(body);
    let short = |e: super::codec::ShortRead| corrupt(e.0);
    let sparse = match c.u8("version").map_err(short)? {
        FOOTER_DENSE => false,
        FOOTER_SPARSE => true,
        _ => return Err(corrupt("unsupported version")),
    };
    let n_strings = c.varint("string count").map_err(short)?;
    let mut global_ids = Vec::new();
    for _ in 0..n_strings {
        let (_, id) = intern(c.str("string").map_err(short)?).map_err(|e| corrupt(&e))?;
        global_ids.push(id);
    }
    let n_sets = c.varint("gate set count").map_err(short)?;
    let mut gate_sets = Vec::new();
    for _ in 0..n_sets {
        let id = c.varint_u32("gate set id").map_err(short)?;
        let len = c.varint("gate set length").map_err(short)? as usize;
        gate_sets.push((id, c.take(len, "gate set").map_err(short)?.to_vec()));
    }
    let n_entries = c.varint("entry count").map_err(short)?;
    let first_seq = c.varint("first sequence").map_err(short)?;
    // Every entry takes at least one byte: a count beyond the bytes left is
    // corrupt, and nothing is reserved for entries that cannot be there.
    if n_entries > (body.len() - c.position()) as u64 {
        return Err(corrupt("entry count exceeds the footer"));
    }
    reserve(n_entries);
    let mut st = DeltaState::default();
    let mut next_seq = first_seq;
    let mut i = 0u64;
    let mut decoded = 0;
    while i < n_entries {
        let n = (n_entries - i).min(SINK_CHUNK);
        let mut chunk = Vec::with_capacity(n as usize);
        for _ in 0..n {
            if sparse {
                let gap = c.varint("sequence gap").map_err(short)?;
                next_seq = next_seq.checked_add(gap).ok_or_else(|| corrupt("sequence overflow"))?;
            }
            chunk.push(get_entry(&mut c, &global_ids, segment_id, next_seq, &mut st).map_err(short)?);
            next_seq = next_seq.checked_add(1).ok_or_else(|| corrupt("sequence overflow"))?;
        }
        sink(chunk)?;
        done_with(decoded..c.position());
        decoded = c.position();
        i += n;
    }
    if c.position() != body.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(gate_sets)
}

/// An entry's (entity, scope) ids in a segment's string table. Every
/// string is framed before the first event that uses it, so a miss is a
/// bug; it is reported, never written as a wrong id.
pub(crate) fn string_refs<S: std::hash::BuildHasher>(
    strings: &std::collections::HashMap<Arc<str>, u32, S>,
    e: &IndexEntry,
) -> Result<(u32, u32), String> {
    let id = |s: &Arc<str>| {
        strings.get(s).copied().ok_or_else(|| {
            format!("sequence {}: `{s}` is not in the segment's string table", e.global_sequence)
        })
    };
    Ok((id(e.coord.entity_arc())?, id(e.coord.scope_arc())?))
}
