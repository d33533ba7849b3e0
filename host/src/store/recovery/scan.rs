//! The slow path: read a segment frame by frame, keeping only committed
//! units (single events, and batches whose commit record is present with
//! the announced count), and recompute their chain hashes.
//!
//! The first pass ([`first_pass`]) decodes frames and feeds the committed
//! events, in file order and in chunks, to a consumer: [`scan_segment`]
//! hashes them and collects index entries (the log reader); recovery's
//! [`super::stream`] hashes them on a second thread and inserts them into
//! the index as they come, so no segment-sized vector is ever built.

use crate::coordinate::Coordinate;
use crate::event::{EventKind, HashChain};
use crate::store::index::{DiskPos, IndexEntry, LoadedEntry};
use crate::store::segment::file::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::store::segment::frame::{self, EventRecord, FrameError, Record};
use crate::store::StoreError;
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

/// What a scan found in one segment besides its events.
#[derive(Default)]
pub(crate) struct ScanSummary {
    /// Gate-set records (id, body).
    pub gate_sets: Vec<(u32, Vec<u8>)>,
    /// End of the last committed unit: everything after it is discardable.
    pub valid_end: u64,
    /// Batches found without their commit (discarded).
    pub discarded_batches: u32,
    /// The segment's string table, by id.
    pub strings: Vec<(u32, Arc<str>)>,
    /// Committed events found.
    pub events: u64,
    /// Sequence of the first committed event, if any.
    pub first_seq: Option<u64>,
    /// Some event carries a stored hash (a compaction output's anchor or tombstone).
    pub stored_hashes: bool,
    /// End of the last byte that is not a zero written ahead: from
    /// `valid_end` to here, a crash left uncommitted or torn data.
    pub data_end: u64,
}

/// A whole scan's result, with its index entries (the log reader's form).
pub(crate) struct ScanResult {
    /// Committed events, in file order, with their chain hashes.
    pub entries: Vec<IndexEntry>,
    /// Gate-set records (id, body).
    pub gate_sets: Vec<(u32, Vec<u8>)>,
    /// Each entity's last event hash after this segment (for chaining the next).
    pub heads: HashMap<Arc<str>, [u8; 32]>,
}

/// One committed event as the first pass found it.
pub(crate) struct Scanned<'f> {
    pub record: EventRecord<'f>,
    pub disk_pos: DiskPos,
}

/// What the first pass hands its consumer, in file order.
pub(crate) enum Feed<'f> {
    /// A string record: its id and an own copy of its text (not a shared
    /// name, whose reference count another thread may be changing).
    Str(u32, Box<str>),
    /// Committed events, following those already fed.
    Events(Vec<Scanned<'f>>),
}

/// Events per [`Feed::Events`] message.
pub(crate) const FEED_CHUNK: usize = 1024;

/// A batch whose commit record has not been read yet. Its items are
/// held (not fed) from `start` on, and dropped if it never commits.
struct PendingBatch {
    batch_id: u64,
    count: u32,
    start: u64,
}

