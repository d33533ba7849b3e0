//! Offline-style verification of a live store: every visible event's frame
//! is read (CRC-checked) and its hash recomputed from the previous hash of
//! its entity, its header fields and its payload.
//!
//! Compaction leaves two kinds of records that are checked differently: an
//! *anchored* event (its predecessor was removed) chains from the previous
//! hash its frame stores and may skip clock values; a *tombstone* keeps the
//! original hash, which its rewritten contents can no longer reproduce, so
//! only its place in the chain is checked.

use crate::store::index::IndexEntry;
use crate::store::segment::frame::{self, Record};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;

/// One problem found by [`Store::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyIssue {
    /// Segment of the bad frame.
    pub segment_id: u64,
    /// Byte offset of the bad frame.
    pub offset: u64,
    /// Global sequence of the event.
    pub sequence: u64,
    /// What is wrong.
    pub detail: String,
}

/// The outcome of [`Store::verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked.
    pub events: u64,
    /// Entities whose chains were followed.
    pub entities: usize,
    /// Problems, in log order.
    pub issues: Vec<VerifyIssue>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.issues.is_empty()
    }
}

impl Store {
    /// Checks every visible event: frame CRC, chain link, clock continuity
    /// and recomputed hash. `progress` is called with (done, total).
    pub fn verify_with_progress(&self, mut progress: impl FnMut(u64, u64)) -> VerifyReport {
        let _still = self.maintenance.lock();
        let total = self.index.visible();
        let mut heads: HashMap<Arc<str>, (u32, [u8; 32])> = HashMap::new();
        let mut report = VerifyReport::default();
        for seq in 0..total {
            let Some(entry) = self.index.get_visible(seq) else { continue };
            if let Err(detail) = self.verify_one(&entry, &mut heads) {
                report.issues.push(VerifyIssue {
                    segment_id: entry.disk_pos.segment_id,
                    offset: entry.disk_pos.offset,
                    sequence: seq,
                    detail,
                });
            }
            report.events += 1;
            if seq % 4096 == 0 {
                progress(seq, total);
            }
        }
        progress(total, total);
        report.entities = heads.len();
        report
    }

    /// [`Store::verify_with_progress`] without progress reports.
    pub fn verify(&self) -> VerifyReport {
        self.verify_with_progress(|_, _| {})
    }

    fn verify_one(
        &self,
        e: &IndexEntry,
        heads: &mut HashMap<Arc<str>, (u32, [u8; 32])>,
    ) -> Result<(), String> {
        let bytes = self.reader.read_frame_bytes(e.disk_pos).map_err(|err| err.to_string())?;
        let ev = match frame::decode(&bytes) {
            Ok((Record::Event(ev), _)) => ev,
            Ok(_) => return Err("not an event frame".into()),
            Err(err) => return Err(err.to_string()),
        };
        let (expected_clock, prev) = match heads.get(e.coord.entity()) {
            Some((clock, hash)) => (clock + 1, *hash),
            None => (0, [0u8; 32]),
        };
        heads.insert(Arc::clone(e.coord.entity_arc()), (ev.clock, e.hash_chain.event_hash));
        let prev = match ev.prev_hash {
            Some(anchor) if ev.clock >= expected_clock => anchor,
            Some(_) => return Err(format!("clock {} is not after {}", ev.clock, expected_clock)),
            None if ev.clock != expected_clock => {
                return Err(format!("clock {} where {expected_clock} was expected", ev.clock))
            }
            None => prev,
        };
        if e.hash_chain.prev_hash != prev {
            return Err("prev hash does not link to the entity's previous event".into());
        }
        let hash = match ev.sealed_hash {
            Some(sealed) => sealed,
            None => ev.chain_hash(&prev, e.coord.entity(), e.coord.scope()),
        };
        if hash != e.hash_chain.event_hash {
            return Err("event hash does not match its contents".into());
        }
        Ok(())
    }
}
