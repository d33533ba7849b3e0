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

pub use crate::store::entry::{ClockKey, DiskPos, IndexEntry};
pub(crate) use crate::store::entry::{EntityHead, LoadedEntry};
pub(crate) use generation::IndexGen;

use crate::coordinate::Region;
use crate::event::EventKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The store's index: the current generation, swapped whole by compaction.
/// Shared by the writer (the only mutator) and readers.
pub(crate) struct StoreIndex {
    current: arc_swap::ArcSwap<IndexGen>,
    /// The last chunk-preparing thread; joined when the index is dropped, so
    /// no thread of the store outlives it.
    prep: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for StoreIndex {
    fn drop(&mut self) {
        if let Some(thread) = self.prep.get_mut().take() {
            let _ = thread.join();
        }
    }
}

/// Forwards each method to the current generation.
macro_rules! forward {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $($(#[$doc])* pub(crate) fn $name(&self $(, $arg: $ty)*) -> $ret {
            self.current.load().$name($($arg),*)
        })*
    };
}

impl StoreIndex {
    pub(crate) fn new() -> Self {
        Self::from_gen(IndexGen::new())
    }

    pub(crate) fn from_gen(gen: IndexGen) -> Self {
        let index =
            Self { current: arc_swap::ArcSwap::from_pointee(gen), prep: parking_lot::Mutex::new(None) };
        index.keep(index.prepare_ahead());
        index
    }

    /// Allocates the log chunk the writer or loader will need next on a
    /// short-lived thread, so that allocating and first touching its
    /// ~6.5 MiB (64 Ki slots) does not stall an append. Called after
    /// every insert; spawns at most once per chunk. Callers let the thread
    /// run until the next one starts or the index is dropped (tests join it); without it, the first insert into the
    /// chunk allocates it.
    fn prepare_ahead(&self) -> Option<std::thread::JoinHandle<()>> {
        let gen = self.current.load();
        let wanted = gen.chunk_wanted();
        if gen.ahead.fetch_max(wanted + 1, Ordering::AcqRel) > wanted {
            return None;
        }
        let gen = Arc::clone(&gen);
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
        self.current.store(Arc::new(gen));
        self.keep(self.prepare_ahead());
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
        self.keep(self.prepare_ahead());
        done
    }

    /// Inserts entries above the watermark (see [`IndexGen::insert`]).
    pub(crate) fn insert(&self, entries: Vec<IndexEntry>) -> Result<(), String> {
        let done = self.current.load().insert(entries);
        self.keep(self.prepare_ahead());
        done
    }

    /// Inserts entries whose string ids are known.
    pub(crate) fn insert_loaded(&self, entries: Vec<LoadedEntry>) -> Result<(), String> {
        let done = self.current.load().insert_loaded(entries);
        self.keep(self.prepare_ahead());
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

    /// Makes inserted entries below `up_to` visible, no others.
    pub(crate) fn publish_to(&self, up_to: u64) {
        self.current.load().publish_to(up_to);
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
        /// The entry with this id, visible or not (writer only).
        fn by_id_any(&self, id: u128) -> Option<IndexEntry>;
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
