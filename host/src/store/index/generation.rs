//! One generation of the index: the entry log, the string table and the
//! secondary maps, and every lookup over them.

use super::append_log::AppendLog;
use super::id_runs::{self, IdRun, RunPage};
use super::pos_list::{PageStore, PosList};
use super::slot_log::{Extra, Id, LogSettings, Slot, SlotLog};
use crate::coordinate::{Coordinate, KindFilter, Region};
use crate::event::{EventKind, HashChain};
use crate::store::entry::{DiskPos, EntityHead, IndexEntry, LoadedEntry, ReadTarget};
use hashbrown::HashTable;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// `prev` of an entity's first event.
pub(super) const NO_SEQ: u32 = u32::MAX;
const HAS_CAUSATION: u8 = 0x01;
const HAS_GATE_SET: u8 = 0x02;
const HAS_CORRELATION: u8 = 0x04;
/// The entry's previous hash is not its predecessor's (compaction removed that event).
const HAS_ANCHOR: u8 = 0x08;
/// Strings per chunk of the string table.
const STRING_CHUNK: usize = 16 * 1024;
/// Chunks of the string table: 2^28 distinct entity and scope names.
pub(super) const STRING_CHUNKS: usize = (1 << 28) / STRING_CHUNK;

pub(super) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The maps behind the index's one lock (held only to insert or to copy out ids).
pub(super) struct Maps {
    /// Positions whose ids rose above every earlier id, so this list is
    /// sorted by id and binary-searchable (UUIDv7 ids nearly always rise).
    /// Keyed by id: a search narrows to one block of 64 entries before it
    /// reads any slot.
    pub(super) rising: PosList,
    /// The last position pushed on `rising` here, with its id: an insert
    /// compares its id with that one without reading the slot. Trusted
    /// only while it matches `rising`'s last position.
    pub(super) top: Option<(u32, u128)>,
    /// Positions of the newest other ids (idempotency keys, clock steps
    /// back), by id hash; the spilling thread moves them to `runs` once
    /// there are [`IndexGen::id_run_len`] of them.
    pub(super) by_id: HashTable<u32>,
    /// The older other ids, in sorted runs in the slot file, oldest first
    /// (see `id_runs`). Each id is in `by_id` or in one run, never both.
    pub(super) runs: Vec<Arc<IdRun>>,
    pub(super) string_ids: FastMap<Arc<str>, u32>,
    pub(super) entity_names: BTreeMap<Arc<str>, u32>,
    /// Newest position of each entity, by string id (`NO_SEQ`: none, or a scope name).
    pub(super) heads: Vec<u32>,
    pub(super) by_scope: FastMap<u32, PosList>,
    pub(super) by_kind: FastMap<u16, PosList>,
    /// Correlation ids that differ from the event id, by position.
    pub(super) correlations: FastMap<u32, u128>,
    /// Causation ids, by position.
    pub(super) causations: FastMap<u32, u128>,
    /// Previous hashes of anchored entries, by position.
    pub(super) anchors: FastMap<u32, [u8; 32]>,
    /// Lists with pages due for the slot file (see `PosList::newly_due`).
    pub(super) due: Vec<ListId>,
    /// Ids the writer looked up and did not find, none inserted since
    /// (distinct, at most `ABSENT_HINTS`): an insert of one of them skips
    /// the duplicate search it would repeat. Every insert removes its id.
    pub(super) absent: std::collections::HashSet<u128, foldhash::fast::RandomState>,
}

/// The most ids [`Maps::absent`] holds (a batch's worth and more); past
/// it, the hints are dropped and inserts search as without them.
const ABSENT_HINTS: usize = 1024;

/// One of the generation's position lists.
#[derive(Clone, Copy)]
pub(super) enum ListId {
    Rising,
    Scope(u32),
    Kind(u16),
}

impl Maps {
    fn list_mut(&mut self, id: ListId) -> Option<&mut PosList> {
        match id {
            ListId::Rising => Some(&mut self.rising),
            ListId::Scope(s) => self.by_scope.get_mut(&s),
            ListId::Kind(k) => self.by_kind.get_mut(&k),
        }
    }

    fn list(&self, id: ListId) -> Option<&PosList> {
        match id {
            ListId::Rising => Some(&self.rising),
            ListId::Scope(s) => self.by_scope.get(&s),
            ListId::Kind(k) => self.by_kind.get(&k),
        }
    }
}

/// One generation of the index (see the module docs).
pub(crate) struct IndexGen {
    /// Unique among the generations of this process: what a decoded-event
    /// cache tags its entries with.
    pub(super) serial: u64,
    pub(super) log: SlotLog,
    /// How `log` was made (a compaction makes its generation the same way).
    pub(super) settings: LogSettings,
    pub(super) strings: AppendLog<Arc<str>, STRING_CHUNK>,
    pub(super) maps: RwLock<Maps>,
    pub(super) ids: foldhash::fast::RandomState,
    /// Entries inserted (published or not); writer-owned.
    pub(super) inserted: AtomicU64,
    /// Exclusive upper bound of visible sequences.
    pub(super) visible: AtomicU64,
    /// Entries inserted (fewer than `inserted` where compaction removed some).
    pub(super) entries: AtomicU64,
    /// Entries visible as of the last publish.
    pub(super) visible_entries: AtomicU64,
    /// Log chunks `0..ahead` are allocated or being allocated in advance.
    pub(super) ahead: AtomicUsize,
    /// Log chunks `0..spilled_below` are in the scratch file (or being
    /// written there by the one spilling thread).
    pub(super) spilled_below: AtomicUsize,
    /// Some id runs are due to merge (see [`IndexGen::merge_runs`]).
    pub(super) merge_wanted: AtomicBool,
    /// The generation is being dropped or replaced: a merge gives up.
    pub(super) retiring: AtomicBool,
}

