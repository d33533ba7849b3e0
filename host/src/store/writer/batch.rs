//! One atomic batch inside the writer: `BEGIN, items…, COMMIT` framed
//! contiguously in one segment, fsynced before it is indexed. Any failure
//! cuts the file back to where the batch started.

use super::io_helper::IoFailure;
use super::single::{check_cas, receipt, Head, Planned};
use super::{inject, BatchRequest, Staged, Writer};
use crate::plugin::GateInput;
use crate::store::contracts::{BatchAppendItem, CausationRef};
use crate::store::error::BatchStage;
use crate::store::fault_point as fp;
use crate::store::index::{DiskPos, IndexEntry};
use crate::store::segment::frame::{self, Record};
use crate::store::StoreError;
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

/// Per-item values fixed before anything is written.
struct ItemPlan {
    event_id: u128,
    correlation_id: u128,
    causation_id: Option<u128>,
    clock: u32,
    wall_ms: u64,
    prev: Prev,
}

/// Where an item's previous hash comes from. Hashes are not stored in
/// frames, so they are computed while the batch's fsync runs.
#[derive(Clone, Copy)]
enum Prev {
    /// The entity's head before this batch.
    Head([u8; 32]),
    /// An earlier item of this batch on the same entity.
    Item(usize),
}

/// Batches at least this large chain their hashes while a helper thread
/// writes and fsyncs their frames; smaller ones hash in less time than the
/// hand-off costs. (With a fault injector installed, batches are written
/// frame by frame on the writer so every injection point fires in order.)
const OVERLAP_MIN_ITEMS: usize = 64;

impl Writer {
    pub(super) fn stage_batch(&mut self, req: &BatchRequest) -> Result<Staged, StoreError> {
        self.check_poisoned()?;
        if req.items.is_empty() {
            return Ok(Staged { receipts: Vec::new(), wrote: false });
        }
        if let Some(replayed) = self.replay_batch(&req.items)? {
            return Ok(replayed);
        }
        self.quorum_check_unit(req.items.len()).map_err(|e| e.in_batch(0, BatchStage::Validation))?;
        // Items before the last are folded into the in-writer projections
        // as soon as their gates pass, so later items' gates see them.
        let tentative = req.items.len() > 1 && !self.projections.is_empty();
        let staged = self.stage_new_batch(req, tentative);
        if tentative && staged.is_err() {
            // Rejected or failed: no projection keeps any item of it.
            self.projections.undo_tentative();
        }
        staged
    }

    /// Plans, gates, writes and indexes a batch that is not a retry. With
    /// `tentative`, every item but the last was folded while planning.
    fn stage_new_batch(&mut self, req: &BatchRequest, tentative: bool) -> Result<Staged, StoreError> {
        let plans = self.plan_batch(req, tentative)?;
        if req.durable {
            // The batch's fsync promises everything before it: it must not
            // rest on a failed fsync still in flight.
            self.collect_sync(true).map_err(|e| e.in_batch(0, BatchStage::Writing))?;
        }
        let base = self.gen.inserted();
        let count = req.items.len();
        inject(&self.cfg, fp::batch_start(base, count)).map_err(|e| e.in_batch(0, BatchStage::Writing))?;
        self.ensure_active().map_err(|e| e.in_batch(0, BatchStage::Writing))?;
        let gate_set = self.ensure_gate_set_recorded().map_err(|e| e.in_batch(0, BatchStage::Writing))?;
        let mut planned: Vec<Planned<'_>> = req
            .items
            .iter()
            .zip(&plans)
            .enumerate()
            .map(|(i, (item, p))| Planned {
                coord: &item.coord,
                kind: item.kind,
                payload: &item.payload_bytes,
                event_id: p.event_id,
                correlation_id: p.correlation_id,
                causation_id: p.causation_id,
                flags: item.options.flags,
                timestamp_us: req.timestamp_of(i),
                seq: base + i as u64,
                clock: p.clock,
                wall_ms: p.wall_ms,
                prev_hash: [0; 32],
                gate_set,
            })
            .collect();
        let entries = self.write_batch(base, &mut planned, &plans, req.durable)?;
        let receipts = entries.iter().map(receipt).collect();
        let kept = if self.quorum_on() { entries.clone() } else { Vec::new() };
        self.index.insert_in(&self.gen, entries).map_err(|why| {
            self.poison(&why);
            StoreError::Poisoned(why)
        })?;
        self.quorum_capture(planned.iter().zip(&kept));
        if tentative {
            // Committed: keep the tentative folds, then fold the last item.
            self.projections.commit_tentative();
            if let Some(last) = planned.last() {
                self.projections.apply(&[last.projection_event()]);
            }
        } else if !self.projections.is_empty() {
            let events: Vec<_> = planned.iter().map(Planned::projection_event).collect();
            self.projections.apply(&events);
        }
        if req.durable {
            self.all_synced();
        } else {
            self.unsynced = self.unsynced.saturating_add(req.items.len() as u32);
        }
        Ok(Staged { receipts, wrote: true })
    }

