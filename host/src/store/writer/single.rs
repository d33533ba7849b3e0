//! One single-event append, start to finish inside the writer.

use super::{inject, Staged, Writer};
use crate::chain_hash::{event_hash, HashedFields};
use crate::event::HashChain;
use crate::plugin::GateInput;
use crate::store::contracts::{AppendOptions, AppendReceipt, Notification};
use crate::store::fault_point as fp;
use crate::store::index::{DiskPos, IndexEntry, IndexGen};
use crate::store::segment::frame::{self, EventRecord, Record};
use crate::store::writer::SingleRequest;
use crate::store::StoreError;
use crate::Coordinate;
use crate::EventKind;

/// The tip of an entity's chain as the writer sees it (published or not).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Head {
    pub clock: Option<u32>,
    pub hash: [u8; 32],
    pub wall_ms: u64,
}

impl Head {
    pub(super) fn of(index: &IndexGen, entity: &str) -> Self {
        match index.head(entity) {
            Some(h) => Self { clock: Some(h.clock), hash: h.hash, wall_ms: h.wall_ms },
            None => Self::default(),
        }
    }

    /// The clock, wall time and prev hash of the entity's next event.
    pub(super) fn next(&self, timestamp_us: i64) -> (u32, u64) {
        let clock = self.clock.map_or(0, |c| c.saturating_add(1));
        let wall_ms = frame::wall_base(timestamp_us).max(self.wall_ms);
        (clock, wall_ms)
    }
}

/// Optimistic-concurrency check against the entity's head.
pub(super) fn check_cas(options: &AppendOptions, entity: &str, head: &Head) -> Result<(), StoreError> {
    if options.expect_empty {
        if let Some(actual) = head.clock {
            return Err(StoreError::EntityNotEmpty { entity: entity.to_string(), actual });
        }
    }
    if let Some(expected) = options.expected_sequence {
        match head.clock {
            None => return Err(StoreError::EntityHasNoEvents { entity: entity.to_string(), expected }),
            Some(actual) if actual != expected => {
                return Err(StoreError::SequenceMismatch { entity: entity.to_string(), expected, actual })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Everything needed to frame, index and announce one event.
pub(super) struct Planned<'a> {
    pub coord: &'a Coordinate,
    pub kind: EventKind,
    pub payload: &'a [u8],
    pub event_id: u128,
    pub correlation_id: u128,
    pub causation_id: Option<u128>,
    pub flags: u8,
    pub timestamp_us: i64,
    pub seq: u64,
    pub clock: u32,
    pub wall_ms: u64,
    pub prev_hash: [u8; 32],
    pub gate_set: Option<u32>,
}

impl Planned<'_> {
    pub(super) fn hash(&self) -> [u8; 32] {
        let fields = HashedFields {
            event_id: self.event_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            entity: self.coord.entity(),
            scope: self.coord.scope(),
            kind: self.kind.as_raw(),
            flags: self.flags,
            clock: self.clock,
            wall_ms: self.wall_ms,
            timestamp_us: self.timestamp_us,
            global_sequence: self.seq,
        };
        event_hash(&self.prev_hash, &fields, self.payload)
    }

    pub(super) fn record(&self, refs: (u32, u32)) -> EventRecord<'_> {
        EventRecord {
            flags: self.flags,
            kind: self.kind.as_raw(),
            entity_ref: refs.0,
            scope_ref: refs.1,
            global_sequence: self.seq,
            clock: self.clock,
            timestamp_us: self.timestamp_us,
            wall_ms: self.wall_ms,
            event_id: self.event_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            gate_set: self.gate_set,
            prev_hash: None,
            sealed_hash: None,
            payload: self.payload,
        }
    }

    pub(super) fn projection_event(&self) -> crate::plugin::ProjectionEvent<'_> {
        crate::plugin::ProjectionEvent {
            coord: self.coord,
            kind: self.kind,
            payload: self.payload,
            event_id: self.event_id,
            sequence: self.seq,
            clock: self.clock,
        }
    }

    pub(super) fn entry(&self, event_hash: [u8; 32], disk_pos: DiskPos) -> IndexEntry {
        IndexEntry {
            event_id: self.event_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            coord: self.coord.clone(),
            kind: self.kind,
            wall_ms: self.wall_ms,
            clock: self.clock,
            hash_chain: HashChain { prev_hash: self.prev_hash, event_hash },
            disk_pos,
            global_sequence: self.seq,
            flags: self.flags,
            gate_set: self.gate_set,
        }
    }
}

pub(super) fn notification(e: &IndexEntry) -> Notification {
    Notification {
        event_id: e.event_id,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        coord: e.coord.clone(),
        kind: e.kind,
        sequence: e.global_sequence,
    }
}

