//! The index's entry log: one fixed-size [`Slot`] per position, in chunks.
//!
//! The newest chunks live in memory. Once a chunk is full and two chunks
//! behind the one being filled, a background thread writes it to a scratch
//! file in the store's directory and drops it from memory; later reads of
//! it go through a bounded block cache ([`BlockCache`]). The scratch file
//! is unnamed (`O_TMPFILE` where the file system has it), private to this
//! process and this index generation, and gone when the generation is:
//! nothing in it is ever read back after a restart, so it needs no fsync,
//! no format version and no recovery. Open rebuilds it as it loads.
//!
//! Slots never change once set, so a spilled chunk is an exact copy. A
//! chunk is published as spilled (its file offset) before its memory is
//! released, and a reader that finds no memory reads the file, so every
//! read sees the slot whichever way the race goes.
//!
//! A failed scratch *write* keeps the chunk in memory and stops spilling.
//! A failed scratch *read* cannot be repaired (the memory is gone): it is
//! recorded as [`SlotLog::failure`], reads of that block answer "absent",
//! and the writer refuses to write anything after checking it (see
//! `StoreIndex::check_scratch`), so no event is ever chained or sealed
//! from a missing slot.

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::image::short;
use crate::store::segment::codec::Cursor;

/// One event as the index keeps it: 96 bytes, strings as ids, the chain
/// link as the position of the entity's previous event.
#[derive(Clone, Copy)]
pub(super) struct Slot {
    /// The id as two u64 halves: 8-byte alignment keeps `OnceLock<Slot>` at 104 bytes.
    /// Correlation (when it differs from the id) and causation ids live in
    /// side maps: most events have neither.
    pub(super) event_id: Id,
    pub(super) event_hash: [u8; 32],
    pub(super) wall_ms: u64,
    pub(super) prev: u32,
    pub(super) entity: u32,
    pub(super) scope: u32,
    pub(super) clock: u32,
    pub(super) segment_id: u32,
    pub(super) offset: u32,
    pub(super) length: u32,
    pub(super) gate_set: u32,
    pub(super) kind: u16,
    pub(super) flags: u8,
    pub(super) bits: u8,
}

/// A 128-bit id stored with 8-byte alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Id([u64; 2]);

impl Id {
    pub(super) fn new(v: u128) -> Self {
        Self([(v >> 64) as u64, v as u64])
    }
    pub(super) fn get(self) -> u128 {
        (u128::from(self.0[0]) << 64) | u128::from(self.0[1])
    }
}

/// Bytes of a slot in the scratch file.
const SLOT_BYTES: usize = 96;
/// In the scratch file's `bits` byte only: the position holds a slot
/// (compaction leaves positions empty). Never set in memory.
const PRESENT: u8 = 0x80;
/// Slots per block: the unit of the slot file's CRCs, of its reads and of
/// the cache. A random lookup reads one block for each slot it needs, so
/// a block is small (1 536 bytes): most of a larger one would be copied
/// out of the page cache and checksummed for nothing.
pub(super) const BLOCK_SLOTS: usize = 16;
/// Bytes per block in the scratch file.
pub(crate) const BLOCK_BYTES: usize = BLOCK_SLOTS * SLOT_BYTES;
/// Chunk cells per group of the two-level cell table.
const CELL_GROUP: usize = 1024;
/// Smallest chunk (2^10 slots, 16 blocks) and largest (2^16 slots).
pub(crate) const MIN_CHUNK_BITS: u32 = 10;
pub(crate) const MAX_CHUNK_BITS: u32 = 16;

impl Slot {
    fn encode(&self, out: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.event_id.0[0].to_le_bytes());
        put(&self.event_id.0[1].to_le_bytes());
        put(&self.event_hash);
        put(&self.wall_ms.to_le_bytes());
        for v in [
            self.prev,
            self.entity,
            self.scope,
            self.clock,
            self.segment_id,
            self.offset,
            self.length,
            self.gate_set,
        ] {
            put(&v.to_le_bytes());
        }
        put(&self.kind.to_le_bytes());
        put(&[self.flags, self.bits | PRESENT]);
        debug_assert_eq!(at, 92, "four bytes of padding end the record");
    }

    /// The slot in `bytes` (one record of a block), or `None` for an
    /// empty position.
    fn decode(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..SLOT_BYTES)?;
        if b[91] & PRESENT == 0 {
            return None;
        }
        let u64_at = |i: usize| b.get(i..i + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes);
        let u32_at = |i: usize| b.get(i..i + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes);
        let mut event_hash = [0u8; 32];
        event_hash.copy_from_slice(&b[16..48]);
        Some(Self {
            event_id: Id([u64_at(0), u64_at(8)]),
            event_hash,
            wall_ms: u64_at(48),
            prev: u32_at(56),
            entity: u32_at(60),
            scope: u32_at(64),
            clock: u32_at(68),
            segment_id: u32_at(72),
            offset: u32_at(76),
            length: u32_at(80),
            gate_set: u32_at(84),
            kind: u16::from_le_bytes([b[88], b[89]]),
            flags: b[90],
            bits: b[91] & !PRESENT,
        })
    }
}

/// How an index generation keeps its entry log.
#[derive(Clone)]
pub(crate) struct LogSettings {
    /// Slots per chunk, as a power of two (`MIN_CHUNK_BITS..=MAX_CHUNK_BITS`).
    pub(crate) chunk_bits: u32,
    /// Where old chunks go; `None` keeps every chunk in memory.
    pub(crate) scratch_dir: Option<PathBuf>,
    /// Bytes the cache of spilled chunks' blocks and pages holds at most.
    pub(crate) cache_bytes: usize,
}

impl LogSettings {
    /// Everything in memory, 64 Ki slots per chunk.
    pub(crate) fn in_memory() -> Self {
        Self { chunk_bits: MAX_CHUNK_BITS, scratch_dir: None, cache_bytes: 0 }
    }
}

type MemChunk = Box<[OnceLock<Slot>]>;

/// One chunk: in memory, or at an offset of the scratch file.
#[derive(Default)]
struct Cell {
    mem: ArcSwapOption<MemChunk>,
    /// File offset of the spilled chunk plus one; 0 while it is not spilled.
    spilled: AtomicU64,
    /// Where each entity's run starts in the spilled chunk's entity-ordered
    /// copy; set before `spilled`, and only for chunks whose entities
    /// average at least `RUN_MIN_EVENTS` slots (see [`SlotLog::spill`]).
    runs: OnceLock<Box<[Run]>>,
    /// Where the spilled chunk's extras are; set before `spilled`.
    extras: OnceLock<SpilledExtras>,
    /// CRC32 of each block of the spilled chunk's positional copy; set
    /// before `spilled`. A block read from the file is checked against it.
    crcs: OnceLock<Box<[u32]>>,
}

/// What an event has beyond its slot, when it has any: a correlation id
/// other than its own id, a causation id, a compaction anchor (the previous
/// hash, when compaction removed the event it chained from). In memory
/// these live in the generation's side maps; a spilled chunk's go to the
/// scratch file after its slots, so they do not stay in memory either.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Extra {
    pub(super) correlation: Option<u128>,
    pub(super) causation: Option<u128>,
    pub(super) anchor: Option<[u8; 32]>,
}

/// Bytes of an extras record: position in the chunk (u32), which fields are
/// present (u8: 1 correlation, 2 causation, 4 anchor), 3 zero bytes,
/// correlation (u128), causation (u128), anchor (32 bytes); absent fields
/// are zeros.
const EXTRA_BYTES: usize = 72;
/// Extras records per block (the unit of reads and of the cache).
const EXTRA_BLOCK: usize = 64;
/// Block cache keys of extras blocks carry this bit (slot blocks never do).
const EXTRA_KEY: u64 = 1 << 63;
/// Cache keys of position-list pages: this bit, then the page's offset.
const PAGE_KEY: u64 = 1 << 62;

/// A spilled chunk's extras records: sorted by position, `count` of them
/// from file offset `at`, and the position of every `EXTRA_BLOCK`-th one.
struct SpilledExtras {
    at: u64,
    count: u32,
    fences: Box<[u32]>,
    /// CRC32 of each block of records.
    crcs: Box<[u32]>,
}