/// Decodes the frames of `bytes` (a whole segment; `frames_end` excludes
/// any footer) and feeds every committed event to `feed`. A frame that
/// fails to decode in a `tail` segment, with nothing decodable after it,
/// ends the scan there (a torn write); anywhere else it is an error naming
/// the segment and offset.
pub(crate) fn first_pass<'f>(
    bytes: &'f [u8],
    segment_id: u64,
    frames_end: usize,
    tail: bool,
    intern: &dyn Fn(&str) -> Arc<str>,
    feed: &mut dyn FnMut(Feed<'f>) -> Result<(), StoreError>,
) -> Result<ScanSummary, StoreError> {
    SegmentHeader::decode(bytes, segment_id)?;
    let frames = bytes.get(..frames_end).unwrap_or(bytes);
    let mut pass = FirstPass {
        summary: ScanSummary { valid_end: SEGMENT_HEADER_LEN as u64, ..ScanSummary::default() },
        strings: HashMap::default(),
        pending: None,
        held: Vec::with_capacity(FEED_CHUNK),
        held_from: 0,
        segment_id,
        intern,
        feed,
    };
    let mut pos = SEGMENT_HEADER_LEN;
    pass.summary.data_end = frames.len() as u64;
    while pos < frames.len() {
        let (record, len) = match frame::decode(&frames[pos..]) {
            Ok(ok) => ok,
            Err(e) if tail && is_torn_tail(frames, pos, &e) => {
                // The writer keeps zeros written ahead of its frames; a
                // length of zero can never start a frame.
                match frames[pos..].iter().rposition(|b| *b != 0) {
                    None => {
                        pass.summary.data_end = pos as u64;
                        tracing::debug!(
                            segment_id,
                            offset = pos,
                            "frames end where the zeros written ahead begin"
                        );
                    }
                    Some(last) => {
                        pass.summary.data_end = (pos + last + 1) as u64;
                        tracing::warn!(segment_id, offset = pos, error = %e, "torn tail after crash; cutting");
                    }
                }
                break;
            }
            Err(FrameError::Crc { .. }) => {
                return Err(StoreError::CrcMismatch { segment_id, offset: pos as u64 })
            }
            Err(e) => return Err(StoreError::corrupt(segment_id, format!("offset {pos}: {e}"))),
        };
        pass.record(record, pos, len)?;
        pos += len;
    }
    pass.finish()
}

/// The first pass's state between frames.
struct FirstPass<'f, 'a> {
    summary: ScanSummary,
    strings: HashMap<u32, Arc<str>>,
    pending: Option<PendingBatch>,
    /// Events not fed yet: the events numbered `held_from..` in this segment.
    held: Vec<Scanned<'f>>,
    held_from: u64,
    segment_id: u64,
    intern: &'a dyn Fn(&str) -> Arc<str>,
    feed: &'a mut dyn FnMut(Feed<'f>) -> Result<(), StoreError>,
}

impl<'f> FirstPass<'f, '_> {
    /// Events kept so far (fed or held).
    fn kept(&self) -> u64 {
        self.held_from + self.held.len() as u64
    }

    fn record(&mut self, record: Record<'f>, pos: usize, len: usize) -> Result<(), StoreError> {
        let end = (pos + len) as u64;
        match record {
            Record::Event(ev) => {
                let in_batch =
                    self.pending.as_ref().is_some_and(|b| self.kept() - b.start < u64::from(b.count));
                if !in_batch {
                    self.abandon_pending();
                }
                if !self.strings.contains_key(&ev.entity_ref) || !self.strings.contains_key(&ev.scope_ref) {
                    return Err(StoreError::corrupt(
                        self.segment_id,
                        format!("offset {pos}: unknown string ref"),
                    ));
                }
                self.summary.first_seq.get_or_insert(ev.global_sequence);
                self.summary.stored_hashes |= ev.prev_hash.is_some() || ev.sealed_hash.is_some();
                let disk_pos =
                    DiskPos { segment_id: self.segment_id, offset: pos as u64, length: len as u32 };
                self.held.push(Scanned { record: ev, disk_pos });
                if self.pending.is_none() {
                    self.summary.valid_end = end;
                }
            }
            Record::BatchBegin { batch_id, count } => {
                self.abandon_pending();
                self.pending = Some(PendingBatch { batch_id, count, start: self.kept() });
            }
            Record::BatchCommit { batch_id, count } => match self.pending.take() {
                Some(b)
                    if b.batch_id == batch_id
                        && b.count == count
                        && self.kept() - b.start == u64::from(count) =>
                {
                    self.summary.valid_end = end;
                }
                Some(b) => self.cut(b.start),
                None => self.summary.discarded_batches += 1,
            },
            Record::Str { id, value } => {
                self.strings.insert(id, (self.intern)(value));
                (self.feed)(Feed::Str(id, Box::from(value)))?;
                if self.pending.is_none() {
                    self.summary.valid_end = end;
                }
            }
            Record::GateSet { id, body } => {
                self.summary.gate_sets.push((id, body.to_vec()));
                if self.pending.is_none() {
                    self.summary.valid_end = end;
                }
            }
        }
        self.flush(FEED_CHUNK)
    }

    /// Drops a batch that never committed.
    fn abandon_pending(&mut self) {
        if let Some(b) = self.pending.take() {
            self.cut(b.start);
        }
    }

    /// Drops the events from `start` on: a batch that never committed,
    /// whose events are all still held.
    fn cut(&mut self, start: u64) {
        debug_assert!(start >= self.held_from, "an uncommitted batch is never fed");
        self.held.truncate(start.saturating_sub(self.held_from) as usize);
        self.summary.discarded_batches += 1;
    }

    /// Feeds the committed events held, once there are at least `min`.
    fn flush(&mut self, min: usize) -> Result<(), StoreError> {
        let committed = self.pending.as_ref().map_or(self.kept(), |b| b.start);
        let n = committed.saturating_sub(self.held_from) as usize;
        if n == 0 || n < min {
            return Ok(());
        }
        let rest = self.held.split_off(n.min(self.held.len()));
        let ready = std::mem::replace(&mut self.held, rest);
        self.held.reserve(FEED_CHUNK);
        self.held_from = committed;
        self.summary.events += ready.len() as u64;
        (self.feed)(Feed::Events(ready))
    }

    fn finish(mut self) -> Result<ScanSummary, StoreError> {
        self.abandon_pending();
        self.flush(1)?;
        let mut summary = self.summary;
        summary.strings = self.strings.into_iter().collect();
        summary.strings.sort_unstable_by_key(|(id, _)| *id);
        Ok(summary)
    }
}

