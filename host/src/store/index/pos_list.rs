//! A strictly rising list of log positions, kept compact, with its old
//! part on disk: the index's rising-id list and its per-scope and per-kind
//! lists.
//!
//! Values go into blocks of [`BLOCK`]. The newest, open block is a plain
//! vector. A full block is sealed into one of two forms:
//! - **dense**: its values are consecutive, so its first value says it all
//!   (8 bytes per 64 values, the common case for the rising-id list and for
//!   a store whose events mostly share one kind or one scope);
//! - **deltas**: each value after the first is stored as its distance from
//!   the one before, as a little-endian base-128 varint (one byte for a
//!   distance under 128).
//!
//! A block is decoded whole to be read (64 values, well under a
//! microsecond). A *keyed* list (the rising-id list) also keeps the key of
//! each block's first value (the event id there), so a search by key
//! narrows to one block before it looks at any value.
//!
//! **Pages.** Once a list holds [`DUE_BLOCKS`] sealed blocks in memory, its
//! oldest ones are due for the slot file, as a *page*: up to
//! [`PAGE_BLOCKS`] blocks, no more than [`PAGE_BYTES`] bytes (the block
//! cache, which holds pages and slot blocks, counts them in bytes). Memory then keeps a
//! 48-byte summary per page (first and last value, first key, offset,
//! length, CRC32), so a list of any length holds under 128 sealed blocks
//! plus about 0.012 bytes per value that went to disk. Reads that reach a
//! page read it through the slot file's cache (see [`PageStore`]).

use std::sync::Arc;

/// Values per block. Equal to the index's id fence stride, so the entries
/// between two keys are exactly one block.
pub(super) const BLOCK: usize = 64;
/// Most sealed blocks in one page.
pub(super) const PAGE_BLOCKS: usize = 64;
/// Most bytes in one page. A dense keyed page (the rising-id list's usual
/// page) of [`PAGE_BLOCKS`] blocks takes 1 536 of them.
pub(super) const PAGE_BYTES: usize = 6144;
/// Sealed blocks in memory at which the oldest are due for the slot file;
/// a spill leaves fewer than this (and at least one page's worth), so the
/// newest values and the list's last one are always in memory.
pub(super) const DUE_BLOCKS: usize = 2 * PAGE_BLOCKS;

use crate::store::segment::codec::{Cursor, PutBytes, ShortRead};

/// `BlockHead::at` of a dense block.
const DENSE: u32 = u32::MAX;
/// Bytes of a block head in a page: `first` and `at`, u32 each.
const HEAD_BYTES: usize = 8;
/// Bytes of a key in a page.
const KEY_BYTES: usize = 16;

/// Where pages go and come back from: the index's slot file.
pub(super) trait PageStore {
    /// Appends `bytes`; the offset they start at, or `None` if they could
    /// not be written (the store then stops taking pages).
    fn write_page(&self, bytes: &[u8]) -> Option<u64>;
    /// The `len` bytes at `at`, checked against `crc`; `None` if they
    /// cannot be read or do not match (recorded as a lost read).
    fn read_page(&self, at: u64, len: u32, crc: u32) -> Option<Arc<[u8]>>;
}

/// A sealed block: its first value and where its deltas start (`DENSE`: none).
#[derive(Clone, Copy)]
struct BlockHead {
    first: u32,
    at: u32,
}

/// What memory keeps of a page in the slot file.
#[derive(Clone, Copy)]
pub(super) struct PageRef {
    /// Key of the page's first value (keyed lists; zero otherwise).
    key: u128,
    /// Offset in the slot file.
    at: u64,
    first: u32,
    last: u32,
    /// Bytes of the page.
    len: u32,
    crc: u32,
    /// Sealed blocks in the page.
    blocks: u16,
}

/// The values of one block, decoded.
pub(super) struct Block {
    values: [u32; BLOCK],
    len: usize,
}

impl std::ops::Deref for Block {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        self.values.get(..self.len).unwrap_or(&[])
    }
}

/// The full block `head` describes, its deltas (if any) in `deltas`.
fn decode_block(head: BlockHead, deltas: &[u8]) -> Option<Block> {
    let mut out = Block { values: [0; BLOCK], len: BLOCK };
    if head.at == DENSE {
        for (i, slot) in out.values.iter_mut().enumerate() {
            *slot = head.first.checked_add(i as u32)?;
        }
        return Some(out);
    }
    let mut bytes = deltas.get(head.at as usize..)?;
    let mut v = head.first;
    out.values[0] = v;
    for slot in out.values.iter_mut().skip(1) {
        let (delta, rest) = take_varint(bytes)?;
        v = v.checked_add(delta)?;
        *slot = v;
        bytes = rest;
    }
    Some(out)
}