impl Extra {
    fn encode(&self, at: u32, out: &mut Vec<u8>) {
        let present = u8::from(self.correlation.is_some())
            | u8::from(self.causation.is_some()) << 1
            | u8::from(self.anchor.is_some()) << 2;
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&[present, 0, 0, 0]);
        out.extend_from_slice(&self.correlation.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.causation.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.anchor.unwrap_or([0; 32]));
    }

    /// The record in `b`, with its position.
    fn decode(b: &[u8]) -> Option<(u32, Self)> {
        let b = b.get(..EXTRA_BYTES)?;
        let at = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
        let present = *b.get(4)?;
        let id = |i: usize| b.get(i..i + 16).and_then(|s| s.try_into().ok()).map(u128::from_le_bytes);
        let mut anchor = [0u8; 32];
        anchor.copy_from_slice(b.get(40..72)?);
        Some((
            at,
            Self {
                correlation: if present & 1 != 0 { Some(id(8)?) } else { None },
                causation: if present & 2 != 0 { Some(id(24)?) } else { None },
                anchor: (present & 4 != 0).then_some(anchor),
            },
        ))
    }
}

/// One entity's slots in a spilled chunk's entity-ordered copy.
#[derive(Clone, Copy)]
struct Run {
    entity: u32,
    start: u32,
    count: u32,
    /// CRC32 of the run's records.
    crc: u32,
}

/// A chunk gets an entity-ordered copy only if its entities have at least
/// this many slots on average: its directory then costs at most 12 bytes
/// per this many events, and entities with fewer have short chains anyway.
const RUN_MIN_EVENTS: usize = 16;

/// The entry log of one index generation (see the module docs).
pub(super) struct SlotLog {
    chunk_bits: u32,
    groups: Box<[OnceLock<Box<[Cell]>>]>,
    scratch: Option<Scratch>,
    /// Emptied memory of spilled chunks, for the next chunks to take.
    /// Reusing it keeps resident memory flat: freed and reallocated, a
    /// chunk's pages tend to stay with the allocator (glibc raises its
    /// mmap threshold after the first large free) instead of the system.
    pool: Mutex<Vec<MemChunk>>,
}

/// Emptied chunks kept for reuse (one spill ahead of the next allocation).
const POOL: usize = 1;

