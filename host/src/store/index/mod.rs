//! The in-memory index and its visibility watermark.
//!
//! Entries live in an append-only log addressed by global sequence, so a
//! reader needs no lock to walk it. Secondary maps (by id, entity, scope,
//! kind) sit behind one `RwLock` that the writer holds only to insert a
//! unit's entries. Nothing is visible until the writer advances `visible`
//! past it with one `Release` store; every read filters `seq < visible`
//! (`Acquire`), so a batch is seen whole or not at all.
//!
//! Slots never change once written, so compaction (which moves, removes or
//! tombstones events) builds a new generation (`IndexGen`) beside the live one and the
//! writer swaps it in whole; a reader keeps the generation it loaded for
//! the length of one call. Sequences survive compaction unchanged, so they
//! only ever rise, with gaps where events were removed.

mod append_log;
mod generation;
mod id_runs;
pub(crate) mod image;
mod pos_list;
mod slot_log;

pub use crate::store::entry::{ClockKey, DiskPos, IndexEntry};
pub(crate) use crate::store::entry::{EntityHead, LoadedEntry};
pub(crate) use generation::IndexGen;
pub(crate) use slot_log::{is_slot_file_name, LogSettings, MAX_CHUNK_BITS, MIN_CHUNK_BITS};

use crate::coordinate::Region;
use crate::event::EventKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Hands the allocator's free pages back to the system. Open builds and
/// drops many large temporaries (decoded footer chunks, lists grown by
/// doubling, chunks moved to the scratch file); glibc keeps freed pages
/// that sit below live ones, so without this a store's resident memory
/// after open would keep the whole open's high-water mark.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` is glibc's, takes a plain integer and
        // touches only free memory of the allocator's own arenas, under
        // their locks; it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// The store's index: the current generation, swapped whole by compaction.
/// Shared by the writer (the only mutator) and readers.
pub(crate) struct StoreIndex {
    current: arc_swap::ArcSwap<IndexGen>,
    /// The last chunk-preparing thread; joined when the index is dropped, so
    /// no thread of the store outlives it.
    prep: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The thread writing old log chunks to the scratch file, if one ran;
    /// joined when the index is dropped, like `prep`.
    spill: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The thread merging runs of other ids, if one ran, with the
    /// generation it merges in (told to give up when the index is dropped
    /// or the generation replaced).
    merge: parking_lot::Mutex<Option<(Arc<IndexGen>, std::thread::JoinHandle<()>)>>,
}

impl Drop for StoreIndex {
    fn drop(&mut self) {
        let merge = self.merge.get_mut().take().map(|(gen, thread)| {
            gen.retire();
            thread
        });
        for thread in [self.prep.get_mut().take(), self.spill.get_mut().take(), merge].into_iter().flatten() {
            let _ = thread.join();
        }
    }
}

/// Chunks due for the scratch file beyond which an insert waits for the
/// spilling thread instead of letting them stay in memory.
const SPILL_LAG: usize = 4;

/// Forwards each method to the current generation.
macro_rules! forward {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $($(#[$doc])* pub(crate) fn $name(&self $(, $arg: $ty)*) -> $ret {
            self.current.load().$name($($arg),*)
        })*
    };
}

