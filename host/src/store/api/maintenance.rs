//! Maintenance on a live store: compaction.

use crate::store::compaction::plan::{output_name, PLAN_FILE};
use crate::store::compaction::rewrite::{self, RewriteCtx};
use crate::store::*;

impl Store<Open> {
    /// Rewrites the sealed segments (every segment but the one being
    /// appended to) according to `config.strategy`, while other threads
    /// keep appending and reading. Does nothing unless at least
    /// `config.min_segments` sealed segments exist.
    ///
    /// Ids, sequences, clocks and hashes of surviving events are unchanged,
    /// and each survivor's payload is copied byte for byte (tombstones
    /// excepted). A crash at any point leaves either the old segments or
    /// the new ones after reopen (docs/design.md, "Compaction"). Appends
    /// wait only for the final swap, not for the rewrite.
    pub fn compact(&self, config: &CompactionConfig) -> Result<CompactionResult, StoreError> {
        let _span = tracing::info_span!("batpak.compact", strategy = ?config.strategy).entered();
        let _still = self.maintenance.lock();
        let start = self.call(Command::CompactBegin)?;
        if start.run.is_empty() || start.run.len() < config.min_segments {
            return Ok(CompactionResult::default());
        }
        let ctx = RewriteCtx {
            dir: &self.dir,
            index: &self.index,
            reader: &self.reader,
            segment_max_bytes: self.cfg.segment_max_bytes,
            now_us: self.cfg.now_us(),
            gate_sets: self.provenance.records(),
        };
        let prepared = rewrite::prepare(&ctx, start, &config.strategy)?;
        let outputs = prepared.plan.outputs.clone();
        let committed = self.call(|reply| Command::CompactCommit(Box::new(prepared), reply));
        if committed.is_err() && matches!(self.dir.read_optional(PLAN_FILE), Ok(None)) {
            // The writer never committed: the outputs are garbage.
            for id in outputs {
                let _ = self.dir.remove_optional(&output_name(id));
            }
        }
        committed
    }
}