impl SlotLog {
    pub(super) fn new(settings: &LogSettings) -> Self {
        let chunk_bits = settings.chunk_bits.clamp(MIN_CHUNK_BITS, MAX_CHUNK_BITS);
        let chunks = 1usize << (32 - chunk_bits);
        let groups = chunks.div_ceil(CELL_GROUP);
        Self {
            chunk_bits,
            groups: (0..groups).map(|_| OnceLock::new()).collect(),
            scratch: settings.scratch_dir.clone().map(|dir| Scratch::new(dir, settings.cache_bytes)),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Slots per chunk.
    pub(super) fn chunk_len(&self) -> u64 {
        1 << self.chunk_bits
    }

    fn locate(&self, i: u64) -> (usize, usize) {
        ((i >> self.chunk_bits) as usize, (i & (self.chunk_len() - 1)) as usize)
    }

    /// The cell of chunk `k`, if its group exists.
    fn cell(&self, k: usize) -> Option<&Cell> {
        self.groups.get(k / CELL_GROUP)?.get()?.get(k % CELL_GROUP)
    }

    fn cell_or_init(&self, k: usize) -> Option<&Cell> {
        let group = self.groups.get(k / CELL_GROUP)?;
        group.get_or_init(|| (0..CELL_GROUP).map(|_| Cell::default()).collect()).get(k % CELL_GROUP)
    }

    /// The slot at position `i`, if one was set.
    pub(super) fn get(&self, i: u64) -> Option<Slot> {
        let (k, at) = self.locate(i);
        let cell = self.cell(k)?;
        if let Some(mem) = &*cell.mem.load() {
            return mem.get(at)?.get().copied();
        }
        let spilled = cell.spilled.load(Ordering::SeqCst);
        if spilled == 0 {
            return None;
        }
        self.scratch.as_ref()?.read(k, at, spilled - 1, cell.crcs.get().map_or(&[], |c| c))
    }

    /// Readies positions `lo..=hi` for this thread's next [`SlotLog::get`]s:
    /// if they lie in one spilled chunk within [`PRELOAD_BLOCKS`] blocks
    /// that are not cached, those blocks are read with one `pread` (an id
    /// search probes several slots of a span, each of which would
    /// otherwise cost a read of its own). Otherwise it does nothing; a
    /// failed read is recorded as a lost read, like any other.
    pub(super) fn preload(&self, lo: u64, hi: u64) {
        let ((k, a), (k_hi, b)) = (self.locate(lo), self.locate(hi));
        let (first, last) = (a / BLOCK_SLOTS, b / BLOCK_SLOTS);
        if k != k_hi || last < first || last - first >= PRELOAD_BLOCKS {
            return;
        }
        let Some(cell) = self.cell(k) else { return };
        if cell.mem.load().is_some() {
            return;
        }
        let spilled = cell.spilled.load(Ordering::SeqCst);
        if let (Some(scratch), true) = (self.scratch.as_ref(), spilled != 0) {
            scratch.preload(k, first..last + 1, spilled - 1, cell.crcs.get().map_or(&[], |c| c));
        }
    }

    /// Fills position `i`; false if it is taken, spilled or out of range.
    pub(super) fn set(&self, i: u64, slot: Slot) -> bool {
        let (k, at) = self.locate(i);
        let Some(cell) = self.cell_or_init(k) else { return false };
        if let Some(mem) = &*cell.mem.load() {
            return mem.get(at).is_some_and(|s| s.set(slot).is_ok());
        }
        let Some(mem) = self.allocated(cell) else { return false };
        mem.get(at).is_some_and(|s| s.set(slot).is_ok())
    }

    /// The memory of `cell`, allocating it (or taking an emptied chunk
    /// from the pool) if the chunk was never used.
    fn allocated(&self, cell: &Cell) -> Option<Arc<MemChunk>> {
        if let Some(mem) = cell.mem.load_full() {
            return Some(mem);
        }
        if cell.spilled.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let reused = self.pool.lock().pop();
        let fresh: Arc<MemChunk> =
            Arc::new(reused.unwrap_or_else(|| (0..self.chunk_len()).map(|_| OnceLock::new()).collect()));
        let previous = cell.mem.compare_and_swap(&None::<Arc<MemChunk>>, Some(Arc::clone(&fresh)));
        match (*previous).clone() {
            Some(other) => {
                self.recycle(fresh);
                Some(other)
            }
            None => Some(fresh),
        }
    }

    /// Empties `mem` into the pool if nothing else holds it and the pool
    /// has room; otherwise it is freed.
    fn recycle(&self, mem: Arc<MemChunk>) {
        let Ok(mut mem) = Arc::try_unwrap(mem) else { return };
        if self.pool.lock().len() >= POOL {
            return;
        }
        for slot in mem.iter_mut() {
            slot.take();
        }
        let mut pool = self.pool.lock();
        if pool.len() < POOL {
            pool.push(mem);
        }
    }

    /// Allocates chunk `k` now, so that the first insert into it does not.
    pub(super) fn prepare(&self, k: usize) {
        if let Some(cell) = self.cell_or_init(k) {
            self.allocated(cell);
        }
    }

    /// Whether old chunks go to a scratch file.
    pub(super) fn spills(&self) -> bool {
        self.scratch.as_ref().is_some_and(|s| !s.write_failed.load(Ordering::Acquire))
    }

    /// Writes chunk `k` to the scratch file, with `extras` (the extras of
    /// its positions, by position in the chunk, sorted), and drops its
    /// memory. The caller guarantees no slot of it will be set again, and
    /// drops its own copy of `extras` only if this returns true. A failed
    /// write leaves the chunk in memory and turns spilling off.
    pub(super) fn spill(&self, k: usize, extras: &[(u32, Extra)]) -> bool {
        let Some(scratch) = self.scratch.as_ref().filter(|_| self.spills()) else { return false };
        let Some(cell) = self.cell(k) else { return false };
        let Some(mem) = cell.mem.load_full() else { return false };
        let mut bytes = Vec::with_capacity(mem.len() * SLOT_BYTES * 2);
        bytes.resize(mem.len() * SLOT_BYTES, 0);
        for (slot, out) in mem.iter().zip(bytes.chunks_exact_mut(SLOT_BYTES)) {
            if let Some(s) = slot.get() {
                s.encode(out);
            }
        }
        let crcs: Box<[u32]> = bytes.chunks(BLOCK_BYTES).map(crc32fast::hash).collect();
        let runs = Self::entity_ordered(&mem, &mut bytes);
        let extras_from = bytes.len();
        let mut fences = Vec::with_capacity(extras.len().div_ceil(EXTRA_BLOCK));
        for (i, (at, extra)) in extras.iter().enumerate() {
            if i % EXTRA_BLOCK == 0 {
                fences.push(*at);
            }
            extra.encode(*at, &mut bytes);
        }
        let extra_crcs = bytes
            .get(extras_from..)
            .unwrap_or(&[])
            .chunks(EXTRA_BLOCK * EXTRA_BYTES)
            .map(crc32fast::hash)
            .collect();
        match scratch.append(&bytes) {
            Ok(offset) => {
                if let Some(runs) = runs {
                    let _ = cell.runs.set(runs);
                }
                let count = extras.len() as u32;
                let _ = cell.extras.set(SpilledExtras {
                    at: offset + extras_from as u64,
                    count,
                    fences: fences.into_boxed_slice(),
                    crcs: extra_crcs,
                });
                let _ = cell.crcs.set(crcs);
                cell.spilled.store(offset + 1, Ordering::SeqCst);
                cell.mem.store(None);
                self.recycle(mem);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "index scratch file not written; old index chunks stay in memory");
                scratch.write_failed.store(true, Ordering::Release);
                false
            }
        }
    }

    /// The extras of position `i` from its spilled chunk's records; `None`
    /// if the chunk is not spilled, the position has none, or the read failed.
    pub(super) fn extra(&self, i: u64) -> Option<Extra> {
        let (k, at) = self.locate(i);
        let spilled = self.cell(k)?.extras.get()?;
        let at = at as u32;
        let block = spilled.fences.partition_point(|f| *f <= at).checked_sub(1)?;
        let first = block * EXTRA_BLOCK;
        let len = (spilled.count as usize).checked_sub(first)?.min(EXTRA_BLOCK) * EXTRA_BYTES;
        let key = EXTRA_KEY | ((k as u64) << 32) | block as u64;
        let scratch = self.scratch.as_ref()?;
        let bytes = match scratch.cache.get(key) {
            Some(bytes) => bytes,
            None => {
                let at = spilled.at + (first * EXTRA_BYTES) as u64;
                let bytes = scratch.read_checked(at, len, spilled.crcs.get(block).copied())?;
                scratch.cache.insert(key, Arc::clone(&bytes));
                bytes
            }
        };
        let position = |r: usize| bytes.get(r * EXTRA_BYTES..r * EXTRA_BYTES + 4).map(|b| b.try_into());
        let (mut lo, mut hi) = (0, bytes.len() / EXTRA_BYTES);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(Ok(p)) = position(mid) else { return None };
            match u32::from_le_bytes(p).cmp(&at) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return Extra::decode(bytes.get(mid * EXTRA_BYTES..)?).map(|(_, e)| e)
                }
            }
        }
        None
    }

    /// Appends to `bytes` the chunk's slots ordered by entity, then
    /// position (each record carrying its position in the padding), and
    /// returns where each entity's run starts; `None` (nothing appended)
    /// when the chunk has too many entities for the copy to pay.
    /// `bytes` holds the chunk's positional copy.
    fn entity_ordered(mem: &MemChunk, bytes: &mut Vec<u8>) -> Option<Box<[Run]>> {
        let mut order: Vec<(u32, u32)> =
            mem.iter().enumerate().filter_map(|(at, s)| Some((s.get()?.entity, at as u32))).collect();
        order.sort_unstable();
        let mut runs: Vec<Run> = Vec::new();
        for (i, (entity, _)) in order.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if run.entity == *entity => run.count += 1,
                _ => {
                    if (runs.len() + 1) * RUN_MIN_EVENTS > order.len().max(RUN_MIN_EVENTS) {
                        return None;
                    }
                    runs.push(Run { entity: *entity, start: i as u32, count: 1, crc: 0 });
                }
            }
        }
        // Records are copied from the positional copy already in `bytes`.
        let base = bytes.len();
        bytes.reserve_exact(order.len() * SLOT_BYTES);
        for (_, at) in &order {
            let from = *at as usize * SLOT_BYTES;
            let to = bytes.len();
            bytes.extend_from_within(from..from + SLOT_BYTES);
            bytes[to + 92..to + 96].copy_from_slice(&at.to_le_bytes());
        }
        debug_assert_eq!(bytes.len(), base + order.len() * SLOT_BYTES);
        for run in &mut runs {
            let from = base + run.start as usize * SLOT_BYTES;
            run.crc = crc32fast::hash(bytes.get(from..from + run.count as usize * SLOT_BYTES).unwrap_or(&[]));
        }
        Some(runs.into_boxed_slice())
    }

    /// The slots of `entity` in the spilled chunk holding position `through`,
    /// oldest first, ending at `through`; `None` if that chunk is not
    /// spilled or has no entity-ordered copy, or the copy disagrees.
    pub(super) fn run_through(&self, through: u64, entity: u32) -> Option<Vec<(u64, Slot)>> {
        let (k, at) = self.locate(through);
        let cell = self.cell(k)?;
        let runs = cell.runs.get()?;
        let offset = cell.spilled.load(Ordering::SeqCst).checked_sub(1)?;
        let run = runs.get(runs.binary_search_by_key(&entity, |r| r.entity).ok()?)?;
        let scratch = self.scratch.as_ref()?;
        let start = offset + (self.chunk_len() as usize + run.start as usize) as u64 * SLOT_BYTES as u64;
        let bytes = scratch.read_checked(start, run.count as usize * SLOT_BYTES, Some(run.crc))?;
        let base = (k as u64) << self.chunk_bits;
        let mut out = Vec::with_capacity(run.count as usize);
        for record in bytes.chunks_exact(SLOT_BYTES) {
            let pos = u32::from_le_bytes(record[92..96].try_into().ok()?);
            if pos as usize > at {
                break;
            }
            out.push((base + u64::from(pos), Slot::decode(record)?));
        }
        (out.last().map(|(p, _)| *p) == Some(through)).then_some(out)
    }

    /// Whether chunk `k` is in the scratch file.
    pub(super) fn is_spilled(&self, k: usize) -> bool {
        self.cell(k).is_some_and(|c| c.spilled.load(Ordering::SeqCst) != 0)
    }

    /// Whether chunk `k` has memory allocated.
    #[cfg(test)]
    pub(super) fn is_allocated(&self, k: usize) -> bool {
        self.cell(k).is_some_and(|c| c.mem.load().is_some())
    }

    /// The first failed scratch read, if any (sticky).
    pub(super) fn failure(&self) -> Option<String> {
        self.scratch.as_ref().and_then(|s| s.read_failure.get().cloned())
    }
}

impl super::pos_list::PageStore for SlotLog {
    fn write_page(&self, bytes: &[u8]) -> Option<u64> {
        let scratch = self.scratch.as_ref().filter(|_| self.spills())?;
        match scratch.append(bytes) {
            Ok(at) => Some(at),
            Err(e) => {
                tracing::warn!(error = %e, "index slot file not written; position lists stay in memory");
                scratch.write_failed.store(true, Ordering::Release);
                None
            }
        }
    }

    /// From the cache, or read and checked (cached on its second miss,
    /// like a slot block).
    fn read_page(&self, at: u64, len: u32, crc: u32) -> Option<Arc<[u8]>> {
        let scratch = self.scratch.as_ref()?;
        let key = PAGE_KEY | at;
        if let Some(bytes) = scratch.cache.get(key) {
            return Some(bytes);
        }
        let bytes = scratch.read_checked(at, len as usize, Some(crc))?;
        if scratch.cache.admit(key) {
            scratch.cache.insert(key, Arc::clone(&bytes));
        }
        Some(bytes)
    }
}

impl SlotLog {
    /// The byte range of the slot file that holds chunks and pages (empty
    /// without a slot file).
    pub(super) fn file_range(&self) -> std::ops::Range<u64> {
        match &self.scratch {
            Some(s) if s.file.get().is_some() => SLOT_HEADER..*s.end.lock(),
            _ => 0..0,
        }
    }
}