pub(super) fn receipt(e: &IndexEntry) -> AppendReceipt {
    AppendReceipt { event_id: e.event_id, sequence: e.global_sequence, disk_pos: e.disk_pos }
}

impl Writer {
    pub(super) fn stage_single(&mut self, req: SingleRequest) -> Result<Staged, StoreError> {
        self.check_poisoned()?;
        let entity = req.coord.entity();
        if let Some(key) = req.options.idempotency_key {
            if let Some(original) = self.gen.by_id_any(key) {
                self.check_same_event(&original, &req.coord, req.kind, &req.payload)?;
                return Ok(Staged { receipts: vec![receipt(&original)], wrote: false });
            }
        }
        let head = Head::of(&self.gen, entity);
        check_cas(&req.options, entity, &head)?;
        let (clock, wall_ms) = head.next(req.timestamp_us);
        let input = GateInput {
            coord: &req.coord,
            kind: req.kind,
            payload: &req.payload,
            correlation_id: req.options.correlation_id.unwrap_or(req.event_id),
            causation_id: req.options.causation_id,
            clock: head.clock,
        };
        debug_assert!(!self.in_caller || self.gates.is_empty(), "a gate ran on a caller's thread");
        self.gates.evaluate(&input).map_err(StoreError::Denied)?;
        self.ensure_active()?;
        let gate_set = self.ensure_gate_set_recorded()?;
        let plan = Planned {
            coord: &req.coord,
            kind: req.kind,
            payload: &req.payload,
            event_id: req.event_id,
            correlation_id: input.correlation_id,
            causation_id: req.options.causation_id,
            flags: req.options.flags,
            timestamp_us: req.timestamp_us,
            seq: self.gen.inserted(),
            clock,
            wall_ms,
            prev_hash: head.hash,
            gate_set,
        };
        let entry = self.write_single(&plan)?;
        let staged = Staged { receipts: vec![receipt(&entry)], wrote: true };
        let kept = self.quorum_on().then(|| entry.clone());
        self.index.insert_in(&self.gen, vec![entry]).map_err(|why| {
            self.poison(&why);
            StoreError::Poisoned(why)
        })?;
        if let Some(entry) = &kept {
            self.quorum_capture(std::iter::once((&plan, entry)));
        }
        if !self.projections.is_empty() {
            debug_assert!(!self.in_caller, "a projection ran on a caller's thread");
            self.projections.apply(&[plan.projection_event()]);
        }
        self.unsynced = self.unsynced.saturating_add(1);
        Ok(staged)
    }

    /// Frames and writes one event; on any failure the bytes are cut back.
    fn write_single(&mut self, plan: &Planned<'_>) -> Result<IndexEntry, StoreError> {
        self.check_index()?;
        let hash = plan.hash();
        let mut added = Vec::new();
        let seg = self.active.as_mut().ok_or(StoreError::WriterCrashed)?;
        let at = seg.len;
        self.buf.clear();
        let refs = (
            seg.string_ref(plan.coord.entity_arc(), &mut self.buf, &mut added),
            seg.string_ref(plan.coord.scope_arc(), &mut self.buf, &mut added),
        );
        let offset = at + self.buf.len() as u64;
        let length = frame::encode(&mut self.buf, &Record::Event(plan.record(refs))) as u32;
        let seg_id = seg.id;
        // Not fsynced right after its write: copied into the mapped window.
        let buffered = self.cfg.sync.every_n_events > 1;
        let written = inject(&self.cfg, fp::single_start(plan.coord.entity()))
            .and_then(
                |()| if buffered { seg.copy_at_end(at, &self.buf) } else { seg.write_at_end(at, &self.buf) },
            )
            .and_then(|()| inject(&self.cfg, fp::single_written(plan.coord.entity())));
        if let Err(e) = written {
            self.undo_unit(&added);
            return Err(e);
        }
        seg.commit(at + self.buf.len() as u64);
        Ok(plan.entry(hash, DiskPos { segment_id: seg_id, offset, length }))
    }

    /// An idempotent retry must carry the same event as the original.
    pub(super) fn check_same_event(
        &self,
        original: &IndexEntry,
        coord: &Coordinate,
        kind: EventKind,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let conflict = |detail: String| StoreError::IdempotencyConflict { key: original.event_id, detail };
        if &original.coord != coord {
            return Err(conflict(format!("stored at {}, retried at {coord}", original.coord)));
        }
        if original.kind != kind {
            return Err(conflict(format!("stored as kind {}, retried as {kind}", original.kind)));
        }
        let stored = crate::store::segment::read::read_payload(&self.dir, original.disk_pos)?;
        if stored != payload {
            return Err(conflict("payload differs".into()));
        }
        Ok(())
    }
}