impl IndexGen {
    /// An empty generation, every chunk kept in memory.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_settings(&LogSettings::in_memory())
    }

    /// An empty generation whose entry log follows `settings`.
    pub(crate) fn with_settings(settings: &LogSettings) -> Self {
        static SERIALS: AtomicU64 = AtomicU64::new(0);
        Self {
            serial: SERIALS.fetch_add(1, Ordering::Relaxed),
            log: SlotLog::new(settings),
            settings: settings.clone(),
            strings: AppendLog::new(STRING_CHUNKS),
            maps: RwLock::new(Maps {
                rising: PosList::keyed(),
                top: None,
                by_id: HashTable::new(),
                runs: Vec::new(),
                string_ids: FastMap::default(),
                entity_names: BTreeMap::new(),
                heads: Vec::new(),
                by_scope: FastMap::default(),
                by_kind: FastMap::default(),
                correlations: FastMap::default(),
                causations: FastMap::default(),
                anchors: FastMap::default(),
                due: Vec::new(),
                absent: Default::default(),
            }),
            ids: foldhash::fast::RandomState::default(),
            inserted: AtomicU64::new(0),
            visible: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            visible_entries: AtomicU64::new(0),
            ahead: AtomicUsize::new(0),
            spilled_below: AtomicUsize::new(0),
            merge_wanted: AtomicBool::new(false),
            retiring: AtomicBool::new(false),
        }
    }

    /// The log chunk the next inserts need soon: the current one, or the
    /// next once the current is half full.
    /// Allocates log chunk `k` now (see [`super::StoreIndex::prepare_ahead`]).
    pub(super) fn prepare_chunk(&self, k: usize) {
        self.log.prepare(k);
    }

    /// Log chunks below this one may go to the scratch file: every slot
    /// of them is set for good, and the two newest chunks stay in memory.
    pub(super) fn spillable_below(&self) -> usize {
        if !self.log.spills() {
            return 0;
        }
        ((self.inserted.load(Ordering::Acquire) / self.log.chunk_len()) as usize).saturating_sub(1)
    }

    /// Writes every spillable chunk not yet written to the scratch file
    /// (one caller at a time: the index's spilling thread, or a loader
    /// that owns this generation alone).
    pub(crate) fn spill_ready(&self) {
        let below = self.spillable_below();
        let from = self.spilled_below.load(Ordering::Acquire);
        for k in from..below {
            let extras = self.extras_in_chunk(k);
            if self.log.spill(k, &extras) && !extras.is_empty() {
                // The chunk's extras are published in the scratch file
                // before they leave the maps, so a reader that misses
                // them here finds them there.
                let mut maps = self.maps.write();
                for (at, _) in &extras {
                    let seq = (k as u64 * self.log.chunk_len()) as u32 + at;
                    maps.correlations.remove(&seq);
                    maps.causations.remove(&seq);
                    maps.anchors.remove(&seq);
                }
            }
        }
        self.spilled_below.fetch_max(below, Ordering::AcqRel);
        self.spill_lists();
        self.spill_ids();
    }

    /// Other ids the hash table holds before they go to the slot file as
    /// one run: two chunks' worth.
    pub(super) fn id_run_len(&self) -> usize {
        2 * self.log.chunk_len() as usize
    }

    /// Moves the hash table's ids to the slot file as one run of level 0,
    /// once it holds [`IndexGen::id_run_len`] of them. The positions are
    /// copied under the read lock, their ids read and the run written with
    /// no lock held, and the ids leave the table in the write-locked step
    /// that adds the run; the writer meanwhile only adds other ids, which
    /// stay in the table. Without a working slot file they all stay.
    fn spill_ids(&self) {
        if !self.log.spills() {
            return;
        }
        let positions: Vec<u32> = {
            let maps = self.maps.read();
            if maps.by_id.len() < self.id_run_len() {
                return;
            }
            maps.by_id.iter().copied().collect()
        };
        // In position order, so slots already in the slot file are read a
        // block at a time, not one `pread` per id.
        let mut positions = positions;
        positions.sort_unstable();
        let mut records: Vec<(u128, u32)> = positions.iter().map(|at| (self.id_at(*at), *at)).collect();
        if records.iter().any(|(id, _)| *id == 0) {
            return; // a lost slot read, which also stops the writer
        }
        records.sort_unstable();
        let count = records.len() as u64;
        let Some(run) = id_runs::write_run(&self.log, records.iter().map(|r| Some(*r)), count, 0, &|| false)
        else {
            return;
        };
        let mut maps = self.maps.write();
        for (id, at) in &records {
            if let Ok(entry) = maps.by_id.find_entry(self.hash_id(*id), |s| s == at) {
                entry.remove();
            }
        }
        maps.runs.push(Arc::new(run));
        if id_runs::due_merge(&maps.runs).is_some() {
            self.merge_wanted.store(true, Ordering::Release);
        }
    }

    /// Merges id runs while some are due (one caller at a time: the
    /// index's merging thread). Each merge reads and writes with no lock
    /// held and swaps the merged run in for its inputs under the write
    /// lock; only this thread removes runs, so the inputs are still where
    /// they were. Gives up when the generation retires or a page cannot
    /// be read or written, leaving the inputs in place.
    pub(crate) fn merge_runs(&self) {
        self.merge_wanted.store(false, Ordering::Release);
        let stop = || self.retiring.load(Ordering::Acquire);
        while !stop() {
            let inputs: Vec<Arc<IdRun>> = {
                let maps = self.maps.read();
                let Some(due) = id_runs::due_merge(&maps.runs) else { return };
                maps.runs.get(due).map(<[_]>::to_vec).unwrap_or_default()
            };
            let Some(merged) = id_runs::merge(&self.log, &inputs, &stop) else { return };
            let mut maps = self.maps.write();
            let at = maps.runs.iter().position(|r| inputs.first().is_some_and(|i| Arc::ptr_eq(r, i)));
            let Some(at) = at else { return };
            let still = maps
                .runs
                .get(at..at + inputs.len())
                .is_some_and(|now| now.iter().zip(&inputs).all(|(a, b)| Arc::ptr_eq(a, b)));
            if !still {
                return;
            }
            maps.runs.splice(at..at + inputs.len(), [Arc::new(merged)]);
        }
    }

    /// Whether id runs are due to merge.
    pub(crate) fn merge_wanted(&self) -> bool {
        self.merge_wanted.load(Ordering::Acquire)
    }

    /// Tells a running merge to give up (the generation is being dropped
    /// or replaced).
    pub(crate) fn retire(&self) {
        self.retiring.store(true, Ordering::Release);
    }

    /// Moves the due pages of every due position list to the slot file.
    /// A page's blocks are copied under the read lock, written with no
    /// lock held, and replaced by the page's summary under the write lock;
    /// meanwhile the writer only adds newer blocks, so the copy stays
    /// exact. Without a working slot file the lists keep their marks and
    /// stay in memory whole.
    fn spill_lists(&self) {
        let due = std::mem::take(&mut self.maps.write().due);
        if !self.log.spills() {
            return;
        }
        for id in due {
            loop {
                let page = self.maps.read().list(id).and_then(PosList::oldest_page);
                let Some((bytes, page)) = page else { break };
                let Some(at) = self.log.write_page(&bytes) else { return };
                let mut maps = self.maps.write();
                if !maps.list_mut(id).is_some_and(|l| l.page_written(page, at)) {
                    break;
                }
            }
            if let Some(list) = self.maps.write().list_mut(id) {
                list.clear_due();
            }
        }
    }

    /// The side maps' entries for chunk `k`, by position in the chunk, sorted.
    fn extras_in_chunk(&self, k: usize) -> Vec<(u32, Extra)> {
        let len = self.log.chunk_len();
        let (from, to) = (k as u64 * len, (k as u64 + 1) * len);
        let in_chunk = |seq: &u32| (from..to).contains(&u64::from(*seq));
        let maps = self.maps.read();
        let mut found: Vec<u32> = maps
            .correlations
            .keys()
            .chain(maps.causations.keys())
            .chain(maps.anchors.keys())
            .copied()
            .filter(in_chunk)
            .collect();
        found.sort_unstable();
        found.dedup();
        found
            .into_iter()
            .map(|seq| ((u64::from(seq) - from) as u32, Self::extra_locked(&maps, seq).unwrap_or_default()))
            .collect()
    }

    /// The extras of `seq` held in the side maps, if it has any there.
    fn extra_locked(maps: &Maps, seq: u32) -> Option<Extra> {
        let extra = Extra {
            correlation: maps.correlations.get(&seq).copied(),
            causation: maps.causations.get(&seq).copied(),
            anchor: maps.anchors.get(&seq).copied(),
        };
        (extra != Extra::default()).then_some(extra)
    }

    /// The extras of `seq`: from the side maps while its chunk is in
    /// memory, else from the scratch file. Only called for a slot whose
    /// bits say it has some, so `None` means they were lost (a failed
    /// scratch read, which also stops the writer).
    fn extra(&self, seq: u64) -> Option<Extra> {
        let at = u32::try_from(seq).ok()?;
        if let Some(extra) = Self::extra_locked(&self.maps.read(), at) {
            return Some(extra);
        }
        self.log.extra(seq)
    }

    /// Positions whose slots are in the scratch file (empty ones included).
    pub(crate) fn entries_on_disk(&self) -> u64 {
        let below = self.spilled_below.load(Ordering::Acquire);
        (0..below).filter(|k| self.log.is_spilled(*k)).count() as u64 * self.log.chunk_len()
    }

    /// Values of the position lists kept in pages in the slot file.
    pub(crate) fn list_values_on_disk(&self) -> u64 {
        let maps = self.maps.read();
        let lists = std::iter::once(&maps.rising).chain(maps.by_scope.values()).chain(maps.by_kind.values());
        lists.map(|l| l.paged() as u64).sum()
    }

    /// The name of this generation's slot file, once it has one.
    pub(crate) fn slot_file_name(&self) -> Option<String> {
        self.log.slot_file_name()
    }

    /// This generation's serial (see the field).
    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }

    /// How this generation keeps its entry log.
    pub(crate) fn settings(&self) -> &LogSettings {
        &self.settings
    }

    /// Why the entry log lost slots it had spilled, if it did.
    pub(crate) fn scratch_failure(&self) -> Option<String> {
        self.log.failure()
    }

    pub(super) fn chunk_wanted(&self) -> usize {
        let next = self.inserted.load(Ordering::Relaxed);
        let len = self.log.chunk_len();
        (next / len) as usize + usize::from(next % len >= len / 2)
    }

    pub(super) fn hash_id(&self, id: u128) -> u64 {
        use std::hash::BuildHasher;
        self.ids.hash_one(id)
    }

    /// Returns the shared copy of `s`, allocating it once per store.
    pub(crate) fn intern(&self, s: &str) -> Arc<str> {
        if let Some(id) = self.maps.read().string_ids.get(s) {
            if let Some(found) = self.strings.get(u64::from(*id)) {
                return Arc::clone(found);
            }
        }
        let mut maps = self.maps.write();
        match self.intern_locked(&mut maps, s) {
            Ok(id) => self.strings.get(u64::from(id)).cloned().unwrap_or_else(|| Arc::from(s)),
            Err(_) => Arc::from(s),
        }
    }

    fn intern_locked(&self, maps: &mut Maps, s: &str) -> Result<u32, String> {
        if let Some(id) = maps.string_ids.get(s) {
            return Ok(*id);
        }
        let id = maps.string_ids.len() as u32;
        let shared: Arc<str> = Arc::from(s);
        if !self.strings.set(u64::from(id), Arc::clone(&shared)) {
            return Err(format!("more than {} distinct entity and scope names", 1u64 << 28));
        }
        maps.string_ids.insert(shared, id);
        maps.heads.push(NO_SEQ);
        Ok(id)
    }

    /// The shared copy of `s` and its string id (for loaders that resolve
    /// a table of names once and then insert by id).
    pub(crate) fn intern_with_id(&self, s: &str) -> Result<(Arc<str>, u32), String> {
        let mut maps = self.maps.write();
        let id = self.intern_locked(&mut maps, s)?;
        let shared = self.strings.get(u64::from(id)).cloned().ok_or("string table slot missing")?;
        Ok((shared, id))
    }

    fn string(&self, id: u32) -> &str {
        self.strings.get(u64::from(id)).map_or("", |s| s)
    }

    /// Inserts entries whose sequences rise above every inserted one (gaps
    /// only where compaction removed events). They stay invisible until
    /// [`IndexGen::publish`]. Fails (inserting nothing further) on a
    /// sequence that does not rise, a duplicate id or an out-of-range position.
    pub(crate) fn insert(&self, entries: Vec<IndexEntry>) -> Result<(), String> {
        let mut maps = self.maps.write();
        for e in entries {
            let entity = self.intern_locked(&mut maps, e.coord.entity())?;
            let scope = self.intern_locked(&mut maps, e.coord.scope())?;
            self.insert_one(&mut maps, loaded(&e, entity, scope))?;
        }
        Ok(())
    }

    /// [`IndexGen::insert`] for entries whose entity and scope are string
    /// ids already (from [`IndexGen::intern_with_id`]).
    pub(crate) fn insert_loaded(&self, entries: Vec<LoadedEntry>) -> Result<(), String> {
        let mut maps = self.maps.write();
        entries.into_iter().try_for_each(|e| self.insert_one(&mut maps, e))
    }

    /// [`IndexGen::insert_loaded`] from an iterator, so a loader need not
    /// build a vector of entries first; stops at the first error.
    pub(crate) fn insert_each(
        &self,
        entries: impl IntoIterator<Item = Result<LoadedEntry, String>>,
    ) -> Result<(), String> {
        let mut maps = self.maps.write();
        entries.into_iter().try_for_each(|e| self.insert_one(&mut maps, e?))
    }

    fn insert_one(&self, maps: &mut Maps, e: LoadedEntry) -> Result<(), String> {
        let seq = e.global_sequence;
        let expected = self.inserted.load(Ordering::Relaxed);
        if seq < expected {
            return Err(format!("sequence {seq} inserted where {expected} or later was expected"));
        }
        let slot_no =
            u32::try_from(seq).ok().filter(|s| *s != NO_SEQ).ok_or("index full (2^32 - 1 events)")?;
        let log = &self.log;
        let top_id = match (maps.rising.last(), maps.top) {
            (Some(last), Some((pos, id))) if last == pos => Some(id),
            (last, _) => last.and_then(|s| log.get(u64::from(s))).map(|x| x.event_id.get()),
        };
        let rises = top_id.is_none_or(|top| e.event_id > top);
        let known_absent = !maps.absent.is_empty() && maps.absent.remove(&e.event_id);
        if !rises && !known_absent && self.find_locked(maps, e.event_id).is_some() {
            return Err(format!("event id {:032x} appears twice", e.event_id));
        }
        let (entity, scope) = (e.entity, e.scope);
        let prev = *maps.heads.get(entity as usize).ok_or("unknown entity string id")?;
        let derived = match prev {
            NO_SEQ => [0u8; 32],
            p => self.log.get(u64::from(p)).map_or([0u8; 32], |s| s.event_hash),
        };
        // Loaders pass a zero prev hash to mean "derive it"; a different
        // non-zero one is a compaction anchor.
        let anchor = e.hash_chain.prev_hash != derived && e.hash_chain.prev_hash != [0u8; 32];
        let mut slot = slot_of(&e, prev)?;
        if anchor {
            slot.bits |= HAS_ANCHOR;
            maps.anchors.insert(slot_no, e.hash_chain.prev_hash);
        }
        if !self.log.set(seq, slot) {
            return Err(format!("log slot {seq} unavailable"));
        }
        if rises {
            if !maps.rising.push_keyed(slot_no, e.event_id) {
                return Err(format!("position {slot_no} does not rise in the id list"));
            }
            if maps.rising.newly_due() {
                maps.due.push(ListId::Rising);
            }
            maps.top = Some((slot_no, e.event_id));
        } else {
            let hash = self.hash_id(e.event_id);
            maps.by_id.insert_unique(hash, slot_no, |s| {
                log.get(u64::from(*s)).map_or(0, |x| self.hash_id(x.event_id.get()))
            });
        }
        if prev == NO_SEQ {
            let name = self.strings.get(u64::from(entity)).ok_or("unknown entity string id")?;
            maps.entity_names.insert(Arc::clone(name), entity);
        }
        if let Some(head) = maps.heads.get_mut(entity as usize) {
            *head = slot_no;
        }
        let kind = e.kind.as_raw();
        let (scopes, kinds, due) = (&mut maps.by_scope, &mut maps.by_kind, &mut maps.due);
        for (list, id) in [
            (scopes.entry(scope).or_default(), ListId::Scope(scope)),
            (kinds.entry(kind).or_default(), ListId::Kind(kind)),
        ] {
            if !list.push(slot_no) {
                return Err(format!("position {slot_no} does not rise in its scope or kind list"));
            }
            if list.newly_due() {
                due.push(id);
            }
        }
        if e.correlation_id != e.event_id {
            maps.correlations.insert(slot_no, e.correlation_id);
        }
        if let Some(c) = e.causation_id {
            maps.causations.insert(slot_no, c);
        }
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.inserted.store(seq + 1, Ordering::Release);
        Ok(())
    }

    /// Makes room for `n` more entries (open knows counts ahead).
    pub(crate) fn reserve(&self, n: usize) {
        let mut maps = self.maps.write();
        maps.rising.reserve(n);
    }

    /// Gives back the spare capacity of the per-event lists (after open,
    /// which grows them by doubling).
    pub(crate) fn shrink(&self) {
        let mut maps = self.maps.write();
        maps.rising.shrink_to_fit();
        maps.due.shrink_to_fit();
        maps.by_scope.values_mut().for_each(PosList::shrink_to_fit);
        maps.by_kind.values_mut().for_each(PosList::shrink_to_fit);
        maps.correlations.shrink_to_fit();
        maps.causations.shrink_to_fit();
        maps.anchors.shrink_to_fit();
    }

    /// The position of `id`, looking in the rising list, then the hash table.
    fn find_locked(&self, maps: &Maps, id: u128) -> Option<u32> {
        let in_rising = maps.rising.block_of_key(&self.log, id).and_then(|span| self.search(&span, id));
        in_rising.or_else(|| self.find_other(maps, id))
    }

    /// The id of the slot at `pos` (0 if it cannot be read).
    fn id_at(&self, pos: u32) -> u128 {
        self.log.get(u64::from(pos)).map_or(0, |x| x.event_id.get())
    }

    /// The position in `span` (a block of the rising list) whose id is `id`.
    fn search(&self, span: &[u32], id: u128) -> Option<u32> {
        if let (Some(lo), Some(hi)) = (span.first(), span.last()) {
            self.log.preload(u64::from(*lo), u64::from(*hi));
        }
        let i = span.binary_search_by(|s| self.id_at(*s).cmp(&id)).ok()?;
        span.get(i).copied()
    }

    /// The position of `id` among the ids that did not rise: in the hash
    /// table, else in the runs' pages (read under the caller's lock: the
    /// writer's path).
    fn find_other(&self, maps: &Maps, id: u128) -> Option<u32> {
        self.find_in_table(maps, id).or_else(|| self.find_in_pages(&id_runs::pages_for(&maps.runs, id), id))
    }

    /// The position of `id` in the hash table of other ids.
    fn find_in_table(&self, maps: &Maps, id: u128) -> Option<u32> {
        maps.by_id.find(self.hash_id(id), |s| self.id_at(*s) == id).copied()
    }

    /// The position of `id` in the first of `pages` that holds it, checked
    /// against the slot there (so a damaged run can miss an id but never
    /// name another event).
    fn find_in_pages(&self, pages: &[RunPage], id: u128) -> Option<u32> {
        pages.iter().find_map(|p| p.find(&self.log, id)).filter(|at| self.id_at(*at) == id)
    }

    /// Other ids kept in runs in the slot file, and the bytes of memory
    /// those runs keep.
    pub(crate) fn ids_on_disk(&self) -> (u64, usize) {
        let maps = self.maps.read();
        maps.runs.iter().fold((0, 0), |(n, bytes), r| (n + r.count(), bytes + r.memory()))
    }

    /// Makes every inserted entry visible.
    pub(crate) fn publish(&self) {
        // Only the writer inserts, so the count read here matches `up_to`.
        self.visible_entries.store(self.entries.load(Ordering::Relaxed), Ordering::Release);
        let up_to = self.inserted.load(Ordering::Acquire);
        let previous = self.visible.swap(up_to, Ordering::AcqRel);
        debug_assert!(previous <= up_to, "the watermark never moves backwards");
    }

    /// Makes inserted entries below `up_to` visible and keeps the rest
    /// hidden (a quorum store whose later units the stream refused). The
    /// hidden tail was inserted after the last publish, so it has no
    /// compaction gaps: its entry count is its sequence span.
    pub(crate) fn publish_to(&self, up_to: u64) {
        let inserted = self.inserted.load(Ordering::Acquire);
        let up_to = up_to.min(inserted);
        let hidden = inserted - up_to;
        let entries = self.entries.load(Ordering::Relaxed).saturating_sub(hidden);
        self.visible_entries.fetch_max(entries, Ordering::AcqRel);
        self.visible.fetch_max(up_to, Ordering::AcqRel);
    }

    /// How many events are visible (sequences removed by compaction are
    /// not counted).
    pub(crate) fn visible_count(&self) -> u64 {
        self.visible_entries.load(Ordering::Acquire)
    }

    /// Exclusive bound of visible sequences.
    pub(crate) fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Number of inserted entries (visible or not): the next sequence.
    pub(crate) fn inserted(&self) -> u64 {
        self.inserted.load(Ordering::Acquire)
    }

    /// The entry at `seq`, visible or not.
    pub(crate) fn get_any(&self, seq: u64) -> Option<IndexEntry> {
        let s = self.log.get(seq)?;
        let prev_hash = self.prev_hash(seq, &s, None)?;
        self.entry_of(seq, &s, prev_hash)
    }

    /// The previous hash of the slot `s` at `seq`: an anchor's own, zeros
    /// for an entity's first event, else its predecessor's event hash
    /// (`before` when the caller holds the predecessor already).
    fn prev_hash(&self, seq: u64, s: &Slot, before: Option<(u64, &Slot)>) -> Option<[u8; 32]> {
        Some(match s.prev {
            _ if s.bits & HAS_ANCHOR != 0 => self.extra(seq)?.anchor?,
            NO_SEQ => [0u8; 32],
            p => match before {
                Some((at, b)) if at == u64::from(p) => b.event_hash,
                _ => self.log.get(u64::from(p))?.event_hash,
            },
        })
    }

    /// The full entry of slot `s` at `seq`.
    fn entry_of(&self, seq: u64, s: &Slot, prev_hash: [u8; 32]) -> Option<IndexEntry> {
        let entity = Arc::clone(self.strings.get(u64::from(s.entity))?);
        let scope = Arc::clone(self.strings.get(u64::from(s.scope))?);
        let event_id = s.event_id.get();
        let (mut correlation_id, mut causation_id) = (event_id, None);
        if s.bits & (HAS_CORRELATION | HAS_CAUSATION) != 0 {
            let extra = self.extra(seq)?;
            correlation_id = extra.correlation.unwrap_or(event_id);
            causation_id = extra.causation;
        }
        Some(IndexEntry {
            event_id,
            correlation_id,
            causation_id,
            coord: Coordinate::from_shared(entity, scope),
            kind: EventKind::from_raw(s.kind),
            wall_ms: s.wall_ms,
            clock: s.clock,
            hash_chain: HashChain { prev_hash, event_hash: s.event_hash },
            disk_pos: DiskPos {
                segment_id: u64::from(s.segment_id),
                offset: u64::from(s.offset),
                length: s.length,
            },
            global_sequence: seq,
            flags: s.flags,
            gate_set: (s.bits & HAS_GATE_SET != 0).then_some(s.gate_set),
        })
    }

    /// The entry at `seq` if it is visible.
    pub(crate) fn get_visible(&self, seq: u64) -> Option<IndexEntry> {
        if seq < self.visible() {
            self.get_any(seq)
        } else {
            None
        }
    }

    /// [`IndexGen::find_locked`] for readers: the rising list's block is
    /// located under the lock and read and searched after it is released
    /// (pages and slots never change once written), so a lookup that goes
    /// to the slot file does not hold the writer's inserts back. An id
    /// inserted after the lock was let go may be missed; it was not
    /// visible when the lookup began.
    fn seq_of(&self, id: u128) -> Option<u64> {
        let located = self.maps.read().rising.locate_key(id);
        let in_rising = located.and_then(|l| l.block(&self.log, id)).and_then(|span| self.search(&span, id));
        let in_other = || {
            let (in_table, pages) = {
                let maps = self.maps.read();
                (self.find_in_table(&maps, id), id_runs::pages_for(&maps.runs, id))
            };
            in_table.or_else(|| self.find_in_pages(&pages, id))
        };
        in_rising.or_else(in_other).map(u64::from)
    }

    /// The visible entry with this id.
    pub(crate) fn by_id(&self, id: u128) -> Option<IndexEntry> {
        self.get_visible(self.seq_of(id)?)
    }

    /// The entry with this id, visible or not (writer only: only the
    /// writer inserts, so an id it did not find stays absent until it
    /// inserts it, and the insert need not search for it again).
    pub(crate) fn by_id_any(&self, id: u128) -> Option<IndexEntry> {
        let Some(seq) = self.seq_of(id) else {
            let mut maps = self.maps.write();
            if maps.absent.len() >= ABSENT_HINTS {
                maps.absent.clear();
            }
            maps.absent.insert(id);
            return None;
        };
        self.get_any(seq)
    }

    fn head_seq(&self, entity: &str) -> Option<u32> {
        let maps = self.maps.read();
        let id = maps.string_ids.get(entity)?;
        maps.heads.get(*id as usize).copied().filter(|h| *h != NO_SEQ)
    }

    /// The tip of the entity's chain, visible or not (writer only).
    pub(crate) fn head(&self, entity: &str) -> Option<EntityHead> {
        let s = self.log.get(u64::from(self.head_seq(entity)?))?;
        Some(EntityHead { clock: s.clock, hash: s.event_hash, wall_ms: s.wall_ms })
    }

    /// Visible sequences of the chain ending at `head`, oldest first.
    fn chain(&self, head: u32, visible: u64) -> Vec<u64> {
        self.chain_slots(head, visible).into_iter().map(|(seq, _)| seq).collect()
    }

    /// Visible sequences and slots of the chain ending at `head`, oldest
    /// first: one slot read per event (which may be a scratch-file read).
    ///
    /// In a spilled chunk with an entity-ordered copy, the chain's slots
    /// there are one run of that copy, read at once instead of one block
    /// per event; the walk goes on from the run's first `prev`.
    fn chain_slots(&self, head: u32, visible: u64) -> Vec<(u64, Slot)> {
        let mut out = Vec::new();
        let mut at = head;
        let mut entity = None;
        while at != NO_SEQ {
            if let Some(run) = entity.and_then(|e| self.log.run_through(u64::from(at), e)) {
                let Some((_, first)) = run.first() else { break };
                at = first.prev;
                out.extend(run.into_iter().rev().filter(|(seq, _)| *seq < visible));
                continue;
            }
            let Some(s) = self.log.get(u64::from(at)) else { break };
            entity = Some(s.entity);
            if u64::from(at) < visible {
                out.push((u64::from(at), s));
            }
            at = s.prev;
        }
        out.reverse();
        out
    }

    /// Where the event at `seq` sits.
    pub(crate) fn disk_pos(&self, seq: u64) -> Option<DiskPos> {
        let s = self.log.get(seq)?;
        Some(DiskPos { segment_id: u64::from(s.segment_id), offset: u64::from(s.offset), length: s.length })
    }

    /// The kind of the event at `seq`.
    pub(crate) fn kind_at(&self, seq: u64) -> Option<EventKind> {
        self.log.get(seq).map(|s| EventKind::from_raw(s.kind))
    }

    /// Id, position, kind and chain link of the event at `seq`, without
    /// the strings and side ids a full [`IndexEntry`] carries.
    pub(crate) fn read_target(&self, seq: u64) -> Option<ReadTarget> {
        let s = self.log.get(seq)?;
        let prev_hash = self.prev_hash(seq, &s, None)?;
        Some(ReadTarget {
            event_id: s.event_id.get(),
            disk_pos: self.disk_pos(seq)?,
            kind: EventKind::from_raw(s.kind),
            hash_chain: HashChain { prev_hash, event_hash: s.event_hash },
        })
    }

    /// Visible sequences of exactly this entity, in order.
    pub(crate) fn stream_seqs(&self, entity: &str) -> Vec<u64> {
        let visible = self.visible();
        self.head_seq(entity).map_or_else(Vec::new, |head| self.chain(head, visible))
    }

    /// Visible entries of exactly this entity, in order.
    pub(crate) fn stream(&self, entity: &str) -> Vec<IndexEntry> {
        let visible = self.visible();
        let Some(head) = self.head_seq(entity) else { return Vec::new() };
        let chain = self.chain_slots(head, visible);
        let mut out = Vec::with_capacity(chain.len());
        let mut before: Option<(u64, &Slot)> = None;
        for (seq, s) in &chain {
            if let Some(e) = self.prev_hash(*seq, s, before).and_then(|prev| self.entry_of(*seq, s, prev)) {
                out.push(e);
            }
            before = Some((*seq, s));
        }
        out
    }

    /// Visible entries in `region`, in global-sequence order.
    pub(crate) fn query(&self, region: &Region) -> Vec<IndexEntry> {
        let visible = self.visible();
        let keep = |seq: &u64| self.matches(*seq, region);
        match self.candidates(region, visible) {
            Some(seqs) => seqs.into_iter().filter(keep).filter_map(|s| self.get_any(s)).collect(),
            None => (0..visible).filter(keep).filter_map(|s| self.get_any(s)).collect(),
        }
    }

    fn matches(&self, seq: u64, region: &Region) -> bool {
        self.log.get(seq).is_some_and(|s| {
            region.matches_full(
                self.string(s.entity),
                self.string(s.scope),
                EventKind::from_raw(s.kind),
                s.clock,
            )
        })
    }

    /// Sequences that may match `region`, sorted; `None` means "scan everything".
    fn candidates(&self, region: &Region, visible: u64) -> Option<Vec<u64>> {
        // Positions are below 2^32 - 1, so a larger watermark keeps them all.
        let limit = u32::try_from(visible).unwrap_or(u32::MAX);
        if let Some(prefix) = &region.entity_prefix {
            let heads: Vec<u32> = {
                let maps = self.maps.read();
                maps.entity_names
                    .range::<str, _>((std::ops::Bound::Included(&**prefix), std::ops::Bound::Unbounded))
                    .take_while(|(name, _)| name.starts_with(&**prefix))
                    .filter_map(|(_, id)| maps.heads.get(*id as usize).copied().filter(|h| *h != NO_SEQ))
                    .collect()
            };
            let mut out: Vec<u64> = heads.into_iter().flat_map(|h| self.chain(h, visible)).collect();
            out.sort_unstable();
            return Some(out);
        }
        // The list's part below the watermark is copied under the lock;
        // its pages are read after the lock is released, so a long list
        // never holds the writer's inserts back for its disk reads.
        let below = {
            let maps = self.maps.read();
            let list = if let Some(scope) = &region.scope {
                maps.string_ids.get(&**scope).and_then(|id| maps.by_scope.get(id))
            } else if let Some(KindFilter::Exact(kind)) = region.fact {
                maps.by_kind.get(&kind.as_raw())
            } else {
                return None;
            };
            list.map(|l| l.below(limit))
        };
        Some(below.map(|b| b.read(&self.log)).unwrap_or_default())
    }

    /// Up to `max` visible entries in `region` with sequence ≥ `from`;
    /// returns them and the sequence to resume from. O(entries examined).
    pub(crate) fn scan_from(&self, region: &Region, from: u64, max: usize) -> (Vec<IndexEntry>, u64) {
        let visible = self.visible();
        let mut out = Vec::new();
        let mut seq = from;
        while seq < visible && out.len() < max {
            if self.matches(seq, region) {
                if let Some(e) = self.get_any(seq) {
                    out.push(e);
                }
            }
            seq += 1;
        }
        (out, seq)
    }

    /// Number of distinct entities.
    pub(crate) fn entity_count(&self) -> usize {
        self.maps.read().entity_names.len()
    }
}

