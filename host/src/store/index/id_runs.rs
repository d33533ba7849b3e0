//! The ids that did not rise (idempotency keys, ids from a clock that
//! stepped back), once there are many of them: sorted runs of
//! `(id, position)` records in the slot file, each with a page directory
//! and a filter in memory.
//!
//! The newest such ids stay in the generation's hash table. When it holds
//! a run's worth, the spilling thread writes them out sorted by id as one
//! run of level 0, and takes them out of the table in the same
//! write-locked step that adds the run, so a lookup finds each id in
//! exactly one place. `FANOUT` runs of one level merge into one run of the
//! next (on the index's merging thread), so a lookup probes a few filters
//! per factor of `FANOUT` in the number of ids, not one per run.
//!
//! What is not here: deletion (ids leave only with a compaction, which
//! builds a new generation) and reclaiming the pages of merged runs (they
//! stay in the slot file, which a compaction or an open from the footers
//! starts afresh).

use super::pos_list::PageStore;
use crate::store::segment::codec::{Cursor, PutBytes, ShortRead};
use std::sync::Arc;

/// Bytes of one record: the id (u128, little-endian), then its position (u32).
pub(super) const RECORD_BYTES: usize = 20;
/// Records per page (2 040 bytes). A lookup reads one page, so a page is
/// a third of a slot block: copying 6 KiB out of the page cache was a
/// third of a lookup's time. The summary then costs 0.31 bytes per id.
pub(super) const PAGE_RECORDS: usize = 102;
/// Runs of one level that merge into one run of the next level.
pub(super) const FANOUT: usize = 8;
/// Filter bits per id: 0.26 % false positives, measured (10 bits gave
/// 1.3 %, and with ten runs a page read on one append in eight).
const FILTER_BITS: u64 = 14;
/// Bits of a filter block: eight u32 words, one bit set in each per id.
const FILTER_BLOCK_BITS: u64 = 256;
/// The highest level a run may have (`FANOUT^MAX_LEVEL` base runs is far
/// beyond 2^32 ids).
const MAX_LEVEL: u8 = 12;
/// Odd multipliers that pick each id's bit in each word of its block.
const SALT: [u32; 8] =
    [0x05fd_f179, 0x6cc6_be19, 0xac05_04a5, 0x4ba7_1ab7, 0x2839_8f9f, 0xdae8_5d09, 0xf646_6d5f, 0x0b8e_90e9];

/// The filter's hash of an id. Fixed (it is part of the image format):
/// the 64-bit finalizer of MurmurHash3 over the low half, then over that
/// mixed with the high half.
pub(super) fn mix(id: u128) -> u64 {
    let fold = |x: u64| {
        let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    };
    fold(fold(id as u64 ^ 0x9e37_79b9_7f4a_7c15) ^ (id >> 64) as u64)
}

/// A split-block Bloom filter: an id sets one bit in each of the eight
/// words of one 256-bit block. Blocks are 32-byte aligned, so a probe
/// touches exactly one cache line (a block at a 16-byte offset would
/// straddle two half the time, and a probe is one cache miss).
#[derive(Clone)]
struct Filter {
    blocks: Box<[Block]>,
}

/// Eight filter words, aligned to their size.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C, align(32))]
struct Block([u32; 8]);

impl Filter {
    /// An empty filter sized for `n` ids.
    fn for_ids(n: u64) -> Self {
        Self { blocks: vec![Block::default(); Self::words_for(n) / 8].into() }
    }

    fn words_for(n: u64) -> usize {
        (n.saturating_mul(FILTER_BITS).div_ceil(FILTER_BLOCK_BITS).max(1) as usize).saturating_mul(8)
    }

    /// The filter from its words as an image stores them, little-endian
    /// (`bytes.len()` a multiple of 32), decoded in one pass.
    fn from_le_bytes(bytes: &[u8]) -> Self {
        let word = |b: &[u8], i: usize| {
            b.get(i * 4..i * 4 + 4).and_then(|w| w.try_into().ok()).map_or(0, u32::from_le_bytes)
        };
        let block = |b: &[u8]| Block(std::array::from_fn(|i| word(b, i)));
        Self { blocks: bytes.chunks_exact(32).map(block).collect() }
    }