    /// A batch whose items all carry idempotency keys already stored is a
    /// retry: return the original receipts. Some keys stored but not all,
    /// or any content differing, is a conflict.
    fn replay_batch(&self, items: &[BatchAppendItem]) -> Result<Option<Staged>, StoreError> {
        let mut found = Vec::new();
        let mut first_missing = None;
        for (i, item) in items.iter().enumerate() {
            match item.options.idempotency_key.and_then(|k| self.gen.by_id_any(k)) {
                Some(original) => {
                    self.check_same_event(&original, &item.coord, item.kind, &item.payload_bytes)
                        .map_err(|e| e.in_batch(i, BatchStage::Validation))?;
                    found.push(original);
                }
                None => {
                    first_missing.get_or_insert(i);
                }
            }
        }
        match (found.is_empty(), first_missing) {
            (true, _) => Ok(None),
            (false, None) => Ok(Some(Staged { receipts: found.iter().map(receipt).collect(), wrote: false })),
            (false, Some(i)) => Err(StoreError::IdempotencyConflict {
                key: items[i].options.idempotency_key.unwrap_or_default(),
                detail: format!(
                    "{} of {} batch items are already stored; a retry must repeat the whole batch",
                    found.len(),
                    items.len()
                ),
            }
            .in_batch(i, BatchStage::Validation)),
        }
    }

    /// Fixes ids, clocks, wall times and chain links; runs CAS and gates per
    /// item, in order. With `tentative`, each item but the last is folded
    /// into the in-writer projections once its gates pass, so item k is
    /// gated against the state after items 0..k-1 (the caller undoes the
    /// folds if the batch is rejected).
    fn plan_batch(&mut self, req: &BatchRequest, tentative: bool) -> Result<Vec<ItemPlan>, StoreError> {
        let base = self.gen.inserted();
        let last_item = req.items.len().saturating_sub(1);
        let set = tentative.then(|| self.projections.writer_set());
        // Each entity's head as of the items planned so far, and its last item.
        let mut heads: HashMap<Arc<str>, (Head, Option<usize>)> = HashMap::default();
        let mut plans: Vec<ItemPlan> = Vec::with_capacity(req.items.len());
        for (i, item) in req.items.iter().enumerate() {
            let entity = item.coord.entity_arc();
            let (head, last) = match heads.get(entity) {
                Some(h) => *h,
                None => (Head::of(&self.gen, entity), None),
            };
            check_cas(&item.options, entity, &head).map_err(|e| e.in_batch(i, BatchStage::Validation))?;
            let event_id = item.options.idempotency_key.unwrap_or(req.fresh_ids[i]);
            let causation_id = match item.causation {
                CausationRef::None => item.options.causation_id,
                CausationRef::Absolute(id) => Some(id),
                CausationRef::PriorItem(j) => Some(plans.get(j).map(|p| p.event_id).ok_or_else(|| {
                    StoreError::Configuration(format!("PriorItem({j}) must name an earlier item"))
                        .in_batch(i, BatchStage::Validation)
                })?),
            };
            let correlation_id = item.options.correlation_id.unwrap_or(event_id);
            let input = GateInput {
                coord: &item.coord,
                kind: item.kind,
                payload: &item.payload_bytes,
                correlation_id,
                causation_id,
                clock: head.clock,
            };
            self.gates.evaluate(&input).map_err(|d| StoreError::Denied(d).in_batch(i, BatchStage::Gating))?;
            let (clock, wall_ms) = head.next(req.timestamp_of(i));
            if let Some(set) = set.as_ref().filter(|_| i < last_item) {
                self.projections.fold_tentative(
                    set,
                    &crate::plugin::ProjectionEvent {
                        coord: &item.coord,
                        kind: item.kind,
                        payload: &item.payload_bytes,
                        event_id,
                        sequence: base + i as u64,
                        clock,
                    },
                );
            }
            let prev = last.map_or(Prev::Head(head.hash), Prev::Item);
            plans.push(ItemPlan { event_id, correlation_id, causation_id, clock, wall_ms, prev });
            heads.insert(Arc::clone(entity), (Head { clock: Some(clock), hash: [0; 32], wall_ms }, Some(i)));
        }
        Ok(plans)
    }

