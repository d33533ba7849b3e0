//! A strictly rising list of log positions, kept compact: the index's
//! rising-id list and its per-scope and per-kind lists.
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
//! microsecond). Each sealed block costs an 8-byte head, so a list of
//! interleaved positions costs about 1.1 bytes per value instead of 4, and a
//! dense one 0.125.

/// Values per block. Equal to the index's id fence stride, so the entries
/// between two fences are exactly one block.
pub(super) const BLOCK: usize = 64;

use crate::store::segment::codec::{Cursor, ShortRead};

/// `BlockHead::at` of a dense block.
const DENSE: u32 = u32::MAX;

/// A sealed block: its first value and where its deltas start (`DENSE`: none).
#[derive(Clone, Copy)]
struct BlockHead {
    first: u32,
    at: u32,
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

/// A strictly rising list of `u32` positions (see the module docs).
#[derive(Default)]
pub(super) struct PosList {
    sealed: Vec<BlockHead>,
    deltas: Vec<u8>,
    open: Vec<u32>,
}

impl PosList {
    /// Number of values.
    pub(super) fn len(&self) -> usize {
        self.sealed.len() * BLOCK + self.open.len()
    }

    /// The largest value.
    pub(super) fn last(&self) -> Option<u32> {
        if let Some(v) = self.open.last() {
            return Some(*v);
        }
        self.sealed.len().checked_sub(1).and_then(|b| self.block(b)).and_then(|b| b.last().copied())
    }

