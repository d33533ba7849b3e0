//! The in-memory index and its visibility watermark.
//!
//! Entries live in an append-only log addressed by global sequence, so a
//! reader needs no lock to walk it. Secondary maps (by id, entity, scope,
//! kind) sit behind one `RwLock` that the writer holds only to insert a
//! unit's entries. Nothing is visible until the writer advances `visible`
//! past it with one `Release` store; every read filters `seq < visible`
//! (`Acquire`), so a batch is seen whole or not at all.

use crate::coordinate::{Coordinate, Region};
use crate::event::{EventKind, HashChain};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Where a frame sits on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DiskPos {
    /// Segment id.
    pub segment_id: u64,
    /// Byte offset of the frame's first byte.
    pub offset: u64,
    /// Length of the whole frame, header included.
    pub length: u32,
}

/// One committed event as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Event id.
    pub event_id: u128,
    /// Correlation id.
    pub correlation_id: u128,
    /// Causation id.
    pub causation_id: Option<u128>,
    /// Entity and scope.
    pub coord: Coordinate,
    /// Kind.
    pub kind: EventKind,
    /// Monotonic per-entity wall clock, in ms.
    pub wall_ms: u64,
    /// Per-entity clock (0, 1, 2, ...).
    pub clock: u32,
    /// Hash-chain link.
    pub hash_chain: HashChain,
    /// Frame location.
    pub disk_pos: DiskPos,
    /// Store-wide sequence (0, 1, 2, ...; dense, never reused).
    pub global_sequence: u64,
    /// Caller flags.
    pub(crate) flags: u8,
    /// Gate set that admitted the event, if any gates were installed.
    pub(crate) gate_set: Option<u32>,
}

impl IndexEntry {
    /// Whether the event belongs to a chain started by another event.
    pub fn is_correlated(&self) -> bool {
        self.correlation_id != self.event_id
    }

    /// Whether `id` directly caused this event.
    pub fn is_caused_by(&self, id: u128) -> bool {
        self.causation_id == Some(id)
    }

    /// Whether nothing caused this event.
    pub fn is_root_cause(&self) -> bool {
        self.causation_id.is_none()
    }

    /// The id of the gate set that admitted this event (`None` if no gate was installed).
    pub fn gate_set(&self) -> Option<u32> {
        self.gate_set
    }

    /// The caller flags the event was appended with.
    pub fn flags(&self) -> u8 {
        self.flags
    }
}

/// Ordering key of an entity's stream: wall clock, then clock, then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockKey {
    /// Wall clock in ms.
    pub wall_ms: u64,
    /// Per-entity clock.
    pub clock: u32,
    /// Event id.
    pub uuid: u128,
}

const FIRST_CHUNK: u64 = 1024;
const CHUNKS: usize = 40;

/// Append-only storage addressed by sequence: chunk `k` holds
/// `FIRST_CHUNK << k` slots, so chunks never move once allocated.
struct EntryLog {
    chunks: Vec<OnceLock<Box<[OnceLock<IndexEntry>]>>>,
}

impl EntryLog {
    fn new() -> Self {
        Self { chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect() }
    }

    fn locate(seq: u64) -> (usize, usize) {
        let j = seq / FIRST_CHUNK + 1;
        let k = 63 - j.leading_zeros() as u64;
        let start = FIRST_CHUNK * ((1u64 << k) - 1);
        (k as usize, (seq - start) as usize)
    }

    fn get(&self, seq: u64) -> Option<&IndexEntry> {
        let (k, i) = Self::locate(seq);
        self.chunks.get(k)?.get()?.get(i)?.get()
    }

    /// Stores `entry` at its sequence; false if the slot is taken or out of range.
    fn set(&self, entry: IndexEntry) -> bool {
        let (k, i) = Self::locate(entry.global_sequence);
        let Some(chunk) = self.chunks.get(k) else { return false };
        let slots = chunk.get_or_init(|| {
            let len = (FIRST_CHUNK << k) as usize;
            (0..len).map(|_| OnceLock::new()).collect()
        });
        slots.get(i).is_some_and(|slot| slot.set(entry).is_ok())
    }
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<u128, u64>,
    entities: BTreeMap<Arc<str>, Vec<u64>>,
    by_scope: HashMap<Arc<str>, Vec<u64>>,
    by_kind: HashMap<EventKind, Vec<u64>>,
    strings: HashSet<Arc<str>>,
}