    /// Frames the batch, writes it, fsyncs it while chaining its hashes.
    /// On failure nothing of it remains.
    fn write_batch(
        &mut self,
        base: u64,
        planned: &mut [Planned<'_>],
        plans: &[ItemPlan],
        durable: bool,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.check_index()?;
        let count = planned.len();
        let last = count - 1;
        let mut added = Vec::new();
        let seg = self.active.as_mut().ok_or(StoreError::WriterCrashed)?;
        let (at, seg_id) = (seg.len, seg.id);
        self.buf.clear();
        let refs: Vec<(u32, u32)> = planned
            .iter()
            .map(|p| {
                (
                    seg.string_ref(p.coord.entity_arc(), &mut self.buf, &mut added),
                    seg.string_ref(p.coord.scope_arc(), &mut self.buf, &mut added),
                )
            })
            .collect();
        frame::encode(&mut self.buf, &Record::BatchBegin { batch_id: base, count: count as u32 });
        let mut cuts = vec![self.buf.len()];
        let mut positions = Vec::with_capacity(count);
        for (p, r) in planned.iter().zip(refs) {
            let offset = at + self.buf.len() as u64;
            let length = frame::encode(&mut self.buf, &Record::Event(p.record(r))) as u32;
            cuts.push(self.buf.len());
            positions.push(DiskPos { segment_id: seg_id, offset, length });
        }
        frame::encode(&mut self.buf, &Record::BatchCommit { batch_id: base, count: count as u32 });
        cuts.push(self.buf.len());
        let end = at + self.buf.len() as u64;
        let build = |planned: &mut [Planned<'_>]| -> Vec<IndexEntry> {
            let hashes = chain(planned, plans);
            planned.iter().zip(hashes).zip(positions).map(|((p, h), pos)| p.entry(h, pos)).collect()
        };
        let entries = if durable && count >= OVERLAP_MIN_ITEMS && !fp::enabled(&self.cfg) {
            // Frames carry no hashes: chain them while the helper writes and fsyncs.
            let (entries, persisted) = self.persist_during(at, || build(planned));
            match persisted {
                Ok(()) => entries,
                Err(IoFailure::Write(e)) => {
                    self.undo_unit(&added);
                    return Err(StoreError::from(e).in_batch(0, BatchStage::Writing));
                }
                Err(IoFailure::Sync(e)) => {
                    self.poison(&format!("batch fsync failed: {e}"));
                    self.abort_durable_unit(&added);
                    return Err(StoreError::from(e).in_batch(last, BatchStage::Syncing));
                }
            }
        } else {
            if let Err((item, e)) = self.write_batch_frames(at, base, &cuts) {
                self.undo_unit(&added);
                return Err(e.in_batch(item, BatchStage::Writing));
            }
            let synced = inject(&self.cfg, fp::batch_fsync(base)).and_then(|()| {
                if !durable {
                    return Ok(());
                }
                let seg = self.active.as_ref().ok_or(StoreError::WriterCrashed)?;
                seg.sync(self.cfg.sync.mode).inspect_err(|e| self.poison(&format!("batch fsync failed: {e}")))
            });
            if let Err(e) = synced {
                self.abort_durable_unit(&added);
                return Err(e.in_batch(last, BatchStage::Syncing));
            }
            build(planned)
        };
        if let Err(e) = inject(&self.cfg, fp::batch_pre_publish(base, count)) {
            self.abort_durable_unit(&added);
            return Err(e.in_batch(last, BatchStage::Indexing));
        }
        if let Some(seg) = self.active.as_mut() {
            seg.commit(end);
        }
        Ok(entries)
    }

    /// Writes the framed batch: in one call, or frame by frame with the
    /// injection points when a fault injector is installed.
    fn write_batch_frames(&self, at: u64, base: u64, cuts: &[usize]) -> Result<(), (usize, StoreError)> {
        let seg = self.active.as_ref().ok_or((0, StoreError::WriterCrashed))?;
        let count = cuts.len() - 2;
        if !fp::enabled(&self.cfg) {
            return seg.write_at_end(at, &self.buf).map_err(|e| (0, e));
        }
        let mut done = 0usize;
        for (step, &cut) in cuts.iter().enumerate() {
            seg.write_at_end(at + done as u64, &self.buf[done..cut])
                .map_err(|e| (step.saturating_sub(1).min(count - 1), e))?;
            done = cut;
            let point = match step {
                0 => fp::batch_begin_written(base, count),
                s if s <= count => fp::batch_item_written(base, s - 1, count),
                _ => fp::batch_commit_written(base),
            };
            inject(&self.cfg, point).map_err(|e| (step.saturating_sub(1).min(count - 1), e))?;
            if step == count {
                inject(&self.cfg, fp::batch_items_complete(base, count)).map_err(|e| (count - 1, e))?;
            }
        }
        Ok(())
    }

    /// Cuts back a unit that may already be durable, and makes the cut durable.
    fn abort_durable_unit(&mut self, added: &[Arc<str>]) {
        self.undo_unit(added);
        if let Err(e) = self.sync_active() {
            let why = format!("could not make a cut-back durable: {e}");
            self.poison(&why);
        }
    }
}

/// Each item's chained hash, in item order, filling in its previous hash.
fn chain(planned: &mut [Planned<'_>], plans: &[ItemPlan]) -> Vec<[u8; 32]> {
    let mut hashes: Vec<[u8; 32]> = Vec::with_capacity(planned.len());
    for (p, plan) in planned.iter_mut().zip(plans) {
        p.prev_hash = match plan.prev {
            Prev::Head(h) => h,
            Prev::Item(j) => {
                debug_assert!(j < hashes.len(), "plans only name earlier items");
                hashes.get(j).copied().unwrap_or_default()
            }
        };
        hashes.push(p.hash());
    }
    hashes
}