/// A page read back: `blocks` heads, then keys (keyed lists), then deltas.
struct PageView<'a> {
    heads: &'a [u8],
    keys: &'a [u8],
    deltas: &'a [u8],
}

impl<'a> PageView<'a> {
    fn parse(bytes: &'a [u8], blocks: usize, keyed: bool) -> Option<Self> {
        let (heads, rest) = bytes.split_at_checked(blocks * HEAD_BYTES)?;
        let (keys, deltas) = rest.split_at_checked(if keyed { blocks * KEY_BYTES } else { 0 })?;
        Some(Self { heads, keys, deltas })
    }

    fn blocks(&self) -> usize {
        self.heads.len() / HEAD_BYTES
    }

    fn head(&self, b: usize) -> Option<BlockHead> {
        let h = self.heads.get(b * HEAD_BYTES..(b + 1) * HEAD_BYTES)?;
        let u32_at = |i: usize| h.get(i..i + 4).and_then(|s| s.try_into().ok()).map(u32::from_le_bytes);
        Some(BlockHead { first: u32_at(0)?, at: u32_at(4)? })
    }

    fn key(&self, b: usize) -> Option<u128> {
        let k = self.keys.get(b * KEY_BYTES..(b + 1) * KEY_BYTES)?;
        k.try_into().ok().map(u128::from_le_bytes)
    }

    fn block(&self, b: usize) -> Option<Block> {
        decode_block(self.head(b)?, self.deltas)
    }
}

/// A block found by [`PosList::locate_key`]: copied from memory, or in
/// a page still to be read.
// Lives on the stack for one lookup; boxing the block would allocate per lookup.
#[allow(clippy::large_enum_variant)]
pub(super) enum Located {
    Memory(Block),
    Page(PageRef),
}

impl Located {
    /// The block of `key` (the same key it was located by), reading its
    /// page from `store` if need be; `None` if the page cannot be read.
    pub(super) fn block(self, store: &dyn PageStore, key: u128) -> Option<Block> {
        let page = match self {
            Self::Memory(block) => return Some(block),
            Self::Page(page) => page,
        };
        let bytes = store.read_page(page.at, page.len, page.crc)?;
        let view = PageView::parse(&bytes, usize::from(page.blocks), true)?;
        let b = partition(view.blocks(), |b| view.key(b).map(|k| k <= key))?.checked_sub(1)?;
        view.block(b)
    }
}

/// The part of a list below a limit, taken by [`PosList::below`].
pub(super) struct Below {
    pages: Vec<PageRef>,
    keyed: bool,
    limit: u32,
    tail: Vec<u64>,
}

impl Below {
    /// The values, in order: those of the pages (read from `store`; a
    /// page that cannot be read is skipped, its loss recorded by `store`,
    /// and the writer stops), then those that were in memory.
    pub(super) fn read(self, store: &dyn PageStore) -> Vec<u64> {
        let mut out = Vec::new();
        for page in &self.pages {
            let Some(bytes) = store.read_page(page.at, page.len, page.crc) else { continue };
            let Some(view) = PageView::parse(&bytes, usize::from(page.blocks), self.keyed) else { continue };
            for b in 0..view.blocks() {
                let Some(blk) = view.block(b) else { break };
                if !take_below(&blk, self.limit, &mut out) {
                    return out;
                }
            }
        }
        out.extend(self.tail);
        out
    }
}

/// A strictly rising list of `u32` positions (see the module docs).
#[derive(Default)]
pub(super) struct PosList {
    keyed: bool,
    /// Pages in the slot file, oldest first; all their values come before
    /// those in memory.
    pages: Vec<PageRef>,
    /// Values in `pages`.
    paged: usize,
    sealed: Vec<BlockHead>,
    /// Keyed lists: the key of the first value of each block in memory
    /// (sealed, then the open block if it has values).
    keys: Vec<u128>,
    deltas: Vec<u8>,
    open: Vec<u32>,
    /// Already reported as due (see [`PosList::newly_due`]).
    due: bool,
}

/// The first `i` in `0..n` where `pred(i)` is false (`pred` must be true
/// for a prefix and false after); `None` if `pred` cannot be evaluated.
fn partition(n: usize, pred: impl Fn(usize) -> Option<bool>) -> Option<usize> {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid)? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// Pushes the values of `blk` below `limit` onto `out`; false once one is not.
fn take_below(blk: &[u32], limit: u32, out: &mut Vec<u64>) -> bool {
    for v in blk {
        if *v >= limit {
            return false;
        }
        out.push(u64::from(*v));
    }
    true
}

impl PosList {
    /// An empty keyed list (see the module docs).
    pub(super) fn keyed() -> Self {
        Self { keyed: true, ..Self::default() }
    }

