//! Reading many events at once, for replays and compaction.
//!
//! Frames that sit close together in one segment are fetched with one
//! bounded read into a buffer each thread reuses. With many events, two
//! threads decode the frames and parse the JSON payloads, each filling its
//! own half of the caller's vector in place, so no half is copied after.
//!
//! A caller may hand in a vector that still holds an earlier replay's
//! events ([`super::ReplayScratch`]). Each old event is then dropped just
//! after its replacement is built: the allocator hands the freed chunks
//! straight back to the next parse, instead of the whole heap of JSON trees
//! being freed at once (which glibc may return to the kernel, so that the
//! next replay faults every page in again).

use super::{checked_record, header_of, json_in_place, SegmentReader};
use crate::coordinate::DagPosition;
use crate::event::{Event, EventHeader, EventKind};
use crate::store::index::{IndexEntry, IndexGen};
use crate::store::StoreError;
use parking_lot::Mutex;
use serde_json::Value;
use std::os::unix::fs::FileExt;

/// Below this many events one thread reads them all.
const PARALLEL_FROM: usize = 2048;
/// Events per unit of work handed to a thread.
const CHUNK: usize = 512;
/// Frames at most this far apart are fetched with one read.
const GAP: u64 = 64 * 1024;
/// Longest read of several frames: small enough that the reused buffer
/// stays in the allocator's heap (glibc maps larger blocks fresh, page by
/// page, on every allocation).
const MAX_RUN: u64 = 96 * 1024;

impl SegmentReader {
    /// The events behind `entries`, in order (as the index has them now).
    pub(crate) fn read_events(&self, entries: &[IndexEntry]) -> Result<Vec<Event<Value>>, StoreError> {
        let seqs: Vec<u64> = entries.iter().map(|e| e.global_sequence).collect();
        self.read_events_at(&seqs)
    }

    /// The events at these sequences, in order; sequences a compaction
    /// removed are skipped.
    pub(crate) fn read_events_at(&self, seqs: &[u64]) -> Result<Vec<Event<Value>>, StoreError> {
        let mut out = Vec::new();
        self.read_events_into(seqs, &mut out)?;
        Ok(out)
    }

    /// Replaces the contents of `out` with the events at `seqs`, in order,
    /// skipping sequences a compaction removed. A failed attempt waits out
    /// any compaction commit, forgets the cached files and tries once more;
    /// on error `out` holds no particular events.
    pub(crate) fn read_events_into(
        &self,
        seqs: &[u64],
        out: &mut Vec<Event<Value>>,
    ) -> Result<(), StoreError> {
        self.fill(seqs, out).or_else(|_| {
            drop(self.swap.read());
            self.forget_files();
            self.fill(seqs, out)
        })
    }

    fn fill(&self, seqs: &[u64], out: &mut Vec<Event<Value>>) -> Result<(), StoreError> {
        let gen = self.index.generation();
        let n = seqs.len();
        out.truncate(n);
        out.resize_with(n, placeholder);
        // Chunks of work, taken in order by whichever thread is free: a
        // helper that is slow to be scheduled takes fewer, never delays.
        let work = Mutex::new(seqs.chunks(CHUNK).zip(out.chunks_mut(CHUNK)).enumerate());
        let take_chunks = || -> Result<Vec<Shortfall>, StoreError> {
            let mut short = Vec::new();
            loop {
                let next = work.lock().next();
                let Some((k, (seqs, slots))) = next else { return Ok(short) };
                let filled = self.fill_part(&gen, seqs, slots)?;
                if filled < slots.len() {
                    short.push(Shortfall { from: k * CHUNK + filled, to: k * CHUNK + slots.len() });
                }
            }
        };
        let mut short = if n < PARALLEL_FROM {
            take_chunks()?
        } else {
            let (mine, theirs) = std::thread::scope(|s| {
                let theirs = s.spawn(take_chunks);
                (take_chunks(), theirs.join())
            });
            let mut short = theirs.map_err(|_| std::io::Error::other("a reader thread panicked"))??;
            short.extend(mine?);
            short
        };
        // Close the gaps that sequences removed by a compaction left, last first.
        short.sort_unstable_by_key(|gap| std::cmp::Reverse(gap.from));
        for gap in short {
            out.drain(gap.from..gap.to);
        }
        Ok(())
    }