/// Recomputes chain hashes in file order. An entity's chain is
/// sequential, so one hasher sees every committed event of the segment.
pub(crate) struct ChainHasher<'b> {
    segment_id: u64,
    /// The entity's last hash before this segment.
    before: &'b (dyn Fn(&str) -> [u8; 32] + Sync),
    names: HashMap<u32, Box<str>>,
    /// Each entity's last hash, by segment-local string id.
    heads: HashMap<u32, [u8; 32]>,
}

impl<'b> ChainHasher<'b> {
    pub(crate) fn new(segment_id: u64, before: &'b (dyn Fn(&str) -> [u8; 32] + Sync)) -> Self {
        Self { segment_id, before, names: HashMap::default(), heads: HashMap::default() }
    }

    pub(crate) fn learn(&mut self, id: u32, name: Box<str>) {
        self.names.insert(id, name);
    }

    /// The hash link of each event, in order.
    pub(crate) fn hash(&mut self, events: &[Scanned<'_>]) -> Result<Vec<HashChain>, StoreError> {
        let mut chains = Vec::with_capacity(events.len());
        for Scanned { record: ev, .. } in events {
            let missing = || StoreError::corrupt(self.segment_id, "event names an undefined string");
            let entity = self.names.get(&ev.entity_ref).ok_or_else(missing)?;
            let scope = self.names.get(&ev.scope_ref).ok_or_else(missing)?;
            let prev = match self.heads.get(&ev.entity_ref) {
                Some(h) => *h,
                None => (self.before)(entity),
            };
            // A compacted segment's anchor or tombstone carries its hashes.
            let (prev_hash, event_hash) = ev.resolved_hash(&prev, entity, scope);
            self.heads.insert(ev.entity_ref, event_hash);
            chains.push(HashChain { prev_hash, event_hash });
        }
        Ok(chains)
    }

    /// Each entity's last hash, by name.
    fn heads_by_name(self, strings: &[(u32, Arc<str>)]) -> HashMap<Arc<str>, [u8; 32]> {
        let names: HashMap<u32, &Arc<str>> = strings.iter().map(|(id, s)| (*id, s)).collect();
        self.heads
            .into_iter()
            .filter_map(|(id, hash)| names.get(&id).map(|n| (Arc::clone(n), hash)))
            .collect()
    }
}

/// Scans a segment on this thread and returns its entries with their
/// hashes (`before` gives each entity's hash ahead of this segment).
pub(crate) fn scan_segment(
    bytes: &[u8],
    segment_id: u64,
    frames_end: usize,
    tail: bool,
    intern: &dyn Fn(&str) -> Arc<str>,
    before: &(dyn Fn(&str) -> [u8; 32] + Sync),
) -> Result<ScanResult, StoreError> {
    let mut hasher = ChainHasher::new(segment_id, before);
    let mut names: HashMap<u32, Arc<str>> = HashMap::default();
    let mut entries = Vec::new();
    let summary = first_pass(bytes, segment_id, frames_end, tail, intern, &mut |feed| {
        match feed {
            Feed::Str(id, name) => {
                names.insert(id, intern(&name));
                hasher.learn(id, name);
            }
            Feed::Events(events) => {
                let chains = hasher.hash(&events)?;
                for (s, chain) in events.iter().zip(chains) {
                    let entry = entry_of(s, &names, chain)
                        .ok_or_else(|| StoreError::corrupt(segment_id, "event names an undefined string"))?;
                    entries.push(entry);
                }
            }
        }
        Ok(())
    })?;
    let heads = hasher.heads_by_name(&summary.strings);
    Ok(ScanResult { entries, gate_sets: summary.gate_sets, heads })
}

impl Scanned<'_> {
    /// The loader entry of this event: entity and scope as the string ids
    /// `entity` and `scope` (segment-local or store-wide, as the caller has them).
    pub(crate) fn loaded(&self, hash_chain: HashChain, entity: u32, scope: u32) -> LoadedEntry {
        let ev = &self.record;
        LoadedEntry {
            event_id: ev.event_id,
            correlation_id: ev.correlation_id,
            causation_id: ev.causation_id,
            kind: EventKind::from_raw(ev.kind),
            wall_ms: ev.wall_ms,
            clock: ev.clock,
            hash_chain,
            disk_pos: self.disk_pos,
            global_sequence: ev.global_sequence,
            flags: ev.flags,
            gate_set: ev.gate_set,
            entity,
            scope,
        }
    }
}

