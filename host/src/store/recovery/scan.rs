//! The slow path: read a segment frame by frame, keeping only committed
//! units (single events, and batches whose commit record is present with
//! the announced count).

use crate::coordinate::Coordinate;
use crate::event::{EventKind, HashChain};
use crate::store::index::{DiskPos, IndexEntry};
use crate::store::segment::file::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::store::segment::frame::{self, EventRecord, FrameError, Record};
use crate::store::StoreError;
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

/// What a frame scan found in one segment.
#[derive(Default)]
pub(crate) struct ScanResult {
    /// Committed events, in file order, prev hashes zero.
    pub entries: Vec<IndexEntry>,
    /// Gate-set records (id, body).
    pub gate_sets: Vec<(u32, Vec<u8>)>,
    /// End of the last committed unit: everything after it is discardable.
    pub valid_end: u64,
    /// Batches found without their commit (discarded).
    pub discarded_batches: u32,
    /// The segment's string table, by id.
    pub strings: Vec<(u32, Arc<str>)>,
    /// Each entity's last event hash after this segment (for chaining the next).
    pub heads: HashMap<Arc<str>, [u8; 32]>,
    /// Sequences of events whose frames carry their previous hash (compaction anchors).
    pub anchored: std::collections::HashSet<u64>,
    /// Each entry's (entity, scope) segment-local string ids.
    pub refs: Vec<(u32, u32)>,
    /// What hashing each entry needs beyond its index entry.
    hash_inputs: Vec<HashInput>,
}

/// The parts of an event's hash input that an index entry lacks, kept by
/// the first pass so the hashing pass need not decode the frame again.
#[derive(Default)]
struct HashInput {
    timestamp_us: i64,
    /// Where the payload starts in the frames.
    payload_at: usize,
    payload_len: usize,
    /// The frame carries a stored previous or event hash (a compacted
    /// segment's anchor or tombstone): decode it again to use them.
    stored_hashes: bool,
}

impl ScanResult {
    /// Drops the entries from `start` on (a batch that never committed).
    fn cut(&mut self, start: usize) {
        self.entries.truncate(start);
        self.refs.truncate(start);
        self.hash_inputs.truncate(start);
    }
}

/// A batch whose commit record has not been read yet. Its items are
/// already in the result from `start` on, and are cut off if it never commits.
struct PendingBatch {
    batch_id: u64,
    count: u32,
    start: usize,
}

impl PendingBatch {
    fn items(&self, entries: &[IndexEntry]) -> usize {
        entries.len().saturating_sub(self.start)
    }
}

/// Scans the frames of `bytes` (a whole segment; `frames_end` excludes any
/// footer). A frame that fails to decode in a `tail` segment, with nothing
/// decodable after it, ends the scan there (a torn write); anywhere else it
/// is an error naming the segment and offset.
/// Event hashes are not stored in frames; they are recomputed here, each
/// from its entity's previous hash (`before` gives the heads of what was
/// loaded ahead of this segment).
pub(crate) fn scan_segment(
    bytes: &[u8],
    segment_id: u64,
    frames_end: usize,
    tail: bool,
    intern: &dyn Fn(&str) -> Arc<str>,
    before: &(dyn Fn(&str) -> [u8; 32] + Sync),
) -> Result<ScanResult, StoreError> {
    SegmentHeader::decode(bytes, segment_id)?;
    let frames = bytes.get(..frames_end).unwrap_or(bytes);
    let mut out = ScanResult { valid_end: SEGMENT_HEADER_LEN as u64, ..ScanResult::default() };
    // Frames of 100-byte payloads take about 150 bytes: size the result once.
    out.entries.reserve(frames.len() / 128);
    let mut strings: HashMap<u32, Arc<str>> = HashMap::default();
    let mut pending: Option<PendingBatch> = None;
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < frames.len() {
        let (record, len) = match frame::decode(&frames[pos..]) {
            Ok(ok) => ok,
            Err(e) if tail && is_torn_tail(frames, pos, &e) => {
                tracing::warn!(segment_id, offset = pos, error = %e, "torn tail after crash; cutting");
                break;
            }
            Err(FrameError::Crc { .. }) => {
                return Err(StoreError::CrcMismatch { segment_id, offset: pos as u64 })
            }
            Err(e) => return Err(StoreError::corrupt(segment_id, format!("offset {pos}: {e}"))),
        };
        let end = (pos + len) as u64;
        let disk = DiskPos { segment_id, offset: pos as u64, length: len as u32 };
        match record {
            Record::Event(ev) => {
                let in_batch = pending.as_ref().is_some_and(|b| (b.items(&out.entries) as u32) < b.count);
                if !in_batch {
                    if let Some(b) = pending.take() {
                        out.cut(b.start);
                        out.discarded_batches += 1;
                    }
                }
                if ev.prev_hash.is_some() {
                    out.anchored.insert(ev.global_sequence);
                }
                let entry = entry_from_record(&ev, &strings, disk).ok_or_else(|| {
                    StoreError::corrupt(segment_id, format!("offset {pos}: unknown string ref"))
                })?;
                out.entries.push(entry);
                out.refs.push((ev.entity_ref, ev.scope_ref));
                out.hash_inputs.push(HashInput {
                    timestamp_us: ev.timestamp_us,
                    payload_at: (ev.payload.as_ptr() as usize).saturating_sub(frames.as_ptr() as usize),
                    payload_len: ev.payload.len(),
                    stored_hashes: ev.prev_hash.is_some() || ev.sealed_hash.is_some(),
                });
                if pending.is_none() {
                    out.valid_end = end;
                }
            }
            Record::BatchBegin { batch_id, count } => {
                if let Some(b) = pending.take() {
                    out.cut(b.start);
                    out.discarded_batches += 1;
                }
                pending = Some(PendingBatch { batch_id, count, start: out.entries.len() });
            }
            Record::BatchCommit { batch_id, count } => match pending.take() {
                Some(b)
                    if b.batch_id == batch_id
                        && b.count == count
                        && b.items(&out.entries) as u32 == count =>
                {
                    out.valid_end = end;
                }
                Some(b) => {
                    out.cut(b.start);
                    out.discarded_batches += 1;
                }
                None => out.discarded_batches += 1,
            },
            Record::Str { id, value } => {
                strings.insert(id, intern(value));
                if pending.is_none() {
                    out.valid_end = end;
                }
            }
            Record::GateSet { id, body } => {
                out.gate_sets.push((id, body.to_vec()));
                if pending.is_none() {
                    out.valid_end = end;
                }
            }
        }
        pos += len;
    }
    if let Some(b) = pending.take() {
        out.cut(b.start);
        out.discarded_batches += 1;
    }
    out.strings = strings.into_iter().collect();
    out.strings.sort_unstable_by_key(|(id, _)| *id);
    let inputs = std::mem::take(&mut out.hash_inputs);
    out.heads = chain_hashes(frames, segment_id, &mut out.entries, &inputs, before)?;
    Ok(out)
}