    /// Its words, in order (what an image stores).
    fn words(&self) -> impl Iterator<Item = u32> + '_ {
        self.blocks.iter().flat_map(|b| b.0)
    }

    fn word_count(&self) -> usize {
        self.blocks.len() * 8
    }

    /// The index of `hash`'s block.
    fn block(&self, hash: u64) -> usize {
        (((hash >> 32) * self.blocks.len() as u64) >> 32) as usize
    }

    fn insert(&mut self, id: u128) {
        let hash = mix(id);
        let at = self.block(hash);
        if let Some(block) = self.blocks.get_mut(at) {
            for (word, salt) in block.0.iter_mut().zip(SALT) {
                *word |= bit(hash, salt);
            }
        }
    }

    /// False only if no id of this `hash` (its [`mix`]) was inserted.
    fn may_hold(&self, hash: u64) -> bool {
        // Every word checked, without a branch per word: for an absent id
        // each word's bit is set about half the time, so a branch on each
        // would be mispredicted about once per probe.
        let all = |b: &Block| b.0.iter().zip(SALT).fold(true, |all, (w, s)| all & (w & bit(hash, s) != 0));
        self.blocks.get(self.block(hash)).is_some_and(all)
    }
}

fn bit(hash: u64, salt: u32) -> u32 {
    1 << ((hash as u32).wrapping_mul(salt) >> 27)
}

/// What memory keeps of one page of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RunPage {
    /// The page's first (smallest) id.
    first: u128,
    /// Offset in the slot file.
    at: u64,
    /// Bytes of the page: a whole number of records.
    len: u32,
    crc: u32,
}

impl RunPage {
    /// The position recorded for `id` in this page; `None` if it holds no
    /// such id or cannot be read (a lost read, recorded by `store`).
    pub(super) fn find(&self, store: &impl PageStore, id: u128) -> Option<u32> {
        let bytes = store.read_page(self.at, self.len, self.crc)?;
        let (mut lo, mut hi) = (0, bytes.len() / RECORD_BYTES);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (key, at) = record(&bytes, mid)?;
            match key.cmp(&id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(at),
            }
        }
        None
    }
}

/// Record `i` of a page.
fn record(bytes: &[u8], i: usize) -> Option<(u128, u32)> {
    let r = bytes.get(i * RECORD_BYTES..(i + 1) * RECORD_BYTES)?;
    let id = u128::from_le_bytes(r.get(..16)?.try_into().ok()?);
    let at = u32::from_le_bytes(r.get(16..)?.try_into().ok()?);
    Some((id, at))
}

/// One sorted run: its pages in the slot file and its filter.
pub(super) struct IdRun {
    level: u8,
    count: u64,
    pages: Box<[RunPage]>,
    filter: Filter,
}

impl IdRun {
    /// The run's level (0: written from the hash table).
    #[cfg(test)]
    pub(super) fn level(&self) -> u8 {
        self.level
    }

    /// Offset of the run's first page (tests damage it).
    #[cfg(test)]
    pub(super) fn first_page_for_test(&self) -> u64 {
        self.pages.first().map_or(0, |p| p.at)
    }

    /// Ids in the run.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// Bytes of memory the run keeps.
    pub(super) fn memory(&self) -> usize {
        self.pages.len() * std::mem::size_of::<RunPage>() + self.filter.word_count() * 4
    }

    /// The page that would hold `id`, if the filter let it through.
    fn page_for(&self, id: u128) -> Option<RunPage> {
        let after = self.pages.partition_point(|p| p.first <= id);
        self.pages.get(after.checked_sub(1)?).copied()
    }

