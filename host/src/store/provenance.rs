//! Which gate set admitted each event: a store-wide table from gate-set id
//! to its description, rebuilt on open from the gate-set records in the
//! log (and footers and checkpoint), so it survives restarts.

use crate::plugin::GateSetInfo;
use parking_lot::RwLock;
use std::collections::BTreeMap;

/// The gate sets recorded in this store.
#[derive(Default)]
pub(crate) struct Provenance {
    sets: RwLock<BTreeMap<u32, Vec<u8>>>,
    /// The most recently recorded id (0: none; set ids start at 1).
    last: std::sync::atomic::AtomicU32,
}

impl Provenance {
    pub(crate) fn load(records: Vec<(u32, Vec<u8>)>) -> Self {
        Self { sets: RwLock::new(records.into_iter().collect()), last: std::sync::atomic::AtomicU32::new(0) }
    }

    /// Whether gate set `id` is in the log. Sets are only ever added, so
    /// the answer for the newest id is cached without the lock.
    pub(crate) fn is_recorded(&self, id: u32) -> bool {
        if self.last.load(std::sync::atomic::Ordering::Acquire) == id {
            return true;
        }
        self.sets.read().contains_key(&id)
    }

    pub(crate) fn record(&self, id: u32, body: &[u8]) {
        self.sets.write().insert(id, body.to_vec());
        self.last.store(id, std::sync::atomic::Ordering::Release);
    }

    /// The highest id recorded (new sets are numbered after it).
    pub(crate) fn max_id(&self) -> u32 {
        self.sets.read().keys().next_back().copied().unwrap_or(0)
    }

    /// Every recorded gate set as (id, record body).
    pub(crate) fn records(&self) -> Vec<(u32, Vec<u8>)> {
        self.sets.read().iter().map(|(id, body)| (*id, body.clone())).collect()
    }

    /// Every recorded gate set, decoded.
    pub(crate) fn list(&self) -> Vec<GateSetInfo> {
        self.sets.read().iter().filter_map(|(id, body)| GateSetInfo::decode(*id, body)).collect()
    }
}