/// The store's index. Shared by the writer (the only mutator) and readers.
pub(crate) struct StoreIndex {
    log: EntryLog,
    maps: RwLock<Maps>,
    /// Entries inserted (published or not); writer-owned.
    inserted: AtomicU64,
    /// Exclusive upper bound of visible sequences.
    visible: AtomicU64,
}

impl StoreIndex {
    pub(crate) fn new() -> Self {
        Self {
            log: EntryLog::new(),
            maps: RwLock::new(Maps::default()),
            inserted: AtomicU64::new(0),
            visible: AtomicU64::new(0),
        }
    }

    /// Returns the shared copy of `s`, allocating it once per store.
    pub(crate) fn intern(&self, s: &str) -> Arc<str> {
        if let Some(found) = self.maps.read().strings.get(s) {
            return Arc::clone(found);
        }
        let mut maps = self.maps.write();
        if let Some(found) = maps.strings.get(s) {
            return Arc::clone(found);
        }
        let shared: Arc<str> = Arc::from(s);
        maps.strings.insert(Arc::clone(&shared));
        shared
    }

    /// Inserts entries whose sequences continue the log exactly. They stay
    /// invisible until [`StoreIndex::publish`]. Fails (inserting nothing
    /// further) on a sequence gap or a duplicate id.
    pub(crate) fn insert(&self, entries: Vec<IndexEntry>) -> Result<(), String> {
        let mut maps = self.maps.write();
        for entry in entries {
            let seq = entry.global_sequence;
            let expected = self.inserted.load(Ordering::Relaxed);
            if seq != expected {
                return Err(format!("sequence {seq} inserted where {expected} was expected"));
            }
            if maps.by_id.contains_key(&entry.event_id) {
                return Err(format!("event id {:032x} appears twice", entry.event_id));
            }
            maps.by_id.insert(entry.event_id, seq);
            let entity = Arc::clone(entry.coord.entity_arc());
            maps.entities.entry(entity).or_default().push(seq);
            let scope = Arc::clone(entry.coord.scope_arc());
            maps.by_scope.entry(scope).or_default().push(seq);
            maps.by_kind.entry(entry.kind).or_default().push(seq);
            if !self.log.set(entry) {
                return Err(format!("log slot {seq} unavailable"));
            }
            self.inserted.store(seq + 1, Ordering::Release);
        }
        Ok(())
    }

    /// Makes every inserted entry visible.
    pub(crate) fn publish(&self) {
        let up_to = self.inserted.load(Ordering::Acquire);
        let previous = self.visible.swap(up_to, Ordering::AcqRel);
        debug_assert!(previous <= up_to, "the watermark never moves backwards");
    }

    /// Exclusive bound of visible sequences.
    pub(crate) fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Number of inserted entries (visible or not): the next sequence.
    pub(crate) fn inserted(&self) -> u64 {
        self.inserted.load(Ordering::Acquire)
    }

    /// The entry at `seq` if it is visible.
    pub(crate) fn get_visible(&self, seq: u64) -> Option<&IndexEntry> {
        if seq < self.visible() {
            self.log.get(seq)
        } else {
            None
        }
    }

    /// The entry at `seq`, visible or not (writer only).
    pub(crate) fn get_any(&self, seq: u64) -> Option<&IndexEntry> {
        self.log.get(seq)
    }

    /// The visible entry with this id.
    pub(crate) fn by_id(&self, id: u128) -> Option<&IndexEntry> {
        let seq = *self.maps.read().by_id.get(&id)?;
        self.get_visible(seq)
    }

    /// The entry with this id, visible or not (writer only).
    pub(crate) fn by_id_any(&self, id: u128) -> Option<&IndexEntry> {
        let seq = *self.maps.read().by_id.get(&id)?;
        self.log.get(seq)
    }

    /// The entity's newest entry, visible or not (writer only).
    pub(crate) fn latest_any(&self, entity: &str) -> Option<&IndexEntry> {
        let seq = *self.maps.read().entities.get(entity)?.last()?;
        self.log.get(seq)
    }

    /// Visible entries of exactly this entity, in order.
    pub(crate) fn stream(&self, entity: &str) -> Vec<IndexEntry> {
        let visible = self.visible();
        let seqs: Vec<u64> = {
            let maps = self.maps.read();
            let Some(seqs) = maps.entities.get(entity) else { return Vec::new() };
            let end = seqs.partition_point(|s| *s < visible);
            seqs[..end].to_vec()
        };
        seqs.iter().filter_map(|s| self.log.get(*s)).cloned().collect()
    }