/// The index entry of a scanned event, its names taken from `names`.
fn entry_of(s: &Scanned<'_>, names: &HashMap<u32, Arc<str>>, hash_chain: HashChain) -> Option<IndexEntry> {
    let e = s.loaded(hash_chain, s.record.entity_ref, s.record.scope_ref);
    let coord = Coordinate::from_shared(Arc::clone(names.get(&e.entity)?), Arc::clone(names.get(&e.scope)?));
    Some(IndexEntry {
        event_id: e.event_id,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        coord,
        kind: e.kind,
        wall_ms: e.wall_ms,
        clock: e.clock,
        hash_chain: e.hash_chain,
        disk_pos: e.disk_pos,
        global_sequence: e.global_sequence,
        flags: e.flags,
        gate_set: e.gate_set,
    })
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
        let mut fed = Vec::new();
        let summary = first_pass(&bytes, 7, bytes.len(), tail, &intern, &mut |f| {
            if let Feed::Events(events) = f {
                fed.extend(events.iter().map(|s| s.record.global_sequence));
            }
            Ok(())
        })
        .expect("scans");
        let out = scan_segment(&bytes, 7, bytes.len(), tail, &intern, &before).expect("scans");
        let seqs: Vec<u64> = out.entries.iter().map(|e| e.global_sequence).collect();
        assert_eq!(seqs, fed, "collecting and feeding keep the same events");
        assert_eq!(summary.events, seqs.len() as u64);
        (seqs, summary.discarded_batches)
    }

    #[test]
    fn batches_larger_than_a_feed_chunk_are_held_whole_until_they_commit() {
        let begin = |id, count| Record::BatchBegin { batch_id: id, count };
        let commit = |id, count| Record::BatchCommit { batch_id: id, count };
        let big = FEED_CHUNK as u64 + 500;
        let mut records: Vec<Record<'_>> = (0..FEED_CHUNK as u64 + 3).map(event).collect();
        let base = FEED_CHUNK as u64 + 3;
        records.push(begin(base, big as u32));
        records.extend((base..base + big).map(event));
        records.push(commit(base, big as u32));
        // A second large batch that never commits: all of it is dropped.
        let dead = base + big;
        records.push(begin(dead, big as u32));
        records.extend((dead..dead + big - 1).map(event));
        let (seqs, discarded) = scanned_seqs(&records, true);
        assert_eq!(seqs, (0..dead).collect::<Vec<_>>());
        assert_eq!(discarded, 1);
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
