//! Guaranteed pull cursors: every committed event of a region, in order,
//! exactly once, resumable from a saved position. Each poll costs
//! O(entries examined since the last poll), never a re-query.

use crate::coordinate::Region;
use crate::store::index::{IndexEntry, StoreIndex};
use std::sync::Arc;

/// How many entries one `poll` examines at most before returning empty-handed.
const POLL_SCAN_LIMIT: usize = 64 * 1024;

/// A pull cursor over a region.
pub struct Cursor {
    index: Arc<StoreIndex>,
    region: Region,
    next: u64,
}

impl Cursor {
    pub(crate) fn new(index: Arc<StoreIndex>, region: Region, next: u64) -> Self {
        Self { index, region, next }
    }

    /// The next event in the region, if one is visible.
    pub fn poll(&mut self) -> Option<IndexEntry> {
        self.poll_batch(1).into_iter().next()
    }

    /// Up to `max` next events in the region.
    pub fn poll_batch(&mut self, max: usize) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        while out.len() < max {
            let before = self.next;
            let want = max - out.len();
            let (found, next) = self.index.scan_from(&self.region, self.next, want.min(POLL_SCAN_LIMIT));
            self.next = next;
            out.extend(found);
            if next == before || next >= self.index.visible() {
                break;
            }
        }
        out
    }

    /// The global sequence this cursor resumes from; save it and pass it to
    /// `Store::cursor_from` to continue later.
    pub fn position(&self) -> u64 {
        self.next
    }
}