    /// Visible entries in `region`, in global-sequence order.
    pub(crate) fn query(&self, region: &Region) -> Vec<IndexEntry> {
        let visible = self.visible();
        let candidates = self.candidates(region, visible);
        let keep = |e: &&IndexEntry| region.matches_full(e.coord.entity(), e.coord.scope(), e.kind, e.clock);
        match candidates {
            Some(seqs) => seqs.iter().filter_map(|s| self.log.get(*s)).filter(keep).cloned().collect(),
            None => (0..visible).filter_map(|s| self.log.get(s)).filter(keep).cloned().collect(),
        }
    }

    /// Sequences that may match `region`, sorted; `None` means "scan everything".
    fn candidates(&self, region: &Region, visible: u64) -> Option<Vec<u64>> {
        let maps = self.maps.read();
        let below = |seqs: &Vec<u64>| seqs[..seqs.partition_point(|s| *s < visible)].to_vec();
        if let Some(prefix) = &region.entity_prefix {
            let mut out: Vec<u64> = maps
                .entities
                .range::<str, _>((std::ops::Bound::Included(&**prefix), std::ops::Bound::Unbounded))
                .take_while(|(name, _)| name.starts_with(&**prefix))
                .flat_map(|(_, seqs)| below(seqs))
                .collect();
            out.sort_unstable();
            return Some(out);
        }
        if let Some(scope) = &region.scope {
            return Some(maps.by_scope.get(scope).map(below).unwrap_or_default());
        }
        if let Some(crate::coordinate::KindFilter::Exact(kind)) = region.fact {
            return Some(maps.by_kind.get(&kind).map(below).unwrap_or_default());
        }
        None
    }

    /// Up to `max` visible entries in `region` with sequence ≥ `from`;
    /// returns them and the sequence to resume from. O(entries examined).
    pub(crate) fn scan_from(&self, region: &Region, from: u64, max: usize) -> (Vec<IndexEntry>, u64) {
        let visible = self.visible();
        let mut out = Vec::new();
        let mut seq = from;
        while seq < visible && out.len() < max {
            if let Some(e) = self.log.get(seq) {
                if region.matches_full(e.coord.entity(), e.coord.scope(), e.kind, e.clock) {
                    out.push(e.clone());
                }
            }
            seq += 1;
        }
        (out, seq)
    }

    /// Number of distinct entities.
    pub(crate) fn entity_count(&self) -> usize {
        self.maps.read().entities.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, entity: &str) -> IndexEntry {
        IndexEntry {
            event_id: u128::from(seq) + 1000,
            correlation_id: u128::from(seq) + 1000,
            causation_id: None,
            coord: Coordinate::new(entity, "s").expect("valid"),
            kind: EventKind::DATA,
            wall_ms: 0,
            clock: 0,
            hash_chain: HashChain::default(),
            disk_pos: DiskPos::default(),
            global_sequence: seq,
            flags: 0,
            gate_set: None,
        }
    }

    #[test]
    fn chunk_addressing_is_contiguous() {
        let mut expected = (0usize, 0usize);
        for seq in 0..10_000u64 {
            let got = EntryLog::locate(seq);
            assert_eq!(got, expected, "seq {seq}");
            let len = (FIRST_CHUNK << expected.0) as usize;
            expected = if expected.1 + 1 == len { (expected.0 + 1, 0) } else { (expected.0, expected.1 + 1) };
        }
    }

    #[test]
    fn nothing_is_visible_before_publish() {
        let index = StoreIndex::new();
        index.insert(vec![entry(0, "a"), entry(1, "ab")]).expect("insert");
        assert!(index.query(&Region::all()).is_empty());
        assert!(index.by_id(1000).is_none());
        index.publish();
        assert_eq!(index.query(&Region::entity("a")).len(), 2);
        assert_eq!(index.stream("a").len(), 1);
    }

    #[test]
    fn gaps_and_duplicate_ids_are_refused() {
        let index = StoreIndex::new();
        assert!(index.insert(vec![entry(1, "a")]).is_err());
        index.insert(vec![entry(0, "a")]).expect("first");
        let mut dup = entry(1, "a");
        dup.event_id = 1000;
        assert!(index.insert(vec![dup]).is_err());
    }
}