/// What a chunk's entry in an index image says (see `encode_image`).
const CHUNK_EMPTY: u8 = 0;
const CHUNK_SPILLED: u8 = 1;
const CHUNK_RESIDENT: u8 = 2;

impl SlotLog {
    /// The slot file's name, once the file exists.
    pub(super) fn slot_file_name(&self) -> Option<String> {
        match self.scratch.as_ref()?.file.get()? {
            Ok(f) => Some(f.name.clone()),
            Err(_) => None,
        }
    }

    /// Makes the slot file's bytes durable and marks it kept (an image is
    /// about to name it). Nothing to do when no chunk was spilled.
    pub(super) fn persist(&self) -> Result<(), String> {
        let Some(scratch) = &self.scratch else { return Ok(()) };
        let Some(f) = scratch.file.get() else { return Ok(()) };
        let f = f.as_ref().map_err(Clone::clone)?;
        f.file.sync_data().map_err(|e| format!("slot file {}: {e}", f.name))?;
        scratch.kept.store(true, Ordering::Release);
        Ok(())
    }

    /// Appends the log's part of an index image: positions below `end`,
    /// chunks below `spilled_below` by their place in the slot file, the
    /// rest as slot records. Fails if a chunk that should be in the file
    /// is not (a failed spill) or the file lost a read.
    ///
    /// Layout: varint chunk bits; u8 slot file (0 none; 1: string name,
    /// u128 id, varint length); varint chunks; varint chunks below
    /// `spilled_below`; per chunk a u8 kind:
    /// 0 empty; 1 spilled: varint offset, u32 CRC per block, varint run
    /// count and runs (varint entity, start, count, u32 CRC), varint
    /// extras offset, varint extras count, u32 fence and u32 CRC per
    /// extras block; 2 resident: varint record count, then 96-byte records
    /// of its positions below `end` (zeros where empty).
    pub(super) fn encode_image(
        &self,
        spilled_below: usize,
        end: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        use crate::store::segment::codec::PutBytes;
        if let Some(why) = self.failure() {
            return Err(why);
        }
        out.put_varint(u64::from(self.chunk_bits));
        match self.scratch.as_ref().and_then(|s| s.file.get()) {
            Some(Ok(f)) => {
                out.put_u8(1);
                out.put_str(&f.name);
                out.put_u128(f.id);
                out.put_varint(*self.scratch.as_ref().map(|s| s.end.lock()).ok_or("no slot file")?);
            }
            Some(Err(e)) => return Err(e.clone()),
            None => out.put_u8(0),
        }
        let chunks = end.div_ceil(self.chunk_len()) as usize;
        if chunks.saturating_sub(spilled_below) > 2 {
            return Err("index chunks that should be in the slot file are still in memory".into());
        }
        out.put_varint(chunks as u64);
        out.put_varint(spilled_below as u64);
        for k in 0..chunks {
            let cell = self.cell(k);
            let spilled = cell.map_or(0, |c| c.spilled.load(Ordering::SeqCst));
            if spilled != 0 {
                let cell = cell.ok_or("chunk vanished")?;
                Self::encode_spilled(cell, spilled - 1, out);
                continue;
            }
            let Some(mem) = cell.and_then(|c| c.mem.load_full()) else {
                out.put_u8(CHUNK_EMPTY);
                continue;
            };
            if k < spilled_below {
                return Err(format!("index chunk {k} was not written to the slot file"));
            }
            out.put_u8(CHUNK_RESIDENT);
            let upto = (end - k as u64 * self.chunk_len()).min(self.chunk_len()) as usize;
            out.put_varint(upto as u64);
            let from = out.len();
            out.resize(from + upto * SLOT_BYTES, 0);
            let records = out.get_mut(from..).unwrap_or(&mut []).chunks_exact_mut(SLOT_BYTES);
            for (slot, record) in mem.iter().zip(records) {
                if let Some(s) = slot.get() {
                    s.encode(record);
                }
            }
        }
        Ok(())
    }

    fn encode_spilled(cell: &Cell, offset: u64, out: &mut Vec<u8>) {
        use crate::store::segment::codec::PutBytes;
        out.put_u8(CHUNK_SPILLED);
        out.put_varint(offset);
        for crc in cell.crcs.get().map_or(&[][..], |c| c) {
            out.put_u32(*crc);
        }
        let runs = cell.runs.get().map_or(&[][..], |r| r);
        out.put_varint(runs.len() as u64);
        for run in runs {
            out.put_varint(u64::from(run.entity));
            out.put_varint(u64::from(run.start));
            out.put_varint(u64::from(run.count));
            out.put_u32(run.crc);
        }
        let extras = cell.extras.get();
        out.put_varint(extras.map_or(0, |e| e.at));
        out.put_varint(extras.map_or(0, |e| u64::from(e.count)));
        for (fence, crc) in extras.map(|e| e.fences.iter().zip(e.crcs.iter())).into_iter().flatten() {
            out.put_u32(*fence);
            out.put_u32(*crc);
        }
    }

    /// The log an image describes (see [`SlotLog::encode_image`]), with
    /// its slot file adopted; errors say why the image cannot be used.
    /// Every offset is checked against the slot file's length and every
    /// count against the chunk size, so a damaged image cannot make a
    /// read land outside what the file holds.
    pub(super) fn decode_image(settings: &LogSettings, c: &mut Cursor<'_>) -> Result<(Self, usize), String> {
        let dir = settings.scratch_dir.clone().ok_or("this store keeps its index in memory")?;
        let bits = c.varint("chunk bits").map_err(short)?;
        let mut log = Self::new(settings);
        if bits != u64::from(log.chunk_bits) {
            return Err(format!("the image has 2^{bits} slots per chunk, the settings 2^{}", log.chunk_bits));
        }
        let file_len = match c.u8("slot file").map_err(short)? {
            0 => 0,
            1 => {
                let name = c.str("slot file name").map_err(short)?;
                let id = c.u128("slot file id").map_err(short)?;
                let len = c.varint("slot file length").map_err(short)?;
                log.scratch = Some(Scratch::adopt(dir, name, id, len, settings.cache_bytes)?);
                len
            }
            _ => return Err("unknown slot file tag".into()),
        };
        let chunks = c.varint("chunks").map_err(short)? as usize;
        let spilled_below = c.varint("chunks spilled").map_err(short)? as usize;
        // A settled index keeps at most two chunks in memory (see
        // `IndexGen::spillable_below`); more would be memory an image
        // could claim without holding its bytes.
        if chunks > 1usize << (32 - log.chunk_bits) || spilled_below > chunks || chunks - spilled_below > 2 {
            return Err("more chunks than positions, or more in memory than a close keeps".into());
        }
        for k in 0..chunks {
            match c.u8("chunk kind").map_err(short)? {
                CHUNK_EMPTY => {}
                CHUNK_SPILLED => log.decode_spilled(k, file_len, c)?,
                CHUNK_RESIDENT if k >= spilled_below => log.decode_resident(k, c)?,
                _ => return Err(format!("chunk {k}: unknown kind, or in memory where it should be spilled")),
            }
        }
        Ok((log, spilled_below))
    }