/// The loader form of `e`, with its names as string ids.
fn loaded(e: &IndexEntry, entity: u32, scope: u32) -> LoadedEntry {
    LoadedEntry {
        event_id: e.event_id,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        kind: e.kind,
        wall_ms: e.wall_ms,
        clock: e.clock,
        hash_chain: e.hash_chain,
        disk_pos: e.disk_pos,
        global_sequence: e.global_sequence,
        flags: e.flags,
        gate_set: e.gate_set,
        entity,
        scope,
    }
}

fn slot_of(e: &LoadedEntry, prev: u32) -> Result<Slot, String> {
    let narrow =
        |v: u64, what: &str| u32::try_from(v).map_err(|_| format!("{what} {v} does not fit the index"));
    let mut bits = 0u8;
    if e.causation_id.is_some() {
        bits |= HAS_CAUSATION;
    }
    if e.gate_set.is_some() {
        bits |= HAS_GATE_SET;
    }
    if e.correlation_id != e.event_id {
        bits |= HAS_CORRELATION;
    }
    Ok(Slot {
        event_id: Id::new(e.event_id),
        event_hash: e.hash_chain.event_hash,
        wall_ms: e.wall_ms,
        prev,
        entity: e.entity,
        scope: e.scope,
        clock: e.clock,
        segment_id: narrow(e.disk_pos.segment_id, "segment id")?,
        offset: narrow(e.disk_pos.offset, "frame offset")?,
        length: e.disk_pos.length,
        gate_set: e.gate_set.unwrap_or(0),
        kind: e.kind.as_raw(),
        flags: e.flags,
        bits,
    })
}