/// Recomputes the chain hash of every committed entry. An entity's chain
/// is sequential, but different entities are independent: with many
/// entries, two threads each take half of the entities. Returns each
/// entity's last hash.
fn chain_hashes(
    frames: &[u8],
    segment_id: u64,
    entries: &mut [IndexEntry],
    inputs: &[HashInput],
    before: &(dyn Fn(&str) -> [u8; 32] + Sync),
) -> Result<HashMap<Arc<str>, [u8; 32]>, StoreError> {
    const PARALLEL_FROM: usize = 4096;
    type Part = (Vec<(usize, [u8; 32], [u8; 32])>, HashMap<Arc<str>, [u8; 32]>);
    let shared: &[IndexEntry] = entries;
    let part = |which: u64, parts: u64| -> Result<Part, StoreError> {
        use std::hash::BuildHasher;
        let split = foldhash::fast::FixedState::with_seed(0x6261_7470_616b);
        let mut heads: HashMap<Arc<str>, [u8; 32]> = HashMap::default();
        let mut out = Vec::new();
        for (i, e) in shared.iter().enumerate() {
            let entity = e.coord.entity_arc();
            if parts > 1 && split.hash_one(&**entity) % parts != which {
                continue;
            }
            let prev = heads.get(entity).copied().unwrap_or_else(|| before(entity));
            let input = inputs.get(i).ok_or_else(|| StoreError::corrupt(segment_id, "hash input missing"))?;
            let (prev, hash) = if input.stored_hashes {
                let at = e.disk_pos.offset as usize;
                // The first pass checked this frame's CRC.
                let Ok((Record::Event(ev), _)) =
                    frame::decode_checked_before(frames.get(at..).unwrap_or(&[]))
                else {
                    return Err(StoreError::corrupt(
                        segment_id,
                        format!("offset {at}: event frame vanished"),
                    ));
                };
                ev.resolved_hash(&prev, entity, e.coord.scope())
            } else {
                let payload = frames
                    .get(input.payload_at..input.payload_at + input.payload_len)
                    .ok_or_else(|| StoreError::corrupt(segment_id, "payload outside the segment"))?;
                (prev, entry_hash(e, input.timestamp_us, &prev, payload))
            };
            // Both threads share the names: clone one only for an entity's first event.
            match heads.get_mut(entity) {
                Some(head) => *head = hash,
                None => {
                    heads.insert(Arc::clone(entity), hash);
                }
            }
            out.push((i, prev, hash));
        }
        Ok((out, heads))
    };
    let parts: Vec<Part> = if shared.len() < PARALLEL_FROM {
        vec![part(0, 1)?]
    } else {
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| part(1, 2));
            (part(0, 2), other.join())
        });
        vec![a?, b.map_err(|_| StoreError::corrupt(segment_id, "hashing thread panicked"))??]
    };
    let mut heads = HashMap::default();
    for (hashes, part_heads) in parts {
        for (i, prev_hash, event_hash) in hashes {
            if let Some(e) = entries.get_mut(i) {
                e.hash_chain = HashChain { prev_hash, event_hash };
            }
        }
        heads.extend(part_heads);
    }
    Ok(heads)
}