    fn decode_spilled(&self, k: usize, file_len: u64, c: &mut Cursor<'_>) -> Result<(), String> {
        let len = self.chunk_len();
        let offset = c.varint("chunk offset").map_err(short)?;
        let fits =
            |at: u64, bytes: u64| at >= SLOT_HEADER && at.checked_add(bytes).is_some_and(|e| e <= file_len);
        if !fits(offset, len * SLOT_BYTES as u64) {
            return Err(format!("chunk {k} lies outside the slot file"));
        }
        let blocks = len as usize / BLOCK_SLOTS;
        let crcs = c.u32s(blocks, "block crcs").map_err(short)?;
        let n_runs = c.varint("runs").map_err(short)? as usize;
        if n_runs > len as usize {
            return Err(format!("chunk {k}: more runs than slots"));
        }
        let mut runs = Vec::with_capacity(n_runs);
        let mut copied = 0u64;
        for _ in 0..n_runs {
            let entity = c.varint_u32("run entity").map_err(short)?;
            let start = c.varint_u32("run start").map_err(short)?;
            let count = c.varint_u32("run count").map_err(short)?;
            let crc = c.u32("run crc").map_err(short)?;
            if u64::from(start) + u64::from(count) > len
                || runs.last().is_some_and(|r: &Run| r.entity >= entity)
            {
                return Err(format!("chunk {k}: a run out of order or past the chunk"));
            }
            copied = copied.max(u64::from(start) + u64::from(count));
            runs.push(Run { entity, start, count, crc });
        }
        if !fits(offset, (len + copied) * SLOT_BYTES as u64) {
            return Err(format!("chunk {k}: its entity-ordered copy lies outside the slot file"));
        }
        let at = c.varint("extras offset").map_err(short)?;
        let count = c.varint_u32("extras count").map_err(short)?;
        if count as u64 > len || (count > 0 && !fits(at, u64::from(count) * EXTRA_BYTES as u64)) {
            return Err(format!("chunk {k}: its extras lie outside the slot file"));
        }
        let n_blocks = (count as usize).div_ceil(EXTRA_BLOCK);
        let mut fences = Vec::with_capacity(n_blocks);
        let mut extra_crcs = Vec::with_capacity(n_blocks);
        for _ in 0..n_blocks {
            fences.push(c.u32("extras fence").map_err(short)?);
            extra_crcs.push(c.u32("extras crc").map_err(short)?);
        }
        let cell = self.cell_or_init(k).ok_or("chunk out of range")?;
        if n_runs > 0 {
            let _ = cell.runs.set(runs.into_boxed_slice());
        }
        let extras = SpilledExtras { at, count, fences: fences.into(), crcs: extra_crcs.into() };
        let _ = cell.extras.set(extras);
        let _ = cell.crcs.set(crcs);
        cell.spilled.store(offset + 1, Ordering::SeqCst);
        Ok(())
    }

    fn decode_resident(&self, k: usize, c: &mut Cursor<'_>) -> Result<(), String> {
        let n = c.varint("records").map_err(short)?;
        if n > self.chunk_len() {
            return Err(format!("chunk {k}: more records than slots"));
        }
        let records = c.take(n as usize * SLOT_BYTES, "slot records").map_err(short)?;
        if n == 0 {
            return Ok(());
        }
        let cell = self.cell_or_init(k).ok_or("chunk out of range")?;
        let mem = self.allocated(cell).ok_or("chunk memory unavailable")?;
        for (at, record) in records.chunks_exact(SLOT_BYTES).enumerate() {
            if let Some(slot) = Slot::decode(record) {
                if mem.get(at).is_none_or(|s| s.set(slot).is_err()) {
                    return Err(format!("chunk {k}: slot {at} set twice"));
                }
            }
        }
        Ok(())
    }
}

/// The slot file's first bytes: this magic, then the file's random id
/// (u128), then zeros up to [`SLOT_HEADER`].
const SLOT_MAGIC: &[u8; 8] = b"FBATSLOT";
/// Bytes before the first chunk of a slot file.
const SLOT_HEADER: u64 = 64;

/// The slot file of a generation: its handle, name and random id.
struct SlotFile {
    file: File,
    name: String,
    id: u128,
}

/// Whether `name` is what [`Scratch`] names its files (`index-<32 hex>.slots`).
pub(crate) fn is_slot_file_name(name: &str) -> bool {
    name.strip_prefix("index-")
        .and_then(|n| n.strip_suffix(".slots"))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A fresh random file id (not a secret: it only tells one slot file from
/// another, so an image never adopts a file it did not name).
fn fresh_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        h.write_u128(now.map_or(0, |d| d.as_nanos()));
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// The slot file and the cache in front of it.
struct Scratch {
    dir: PathBuf,
    file: OnceLock<Result<SlotFile, String>>,
    /// Where the next spilled chunk goes (the spilling thread only).
    end: Mutex<u64>,
    cache: BlockCache,
    write_failed: AtomicBool,
    read_failure: OnceLock<String>,
    /// An index image names this file, so it outlives the generation;
    /// otherwise dropping the generation removes it.
    kept: AtomicBool,
    /// This scratch among all of the process's (never reused): names its
    /// blocks in each thread's [`LAST_BLOCK`].
    serial: u64,
}

/// Serials of [`Scratch`]es.
static SCRATCH_SERIAL: AtomicU64 = AtomicU64::new(1);

/// The last slot blocks this thread read from a slot file, with the
/// scratch serial, chunk and first block they came from: one block for a
/// lookup of one slot, or the few blocks an id's span covers (see
/// [`SlotLog::preload`]), read with one `pread`. A lookup's probes then
/// cost no further read. Slots never change once spilled, so the copy stays
/// exact while its scratch lives, and a serial is never given to another
/// scratch.
struct LastBlock {
    serial: u64,
    chunk: usize,
    first: usize,
    bytes: Vec<u8>,
}

impl LastBlock {
    /// The bytes of block `block` of chunk `chunk` of scratch `serial`, if
    /// they are here.
    fn block(&self, serial: u64, chunk: usize, block: usize) -> Option<&[u8]> {
        if self.serial != serial || self.chunk != chunk || block < self.first {
            return None;
        }
        let from = (block - self.first) * BLOCK_BYTES;
        self.bytes.get(from..from + BLOCK_BYTES)
    }
}

thread_local! {
    static LAST_BLOCK: std::cell::RefCell<LastBlock> =
        const { std::cell::RefCell::new(LastBlock { serial: 0, chunk: 0, first: 0, bytes: Vec::new() }) };
}

/// Most blocks [`SlotLog::preload`] reads at once (7.5 KiB: a span of 64
/// positions that does not start on a block boundary).
const PRELOAD_BLOCKS: usize = 5;

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(Ok(f)) = self.file.get() {
            if !self.kept.load(Ordering::Acquire) {
                let _ = std::fs::remove_file(self.dir.join(&f.name));
            }
        }
    }
}