    /// Appends the run to an index image: u8 level, varint count, varint
    /// pages, each u128 first id, varint offset, varint length and u32
    /// CRC32; then varint filter words, u32 each.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.level);
        out.put_varint(self.count);
        out.put_varint(self.pages.len() as u64);
        for p in self.pages.iter() {
            out.put_u128(p.first);
            out.put_varint(p.at);
            out.put_varint(u64::from(p.len));
            out.put_u32(p.crc);
        }
        out.put_varint(self.filter.word_count() as u64);
        for w in self.filter.words() {
            out.put_u32(w);
        }
    }

    /// A run [`IdRun::encode`] wrote, its pages inside `file` (the slot
    /// file's used range). Refused unless the pages are whole records in
    /// rising order of first ids, add up to the count, and the filter has
    /// the size that count gives. Positions are checked at each lookup
    /// (the slot at a found position must hold the id).
    pub(super) fn decode(c: &mut Cursor<'_>, file: &std::ops::Range<u64>) -> Result<Self, String> {
        let short = |e: ShortRead| format!("id run truncated at {}", e.0);
        let bad = |what: &str| Err(format!("id run: {what}"));
        let level = c.u8("run level").map_err(short)?;
        let count = c.varint("run count").map_err(short)?;
        let n_pages = c.varint("run pages").map_err(short)? as usize;
        if level > MAX_LEVEL || n_pages > c.rest().len() / 22 {
            return bad("level too high, or more pages than bytes");
        }
        let mut pages: Vec<RunPage> = Vec::with_capacity(n_pages);
        let mut records = 0u64;
        for _ in 0..n_pages {
            let first = c.u128("page first id").map_err(short)?;
            let at = c.varint("page offset").map_err(short)?;
            let len = c.varint_u32("page length").map_err(short)?;
            let crc = c.u32("page crc").map_err(short)?;
            let inside = at >= file.start && at.checked_add(u64::from(len)).is_some_and(|e| e <= file.end);
            let whole = len > 0
                && (len as usize).is_multiple_of(RECORD_BYTES)
                && len as usize <= PAGE_RECORDS * RECORD_BYTES;
            let rises = pages.last().is_none_or(|p| p.first < first);
            if !inside || !whole || !rises {
                return bad("a page outside the slot file, of a wrong length, or out of order");
            }
            records += u64::from(len) / RECORD_BYTES as u64;
            pages.push(RunPage { first, at, len, crc });
        }
        let n_words = c.varint("filter words").map_err(short)? as usize;
        if records != count || n_words > c.rest().len() / 4 || n_words != Filter::words_for(count) {
            return bad("pages that do not add up to the count, or a filter of the wrong size");
        }
        let bytes = c.take(n_words * 4, "filter words").map_err(short)?;
        Ok(Self { level, count, pages: pages.into(), filter: Filter::from_le_bytes(bytes) })
    }
}

/// The pages that may hold `id`, newest run first.
///
/// Every run's filter is probed before any page is looked for: each probe
/// is a cache miss, and a loop whose iterations neither branch on the data
/// nor depend on each other lets the CPU wait for all of them at once.
pub(super) fn pages_for(runs: &[Arc<IdRun>], id: u128) -> Vec<RunPage> {
    let hash = mix(id);
    let mut out = Vec::new();
    for chunk in runs.rchunks(64) {
        let passed =
            chunk.iter().enumerate().fold(0u64, |m, (i, r)| m | u64::from(r.filter.may_hold(hash)) << i);
        let newest_first = chunk.iter().enumerate().rev();
        out.extend(newest_first.filter(|(i, _)| passed >> i & 1 == 1).filter_map(|(_, r)| r.page_for(id)));
    }
    out
}

/// Writes `records` (sorted by id, ids distinct, `count` of them) as one
/// run of `level`. `None` if an item is `None` (a failed read while
/// merging), the records do not rise, their number is not `count`, a page
/// cannot be written, or `stop` says to give up; the pages written so far
/// are then unused space in the slot file.
pub(super) fn write_run(
    store: &impl PageStore,
    records: impl IntoIterator<Item = Option<(u128, u32)>>,
    count: u64,
    level: u8,
    stop: &dyn Fn() -> bool,
) -> Option<IdRun> {
    let mut filter = Filter::for_ids(count);
    let mut pages = Vec::with_capacity(count.div_ceil(PAGE_RECORDS as u64) as usize);
    let mut page = Vec::with_capacity(PAGE_RECORDS * RECORD_BYTES);
    let (mut first, mut last, mut written) = (0u128, None::<u128>, 0u64);
    let flush = |page: &mut Vec<u8>, first: u128| -> Option<RunPage> {
        let at = store.write_page(page)?;
        let done = RunPage { first, at, len: page.len() as u32, crc: crc32fast::hash(page) };
        page.clear();
        Some(done)
    };
    for item in records {
        let (id, at) = item?;
        if last.is_some_and(|l| l >= id) || written == count {
            return None;
        }
        if page.is_empty() {
            first = id;
        }
        page.put_u128(id);
        page.put_u32(at);
        filter.insert(id);
        (last, written) = (Some(id), written + 1);
        if page.len() == PAGE_RECORDS * RECORD_BYTES {
            pages.push(flush(&mut page, first)?);
            if stop() {
                return None;
            }
        }
    }
    if !page.is_empty() {
        pages.push(flush(&mut page, first)?);
    }
    (written == count).then(|| IdRun { level, count, pages: pages.into(), filter })
}