    /// Overwrites `slots` from the start with the events at `seqs` (as
    /// many slots as there are sequences); returns how many it filled,
    /// fewer when a compaction removed some of the sequences.
    fn fill_part(
        &self,
        gen: &IndexGen,
        seqs: &[u64],
        slots: &mut [Event<Value>],
    ) -> Result<usize, StoreError> {
        let mut buf = Vec::new();
        let mut filled = 0;
        let mut i = 0;
        while i < seqs.len() {
            let Some(first) = gen.disk_pos(seqs[i]) else {
                i += 1;
                continue;
            };
            let mut end = first.offset + u64::from(first.length);
            let mut j = i + 1;
            while let Some(p) = seqs.get(j).and_then(|s| gen.disk_pos(*s)) {
                let p_end = p.offset + u64::from(p.length);
                if p.segment_id != first.segment_id
                    || p.offset < end
                    || p.offset - end > GAP
                    || p_end - first.offset > MAX_RUN
                {
                    break;
                }
                end = p_end;
                j += 1;
            }
            let len = (end - first.offset) as usize;
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let buf = &mut buf[..len];
            self.file(first.segment_id)?.read_exact_at(buf, first.offset)?;
            for &seq in &seqs[i..j] {
                let target = gen
                    .read_target(seq)
                    .ok_or_else(|| StoreError::corrupt(first.segment_id, "event moved while being read"))?;
                let pos = target.disk_pos;
                let from = usize::try_from(pos.offset.wrapping_sub(first.offset)).unwrap_or(usize::MAX);
                let frame = buf.get(from..from.saturating_add(pos.length as usize)).unwrap_or(&[]);
                let ev = checked_record(frame, target.event_id, seq, pos)?;
                let slot =
                    slots.get_mut(filled).ok_or_else(|| std::io::Error::other("more events than slots"))?;
                json_in_place::parse_into(&mut slot.payload, ev.payload)?;
                slot.header = header_of(target.kind, &target.hash_chain, &ev);
                slot.hash_chain = Some(target.hash_chain);
                filled += 1;
            }
            i = j;
        }
        Ok(filled)
    }
}

/// Slots `from..to` that a chunk left unfilled.
struct Shortfall {
    from: usize,
    to: usize,
}

/// What an unfilled slot holds until an event overwrites it.
pub(super) fn placeholder() -> Event<Value> {
    let header = EventHeader {
        event_id: 0,
        correlation_id: 0,
        causation_id: None,
        timestamp_us: 0,
        position: DagPosition::root(),
        payload_size: 0,
        event_kind: EventKind::from_raw(0),
        flags: 0,
        content_hash: [0; 32],
    };
    Event { header, payload: Value::Null, hash_chain: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn sequences_a_compaction_removed_leave_no_gaps() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store =
            Store::open(StoreConfig::new(tmp.path()).with_segment_max_bytes(32 * 1024)).expect("open");
        let c = Coordinate::new("e", "s").expect("coord");
        for i in 0..6000u64 {
            store.append(&c, EventKind::DATA, &serde_json::json!({"i": i, "tag": "x"})).expect("append");
        }
        let before = store.index.stream_seqs("e");
        let keep = |e: &StoredEvent<Value>| e.event.payload["i"].as_u64().is_some_and(|i| i % 3 == 0);
        store
            .compact(&CompactionConfig {
                strategy: CompactionStrategy::Retention(Box::new(keep)),
                min_segments: 2,
            })
            .expect("compact");
        let gen = store.index.generation();
        let expected: Vec<u128> = before.iter().filter_map(|s| gen.get_any(*s)).map(|e| e.event_id).collect();
        assert!(expected.len() + 1000 < before.len(), "the compaction removed events");
        assert!(expected.len() > PARALLEL_FROM, "two threads read");
        // Into a vector that still holds other events, as a kept one does.
        let mut out = store.reader.read_events_at(&before[before.len() - 50..]).expect("read");
        store.reader.read_events_into(&before, &mut out).expect("read");
        let got: Vec<u128> = out.iter().map(|e| e.header.event_id).collect();
        assert_eq!(got, expected);
        for e in out.iter().step_by(97) {
            let stored = store.get(e.header.event_id).expect("get");
            assert_eq!(stored.event.payload, e.payload);
            assert_eq!(stored.event.header, e.header);
        }
    }
}
