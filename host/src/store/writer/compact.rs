//! The writer's two short steps of a compaction (see `store::compaction`):
//! naming the run, and committing a prepared rewrite.

use super::{inject, Writer};
use crate::store::compaction::plan::{self, output_name, PLAN_FILE};
use crate::store::compaction::rewrite::Prepared;
use crate::store::compaction::{CompactionResult, CompactionStart};
use crate::store::StoreError;

impl Writer {
    /// The sealed segments and the sequence below which everything is
    /// published (the writer runs this between groups, so that is all of it).
    pub(super) fn begin_compaction(&mut self) -> Result<CompactionStart, StoreError> {
        self.check_poisoned()?;
        let active = self.active.as_ref().map(|a| a.id);
        let run = self.segments.iter().copied().filter(|id| Some(*id) != active).collect();
        debug_assert_eq!(self.gen.inserted(), self.gen.visible(), "between groups all is published");
        Ok(CompactionStart { run, watermark: self.gen.inserted() })
    }

    /// Adds what was appended during the rewrite to the new generation,
    /// commits the plan, puts the outputs in place and swaps the index.
    /// Before the plan is durable a failure changes nothing (the outputs
    /// are removed); after it, a failure poisons the writer and the next
    /// open finishes the compaction.
    pub(super) fn commit_compaction(&mut self, p: Prepared) -> Result<CompactionResult, StoreError> {
        let staged = self.stage_commit(&p);
        if let Err(e) = staged {
            for id in &p.plan.outputs {
                let _ = self.dir.remove_optional(&output_name(*id));
            }
            return Err(e);
        }
        let swap = p.reader.lock_for_swap();
        let finished = inject(&self.cfg, crate::store::fault_point::compaction_committed())
            .and_then(|()| plan::finish(&self.dir, &p.plan));
        if let Err(e) = finished {
            let why = format!("compaction committed but not finished ({e}); reopen the store to finish it");
            self.poison(&why);
            return Err(StoreError::Poisoned(why));
        }
        self.index.replace(p.gen);
        self.gen = self.index.live();
        p.reader.forget_files();
        drop(swap);
        let floor = self.segments.last().map_or(1, |id| id + 1);
        self.segments.retain(|id| !p.run.contains(id));
        let mut segments = p.plan.outputs.clone();
        segments.append(&mut self.segments);
        self.segments = segments;
        self.next_segment_floor = self.next_segment_floor.max(floor);
        self.checkpoint_current = false;
        self.image_current = false;
        tracing::info!(result = ?p.result, "compaction committed");
        Ok(p.result)
    }

    /// Everything before the commit point: catch up, check, write the plan.
    fn stage_commit(&mut self, p: &Prepared) -> Result<(), StoreError> {
        self.check_poisoned()?;
        let active = self.active.as_ref().map(|a| a.id);
        if p.run.iter().any(|id| Some(*id) == active || !self.segments.contains(id)) {
            return Err(StoreError::corrupt(0, "compaction: the run is no longer a set of sealed segments"));
        }
        let end = self.gen.inserted();
        let mut tail = Vec::new();
        for seq in p.watermark..end {
            if let Some(e) = self.gen.get_any(seq) {
                tail.push(e);
            }
        }
        p.gen.insert(tail).map_err(|why| StoreError::corrupt(0, format!("compaction catch-up: {why}")))?;
        p.gen.publish();
        if p.gen.visible() != self.gen.visible() {
            return Err(StoreError::corrupt(0, "compaction: the new index does not reach the watermark"));
        }
        inject(&self.cfg, crate::store::fault_point::compaction_outputs_written(p.plan.outputs.len()))?;
        plan::commit(&self.dir, &p.plan)
    }

    /// Whether a compaction plan is waiting in the directory (after a panic
    /// mid-commit the writer cannot tell how far it got).
    pub(super) fn compaction_pending(&self) -> bool {
        matches!(self.dir.read_optional(PLAN_FILE), Ok(Some(_)))
    }
}