/// Reads one run's records in order, a page at a time.
struct Reader<'a> {
    pages: &'a [RunPage],
    page: usize,
    bytes: Arc<[u8]>,
    next: usize,
}

impl Reader<'_> {
    /// The next record without taking it; `Err` on a failed page read.
    fn peek(&mut self, store: &impl PageStore) -> Result<Option<(u128, u32)>, ()> {
        loop {
            if let Some(r) = record(&self.bytes, self.next) {
                return Ok(Some(r));
            }
            let Some(p) = self.pages.get(self.page) else { return Ok(None) };
            self.bytes = store.read_page(p.at, p.len, p.crc).ok_or(())?;
            (self.page, self.next) = (self.page + 1, 0);
        }
    }
}

/// `runs` merged into one run a level above the highest of them (see
/// [`write_run`] for when this gives `None`).
pub(super) fn merge(store: &impl PageStore, runs: &[Arc<IdRun>], stop: &dyn Fn() -> bool) -> Option<IdRun> {
    let level = runs.iter().map(|r| r.level).max()?.checked_add(1).filter(|l| *l <= MAX_LEVEL)?;
    let count = runs.iter().map(|r| r.count).sum();
    let mut readers: Vec<Reader<'_>> =
        runs.iter().map(|r| Reader { pages: &r.pages, page: 0, bytes: Arc::from([]), next: 0 }).collect();
    let merged = std::iter::from_fn(|| {
        let mut best: Option<(usize, (u128, u32))> = None;
        for (i, reader) in readers.iter_mut().enumerate() {
            match reader.peek(store) {
                Err(()) => return Some(None),
                Ok(Some(r)) if best.is_none_or(|(_, b)| r.0 < b.0) => best = Some((i, r)),
                Ok(_) => {}
            }
        }
        let (i, r) = best?;
        if let Some(reader) = readers.get_mut(i) {
            reader.next += 1;
        }
        Some(Some(r))
    });
    write_run(store, merged, count, level, stop)
}