impl Scratch {
    fn new(dir: PathBuf, cache_bytes: usize) -> Self {
        Self {
            dir,
            file: OnceLock::new(),
            end: Mutex::new(SLOT_HEADER),
            cache: BlockCache::new(cache_bytes),
            write_failed: AtomicBool::new(false),
            read_failure: OnceLock::new(),
            kept: AtomicBool::new(false),
            serial: SCRATCH_SERIAL.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Takes over the slot file an index image names: `name` in `dir`, a
    /// regular file (not a link) whose header carries `id` and which holds
    /// at least `len` bytes. Bytes past `len` (chunks spilled after the
    /// image was written, by a run that then wrote none) are cut off.
    fn adopt(dir: PathBuf, name: &str, id: u128, len: u64, cache_bytes: usize) -> Result<Self, String> {
        if !is_slot_file_name(name) || len < SLOT_HEADER {
            return Err(format!("slot file name {name:?} or length {len} is not one this store writes"));
        }
        let path = dir.join(name);
        let what = |e: std::io::Error| format!("slot file {name}: {e}");
        if !std::fs::symlink_metadata(&path).map_err(what)?.file_type().is_file() {
            return Err(format!("slot file {name} is not a regular file"));
        }
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(what)?;
        let mut header = [0u8; 24];
        file.read_exact_at(&mut header, 0).map_err(what)?;
        let found = header.get(8..24).and_then(|b| b.try_into().ok()).map(u128::from_le_bytes);
        if header.get(..8) != Some(&SLOT_MAGIC[..]) || found != Some(id) {
            return Err(format!("slot file {name} is not the one the image names"));
        }
        let on_disk = file.metadata().map_err(what)?.len();
        if on_disk < len {
            return Err(format!("slot file {name} holds {on_disk} bytes, the image needs {len}"));
        }
        if on_disk > len {
            file.set_len(len).map_err(what)?;
        }
        let scratch = Self::new(dir, cache_bytes);
        *scratch.end.lock() = len;
        scratch.kept.store(true, Ordering::Release);
        let _ = scratch.file.set(Ok(SlotFile { file, name: name.to_string(), id }));
        Ok(scratch)
    }

    fn slot_file(&self) -> Result<&SlotFile, String> {
        self.file.get_or_init(|| Self::create(&self.dir)).as_ref().map_err(Clone::clone)
    }

    fn file(&self) -> Result<&File, String> {
        self.slot_file().map(|f| &f.file)
    }

    /// A new slot file with a fresh id; the name never existed before
    /// (`O_EXCL`, which also refuses a planted link).
    fn create(dir: &std::path::Path) -> Result<SlotFile, String> {
        let id = fresh_id();
        let name = format!("index-{id:032x}.slots");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(&name))
            .map_err(|e| e.to_string())?;
        let mut header = [0u8; SLOT_HEADER as usize];
        header[..8].copy_from_slice(SLOT_MAGIC);
        header[8..24].copy_from_slice(&id.to_le_bytes());
        if let Err(e) = file.write_all_at(&header, 0) {
            let _ = std::fs::remove_file(dir.join(&name));
            return Err(e.to_string());
        }
        Ok(SlotFile { file, name, id })
    }

    /// Appends `bytes`; returns the offset they start at.
    fn append(&self, bytes: &[u8]) -> Result<u64, String> {
        let file = self.file()?;
        let mut end = self.end.lock();
        file.write_all_at(bytes, *end).map_err(|e| e.to_string())?;
        let at = *end;
        *end += bytes.len() as u64;
        Ok(at)
    }

    /// `len` bytes at `at` in shared memory, checked against `crc`; a
    /// mismatch is recorded like a failed read.
    fn read_checked(&self, at: u64, len: usize, crc: Option<u32>) -> Option<Arc<[u8]>> {
        let bytes = self.read_shared(at, len)?;
        self.matches(&bytes, at, crc).then_some(bytes)
    }

    /// Whether `bytes`, read from `at`, match the CRC recorded for them; a
    /// mismatch (or no recorded CRC) is recorded like a failed read.
    fn matches(&self, bytes: &[u8], at: u64, crc: Option<u32>) -> bool {
        if crc == Some(crc32fast::hash(bytes)) {
            return true;
        }
        self.fail(format!("index slot file checksum mismatch at byte {at} ({} bytes)", bytes.len()));
        false
    }

    /// `len` bytes at `at`, read straight into shared memory for the cache.
    fn read_shared(&self, at: u64, len: usize) -> Option<Arc<[u8]>> {
        let mut bytes: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
        let buffer = Arc::get_mut(&mut bytes)?;
        self.read_into(buffer, at).then_some(bytes)
    }

    /// Fills `bytes` from `at`; false, recording why, if it cannot.
    fn read_into(&self, bytes: &mut [u8], at: u64) -> bool {
        let read = self.file().and_then(|f| f.read_exact_at(bytes, at).map_err(|e| e.to_string()));
        match read {
            Ok(()) => true,
            Err(e) => {
                self.fail(format!("index slot file unreadable at byte {at}: {e}"));
                false
            }
        }
    }

    /// Records a lost read (sticky: the writer stops), and removes the
    /// index image, so the next open rebuilds the index from the segments
    /// instead of trusting this file again.
    fn fail(&self, why: String) {
        tracing::error!(reason = %why, "index entries lost from memory; the writer stops");
        let _ = std::fs::remove_file(self.dir.join(super::image::IMAGE_FILE));
        let _ = self.read_failure.set(why);
    }

    /// Slot `at` of the chunk `k` spilled at `offset`: from this thread's
    /// last blocks read, or from the cache, or read from the file (where the
    /// block must match its CRC in `crcs`). A block read from the file is
    /// cached only on its second miss (see [`BlockCache::admit`]), so random
    /// reads over a large log do not churn the cache.
    fn read(&self, k: usize, at: usize, offset: u64, crcs: &[u32]) -> Option<Slot> {
        let block = at / BLOCK_SLOTS;
        let within = (at % BLOCK_SLOTS) * SLOT_BYTES;
        LAST_BLOCK.with(|last| {
            let mut last = last.try_borrow_mut().ok()?;
            if let Some(bytes) = last.block(self.serial, k, block) {
                return Slot::decode(bytes.get(within..)?);
            }
            if let Some(bytes) = self.cache.get(block_key(k, block)) {
                return Slot::decode(bytes.get(within..)?);
            }
            self.fill(&mut last, k, block..block + 1, offset, crcs)?;
            Slot::decode(last.block(self.serial, k, block)?.get(within..)?)
        })
    }

    /// Reads blocks `blocks` of the chunk `k` spilled at `offset` into this
    /// thread's last blocks, unless they are there or the first and last
    /// are cached.
    fn preload(&self, k: usize, blocks: std::ops::Range<usize>, offset: u64, crcs: &[u32]) {
        let (first, last_block) = (blocks.start, blocks.end.saturating_sub(1));
        if self.cache.contains(block_key(k, first)) && self.cache.contains(block_key(k, last_block)) {
            return;
        }
        LAST_BLOCK.with(|last| {
            let Ok(mut last) = last.try_borrow_mut() else { return };
            if last.block(self.serial, k, first).is_none() || last.block(self.serial, k, last_block).is_none()
            {
                let _ = self.fill(&mut last, k, blocks, offset, crcs);
            }
        });
    }

    /// Reads `blocks` of the chunk `k` spilled at `offset` into `last` with
    /// one `pread`, each checked against its CRC in `crcs`; each block is
    /// offered to the cache. `None` (the loss recorded) if any cannot be read
    /// or does not match; `last` then holds nothing.
    fn fill(
        &self,
        last: &mut LastBlock,
        k: usize,
        blocks: std::ops::Range<usize>,
        offset: u64,
        crcs: &[u32],
    ) -> Option<()> {
        last.serial = 0;
        last.bytes.resize(blocks.len() * BLOCK_BYTES, 0);
        let from = offset + (blocks.start * BLOCK_BYTES) as u64;
        if !self.read_into(&mut last.bytes, from) {
            return None;
        }
        for (i, bytes) in last.bytes.chunks(BLOCK_BYTES).enumerate() {
            let at = from + (i * BLOCK_BYTES) as u64;
            if !self.matches(bytes, at, crcs.get(blocks.start + i).copied()) {
                return None;
            }
        }
        (last.serial, last.chunk, last.first) = (self.serial, k, blocks.start);
        for (i, bytes) in last.bytes.chunks(BLOCK_BYTES).enumerate() {
            let key = block_key(k, blocks.start + i);
            if self.cache.admit(key) {
                self.cache.insert(key, Arc::from(bytes));
            }
        }
        Some(())
    }
}

/// The cache key of slot block `block` of chunk `k`.
fn block_key(k: usize, block: usize) -> u64 {
    ((k as u64) << 32) | block as u64
}

/// Shards of the block cache (a power of two).
const SHARDS: usize = 16;

/// A cache of blocks read from the slot file (slot blocks, position-list
/// pages, extras blocks), bounded in bytes, in shards, each evicting by
/// CLOCK (second chance): a hit marks its frame; eviction sweeps, clearing
/// marks, and takes the first unmarked frame.
pub(super) struct BlockCache {
    shards: Box<[Mutex<Shard>]>,
}

struct Shard {
    frames: Vec<Frame>,
    at: HashMap<u64, usize>,
    hand: usize,
    /// Bytes this shard may hold, and holds.
    cap: usize,
    held: usize,
    /// Keys (plus one) of blocks missed once, direct-mapped by key; a
    /// second miss while the key is still here admits the block.
    missed: Vec<u64>,
}

/// Entries of each shard's table of blocks missed once.
const MISSED_SLOTS: usize = 256;

struct Frame {
    key: u64,
    bytes: Arc<[u8]>,
    marked: bool,
}

impl BlockCache {
    /// A cache of at most `bytes` bytes of blocks (0: caches nothing).
    pub(super) fn new(bytes: usize) -> Self {
        let per = bytes.div_ceil(SHARDS);
        let shard = || {
            Mutex::new(Shard {
                frames: Vec::new(),
                at: HashMap::new(),
                hand: 0,
                cap: per,
                held: 0,
                missed: Vec::new(),
            })
        };
        Self { shards: (0..SHARDS).map(|_| shard()).collect() }
    }

    fn shard(&self, key: u64) -> &Mutex<Shard> {
        let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        &self.shards[mixed as usize % SHARDS]
    }

    fn contains(&self, key: u64) -> bool {
        self.shard(key).lock().at.contains_key(&key)
    }