#[cfg(test)]
mod tests {
    use super::super::StoreIndex;
    use super::*;
    use std::sync::OnceLock;

    /// Slots per chunk of an in-memory generation.
    const CHUNK: u64 = 1 << super::super::slot_log::MAX_CHUNK_BITS;

    #[test]
    fn slots_stay_compact() {
        assert_eq!(std::mem::size_of::<Slot>(), 96);
        assert_eq!(std::mem::size_of::<OnceLock<Slot>>(), 104);
    }

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
    fn the_next_log_chunk_is_prepared_once_the_current_is_half_full() {
        // Built without `from_gen`, so this test holds each preparing thread.
        let index = StoreIndex {
            current: arc_swap::ArcSwap::from_pointee(IndexGen::new()),
            prep: Default::default(),
            spill: Default::default(),
            merge: Default::default(),
        };
        let ready = |k: usize| index.generation().log.is_allocated(k);
        let gen = || index.generation();
        assert!(!ready(0));
        index.prepare_ahead().expect("chunk 0 requested").join().expect("prepared");
        assert!(ready(0), "the thread allocated chunk 0");
        assert!(index.prepare_ahead().is_none(), "requested once");
        gen().insert(vec![entry(CHUNK / 2 - 2, "a")]).expect("insert");
        assert!(index.prepare_ahead().is_none(), "the next insert is in the first half");
        gen().insert(vec![entry(CHUNK / 2 - 1, "a")]).expect("insert");
        assert!(!ready(1));
        index.prepare_ahead().expect("chunk 1 requested").join().expect("prepared");
        assert!(ready(1), "the thread allocated chunk 1");
        assert!(index.prepare_ahead().is_none(), "chunk 1 requested once");
        assert!(!ready(2));
        assert_eq!(gen().ahead.load(Ordering::Acquire), 2);
        index.publish();
        assert_eq!(index.get_visible(CHUNK / 2 - 1).map(|e| e.event_id), Some(u128::from(CHUNK) / 2 + 999));
    }