/// The runs due to merge next: the oldest `FANOUT` consecutive runs of one
/// level, as a range of indices into `runs` (oldest first).
pub(super) fn due_merge(runs: &[Arc<IdRun>]) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    for i in 1..=runs.len() {
        let same = runs.get(i).zip(runs.get(start)).is_some_and(|(a, b)| a.level == b.level);
        if !same {
            if i - start >= FANOUT {
                return Some(start..start + FANOUT);
            }
            start = i;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// Pages in memory, with switches to fail writes or damage reads.
    #[derive(Default)]
    struct Pages {
        file: Mutex<Vec<u8>>,
        fail_writes: std::sync::atomic::AtomicBool,
    }

    impl PageStore for Pages {
        fn write_page(&self, bytes: &[u8]) -> Option<u64> {
            if self.fail_writes.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            let mut file = self.file.lock();
            let at = file.len() as u64;
            file.extend_from_slice(bytes);
            Some(at)
        }

        fn read_page(&self, at: u64, len: u32, crc: u32) -> Option<Arc<[u8]>> {
            let file = self.file.lock();
            let bytes = file.get(at as usize..at as usize + len as usize)?;
            (crc32fast::hash(bytes) == crc).then(|| Arc::from(bytes))
        }
    }

    fn ids(n: u64, seed: u64) -> Vec<(u128, u32)> {
        let mut records: Vec<(u128, u32)> = (0..n)
            .map(|i| (u128::from(mix(u128::from(i ^ seed << 40))) << 64 | u128::from(i), i as u32))
            .collect();
        records.sort_unstable();
        records
    }

    fn run_of(store: &Pages, records: &[(u128, u32)], level: u8) -> IdRun {
        write_run(store, records.iter().map(|r| Some(*r)), records.len() as u64, level, &|| false).unwrap()
    }

    fn find(store: &Pages, runs: &[Arc<IdRun>], id: u128) -> Option<u32> {
        pages_for(runs, id).iter().find_map(|p| p.find(store, id))
    }

    #[test]
    fn every_written_id_is_found_and_few_absent_ones_cost_a_page_read() {
        let store = Pages::default();
        let records = ids(20_000, 1);
        let run = Arc::new(run_of(&store, &records, 0));
        assert_eq!(run.pages.len(), 20_000usize.div_ceil(PAGE_RECORDS));
        let runs = [run];
        for (id, at) in &records {
            assert_eq!(find(&store, &runs, *id), Some(*at));
        }
        let absent = ids(20_000, 2);
        let passed = absent.iter().filter(|(id, _)| !pages_for(&runs, *id).is_empty()).count();
        assert!(passed < 20_000 / 100, "{passed} of 20 000 absent ids passed the filter");
        assert!(absent.iter().all(|(id, _)| find(&store, &runs, *id).is_none()));
        assert!(runs[0].memory() <= 20_000 * 21 / 10, "{} bytes for 20 000 ids", runs[0].memory());
    }

    #[test]
    fn merging_keeps_every_record_and_raises_the_level() {
        let store = Pages::default();
        let all = ids(FANOUT as u64 * 1_000 + 17, 3);
        let mut runs: Vec<Arc<IdRun>> = Vec::new();
        for (i, chunk) in all.chunks(1_000).enumerate() {
            let mut part: Vec<(u128, u32)> = chunk.to_vec();
            part.sort_unstable();
            runs.push(Arc::new(run_of(&store, &part, u8::from(i == FANOUT))));
        }
        // Levels 0 ×8 then one of level 1: the eight level-0 runs are due.
        assert_eq!(due_merge(&runs), Some(0..FANOUT));
        let merged = merge(&store, runs.get(..FANOUT).unwrap(), &|| false).unwrap();
        assert_eq!((merged.level, merged.count), (1, FANOUT as u64 * 1_000));
        runs.splice(0..FANOUT, [Arc::new(merged)]);
        assert_eq!(due_merge(&runs), None);
        for (id, at) in &all {
            assert_eq!(find(&store, &runs, *id), Some(*at));
        }
        let stopped = merge(&store, &runs, &|| true);
        assert!(stopped.is_none(), "a stop request abandons the merge");
    }

    #[test]
    fn a_failed_read_or_write_gives_no_run() {
        let store = Pages::default();
        let a = Arc::new(run_of(&store, &ids(1_000, 4), 0));
        let b = Arc::new(run_of(&store, &ids(1_000, 5), 0));
        store.file.lock()[7] ^= 1;
        assert!(merge(&store, &[Arc::clone(&a), Arc::clone(&b)], &|| false).is_none());
        store.file.lock()[7] ^= 1;
        store.fail_writes.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(merge(&store, &[a, b], &|| false).is_none());
        store.fail_writes.store(false, std::sync::atomic::Ordering::Relaxed);
        let unsorted = [Some((5u128, 1u32)), Some((4, 2))];
        assert!(write_run(&store, unsorted, 2, 0, &|| false).is_none());
        assert!(write_run(&store, [Some((4u128, 1u32))], 2, 0, &|| false).is_none(), "fewer than counted");
    }

    #[test]
    fn a_run_round_trips_through_an_image_and_damage_is_refused() {
        let store = Pages::default();
        let run = run_of(&store, &ids(3_000, 6), 2);
        let mut image = Vec::new();
        run.encode(&mut image);
        let file = 0..store.file.lock().len() as u64;
        let back = IdRun::decode(&mut Cursor::new(&image), &file).unwrap();
        assert_eq!(
            (back.level, back.count, &back.pages, &back.filter.blocks),
            (2, 3_000, &run.pages, &run.filter.blocks)
        );
        assert!(IdRun::decode(&mut Cursor::new(&image), &(0..file.end - 1)).is_err(), "a page past the file");
        for cut in 0..image.len() {
            assert!(IdRun::decode(&mut Cursor::new(&image[..cut]), &file).is_err(), "cut at {cut}");
        }
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..2_000 {
            let mut bad = image.clone();
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let i = (rng >> 33) as usize % bad.len();
            bad[i] ^= 1 << (rng >> 29 & 7);
            if let Ok(r) = IdRun::decode(&mut Cursor::new(&bad), &file) {
                // Whatever decodes still reads without a panic.
                for p in pages_for(&[Arc::new(r)], 42) {
                    let _ = p.find(&store, 42);
                }
            }
        }
    }
}