    /// Appends `v`. Returns false, changing nothing, unless `v` is above
    /// every value in the list (or the delta area would pass 4 GiB, which
    /// positions below 2^32 cannot make it do).
    #[must_use]
    pub(super) fn push(&mut self, v: u32) -> bool {
        if self.last().is_some_and(|last| v <= last) {
            return false;
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

    /// The values of block `b` (the open block is the last one).
    pub(super) fn block(&self, b: usize) -> Option<Block> {
        let mut out = Block { values: [0; BLOCK], len: 0 };
        let Some(head) = self.sealed.get(b) else {
            if b != self.sealed.len() || self.open.is_empty() {
                return None;
            }
            out.values.get_mut(..self.open.len())?.copy_from_slice(&self.open);
            out.len = self.open.len();
            return Some(out);
        };
        out.len = BLOCK;
        let mut v = head.first;
        if head.at == DENSE {
            for (i, slot) in out.values.iter_mut().enumerate() {
                *slot = head.first + i as u32;
            }
            return Some(out);
        }
        let mut bytes = self.deltas.get(head.at as usize..)?;
        out.values[0] = v;
        for slot in out.values.iter_mut().skip(1) {
            let (delta, rest) = take_varint(bytes)?;
            v = v.checked_add(delta)?;
            *slot = v;
            bytes = rest;
        }
        Some(out)
    }

    /// Number of blocks, the open one included.
    pub(super) fn blocks(&self) -> usize {
        self.sealed.len() + usize::from(!self.open.is_empty())
    }

    /// How many values are below `limit`.
    pub(super) fn count_below(&self, limit: u32) -> usize {
        // Blocks that start below `limit`; only the last of them can straddle it.
        let starting = self.sealed.partition_point(|h| h.first < limit);
        let open_starts = self.open.first().is_some_and(|f| *f < limit);
        if open_starts {
            return self.sealed.len() * BLOCK + self.open.partition_point(|v| *v < limit);
        }
        let Some(b) = starting.checked_sub(1) else { return 0 };
        let within = self.block(b).map_or(0, |blk| blk.partition_point(|v| *v < limit));
        b * BLOCK + within
    }

    /// The values below `limit`, in order, widened for sequence arithmetic.
    pub(super) fn collect_below(&self, limit: u32) -> Vec<u64> {
        let n = self.count_below(limit);
        let mut out = Vec::with_capacity(n);
        for b in 0..self.blocks() {
            let Some(blk) = self.block(b) else { break };
            let take = (n - out.len()).min(blk.len());
            out.extend(blk.iter().take(take).map(|v| u64::from(*v)));
            if out.len() == n {
                break;
            }
        }
        out
    }

    /// Makes room for `n` more values.
    pub(super) fn reserve(&mut self, n: usize) {
        self.sealed.reserve(n / BLOCK + 1);
    }

    /// Gives back spare capacity.
    pub(super) fn shrink_to_fit(&mut self) {
        self.sealed.shrink_to_fit();
        self.deltas.shrink_to_fit();
        self.open.shrink_to_fit();
    }
}

impl PosList {
    /// Appends the list's internal form to `out` (for the index image):
    /// varint block count, then each sealed block's head (`first`, `at`,
    /// u32 each), varint delta byte count and the delta bytes, varint open
    /// count and the open values (u32 each).
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        use crate::store::segment::codec::PutBytes;
        out.put_varint(self.sealed.len() as u64);
        for head in &self.sealed {
            out.put_u32(head.first);
            out.put_u32(head.at);
        }
        out.put_varint(self.deltas.len() as u64);
        out.extend_from_slice(&self.deltas);
        out.put_varint(self.open.len() as u64);
        for v in &self.open {
            out.put_u32(*v);
        }
    }

    /// The list [`PosList::encode`] wrote, checked for shape: blocks that
    /// start in rising order, delta offsets inside the delta bytes, a
    /// partial open block that rises. Values are below `limit`.
    pub(super) fn decode(c: &mut Cursor<'_>, limit: u32) -> Result<Self, String> {
        let short = |e: ShortRead| format!("position list truncated at {}", e.0);
        let blocks = c.varint("blocks").map_err(short)? as usize;
        if blocks > c.rest().len() / 8 {
            return Err("position list: more blocks than bytes".into());
        }
        let mut sealed = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            let first = c.u32("block first").map_err(short)?;
            let at = c.u32("block deltas").map_err(short)?;
            sealed.push(BlockHead { first, at });
        }
        let n_deltas = c.varint("deltas").map_err(short)? as usize;
        let deltas = c.take(n_deltas, "deltas").map_err(short)?.to_vec();
        let open_len = c.varint("open").map_err(short)? as usize;
        if open_len >= BLOCK {
            return Err("position list: open block too long".into());
        }
        let open =
            (0..open_len).map(|_| c.u32("open value")).collect::<Result<Vec<u32>, _>>().map_err(short)?;
        let list = Self { sealed, deltas, open };
        let heads_rise = list.sealed.windows(2).all(|w| w[0].first < w[1].first);
        let deltas_fit = list.sealed.iter().all(|h| h.at == DENSE || (h.at as usize) < list.deltas.len());
        let open_rises = list.open.windows(2).all(|w| w[0] < w[1])
            && list.open.first().is_none_or(|f| list.sealed.last().is_none_or(|h| h.first < *f));
        let bounded = list.last().is_none_or(|v| v < limit);
        if !(heads_rise && deltas_fit && open_rises && bounded) {
            return Err("position list: values out of order or out of range".into());
        }
        Ok(list)
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

    fn values(list: &PosList) -> Vec<u32> {
        (0..list.blocks()).flat_map(|b| list.block(b).unwrap().to_vec()).collect()
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
                    _ => (x >> 8) % 3_000_000 + 1,
                } as u32;
                v += step;
                v
            })
            .collect()
    }

    #[test]
    fn round_trips_every_shape() {
        for (seed, n) in [(1u64, 0usize), (2, 1), (3, 63), (4, 64), (5, 65), (6, 1000), (7, 4097)] {
            let want = gaps(seed, n);
            let mut list = PosList::default();
            for v in &want {
                assert!(list.push(*v));
            }
            assert_eq!(list.len(), n);
            assert_eq!(values(&list), want, "seed {seed}");
            assert_eq!(list.last(), want.last().copied());
            let mut bytes = Vec::new();
            list.encode(&mut bytes);
            let back = PosList::decode(&mut Cursor::new(&bytes), u32::MAX).expect("decodes");
            assert_eq!(values(&back), want, "seed {seed}: the encoded form reads back");
            if let Some(last) = want.last() {
                assert!(PosList::decode(&mut Cursor::new(&bytes), *last).is_err(), "a value past the limit");
                assert!(PosList::decode(&mut Cursor::new(&bytes[..bytes.len() - 1]), u32::MAX).is_err());
            }
            for probe in [0u32, 1, 2, 100, 5_000, 70_000, 1 << 20, u32::MAX] {
                let count = want.partition_point(|v| *v < probe);
                assert_eq!(list.count_below(probe), count, "probe {probe}");
                let expect: Vec<u64> = want[..count].iter().map(|v| u64::from(*v)).collect();
                assert_eq!(list.collect_below(probe), expect);
            }
            for v in want.iter().step_by(7) {
                assert_eq!(list.count_below(*v), want.partition_point(|w| w < v));
                assert_eq!(list.count_below(v + 1), want.partition_point(|w| w <= v));
            }
        }
    }

    #[test]
    fn dense_blocks_take_no_delta_bytes() {
        let mut list = PosList::default();
        for v in 10..10 + 64 * 100 {
            assert!(list.push(v));
        }
        assert!(list.deltas.is_empty());
        assert_eq!(list.sealed.len(), 100);
        assert_eq!(list.block(99).unwrap().first(), Some(&(10 + 64 * 99)));
        assert_eq!(list.count_below(10 + 64 * 50 + 3), 64 * 50 + 3);
    }

    #[test]
    fn refuses_values_that_do_not_rise() {
        let mut list = PosList::default();
        assert!(list.push(5));
        assert!(!list.push(5));
        assert!(!list.push(4));
        for v in 6..6 + 63 {
            assert!(list.push(v));
        }
        assert!(!list.push(68), "the sealed block's last value still counts");
        assert!(list.push(u32::MAX - 1));
        assert_eq!(values(&list).len(), 65);
        assert!(list.block(2).is_none());
    }

    #[test]
    fn the_largest_steps_round_trip() {
        let mut list = PosList::default();
        let want: Vec<u32> = (0..64).map(|i| if i == 0 { 0 } else { u32::MAX - 64 + i }).collect();
        for v in &want {
            assert!(list.push(*v));
        }
        assert_eq!(values(&list), want);
        assert!(take_varint(&[0x80, 0x80]).is_none(), "a truncated varint is refused");
    }
}