    fn get(&self, key: u64) -> Option<Arc<[u8]>> {
        let mut shard = self.shard(key).lock();
        let i = *shard.at.get(&key)?;
        let frame = shard.frames.get_mut(i)?;
        frame.marked = true;
        Some(Arc::clone(&frame.bytes))
    }

    /// Whether a block just read from the file should be cached: on its
    /// second miss while the first is still remembered. The first miss is
    /// remembered (evicting whatever key shared its entry).
    fn admit(&self, key: u64) -> bool {
        let mut shard = self.shard(key).lock();
        if shard.cap == 0 {
            return false;
        }
        if shard.missed.is_empty() {
            shard.missed = vec![0; MISSED_SLOTS];
        }
        let i = (key.wrapping_mul(0xFF51_AFD7_ED55_8CCD) >> 40) as usize % MISSED_SLOTS;
        if shard.missed[i] == key.wrapping_add(1) {
            shard.missed[i] = 0;
            return true;
        }
        shard.missed[i] = key.wrapping_add(1);
        false
    }

    /// Caches `bytes` under `key`, evicting until they fit; a block larger
    /// than a whole shard is not cached.
    fn insert(&self, key: u64, bytes: Arc<[u8]>) {
        let mut shard = self.shard(key).lock();
        if bytes.len() > shard.cap || shard.at.contains_key(&key) {
            return;
        }
        while shard.held + bytes.len() > shard.cap && !shard.frames.is_empty() {
            let victim = shard.sweep();
            shard.evict(victim);
        }
        let i = shard.frames.len();
        shard.held += bytes.len();
        shard.frames.push(Frame { key, bytes, marked: false });
        shard.at.insert(key, i);
    }

    /// Blocks held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().frames.len()).sum()
    }
}

impl Shard {
    /// Drops frame `i`; the last frame takes its place.
    fn evict(&mut self, i: usize) {
        if i >= self.frames.len() {
            return;
        }
        let old = self.frames.swap_remove(i);
        self.held -= old.bytes.len();
        self.at.remove(&old.key);
        if let Some(moved) = self.frames.get(i) {
            self.at.insert(moved.key, i);
        }
    }

    /// The frame to evict: the first unmarked one from the hand, clearing
    /// marks on the way (ends within two sweeps).
    fn sweep(&mut self) -> usize {
        loop {
            let i = self.hand % self.frames.len();
            self.hand = i + 1;
            let frame = &mut self.frames[i];
            if !frame.marked {
                return i;
            }
            frame.marked = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u32) -> Slot {
        Slot {
            event_id: Id::new(u128::from(n) << 70 | u128::from(n)),
            event_hash: [n as u8; 32],
            wall_ms: u64::from(n) * 3,
            prev: n.wrapping_sub(1),
            entity: n % 7,
            scope: n % 3,
            clock: n / 2,
            segment_id: n / 100,
            offset: n.wrapping_mul(96),
            length: 90 + n % 10,
            gate_set: n % 5,
            kind: (n % 65_000) as u16,
            flags: (n % 256) as u8,
            bits: (n % 16) as u8,
        }
    }

    fn same(a: &Slot, b: &Slot) -> bool {
        let mut x = [0u8; SLOT_BYTES];
        let mut y = [0u8; SLOT_BYTES];
        a.encode(&mut x);
        b.encode(&mut y);
        x == y && a.event_id == b.event_id && a.bits == b.bits
    }

    #[test]
    fn slots_round_trip_through_their_encoding() {
        for n in [0u32, 1, 255, 70_000, u32::MAX] {
            let mut bytes = [0u8; SLOT_BYTES];
            slot(n).encode(&mut bytes);
            let back = Slot::decode(&bytes).expect("present");
            assert!(same(&slot(n), &back), "slot {n}");
            assert_eq!(back.bits & PRESENT, 0, "the marker stays on disk");
        }
        assert!(Slot::decode(&[0u8; SLOT_BYTES]).is_none(), "an empty position");
    }

    #[test]
    fn spilled_extras_read_back_exactly_and_only_where_set() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = LogSettings {
            chunk_bits: MIN_CHUNK_BITS,
            scratch_dir: Some(dir.path().into()),
            cache_bytes: 2 * BLOCK_BYTES,
        };
        let log = SlotLog::new(&settings);
        let len = log.chunk_len();
        for i in 0..2 * len {
            assert!(log.set(i, slot(i as u32)));
        }
        let extra = |at: u32| Extra {
            correlation: at.is_multiple_of(2).then_some(u128::from(at) << 80 | 7),
            causation: at.is_multiple_of(3).then_some(u128::MAX - u128::from(at)),
            anchor: at.is_multiple_of(5).then_some([at as u8; 32]),
        };
        // Extras on every 7th position of chunk 1: 147 records, three blocks.
        let extras: Vec<(u32, Extra)> =
            (0..len as u32).filter(|a| a % 7 == 0).map(|a| (a, extra(a))).collect();
        assert!(extras.len() > 2 * EXTRA_BLOCK);
        assert!(log.spill(0, &[]));
        assert!(log.spill(1, &extras));
        for round in 0..2 {
            for at in 0..len as u32 {
                let got = log.extra(len + u64::from(at));
                let want = (at % 7 == 0).then(|| extra(at));
                assert_eq!(got, want, "position {at}, round {round}");
                assert_eq!(log.extra(u64::from(at)), None, "chunk 0 has no extras");
            }
        }
        assert_eq!(log.extra(2 * len), None, "a chunk not spilled has none here");
        assert!(log.failure().is_none());
        assert!(Extra::decode(&[0u8; EXTRA_BYTES - 1]).is_none());
    }