    /// Number of values.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.paged + self.sealed.len() * BLOCK + self.open.len()
    }

    /// The slot-file offset of each page.
    #[cfg(test)]
    pub(super) fn pages_for_test(&self) -> Vec<u64> {
        self.pages.iter().map(|p| p.at).collect()
    }

    /// Number of values in pages.
    pub(super) fn paged(&self) -> usize {
        self.paged
    }

    /// The largest value.
    pub(super) fn last(&self) -> Option<u32> {
        if let Some(v) = self.open.last() {
            return Some(*v);
        }
        if let Some(b) = self.sealed.len().checked_sub(1) {
            return self.mem_block(b).and_then(|blk| blk.last().copied());
        }
        self.pages.last().map(|p| p.last)
    }

    /// The key of the newest block (keyed lists).
    fn last_key(&self) -> Option<u128> {
        self.keys.last().copied().or_else(|| self.pages.last().map(|p| p.key))
    }

    /// Appends `v` to an unkeyed list. Returns false, changing nothing,
    /// unless `v` is above every value in the list (or the delta area would
    /// pass 4 GiB, which positions below 2^32 cannot make it do).
    #[must_use]
    pub(super) fn push(&mut self, v: u32) -> bool {
        self.push_inner(v, None)
    }

    /// Appends `v` with its `key` to a keyed list; as [`PosList::push`],
    /// and a key that starts a block must also be above every earlier
    /// block's key.
    #[must_use]
    pub(super) fn push_keyed(&mut self, v: u32, key: u128) -> bool {
        self.push_inner(v, Some(key))
    }

    fn push_inner(&mut self, v: u32, key: Option<u128>) -> bool {
        if self.last().is_some_and(|last| v <= last) || key.is_some() != self.keyed {
            return false;
        }
        if let (true, Some(key)) = (self.open.is_empty(), key) {
            if self.last_key().is_some_and(|k| key <= k) {
                return false;
            }
            self.keys.push(key);
        }
        self.open.push(v);
        if self.open.len() == BLOCK && !self.seal() {
            self.open.pop();
            return false;
        }
        true
    }

    /// Turns the full open block into a sealed one.
    fn seal(&mut self) -> bool {
        let (Some(&first), Some(&last)) = (self.open.first(), self.open.last()) else { return false };
        let at = if last - first == (BLOCK - 1) as u32 {
            DENSE
        } else {
            let Ok(at) = u32::try_from(self.deltas.len()) else { return false };
            if at == DENSE {
                return false;
            }
            for pair in self.open.windows(2) {
                if let [a, b] = pair {
                    put_varint(&mut self.deltas, b - a);
                }
            }
            at
        };
        self.sealed.push(BlockHead { first, at });
        self.open.clear();
        true
    }

    /// True once when the list comes to hold [`DUE_BLOCKS`] sealed blocks
    /// in memory: its oldest are then due for the slot file. Not again
    /// until [`PosList::clear_due`].
    pub(super) fn newly_due(&mut self) -> bool {
        if self.due || self.sealed.len() < DUE_BLOCKS {
            return false;
        }
        self.due = true;
        true
    }

    /// Lets [`PosList::newly_due`] report the list again.
    pub(super) fn clear_due(&mut self) {
        self.due = false;
    }

    /// Blocks in memory, the open one included.
    fn mem_blocks(&self) -> usize {
        self.sealed.len() + usize::from(!self.open.is_empty())
    }

    /// In-memory block `b`: the sealed ones, then the open one.
    fn mem_block(&self, b: usize) -> Option<Block> {
        match self.sealed.get(b) {
            Some(head) => decode_block(*head, &self.deltas),
            None if b == self.sealed.len() && !self.open.is_empty() => {
                let mut out = Block { values: [0; BLOCK], len: self.open.len() };
                out.values.get_mut(..self.open.len())?.copy_from_slice(&self.open);
                Some(out)
            }
            None => None,
        }
    }

    /// Keyed lists: the last block whose first key is at most `key`, from
    /// memory or from its page. `None` if there is none, or its page could
    /// not be read (recorded by `store`).
    pub(super) fn block_of_key(&self, store: &dyn PageStore, key: u128) -> Option<Block> {
        self.locate_key(key)?.block(store, key)
    }

    /// Keyed lists: where the last block whose first key is at most `key`
    /// is, without reading a page (see [`Located::block`]).
    pub(super) fn locate_key(&self, key: u128) -> Option<Located> {
        if let Some(b) = self.keys.partition_point(|k| *k <= key).checked_sub(1) {
            return self.mem_block(b).map(Located::Memory);
        }
        let page = self.pages.get(self.pages.partition_point(|p| p.key <= key).checked_sub(1)?)?;
        Some(Located::Page(*page))
    }

    /// The values below `limit`, in order, widened for sequence
    /// arithmetic. A page that cannot be read is skipped (its loss is
    /// recorded by `store`, and the writer stops).
    #[cfg(test)]
    pub(super) fn collect_below(&self, store: &dyn PageStore, limit: u32) -> Vec<u64> {
        self.below(limit).read(store)
    }

    /// What [`Below::read`] needs to list the values below `limit`: the
    /// summaries of the pages that start below it and the values in memory
    /// below it. Cheap to take under the index's lock; the pages are read
    /// after it is released (a page never changes once written).
    pub(super) fn below(&self, limit: u32) -> Below {
        let pages = self.pages.iter().take_while(|p| p.first < limit).copied().collect();
        let mut tail = Vec::new();
        for b in 0..self.mem_blocks() {
            let Some(blk) = self.mem_block(b) else { break };
            if !take_below(&blk, limit, &mut tail) {
                break;
            }
        }
        Below { pages, keyed: self.keyed, limit, tail }
    }
    /// Where sealed block `b`'s deltas lie in `deltas` (empty for a dense block).
    fn delta_span(&self, b: usize) -> Option<std::ops::Range<usize>> {
        let head = self.sealed.get(b)?;
        if head.at == DENSE {
            return Some(0..0);
        }
        self.delta_span_at(head.at as usize)
    }

    /// The 63 varints of deltas starting at `start`.
    fn delta_span_at(&self, start: usize) -> Option<std::ops::Range<usize>> {
        let mut rest = self.deltas.get(start..)?;
        for _ in 1..BLOCK {
            rest = take_varint(rest)?.1;
        }
        Some(start..self.deltas.len() - rest.len())
    }

    /// If the list is due (see [`PosList::newly_due`]), its oldest sealed
    /// blocks as a page: the bytes to write and their summary, whose offset
    /// [`PosList::page_written`] fills in. Page layout: per block a u32
    /// first value and a u32 delta offset (`u32::MAX`: dense) into the
    /// page's delta bytes; for a keyed list, then a u128 key per block;
    /// then the delta bytes. Little-endian.
    pub(super) fn oldest_page(&self) -> Option<(Vec<u8>, PageRef)> {
        if self.sealed.len() < DUE_BLOCKS {
            return None;
        }
        let per_block = HEAD_BYTES + if self.keyed { KEY_BYTES } else { 0 };
        let (mut blocks, mut size) = (0, 0);
        while blocks < PAGE_BLOCKS {
            let add = per_block + self.delta_span(blocks)?.len();
            if blocks > 0 && size + add > PAGE_BYTES {
                break;
            }
            (blocks, size) = (blocks + 1, size + add);
        }
        let mut out = Vec::with_capacity(size);
        let mut deltas = Vec::new();
        for b in 0..blocks {
            let head = self.sealed.get(b)?;
            let span = self.delta_span(b)?;
            let at = if head.at == DENSE { DENSE } else { u32::try_from(deltas.len()).ok()? };
            deltas.extend_from_slice(self.deltas.get(span)?);
            out.put_u32(head.first);
            out.put_u32(at);
        }
        if self.keyed {
            for key in self.keys.get(..blocks)? {
                out.extend_from_slice(&key.to_le_bytes());
            }
        }
        out.extend_from_slice(&deltas);
        let last = *self.mem_block(blocks - 1)?.last()?;
        let page = PageRef {
            key: if self.keyed { *self.keys.first()? } else { 0 },
            at: 0,
            first: self.sealed.first()?.first,
            last,
            len: u32::try_from(out.len()).ok()?,
            crc: crc32fast::hash(&out),
            blocks: u16::try_from(blocks).ok()?,
        };
        Some((out, page))
    }

    /// Replaces the blocks `page` was made from (by
    /// [`PosList::oldest_page`]; only newer blocks were added since) with
    /// the page, written at `at`. False, changing nothing, if the list's
    /// oldest block in memory is not the page's first.
    pub(super) fn page_written(&mut self, mut page: PageRef, at: u64) -> bool {
        let blocks = usize::from(page.blocks);
        if self.sealed.len() < blocks || self.sealed.first().map(|h| h.first) != Some(page.first) {
            return false;
        }
        let kept = self.sealed.get(blocks..).unwrap_or(&[]);
        let cut = kept.iter().find(|h| h.at != DENSE).map_or(self.deltas.len(), |h| h.at as usize);
        // Delta runs follow block order (`seal`, checked by `decode`), so
        // every kept block's run starts at or after `cut`.
        debug_assert!(kept.iter().all(|h| h.at == DENSE || h.at as usize >= cut));
        if cut > self.deltas.len() || kept.iter().any(|h| h.at != DENSE && (h.at as usize) < cut) {
            return false;
        }
        self.deltas.drain(..cut);
        self.sealed.drain(..blocks);
        for head in self.sealed.iter_mut().filter(|h| h.at != DENSE) {
            head.at -= cut as u32;
        }
        if self.keyed {
            self.keys.drain(..blocks.min(self.keys.len()));
        }
        page.at = at;
        self.pages.push(page);
        self.paged += blocks * BLOCK;
        true
    }

    /// Makes room for `n` more values (no more than memory keeps before pages are due).
    pub(super) fn reserve(&mut self, n: usize) {
        let blocks = (n / BLOCK + 1).min(DUE_BLOCKS);
        self.sealed.reserve(blocks);
        if self.keyed {
            self.keys.reserve(blocks);
        }
    }

    /// Gives back spare capacity.
    pub(super) fn shrink_to_fit(&mut self) {
        self.pages.shrink_to_fit();
        self.sealed.shrink_to_fit();
        self.keys.shrink_to_fit();
        self.deltas.shrink_to_fit();
        self.open.shrink_to_fit();
    }
}

