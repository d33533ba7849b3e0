//! The write side of [`Store`]: appends, batches, transitions, sync.

use crate::store::*;

impl Store<Open> {
    /// Appends one event with a fresh id; its correlation id is its own id.
    ///
    /// **Durability.** By default (`sync.every_n_events = 1000`) `Ok` means
    /// the event was written to the OS and is visible, *not* that it was
    /// fsynced: it survives a process crash, but a power loss may take up to
    /// the last 999 acknowledged single appends. Set `every_n_events` to 1
    /// (or call [`Store::sync`]) for an fsync before every reply; batches
    /// are always fsynced before their reply. See docs/design.md
    /// ("Durability contract").
    ///
    /// Gates run first: a denial is `Err(StoreError::Denied)` and writes
    /// nothing. `Err(StoreError::WriterCrashed)` or `Err(StoreError::Poisoned)`
    /// leave the outcome unknown: retry with an idempotency key.
    pub fn append(
        &self,
        coord: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
    ) -> Result<AppendReceipt, StoreError> {
        self.append_with_options(coord, kind, payload, AppendOptions::default())
    }

    /// Appends one event caused by `causation_id` within `correlation_id`'s chain.
    pub fn append_reaction(
        &self,
        coord: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
        correlation_id: u128,
        causation_id: u128,
    ) -> Result<AppendReceipt, StoreError> {
        let options = AppendOptions::new().with_correlation(correlation_id).with_causation(causation_id);
        self.append_with_options(coord, kind, payload, options)
    }

    /// Appends one event with options (CAS, idempotency, correlation, causation, flags).
    pub fn append_with_options(
        &self,
        coord: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
        options: AppendOptions,
    ) -> Result<AppendReceipt, StoreError> {
        let _span = tracing::debug_span!("batpak.append", entity = coord.entity()).entered();
        self.check_writable()?;
        check_kind(kind)?;
        let payload = serde_json::to_vec(payload)?;
        check_payload_size(payload.len(), self.cfg.single_append_max_bytes)?;
        let timestamp_us = self.cfg.now_us();
        let event_id = match options.idempotency_key {
            Some(key) => key,
            // The store's clock is the system clock: one read serves both.
            None if self.cfg.clock.is_none() => crate::id::generate_v7_id_at(timestamp_us),
            None => crate::id::generate_v7_id(),
        };
        let req = SingleRequest { coord: coord.clone(), kind, payload, options, event_id, timestamp_us };
        // Nothing queued: run it here if the writer is idle (see writer::shared).
        let mut req = Some(req);
        if self.tx.is_empty() {
            if let Some(result) = self.shared.try_in_caller(&mut req) {
                return result;
            }
        }
        let req = req.ok_or(StoreError::WriterCrashed)?;
        self.call(|reply| Command::Append(Box::new(req), reply))
    }

    /// Appends every item or none. Items are validated before anything is
    /// written; the batch is fsynced before this returns.
    pub fn append_batch(&self, items: Vec<BatchAppendItem>) -> Result<Vec<AppendReceipt>, StoreError> {
        let _span = tracing::debug_span!("batpak.append_batch", items = items.len()).entered();
        self.check_writable()?;
        validate_batch(&self.cfg, &items)?;
        let req = BatchRequest {
            fresh_ids: crate::id::generate_v7_ids(items.len()),
            items: Arc::new(items),
            timestamp_us: self.cfg.now_us(),
            item_timestamps: Vec::new(),
            durable: true,
        };
        self.call_spinning(writer::SPIN_FOR_FSYNC, |reply| Command::Batch(Box::new(req), reply))
    }

    /// [`Store::append_batch`] with every item in `correlation_id`'s chain;
    /// items without their own causation are caused by `causation_id`.
    pub fn append_reaction_batch(
        &self,
        correlation_id: u128,
        causation_id: u128,
        mut items: Vec<BatchAppendItem>,
    ) -> Result<Vec<AppendReceipt>, StoreError> {
        for item in &mut items {
            item.options.correlation_id = Some(correlation_id);
            if item.causation == CausationRef::None {
                item.options.causation_id = Some(causation_id);
            }
        }
        self.append_batch(items)
    }

    /// Appends the event of a typestate transition.
    pub fn apply_transition<From, To, P: Serialize>(
        &self,
        coord: &Coordinate,
        transition: crate::typestate::Transition<From, To, P>,
    ) -> Result<AppendReceipt, StoreError> {
        self.append(coord, transition.kind(), transition.payload())
    }