impl StoreIndex {
    /// An empty index, every entry kept in memory.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::from_gen(IndexGen::new())
    }

    /// An empty index whose entry log follows `settings`.
    pub(crate) fn with_settings(settings: &LogSettings) -> Self {
        Self::from_gen(IndexGen::with_settings(settings))
    }

    pub(crate) fn from_gen(gen: IndexGen) -> Self {
        let index = Self {
            current: arc_swap::ArcSwap::from_pointee(gen),
            prep: parking_lot::Mutex::new(None),
            spill: parking_lot::Mutex::new(None),
            merge: parking_lot::Mutex::new(None),
        };
        index.keep(index.prepare_ahead());
        index
    }

    /// After inserts: allocates the next chunk ahead, and starts writing
    /// old chunks to the scratch file if some are due and no spilling
    /// thread is still busy (the next insert looks again).
    fn after_insert(&self) {
        self.after_insert_in(&self.current.load());
    }

    /// [`StoreIndex::after_insert`] for a generation the caller holds.
    fn after_insert_in(&self, gen: &Arc<IndexGen>) {
        self.keep(self.prepare_ahead_in(gen));
        if gen.merge_wanted() {
            self.start_merge(gen);
        }
        if gen.spillable_below() <= gen.spilled_below.load(Ordering::Acquire) {
            return;
        }
        let mut running = self.spill.lock();
        if running.as_ref().is_some_and(|t| !t.is_finished()) {
            let lag = gen.spillable_below().saturating_sub(gen.spilled_below.load(Ordering::Acquire));
            if lag <= SPILL_LAG {
                return;
            }
            // The spilling thread fell behind (a loader inserts faster than
            // it writes): wait for it, so chunks due for the scratch file
            // do not pile up in memory.
        }
        if let Some(done) = running.take() {
            let _ = done.join();
        }
        let gen = Arc::clone(gen);
        *running = std::thread::Builder::new()
            .name("batpak-index-spill".into())
            .spawn(move || gen.spill_ready())
            .ok();
    }

    /// Starts merging `gen`'s due id runs on a thread of their own (a
    /// merge of large runs takes seconds, which must not hold back the
    /// spilling that inserts wait for), unless a merge still runs.
    fn start_merge(&self, gen: &Arc<IndexGen>) {
        let mut running = self.merge.lock();
        if running.as_ref().is_some_and(|(_, t)| !t.is_finished()) {
            return;
        }
        if let Some((_, done)) = running.take() {
            let _ = done.join();
        }
        let merging = Arc::clone(gen);
        *running = std::thread::Builder::new()
            .name("batpak-index-merge".into())
            .spawn(move || merging.merge_runs())
            .ok()
            .map(|thread| (Arc::clone(gen), thread));
    }

    /// Waits for the merging thread, if one runs or is due, to finish
    /// every due merge (tests and benches that measure merged runs).
    #[cfg(test)]
    pub(crate) fn wait_for_merges(&self) {
        let gen = self.current.load_full();
        loop {
            if let Some((_, thread)) = self.merge.lock().take() {
                let _ = thread.join();
            }
            if !gen.merge_wanted() {
                return;
            }
            self.start_merge(&gen);
        }
    }

    /// Waits for the spilling thread, if one runs, then writes whatever
    /// is still due to the scratch file on this thread and gives back the
    /// spare capacity of the per-event lists (open, once loaded).
    pub(crate) fn settle(&self) {
        let mut running = self.spill.lock();
        if let Some(thread) = running.take() {
            let _ = thread.join();
        }
        let gen = self.current.load_full();
        gen.spill_ready();
        drop(running);
        gen.shrink();
        if gen.merge_wanted() {
            self.start_merge(&gen);
        }
        release_free_memory();
    }

    /// Index entries kept in the scratch file rather than in memory.
    pub(crate) fn entries_on_disk(&self) -> u64 {
        self.current.load().entries_on_disk()
    }

    /// Values of the position lists kept in pages in the slot file.
    pub(crate) fn list_values_on_disk(&self) -> u64 {
        self.current.load().list_values_on_disk()
    }

    /// Ids that did not rise kept in runs in the slot file.
    pub(crate) fn ids_on_disk(&self) -> u64 {
        self.current.load().ids_on_disk().0
    }

    /// Why the index lost entries it had written to its scratch file, if
    /// it did. The writer checks this before writing anything: a missing
    /// slot must never become a wrong head, id or footer entry.
    pub(crate) fn scratch_failure(&self) -> Option<String> {
        self.current.load().scratch_failure()
    }

    /// Allocates the log chunk the writer or loader will need next on a
    /// short-lived thread, so that allocating and first touching its
    /// ~6.5 MiB (64 Ki slots) does not stall an append. Called after
    /// every insert; spawns at most once per chunk. Callers let the thread
    /// run until the next one starts or the index is dropped (tests join it); without it, the first insert into the
    /// chunk allocates it.
    fn prepare_ahead(&self) -> Option<std::thread::JoinHandle<()>> {
        self.prepare_ahead_in(&self.current.load())
    }

    fn prepare_ahead_in(&self, gen: &Arc<IndexGen>) -> Option<std::thread::JoinHandle<()>> {
        let wanted = gen.chunk_wanted();
        if gen.ahead.fetch_max(wanted + 1, Ordering::AcqRel) > wanted {
            return None;
        }
        let gen = Arc::clone(gen);
        std::thread::Builder::new()
            .name("batpak-index-prep".into())
            .spawn(move || gen.prepare_chunk(wanted))
            .ok()
    }

    /// Keeps the handle of a newly started preparing thread, joining the
    /// previous one (long finished: chunks are asked for one at a time,
    /// half a chunk of inserts apart).
    fn keep(&self, started: Option<std::thread::JoinHandle<()>>) {
        if let Some(thread) = started {
            if let Some(previous) = self.prep.lock().replace(thread) {
                let _ = previous.join();
            }
        }
    }

    /// Replaces the live generation (writer only, between groups). Readers
    /// that loaded the old one finish their call with it.
    pub(crate) fn replace(&self, gen: IndexGen) {
        debug_assert!(gen.visible() >= self.visible(), "a new generation hides nothing published");
        let old = self.current.swap(Arc::new(gen));
        old.retire();
        // A merge in the old generation gives up at its next page; joined
        // here so the old generation (its memory and slot file) goes now.
        if let Some((_, thread)) = self.merge.lock().take() {
            let _ = thread.join();
        }
        self.after_insert();
    }

    /// The live generation, owned: the writer keeps it between calls
    /// (it alone replaces it, and takes the new one after each
    /// [`StoreIndex::replace`]), so its lookups and inserts skip the
    /// shared pointer's load.
    pub(crate) fn live(&self) -> Arc<IndexGen> {
        self.current.load_full()
    }

    /// Whether `gen` is the live generation.
    pub(crate) fn is_live(&self, gen: &Arc<IndexGen>) -> bool {
        Arc::ptr_eq(gen, &self.current.load())
    }

    /// The live generation, for a reader doing many lookups in one call.
    pub(crate) fn generation(&self) -> arc_swap::Guard<Arc<IndexGen>> {
        self.current.load()
    }

    /// Inserts entries as an iterator yields them (see [`IndexGen::insert_each`]).
    pub(crate) fn insert_each(
        &self,
        entries: impl IntoIterator<Item = Result<LoadedEntry, String>>,
    ) -> Result<(), String> {
        let done = self.current.load().insert_each(entries);
        self.after_insert();
        done
    }

    /// Inserts entries above the watermark into the live generation.
    #[cfg(test)]
    pub(crate) fn insert(&self, entries: Vec<IndexEntry>) -> Result<(), String> {
        self.insert_in(&self.live(), entries)
    }

    /// Inserts entries above the watermark (see [`IndexGen::insert`]) into
    /// `gen`, the live generation the writer holds.
    pub(crate) fn insert_in(&self, gen: &Arc<IndexGen>, entries: Vec<IndexEntry>) -> Result<(), String> {
        debug_assert!(self.is_live(gen), "the writer inserts into a replaced generation");
        let done = gen.insert(entries);
        self.after_insert_in(gen);
        done
    }

    /// Inserts entries whose string ids are known.
    pub(crate) fn insert_loaded(&self, entries: Vec<LoadedEntry>) -> Result<(), String> {
        let done = self.current.load().insert_loaded(entries);
        self.after_insert();
        done
    }

    /// Makes room for `n` more entries.
    pub(crate) fn reserve(&self, n: usize) {
        self.current.load().reserve(n);
    }

    /// Makes every inserted entry visible.
    pub(crate) fn publish(&self) {
        self.current.load().publish();
    }

    forward! {
        /// Returns the shared copy of `s`, allocating it once per store.
        fn intern(&self, s: &str) -> Arc<str>;
        /// The shared copy of `s` and its string id.
        fn intern_with_id(&self, s: &str) -> Result<(Arc<str>, u32), String>;
        /// Exclusive bound of visible sequences.
        fn visible(&self) -> u64;
        /// How many events are visible (without those compaction removed).
        fn visible_count(&self) -> u64;
        /// The next sequence.
        fn inserted(&self) -> u64;
        /// The entry at `seq`, visible or not.
        fn get_any(&self, seq: u64) -> Option<IndexEntry>;
        /// The entry at `seq` if it is visible.
        fn get_visible(&self, seq: u64) -> Option<IndexEntry>;
        /// The visible entry with this id.
        fn by_id(&self, id: u128) -> Option<IndexEntry>;
        /// The tip of the entity's chain, visible or not (writer only).
        fn head(&self, entity: &str) -> Option<EntityHead>;
        /// Visible entries of exactly this entity, in order.
        fn stream(&self, entity: &str) -> Vec<IndexEntry>;
        /// Visible entries in `region`, in global-sequence order.
        fn query(&self, region: &Region) -> Vec<IndexEntry>;
        /// Up to `max` visible entries in `region` from `from`, and where to resume.
        fn scan_from(&self, region: &Region, from: u64, max: usize) -> (Vec<IndexEntry>, u64);
        /// Number of distinct entities.
        fn entity_count(&self) -> usize;
        /// The kind of the event at `seq`.
        fn kind_at(&self, seq: u64) -> Option<EventKind>;
        /// Visible sequences of exactly this entity, in order.
        fn stream_seqs(&self, entity: &str) -> Vec<u64>;
    }
}
