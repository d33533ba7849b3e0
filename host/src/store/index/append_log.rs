//! Append-only storage addressed by position, for the index's entry log
//! and string table.

use std::sync::OnceLock;

/// Append-only storage addressed by position, in fixed-size chunks that
/// never move once allocated, so a reader needs no lock to read a filled
/// slot. Waste is at most one partly filled chunk.
pub(super) struct AppendLog<T, const CHUNK: usize> {
    pub(super) chunks: Box<[Chunk<T>]>,
}

/// One chunk of an [`AppendLog`]: allocated on first use, then never moved.
pub(super) type Chunk<T> = OnceLock<Box<[OnceLock<T>]>>;

impl<T, const CHUNK: usize> AppendLog<T, CHUNK> {
    pub(super) fn new(chunks: usize) -> Self {
        Self { chunks: (0..chunks).map(|_| OnceLock::new()).collect() }
    }

    fn locate(i: u64) -> (usize, usize) {
        ((i / CHUNK as u64) as usize, (i % CHUNK as u64) as usize)
    }

    pub(super) fn get(&self, i: u64) -> Option<&T> {
        let (k, at) = Self::locate(i);
        self.chunks.get(k)?.get()?.get(at)?.get()
    }

    /// Fills slot `i`; false if it is taken or out of range.
    pub(super) fn set(&self, i: u64, value: T) -> bool {
        let (k, at) = Self::locate(i);
        let Some(chunk) = self.chunks.get(k) else { return false };
        let slots = chunk.get_or_init(Self::fresh_chunk);
        slots.get(at).is_some_and(|slot| slot.set(value).is_ok())
    }

    fn fresh_chunk() -> Box<[OnceLock<T>]> {
        (0..CHUNK).map(|_| OnceLock::new()).collect()
    }
}