    /// Makes every acknowledged append durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.call(Command::Sync)
    }

    /// Refuses appends on a read replica's store.
    fn check_writable(&self) -> Result<(), StoreError> {
        if self.read_only.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::Configuration(
                "this store is a read replica: append on the writer, the replica follows its stream".into(),
            ));
        }
        Ok(())
    }

    /// Marks this store as a read replica's: the public append calls fail
    /// from now on, and only [`Store::start_import`] writes.
    #[cfg(feature = "replication")]
    pub(crate) fn set_read_only(&self) {
        self.read_only.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Makes a store opened as a replica writable again (a promotion).
    #[cfg(feature = "replication")]
    pub(crate) fn set_writable(&self) {
        self.read_only.store(false, std::sync::atomic::Ordering::Release);
    }

    /// From the next group on, the writer acknowledges appends only once
    /// `replicator` has put them on the replicated log (quorum acks).
    #[cfg(feature = "replication")]
    pub(crate) fn install_quorum(
        &self,
        replicator: Box<dyn crate::store::writer::GroupReplicator>,
    ) -> Result<(), StoreError> {
        self.call(|reply| Command::InstallQuorum(replicator, reply))
    }

    /// Queues events replicated from a writer's stream as one batch (all
    /// or nothing, like any batch, but not fsynced on its own: the store's
    /// sync policy covers it, and after a crash the replica fetches what
    /// it lost from the stream again) and returns without waiting: the
    /// answer is collected from the [`PendingImport`], so a replica checks
    /// the next events while the writer stores these. The writer serves
    /// commands in order, so batches queued one after another are stored
    /// in that order. Ids, correlation, causation and flags come from the
    /// items' options, and item `i` is written with `timestamps[i]`. Gates
    /// do not run (they ran on the writer); the writer still assigns
    /// sequences, clocks and chain links, which the replica compares with
    /// the writer's.
    #[cfg(feature = "replication")]
    pub(crate) fn start_import(
        &self,
        items: Vec<BatchAppendItem>,
        timestamps: Vec<i64>,
    ) -> Result<PendingImport, StoreError> {
        validate_batch(&self.cfg, &items)?;
        let req = BatchRequest {
            fresh_ids: crate::id::generate_v7_ids(items.len()),
            items: Arc::new(items),
            timestamp_us: timestamps.first().copied().unwrap_or_else(|| self.cfg.now_us()),
            item_timestamps: timestamps,
            durable: false,
        };
        Ok(PendingImport { rx: self.submit(|reply| Command::Batch(Box::new(req), reply))? })
    }
}

/// A batch import queued for the writer, not yet answered.
#[cfg(feature = "replication")]
pub(crate) struct PendingImport {
    rx: flume::Receiver<Result<Vec<AppendReceipt>, StoreError>>,
}

#[cfg(feature = "replication")]
impl PendingImport {
    /// Waits for the writer's answer.
    pub(crate) fn wait(self) -> Result<Vec<AppendReceipt>, StoreError> {
        writer::spin_recv_for(&self.rx, writer::SPIN_FOR_FSYNC).map_err(|_| StoreError::WriterCrashed)?
    }

    /// Whether the writer has answered (so [`PendingImport::wait`] returns
    /// at once).
    pub(crate) fn is_answered(&self) -> bool {
        !self.rx.is_empty() || self.rx.is_disconnected()
    }
}

fn check_kind(kind: EventKind) -> Result<(), StoreError> {
    if kind.is_reserved_for_store() {
        return Err(StoreError::ReservedKind(kind));
    }
    Ok(())
}

fn check_payload_size(size: usize, max: u32) -> Result<(), StoreError> {
    if size > max as usize {
        return Err(StoreError::PayloadTooLarge { size, max: max as usize });
    }
    Ok(())
}

/// Everything about a batch that can be checked without the writer.
fn validate_batch(cfg: &StoreConfig, items: &[BatchAppendItem]) -> Result<(), StoreError> {
    let fail = |i: usize, stage: BatchStage, e: StoreError| Err(e.in_batch(i, stage));
    if items.len() > cfg.batch.max_size as usize {
        let msg = format!("batch of {} items exceeds batch.max_size {}", items.len(), cfg.batch.max_size);
        return fail(0, BatchStage::Validation, StoreError::Configuration(msg));
    }
    let total: usize = items.iter().map(|i| i.payload_bytes.len()).sum();
    if total > cfg.batch.max_bytes as usize {
        let e = StoreError::PayloadTooLarge { size: total, max: cfg.batch.max_bytes as usize };
        return fail(0, BatchStage::Validation, e);
    }
    let mut keys = std::collections::HashSet::with_hasher(foldhash::fast::RandomState::default());
    for (i, item) in items.iter().enumerate() {
        if let Err(e) = check_kind(item.kind) {
            return fail(i, BatchStage::Validation, e);
        }
        if let Err(e) = check_payload_size(item.payload_bytes.len(), cfg.single_append_max_bytes) {
            return fail(i, BatchStage::Validation, e);
        }
        if let CausationRef::PriorItem(j) = item.causation {
            if j >= i {
                let msg = format!("item {i} names PriorItem({j}); it must name an earlier item");
                return fail(i, BatchStage::Validation, StoreError::Configuration(msg));
            }
        }
        if let Some(key) = item.options.idempotency_key {
            if !keys.insert(key) {
                let e = StoreError::IdempotencyConflict { key, detail: "key used twice in one batch".into() };
                return fail(i, BatchStage::Validation, e);
            }
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&item.payload_bytes) {
            return fail(i, BatchStage::Encoding, e.into());
        }
    }
    Ok(())
}
