//! The compact encoding of the index entries of one segment, used by its
//! footer. Entries are consecutive in sequence, so the sequence is implicit
//! (`first + i`); wall time and frame offset are stored as deltas from the
//! previous entry; `prev_hash` is not stored (loading in order rebuilds it)
//! except where compaction removed the entity's previous event.

use super::codec::{Cursor, PutBytes, ShortRead};
use crate::event::{EventKind, HashChain};
use crate::store::entry::{DiskPos, IndexEntry, LoadedEntry};

const HAS_CAUSATION: u8 = 0x01;
const HAS_CORRELATION: u8 = 0x02;
const HAS_GATE_SET: u8 = 0x04;
/// The entry's previous hash is stored: compaction removed its predecessor.
const HAS_PREV_HASH: u8 = 0x08;

/// The running values deltas are taken against.
#[derive(Default)]
pub(crate) struct DeltaState {
    wall_ms: u64,
    frame_end: u64,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `e` with its strings given as table references; `anchored`
/// stores its previous hash too (compaction removed its predecessor).
pub(crate) fn put_entry(
    out: &mut Vec<u8>,
    e: &IndexEntry,
    refs: (u32, u32),
    anchored: bool,
    st: &mut DeltaState,
) {
    let mut present = 0u8;
    if e.causation_id.is_some() {
        present |= HAS_CAUSATION;
    }
    if e.correlation_id != e.event_id {
        present |= HAS_CORRELATION;
    }
    if e.gate_set.is_some() {
        present |= HAS_GATE_SET;
    }
    if anchored {
        present |= HAS_PREV_HASH;
    }
    out.put_u128(e.event_id);
    out.put_u8(present);
    if present & HAS_CORRELATION != 0 {
        out.put_u128(e.correlation_id);
    }
    if let Some(c) = e.causation_id {
        out.put_u128(c);
    }
    if let Some(g) = e.gate_set {
        out.put_varint(u64::from(g));
    }
    out.put_u16(e.kind.as_raw());
    out.put_u8(e.flags);
    out.put_varint(u64::from(refs.0));
    out.put_varint(u64::from(refs.1));
    out.put_varint(u64::from(e.clock));
    out.put_varint(zigzag(e.wall_ms.wrapping_sub(st.wall_ms) as i64));
    out.extend_from_slice(&e.hash_chain.event_hash);
    if anchored {
        out.extend_from_slice(&e.hash_chain.prev_hash);
    }
    out.put_varint(zigzag(e.disk_pos.offset.wrapping_sub(st.frame_end) as i64));
    out.put_varint(u64::from(e.disk_pos.length));
    st.wall_ms = e.wall_ms;
    st.frame_end = e.disk_pos.offset + u64::from(e.disk_pos.length);
}

/// Reads one entry written by [`put_entry`]; `ids` maps the footer's
/// string-table references to store-wide string ids.
pub(crate) fn get_entry(
    c: &mut Cursor<'_>,
    ids: &[u32],
    segment_id: u64,
    global_sequence: u64,
    st: &mut DeltaState,
) -> Result<LoadedEntry, ShortRead> {
    let event_id = c.u128("event id")?;
    let present = c.u8("presence")?;
    let correlation_id = if present & HAS_CORRELATION != 0 { c.u128("correlation")? } else { event_id };
    let causation_id = if present & HAS_CAUSATION != 0 { Some(c.u128("causation")?) } else { None };
    let gate_set = if present & HAS_GATE_SET != 0 { Some(c.varint_u32("gate set")?) } else { None };
    let kind = EventKind::from_raw(c.u16("kind")?);
    let flags = c.u8("flags")?;
    let entity = lookup(ids, c.varint("entity ref")?)?;
    let scope = lookup(ids, c.varint("scope ref")?)?;
    let clock = c.varint_u32("clock")?;
    let wall_ms = st.wall_ms.wrapping_add(unzigzag(c.varint("wall ms")?) as u64);
    let event_hash = c.hash("event hash")?;
    let prev_hash = if present & HAS_PREV_HASH != 0 { c.hash("prev hash")? } else { [0u8; 32] };
    let offset = st.frame_end.wrapping_add(unzigzag(c.varint("offset")?) as u64);
    let length = c.varint_u32("length")?;
    st.wall_ms = wall_ms;
    st.frame_end = offset.checked_add(u64::from(length)).ok_or(ShortRead("frame offset"))?;
    Ok(LoadedEntry {
        event_id,
        correlation_id,
        causation_id,
        kind,
        wall_ms,
        clock,
        hash_chain: HashChain { prev_hash, event_hash },
        disk_pos: DiskPos { segment_id, offset, length },
        global_sequence,
        flags,
        gate_set,
        entity,
        scope,
    })
}

fn lookup(ids: &[u32], r: u64) -> Result<u32, ShortRead> {
    let i = usize::try_from(r).map_err(|_| ShortRead("string ref"))?;
    ids.get(i).copied().ok_or(ShortRead("string ref out of range"))
}