    #[test]
    fn a_spilled_chunk_reads_back_exactly_with_its_gaps() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = LogSettings {
            chunk_bits: MIN_CHUNK_BITS,
            scratch_dir: Some(dir.path().into()),
            cache_bytes: 4 * BLOCK_BYTES,
        };
        let log = SlotLog::new(&settings);
        let n = 3 * log.chunk_len();
        for i in (0..n).filter(|i| i % 5 != 3) {
            assert!(log.set(i, slot(i as u32)));
        }
        assert!(log.spill(0, &[]));
        assert!(log.spill(1, &[]));
        assert!(log.is_spilled(0) && log.is_spilled(1) && !log.is_spilled(2));
        assert!(!log.is_allocated(0), "a spilled chunk's memory is released");
        assert!(!log.set(5, slot(5)), "a spilled chunk takes no more slots");
        assert_eq!(log.pool.lock().len(), 1, "an emptied chunk waits for reuse");
        assert!(log.set(n, slot(1)), "the next chunk takes it");
        assert_eq!(log.pool.lock().len(), 0);
        assert!((n + 1..n + log.chunk_len()).all(|i| log.get(i).is_none()), "reused memory starts empty");
        assert!(log.get(n).is_some_and(|s| same(&s, &slot(1))));
        for round in 0..2 {
            for i in 0..n {
                match log.get(i) {
                    Some(s) => {
                        assert!(i % 5 != 3 && same(&s, &slot(i as u32)), "position {i}, round {round}")
                    }
                    None => assert_eq!(i % 5, 3, "position {i} was set, round {round}"),
                }
            }
        }
        assert!(log.failure().is_none());
        let cache = &log.scratch.as_ref().expect("scratch").cache;
        assert!(cache.len() <= 4 + SHARDS, "the cache stays within its bound: {}", cache.len());
    }

    #[test]
    fn a_block_is_cached_on_its_second_miss_and_not_its_first() {
        let cache = BlockCache::new(SHARDS * 2);
        assert!(!cache.admit(7), "a first miss is only remembered");
        assert!(cache.admit(7), "a second miss admits");
        assert!(!cache.admit(7), "admitting forgets the miss");
        assert!(
            !BlockCache::new(0).admit(7) && !BlockCache::new(0).admit(7),
            "a cache of nothing admits nothing"
        );
    }

    #[test]
    fn two_slot_files_read_in_turn_on_one_thread_answer_their_own_slots() {
        // Each thread keeps its last block read from a slot file; blocks of
        // two files with the same chunk and block numbers must not mix.
        let dir = tempfile::tempdir().expect("dir");
        let settings =
            LogSettings { chunk_bits: MIN_CHUNK_BITS, scratch_dir: Some(dir.path().into()), cache_bytes: 0 };
        let (a, b) = (SlotLog::new(&settings), SlotLog::new(&settings));
        let len = a.chunk_len();
        for i in 0..2 * len {
            assert!(a.set(i, slot(i as u32)));
            assert!(b.set(i, slot(i as u32 + 1_000_000)));
        }
        assert!(a.spill(0, &[]) && b.spill(0, &[]));
        for i in (0..len).step_by(7) {
            assert!(a.get(i).is_some_and(|s| same(&s, &slot(i as u32))), "a: position {i}");
            assert!(b.get(i).is_some_and(|s| same(&s, &slot(i as u32 + 1_000_000))), "b: position {i}");
            assert!(a.get(i + 1).is_some_and(|s| same(&s, &slot(i as u32 + 1))), "a again: position {i}");
        }
        drop(a);
        let c = SlotLog::new(&settings);
        for i in 0..2 * len {
            assert!(c.set(i, slot(i as u32 + 2_000_000)));
        }
        assert!(c.spill(0, &[]));
        assert!(
            c.get(0).is_some_and(|s| same(&s, &slot(2_000_000))),
            "a new file is not answered from an old one"
        );
        assert!(b.failure().is_none() && c.failure().is_none());
    }

    /// A log of the smallest chunks in `dir`, without a cache, with
    /// `chunks` whole chunks of slots set (`slot(i)` at position `i`).
    fn filled_uncached_log(dir: &tempfile::TempDir, chunks: u64) -> SlotLog {
        let settings =
            LogSettings { chunk_bits: MIN_CHUNK_BITS, scratch_dir: Some(dir.path().into()), cache_bytes: 0 };
        let log = SlotLog::new(&settings);
        for i in 0..chunks * log.chunk_len() {
            assert!(log.set(i, slot(i as u32)));
        }
        log
    }

    #[test]
    fn a_preloaded_span_answers_like_single_reads_and_a_bad_block_in_it_is_a_lost_read() {
        let dir = tempfile::tempdir().expect("dir");
        let log = filled_uncached_log(&dir, 3);
        let len = log.chunk_len();
        assert!(log.spill(0, &[]) && log.spill(1, &[]));
        let spans =
            [(0, 0), (3, 70), (16, 79), (len - 40, len - 1), (len - 100, len - 1), (len - 5, len + 5)];
        for (lo, hi) in spans {
            std::thread::scope(|s| {
                s.spawn(|| {
                    log.preload(lo, hi);
                    // Last first: the span's blocks must each be where the read put them.
                    for i in (lo..=hi).rev() {
                        assert!(log.get(i).is_some_and(|x| same(&x, &slot(i as u32))), "{lo}..={hi}: {i}");
                    }
                });
            });
        }
        assert!(log.failure().is_none());
        // Damage block 2 of chunk 0 (positions 32..48) on disk, after a
        // thread read the span around it: that thread answers from its read.
        let file = log.scratch.as_ref().expect("scratch").file().expect("file");
        std::thread::scope(|s| {
            s.spawn(|| {
                log.preload(16, 63);
                file.write_all_at(&[0xA5; 4], SLOT_HEADER + 2 * BLOCK_BYTES as u64 + 7).expect("damage");
                for i in [63, 40, 16] {
                    assert!(log.get(i).is_some_and(|x| same(&x, &slot(i as u32))), "{i} from the span read");
                }
            });
        });
        assert!(log.failure().is_none());
        std::thread::scope(|s| {
            s.spawn(|| {
                log.preload(16, 63);
                assert!(log.get(40).is_none(), "a damaged block answers nothing");
                assert!(log.get(20).is_some_and(|x| same(&x, &slot(20))), "its neighbours still answer");
            });
        });
        assert!(log.failure().is_some_and(|why| why.contains("checksum")));
    }

    #[test]
    fn without_a_scratch_directory_nothing_spills() {
        let log = SlotLog::new(&LogSettings::in_memory());
        assert!(log.set(0, slot(0)));
        assert!(!log.spill(0, &[]), "nothing to spill to");
        assert!(!log.is_spilled(0));
        assert!(log.get(0).is_some());
        assert!(log.set(u64::from(u32::MAX) - 1, slot(9)), "every u32 position has a slot");
        assert!(!log.set(1 << 32, slot(1)), "beyond the last chunk");
    }

    #[test]
    fn a_scratch_file_that_cannot_be_made_keeps_chunks_in_memory() {
        let settings = LogSettings {
            chunk_bits: MIN_CHUNK_BITS,
            scratch_dir: Some("/nonexistent/batpak-scratch".into()),
            cache_bytes: 4 * BLOCK_BYTES,
        };
        let log = SlotLog::new(&settings);
        for i in 0..2 * log.chunk_len() {
            assert!(log.set(i, slot(i as u32)));
        }
        assert!(log.spills());
        assert!(!log.spill(0, &[]), "the write failed");
        assert!(!log.spills(), "spilling stops after a failed write");
        assert!(!log.is_spilled(0) && log.is_allocated(0), "the chunk stays in memory");
        assert!((0..2 * log.chunk_len()).all(|i| log.get(i).is_some_and(|s| same(&s, &slot(i as u32)))));
        assert!(log.failure().is_none(), "a failed write loses nothing");
    }

    #[test]
    fn the_cache_evicts_unmarked_blocks_first() {
        // 16 bytes per shard: two blocks of 8.
        let cache = BlockCache::new(SHARDS * 16);
        let blocks: Vec<Arc<[u8]>> = (0..4u8).map(|n| Arc::from(vec![n; 8])).collect();
        // Keys chosen to share one shard.
        let keys: Vec<u64> =
            (0u64..10_000).filter(|k| std::ptr::eq(cache.shard(*k), cache.shard(0))).take(3).collect();
        cache.insert(keys[0], Arc::clone(&blocks[0]));
        cache.insert(keys[1], Arc::clone(&blocks[1]));
        assert!(cache.get(keys[0]).is_some(), "marks block 0");
        cache.insert(keys[2], Arc::clone(&blocks[2]));
        assert!(cache.get(keys[0]).is_some(), "the marked block survived");
        assert!(cache.get(keys[1]).is_none(), "the unmarked one was evicted");
        assert!(cache.get(keys[2]).is_some());
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_whatever_the_sizes_of_its_blocks() {
        let cache = BlockCache::new(SHARDS * 100);
        let keys: Vec<u64> =
            (0u64..100_000).filter(|k| std::ptr::eq(cache.shard(*k), cache.shard(0))).take(40).collect();
        let held = |c: &BlockCache| c.shards.iter().map(|s| s.lock().held).max().unwrap_or(0);
        for (i, key) in keys.iter().enumerate() {
            cache.insert(*key, Arc::from(vec![i as u8; 7 + (i * 13) % 60]));
            let shard = cache.shard(0).lock();
            let sum: usize = shard.frames.iter().map(|f| f.bytes.len()).sum();
            assert_eq!(sum, shard.held, "the count of bytes held is exact");
            assert!(shard.held <= 100, "{} bytes held in a shard of 100", shard.held);
            assert!(shard.frames.iter().enumerate().all(|(j, f)| shard.at.get(&f.key) == Some(&j)));
        }
        assert!(held(&cache) > 50, "the shard is used, not emptied");
        cache.insert(u64::MAX, Arc::from(vec![0u8; 101]));
        assert!(cache.get(u64::MAX).is_none(), "a block larger than a shard is not cached");
        let last = *keys.last().expect("keys");
        assert!(cache.get(last).is_some_and(|b| b[0] == 39), "the newest block is held");
    }

    #[test]
    fn an_unreadable_scratch_file_is_a_sticky_failure_not_a_wrong_slot() {
        let dir = tempfile::tempdir().expect("dir");
        let log = filled_uncached_log(&dir, 1);
        assert!(log.spill(0, &[]));
        let scratch = log.scratch.as_ref().expect("scratch");
        let file = scratch.file().expect("file");
        file.set_len(SLOT_HEADER + BLOCK_BYTES as u64).expect("truncate");
        assert!(log.get(1).is_some(), "the first block is still there");
        assert!(log.get(log.chunk_len() - 1).is_none(), "a block past the end cannot be read");
        assert!(log.failure().is_some_and(|why| why.contains("unreadable")));
    }
}