/// The chain hash of `e` (as the writer computed it) from its fields.
fn entry_hash(e: &IndexEntry, timestamp_us: i64, prev: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    let fields = crate::event::hash::HashedFields {
        event_id: e.event_id,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        entity: e.coord.entity(),
        scope: e.coord.scope(),
        kind: e.kind.as_raw(),
        flags: e.flags,
        clock: e.clock,
        wall_ms: e.wall_ms,
        timestamp_us,
        global_sequence: e.global_sequence,
    };
    crate::event::hash::event_hash(prev, &fields, payload)
}

/// A decode failure at `pos` is a torn tail when no complete frame follows it.
fn is_torn_tail(frames: &[u8], pos: usize, err: &FrameError) -> bool {
    let declared = match err {
        FrameError::Truncated | FrameError::BadLength(_) => return true,
        _ => frames
            .get(pos..pos + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .unwrap_or(0),
    };
    let next = pos + frame::FRAME_HEADER_LEN + declared;
    match frames.get(next..) {
        Some(rest) if !rest.is_empty() => frame::decode(rest).is_err(),
        _ => true,
    }
}

/// The index entry of an event frame; its hash is filled in by `chain_hashes`.
fn entry_from_record(
    ev: &EventRecord<'_>,
    strings: &HashMap<u32, Arc<str>>,
    disk_pos: DiskPos,
) -> Option<IndexEntry> {
    let entity = Arc::clone(strings.get(&ev.entity_ref)?);
    let scope = Arc::clone(strings.get(&ev.scope_ref)?);
    Some(IndexEntry {
        event_id: ev.event_id,
        correlation_id: ev.correlation_id,
        causation_id: ev.causation_id,
        coord: Coordinate::from_shared(entity, scope),
        kind: EventKind::from_raw(ev.kind),
        wall_ms: ev.wall_ms,
        clock: ev.clock,
        hash_chain: HashChain::default(),
        disk_pos,
        global_sequence: ev.global_sequence,
        flags: ev.flags,
        gate_set: ev.gate_set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment::frame::{encode, EventRecord};

    fn event(seq: u64) -> Record<'static> {
        Record::Event(EventRecord {
            flags: 0,
            kind: 0x1001,
            entity_ref: 0,
            scope_ref: 1,
            global_sequence: seq,
            clock: 0,
            timestamp_us: 0,
            wall_ms: 0,
            event_id: 1000 + u128::from(seq),
            correlation_id: 1000 + u128::from(seq),
            causation_id: None,
            gate_set: None,
            prev_hash: None,
            sealed_hash: None,
            payload: b"{}",
        })
    }

    /// A segment holding `records` after its header and two string records.
    fn segment(records: &[Record<'_>]) -> Vec<u8> {
        let mut out = SegmentHeader::new(7, 0).encode().to_vec();
        encode(&mut out, &Record::Str { id: 0, value: "e" });
        encode(&mut out, &Record::Str { id: 1, value: "s" });
        for r in records {
            encode(&mut out, r);
        }
        out
    }

    fn scanned_seqs(records: &[Record<'_>], tail: bool) -> (Vec<u64>, u32) {
        let bytes = segment(records);
        let intern = |s: &str| Arc::<str>::from(s);
        let before = |_: &str| [0u8; 32];
        let out = scan_segment(&bytes, 7, bytes.len(), tail, &intern, &before).expect("scans");
        (out.entries.iter().map(|e| e.global_sequence).collect(), out.discarded_batches)
    }

    #[test]
    fn only_committed_batches_are_kept_and_singles_never_join_a_dead_batch() {
        let begin = |id, count| Record::BatchBegin { batch_id: id, count };
        let commit = |id, count| Record::BatchCommit { batch_id: id, count };
        let records = [
            event(0),
            begin(1, 2),
            event(1),
            event(2),
            commit(1, 2),
            // A batch abandoned by a second BEGIN.
            begin(3, 2),
            event(3),
            begin(3, 1),
            event(3),
            commit(3, 1),
            // A batch whose count is reached without a COMMIT: the next event is a single.
            begin(4, 1),
            event(4),
            event(5),
            // A COMMIT that does not match.
            begin(6, 1),
            event(6),
            commit(99, 1),
            event(6),
            // Uncommitted at the end of the file.
            begin(7, 2),
            event(7),
        ];
        let (seqs, discarded) = scanned_seqs(&records, true);
        assert_eq!(seqs, vec![0, 1, 2, 3, 5, 6]);
        assert_eq!(discarded, 4);
    }
}
