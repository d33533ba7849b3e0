//! What `crate::replication` needs from a store: committed events in their
//! shipped form, entity heads, and the sequence bound.

use crate::replication::wire::Shipped;
use crate::store::*;

impl Store<Open> {
    /// The committed event at global sequence `seq` (visible), shipped form.
    pub(crate) fn shipped_at(&self, seq: u64) -> Result<Option<Shipped>, StoreError> {
        match self.index.get_visible(seq) {
            Some(entry) => Ok(self.shipped_many(&[entry])?.pop()),
            None => Ok(None),
        }
    }

    /// The events behind `entries`, in their shipped form, read in runs.
    pub(crate) fn shipped_many(&self, entries: &[IndexEntry]) -> Result<Vec<Shipped>, StoreError> {
        self.reader.with_records(entries, |entry, record| {
            Shipped::of(record, entry.coord.entity(), entry.coord.scope(), &entry.hash_chain)
        })
    }

    /// The entity's chain tip: clock, hash and wall time of its last event.
    pub(crate) fn entity_head(&self, entity: &str) -> Option<crate::store::entry::EntityHead> {
        self.index.head(entity)
    }

    /// Exclusive bound of visible global sequences: the next one to commit.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.index.visible()
    }

    /// The store's batch limits: (items, payload bytes).
    pub(crate) fn batch_limits(&self) -> (usize, usize) {
        (self.cfg.batch.max_size as usize, self.cfg.batch.max_bytes as usize)
    }

    /// The store's data directory.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        &self.cfg.data_dir
    }
}