    #[test]
    fn sequences_may_skip_but_never_fall_and_anchors_survive() {
        let index = IndexGen::new();
        let mut first = entry(0, "a");
        first.hash_chain.event_hash = [1; 32];
        let mut anchored = entry(5, "a");
        anchored.hash_chain = HashChain { prev_hash: [9; 32], event_hash: [2; 32] };
        let mut linked = entry(6, "a");
        linked.hash_chain = HashChain { prev_hash: [2; 32], event_hash: [3; 32] };
        index.insert(vec![first, anchored, linked]).expect("gaps are allowed");
        index.publish();
        assert_eq!(index.inserted(), 7);
        assert!(index.get_visible(3).is_none(), "a removed sequence stays empty");
        assert_eq!(index.get_any(5).map(|e| e.hash_chain.prev_hash), Some([9; 32]));
        assert_eq!(index.get_any(6).map(|e| e.hash_chain.prev_hash), Some([2; 32]));
        assert_eq!(index.stream("a").len(), 3);
        assert!(index.insert(vec![entry(6, "b")]).is_err(), "a sequence never falls");
    }

    /// A page of the id list that reads back damaged is a lost read: the
    /// lookup answers nothing (never another event), the failure is
    /// recorded for the writer, and ids still in memory are found.
    #[test]
    fn a_damaged_page_is_a_lost_read_not_a_wrong_answer() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = LogSettings {
            chunk_bits: 10,
            scratch_dir: Some(dir.path().into()),
            cache_bytes: 64 * crate::store::index::slot_log::BLOCK_BYTES,
        };
        let gen = IndexGen::with_settings(&settings);
        let n = 20_000u64;
        gen.insert((0..n).map(|s| entry(s, "a")).collect()).expect("insert");
        gen.publish();
        gen.spill_ready();
        assert!(gen.list_values_on_disk() >= 8_192, "{} values paged", gen.list_values_on_disk());
        assert_eq!(gen.by_id(1000).map(|e| e.global_sequence), Some(0), "the first id, from a page");
        let at = gen.maps.read().rising.pages_for_test()[1];
        let name = gen.slot_file_name().expect("slot file");
        let file = std::fs::OpenOptions::new().write(true).open(dir.path().join(name)).expect("open");
        std::os::unix::fs::FileExt::write_all_at(&file, &[0xAB; 4], at + 2).expect("damage");
        // The second page is not cached (one read so far), so this reads it.
        assert!(gen.by_id(1000 + 4_096 + 70).is_none(), "a damaged page finds nothing");
        assert!(
            gen.scratch_failure().is_some_and(|why| why.contains("checksum")),
            "{:?}",
            gen.scratch_failure()
        );
        assert_eq!(gen.by_id(1000 + n as u128 - 1).map(|e| e.global_sequence), Some(n - 1), "memory answers");
    }

    /// Ids that fall go to runs in the slot file once the table holds
    /// two chunks' worth, runs merge `FANOUT` at a time, and every id is
    /// found, duplicates refused and absent ids not found throughout; a
    /// damaged run page is a lost read, never another event.
    #[test]
    fn ids_that_fall_go_to_runs_that_merge_and_still_answer() {
        let dir = tempfile::tempdir().expect("dir");
        // No cache, so the damaged page below is read from the file.
        let settings = LogSettings { chunk_bits: 10, scratch_dir: Some(dir.path().into()), cache_bytes: 0 };
        let index = StoreIndex::from_gen(IndexGen::with_settings(&settings));
        // Ids fall from a high first one, in a scrambled order.
        let id_of = |s: u64| (u128::MAX >> 1) - u128::from(id_runs::mix(u128::from(s)) >> 8);
        let n = 40_000u64;
        for from in (0..n).step_by(500) {
            let batch = (from..from + 500)
                .map(|s| {
                    let mut e = entry(s, "a");
                    e.event_id = if s == 0 { u128::MAX >> 1 } else { id_of(s) };
                    e
                })
                .collect();
            index.insert(batch).expect("insert");
            index.publish();
        }
        index.settle();
        index.wait_for_merges();
        let gen = index.live();
        let runs: Vec<(u8, u64)> = gen.maps.read().runs.iter().map(|r| (r.level(), r.count())).collect();
        let in_runs: u64 = runs.iter().map(|(_, n)| n).sum();
        assert!(runs.iter().any(|(level, _)| *level == 1), "eight runs merged into one: {runs:?}");
        assert!(runs.len() < id_runs::FANOUT + 2, "no level keeps eight runs: {runs:?}");
        assert!(in_runs + gen.maps.read().by_id.len() as u64 == n - 1, "{in_runs} in runs");
        for s in (1..n).step_by(7) {
            assert_eq!(index.by_id(id_of(s)).map(|e| e.global_sequence), Some(s), "id of {s}");
        }
        assert!(index.by_id(id_of(n + 1)).is_none(), "an absent id is not found");
        assert!(
            index.insert(vec![IndexEntry { event_id: id_of(77), ..entry(n, "b") }]).is_err(),
            "a duplicate"
        );
        // Damage the first page of the oldest run: a lookup there misses.
        let page = gen.maps.read().runs.first().map(|r| r.first_page_for_test()).expect("a run");
        let name = gen.slot_file_name().expect("slot file");
        let file = std::fs::OpenOptions::new().write(true).open(dir.path().join(name)).expect("open");
        std::os::unix::fs::FileExt::write_all_at(&file, &[0xAB; 4], page + 2).expect("damage");
        let victims: Vec<u64> =
            (1..n).filter(|s| gen.find_other(&gen.maps.read(), id_of(*s)).is_none()).collect();
        assert!(!victims.is_empty() && victims.len() <= id_runs::PAGE_RECORDS, "{} ids lost", victims.len());
        assert!(gen.scratch_failure().is_some_and(|why| why.contains("checksum")));
    }

    /// The writer's absent-id hints skip only a search whose answer is
    /// known: an id looked up twice and then inserted twice (a batch that
    /// repeats a key) is still refused the second time, whether the first
    /// insert rose or not, and a full hint list is dropped, not trusted.
    #[test]
    fn absent_hints_never_let_a_duplicate_in() {
        let index = IndexGen::new();
        let with_id = |seq: u64, id: u128| IndexEntry { event_id: id, ..entry(seq, "h") };
        index.insert(vec![with_id(0, 500)]).expect("insert");
        for (first, id) in [(1u64, 900u128), (3, 100)] {
            assert!(index.by_id_any(id).is_none() && index.by_id_any(id).is_none());
            assert_eq!(
                index.maps.read().absent.iter().filter(|a| **a == id).count(),
                1,
                "hints are distinct"
            );
            index.insert(vec![with_id(first, id)]).expect("the first insert");
            assert!(
                index.insert(vec![with_id(first + 1, id)]).is_err(),
                "the second insert of {id} is refused"
            );
        }
        for id in 2_000..2_000 + ABSENT_HINTS as u128 + 5 {
            assert!(index.by_id_any(id).is_none());
        }
        assert!(index.maps.read().absent.len() <= ABSENT_HINTS);
        index.insert(vec![with_id(5, 2_003)]).expect("a hinted or searched insert");
        assert!(index.insert(vec![with_id(6, 2_003)]).is_err());
        assert!(index.insert(vec![with_id(6, 100)]).is_err(), "an old id without a hint is searched");
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
    fn ids_that_do_not_rise_are_still_found_and_deduplicated() {
        let index = StoreIndex::new();
        let mut entries: Vec<IndexEntry> = (0..6).map(|s| entry(s, "e")).collect();
        for (e, id) in entries.iter_mut().zip([50u128, 60, 10, 70, 65, 5]) {
            e.event_id = id;
            e.correlation_id = id;
        }
        index.insert(entries).expect("insert");
        index.publish();
        for (seq, id) in [50u128, 60, 10, 70, 65, 5].into_iter().enumerate() {
            assert_eq!(index.by_id(id).map(|e| e.global_sequence), Some(seq as u64), "id {id}");
        }
        assert!(index.by_id(11).is_none());
        let mut dup = entry(6, "e");
        dup.event_id = 65;
        assert!(index.insert(vec![dup]).is_err(), "a duplicate below the rising top is caught");
        let mut dup = entry(6, "e");
        dup.event_id = 60;
        assert!(index.insert(vec![dup]).is_err(), "a duplicate in the rising list is caught");
    }

    #[test]
    fn repeated_sequences_and_duplicate_ids_are_refused() {
        let index = StoreIndex::new();
        index.insert(vec![entry(0, "a")]).expect("first");
        assert!(index.insert(vec![entry(0, "b")]).is_err(), "a sequence is used once");
        let mut dup = entry(1, "a");
        dup.event_id = 1000;
        assert!(index.insert(vec![dup]).is_err());
    }
}