impl PosList {
    /// Appends the list's internal form to `out` (for the index image):
    /// varint page count, then per page its u128 key, varint offset, u32
    /// first and last value, varint length, u32 CRC32 and varint block
    /// count; varint sealed block count and each block's head (`first`,
    /// `at`, u32 each); varint key count and the keys (u128 each); varint
    /// delta byte count and the delta bytes; varint open count and the
    /// open values (u32 each).
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.put_varint(self.pages.len() as u64);
        for p in &self.pages {
            out.put_u128(p.key);
            out.put_varint(p.at);
            out.put_u32(p.first);
            out.put_u32(p.last);
            out.put_varint(u64::from(p.len));
            out.put_u32(p.crc);
            out.put_varint(u64::from(p.blocks));
        }
        out.put_varint(self.sealed.len() as u64);
        for head in &self.sealed {
            out.put_u32(head.first);
            out.put_u32(head.at);
        }
        out.put_varint(self.keys.len() as u64);
        for key in &self.keys {
            out.put_u128(*key);
        }
        out.put_varint(self.deltas.len() as u64);
        out.extend_from_slice(&self.deltas);
        out.put_varint(self.open.len() as u64);
        for v in &self.open {
            out.put_u32(*v);
        }
    }

    /// The list [`PosList::encode`] wrote, checked for shape: pages inside
    /// `file` (the slot file's byte range past its header), each no larger
    /// than a page may be, in rising order of values and keys; blocks that
    /// start in rising order after them, delta offsets inside the delta
    /// bytes, one key per block in memory (keyed lists) rising after the
    /// pages' keys, a partial open block that rises. Values are below
    /// `limit`. A page's contents are checked against its CRC when read.
    pub(super) fn decode(
        c: &mut Cursor<'_>,
        limit: u32,
        keyed: bool,
        file: std::ops::Range<u64>,
    ) -> Result<Self, String> {
        let short = |e: ShortRead| format!("position list truncated at {}", e.0);
        let bad = |what: &str| Err(format!("position list: {what}"));
        let mut list = Self { keyed, ..Self::default() };
        let n_pages = c.varint("pages").map_err(short)? as usize;
        if n_pages > c.rest().len() / 30 {
            return bad("more pages than bytes");
        }
        for _ in 0..n_pages {
            let key = c.u128("page key").map_err(short)?;
            let at = c.varint("page offset").map_err(short)?;
            let first = c.u32("page first").map_err(short)?;
            let last = c.u32("page last").map_err(short)?;
            let len = c.varint_u32("page length").map_err(short)?;
            let crc = c.u32("page crc").map_err(short)?;
            let blocks = c.varint("page blocks").map_err(short)?;
            let blocks = u16::try_from(blocks).ok().filter(|b| (1..=PAGE_BLOCKS as u16).contains(b));
            let Some(blocks) = blocks else { return bad("a page with no blocks or too many") };
            let page = PageRef { key, at, first, last, len, crc, blocks };
            let inside = at >= file.start && at.checked_add(u64::from(len)).is_some_and(|e| e <= file.end);
            let spans = u64::from(last - first.min(last)) + 1 >= u64::from(blocks) * BLOCK as u64;
            let follows = list.pages.last().is_none_or(|p| p.last < first && (!keyed || p.key < key));
            if !inside || len as usize > PAGE_BYTES || first > last || !spans || !follows {
                return bad("a page outside the slot file, too long, or out of order");
            }
            list.paged += usize::from(blocks) * BLOCK;
            list.pages.push(page);
        }
        let blocks = c.varint("blocks").map_err(short)? as usize;
        if blocks > c.rest().len() / 8 {
            return bad("more blocks than bytes");
        }
        for _ in 0..blocks {
            let first = c.u32("block first").map_err(short)?;
            let at = c.u32("block deltas").map_err(short)?;
            list.sealed.push(BlockHead { first, at });
        }
        let n_keys = c.varint("keys").map_err(short)? as usize;
        if n_keys > c.rest().len() / KEY_BYTES {
            return bad("more keys than bytes");
        }
        list.keys = (0..n_keys).map(|_| c.u128("key")).collect::<Result<_, _>>().map_err(short)?;
        let n_deltas = c.varint("deltas").map_err(short)? as usize;
        list.deltas = c.take(n_deltas, "deltas").map_err(short)?.to_vec();
        let open_len = c.varint("open").map_err(short)? as usize;
        if open_len >= BLOCK {
            return bad("open block too long");
        }
        list.open =
            (0..open_len).map(|_| c.u32("open value")).collect::<Result<Vec<u32>, _>>().map_err(short)?;
        let paged_last = list.pages.last().map(|p| p.last);
        let heads_rise = list.sealed.windows(2).all(|w| w[0].first < w[1].first)
            && list.sealed.first().is_none_or(|h| paged_last.is_none_or(|l| l < h.first));
        // Delta runs start at 0 and follow each other in block order, as
        // `seal` writes them (paging relies on it).
        let mut at_next = 0usize;
        let deltas_fit = list.sealed.iter().all(|h| {
            if h.at == DENSE {
                return true;
            }
            let ok = h.at as usize == at_next;
            at_next = list.delta_span_at(h.at as usize).map_or(usize::MAX, |r| r.end);
            ok
        }) && at_next == list.deltas.len();
        let open_rises = list.open.windows(2).all(|w| w[0] < w[1])
            && list.open.first().is_none_or(|f| list.last_sealed().is_none_or(|l| l < *f));
        let keys_fit = if keyed {
            list.keys.len() == list.mem_blocks()
                && list.keys.windows(2).all(|w| w[0] < w[1])
                && list.keys.first().is_none_or(|k| list.pages.last().is_none_or(|p| p.key < *k))
        } else {
            list.keys.is_empty()
        };
        let bounded = list.last().is_none_or(|v| v < limit);
        if !(heads_rise && deltas_fit && open_rises && keys_fit && bounded) {
            return bad("values or keys out of order or out of range");
        }
        Ok(list)
    }

    /// The last value before the open block: of the last sealed block in
    /// memory, else of the last page.
    fn last_sealed(&self) -> Option<u32> {
        match self.sealed.len().checked_sub(1) {
            Some(b) => self.mem_block(b).and_then(|blk| blk.last().copied()),
            None => self.pages.last().map(|p| p.last),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One varint off the front of `bytes`: its value and the rest.
fn take_varint(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut v: u32 = 0;
    for (i, b) in bytes.iter().enumerate().take(5) {
        v |= u32::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((v, bytes.get(i + 1..)?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;
    use parking_lot::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Pages in memory, laid out as in a slot file with a 64-byte header.
    #[derive(Default)]
    struct Pages {
        bytes: Mutex<Vec<u8>>,
        reads: AtomicUsize,
        unreadable: AtomicBool,
    }

    const HEADER: u64 = 64;

    impl PageStore for Pages {
        fn write_page(&self, bytes: &[u8]) -> Option<u64> {
            let mut all = self.bytes.lock();
            let at = HEADER + all.len() as u64;
            all.extend_from_slice(bytes);
            Some(at)
        }
        fn read_page(&self, at: u64, len: u32, crc: u32) -> Option<Arc<[u8]>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            if self.unreadable.load(Ordering::Relaxed) {
                return None;
            }
            let all = self.bytes.lock();
            let from = (at - HEADER) as usize;
            let bytes = all.get(from..from + len as usize)?;
            (crc32fast::hash(bytes) == crc).then(|| Arc::from(bytes))
        }
    }

    impl Pages {
        fn range(&self) -> std::ops::Range<u64> {
            HEADER..HEADER + self.bytes.lock().len() as u64
        }
    }

    /// Moves every due page of `list` to `store`, as the spilling thread does.
    fn spill(list: &mut PosList, store: &Pages) {
        while let Some((bytes, page)) = list.oldest_page() {
            assert!(bytes.len() <= PAGE_BYTES, "a page is never larger than PAGE_BYTES");
            let at = store.write_page(&bytes).unwrap();
            assert!(list.page_written(page, at));
        }
        list.clear_due();
        assert!(list.sealed.len() < DUE_BLOCKS, "memory keeps fewer than DUE_BLOCKS sealed blocks");
    }

    fn values(list: &PosList, store: &Pages) -> Vec<u32> {
        list.collect_below(store, u32::MAX).into_iter().map(|v| v as u32).collect()
    }

    /// A xorshift sequence, so the test needs no dependency.
    fn gaps(seed: u64, n: usize) -> Vec<u32> {
        let mut x = seed;
        let mut v = 0u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly small steps, some of several varint bytes.
                let step = match x % 10 {
                    0..=5 => 1,
                    6 | 7 => (x >> 8) % 127 + 1,
                    8 => (x >> 8) % 20_000 + 1,
                    _ => (x >> 8) % 300_000 + 1,
                } as u32;
                v += step;
                v
            })
            .collect()
    }

    #[test]
    fn round_trips_every_shape_in_memory_and_in_pages() {
        let shapes = [(1u64, 0usize), (2, 1), (3, 63), (4, 64), (5, 65), (6, 1000), (7, 4097), (8, 40_000)];
        for (seed, n) in shapes {
            let want = gaps(seed, n);
            let store = Pages::default();
            let mut list = PosList::default();
            for (i, v) in want.iter().enumerate() {
                assert!(list.push(*v));
                if i % 3_000 == 2_999 {
                    spill(&mut list, &store);
                }
            }
            assert_eq!(n >= 20_000, !list.pages.is_empty(), "seed {seed}: long lists page out");
            assert_eq!(list.len(), n);
            assert_eq!(values(&list, &store), want, "seed {seed}");
            assert_eq!(list.last(), want.last().copied());
            let mut bytes = Vec::new();
            list.encode(&mut bytes);
            let back =
                PosList::decode(&mut Cursor::new(&bytes), u32::MAX, false, store.range()).expect("decodes");
            assert_eq!(values(&back, &store), want, "seed {seed}: the encoded form reads back");
            assert_eq!((back.len(), back.last()), (n, want.last().copied()));
            if let Some(last) = want.last() {
                assert!(PosList::decode(&mut Cursor::new(&bytes), *last, false, store.range()).is_err());
                assert!(PosList::decode(
                    &mut Cursor::new(&bytes[..bytes.len() - 1]),
                    u32::MAX,
                    false,
                    store.range()
                )
                .is_err());
            }
            if !list.pages.is_empty() {
                let short = HEADER..store.range().end - 1;
                assert!(
                    PosList::decode(&mut Cursor::new(&bytes), u32::MAX, false, short).is_err(),
                    "page past the file"
                );
            }
            let probes = [0u32, 1, 2, 100, 5_000, 70_000, 1 << 20, u32::MAX];
            for probe in probes.into_iter().chain(want.iter().step_by(997).flat_map(|v| [*v, v + 1])) {
                let count = want.partition_point(|v| *v < probe);
                let expect: Vec<u64> = want[..count].iter().map(|v| u64::from(*v)).collect();
                assert_eq!(list.collect_below(&store, probe), expect, "seed {seed}, probe {probe}");
            }
        }
    }

    #[test]
    fn a_keyed_list_finds_the_block_of_any_key_in_memory_or_in_pages() {
        let store = Pages::default();
        let mut list = PosList::keyed();
        let want = gaps(11, 30_000);
        // Keys rise with the values, with gaps of their own.
        let key = |v: u32| u128::from(v) * 3 + (1 << 100);
        for v in &want {
            assert!(list.push_keyed(*v, key(*v)));
        }
        assert!(!list.push(want[want.len() - 1] + 1), "a keyed list takes keys");
        spill(&mut list, &store);
        assert!(!list.pages.is_empty() && !list.keys.is_empty());
        for (i, v) in want.iter().enumerate().step_by(7) {
            let blk = list.block_of_key(&store, key(*v)).expect("a block");
            assert_eq!(blk.first(), Some(&want[i - i % BLOCK]), "value {v}: its block starts at the fence");
            assert!(blk.contains(v));
            let between = list.block_of_key(&store, key(*v) + 1).expect("a block");
            assert!(between.contains(v), "a key between two values narrows to the lower one's block");
        }
        assert!(list.block_of_key(&store, key(want[0]) - 1).is_none(), "below every key");
        let mut bytes = Vec::new();
        list.encode(&mut bytes);
        let back = PosList::decode(&mut Cursor::new(&bytes), u32::MAX, true, store.range()).expect("decodes");
        let v = want[1_000];
        assert_eq!(
            back.block_of_key(&store, key(v)).expect("block").first(),
            Some(&want[1_000 - 1_000 % BLOCK])
        );
        assert!(
            PosList::decode(&mut Cursor::new(&bytes), u32::MAX, false, store.range()).is_err(),
            "keys where none belong"
        );
        store.unreadable.store(true, Ordering::Relaxed);
        assert!(
            list.block_of_key(&store, key(want[5])).is_none(),
            "a lost page answers nothing, not a wrong block"
        );
        let newest = *want.last().unwrap();
        assert!(
            list.block_of_key(&store, key(newest)).is_some_and(|b| b.contains(&newest)),
            "memory still answers"
        );
        let kept = list.collect_below(&store, u32::MAX);
        assert_eq!(kept.len(), list.len() - list.paged, "only the pages' values are missing");
    }

    /// Any byte of an encoded list changed: decoding refuses it, or the
    /// list it yields answers every read and pages out without a panic.
    #[test]
    fn damaged_encodings_are_refused_or_harmless() {
        let store = Pages::default();
        let mut list = PosList::keyed();
        for (i, v) in gaps(21, 12_000).into_iter().enumerate() {
            assert!(list.push_keyed(v, u128::from(v) << 8));
            if i == 9_000 {
                spill(&mut list, &store);
            }
        }
        let mut bytes = Vec::new();
        list.encode(&mut bytes);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..4_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bad = bytes.clone();
            let i = (x as usize) % bad.len();
            bad[i] = if round % 2 == 0 { bad[i] ^ (1 << ((x >> 60) % 8)) } else { (x >> 32) as u8 };
            let Ok(mut back) = PosList::decode(&mut Cursor::new(&bad), u32::MAX, true, store.range()) else {
                continue;
            };
            let _ = back.collect_below(&store, u32::MAX);
            let _ = back.block_of_key(&store, (x as u128) << 20);
            let _ = back.last();
            for v in 0..200u32 {
                if !back.push_keyed(u32::MAX - 300 + v, u128::MAX - 300 + u128::from(v)) {
                    break;
                }
            }
            while let Some((page, summary)) = back.oldest_page() {
                let at = store.write_page(&page).unwrap();
                if !back.page_written(summary, at) {
                    break;
                }
            }
        }
    }

    #[test]
    fn keys_that_do_not_rise_are_refused() {
        let mut list = PosList::keyed();
        assert!(list.push_keyed(1, 100));
        for v in 2..=64 {
            assert!(list.push_keyed(v, 0), "keys inside a block are not kept");
        }
        assert!(!list.push_keyed(65, 100), "a block's key must pass the last block's");
        assert!(list.push_keyed(65, 101));
        assert_eq!(list.keys, vec![100, 101]);
    }

    #[test]
    fn dense_lists_page_out_to_a_summary() {
        let store = Pages::default();
        let mut list = PosList::default();
        let n = 1_000_000u32;
        for v in 10..10 + n {
            assert!(list.push(v));
            if list.newly_due() {
                spill(&mut list, &store);
            }
        }
        assert!(list.deltas.is_empty());
        assert!(list.pages.iter().all(|p| usize::from(p.blocks) == PAGE_BLOCKS), "dense pages are full");
        assert_eq!(list.pages.len(), (n as usize / BLOCK - list.sealed.len()) / PAGE_BLOCKS);
        assert_eq!(store.bytes.lock().len(), list.pages.len() * PAGE_BLOCKS * HEAD_BYTES);
        let reads = store.reads.load(Ordering::Relaxed);
        assert_eq!(list.collect_below(&store, 10 + 64 * 50 + 3).len(), 64 * 50 + 3);
        assert_eq!(store.reads.load(Ordering::Relaxed), reads + 1, "one page read");
        assert_eq!(list.len(), n as usize);
        assert_eq!(list.last(), Some(9 + n));
    }

    #[test]
    fn large_gaps_make_smaller_pages() {
        let store = Pages::default();
        let mut list = PosList::default();
        // Steps of 2^18 take three varint bytes each: 197 bytes per block.
        for i in 0..16_000u32 {
            assert!(list.push(i << 18));
        }
        spill(&mut list, &store);
        assert!(!list.pages.is_empty());
        assert!(list
            .pages
            .iter()
            .all(|p| usize::from(p.blocks) < PAGE_BLOCKS && p.len as usize <= PAGE_BYTES));
        assert_eq!(list.collect_below(&store, u32::MAX).len(), list.len());
    }

    #[test]
    fn refuses_values_that_do_not_rise() {
        let store = Pages::default();
        let mut list = PosList::default();
        assert!(list.push(5));
        assert!(!list.push(5));
        assert!(!list.push(4));
        for v in 6..6 + 63 {
            assert!(list.push(v));
        }
        assert!(!list.push(68), "the sealed block's last value still counts");
        assert!(list.push(u32::MAX - 1));
        assert_eq!(values(&list, &store).len(), 65);
        assert!(list.mem_block(2).is_none());
    }

    #[test]
    fn the_largest_steps_round_trip() {
        let store = Pages::default();
        let mut list = PosList::default();
        let want: Vec<u32> = (0..64).map(|i| if i == 0 { 0 } else { u32::MAX - 64 + i }).collect();
        for v in &want {
            assert!(list.push(*v));
        }
        assert_eq!(values(&list, &store), want);
        assert!(take_varint(&[0x80, 0x80]).is_none(), "a truncated varint is refused");
    }
}
