//! The writer thread: the only code that writes segments or mutates the index.
//!
//! Callers send a `Command` over a bounded channel and block on a one-shot
//! reply. The writer takes one command, then whatever else is queued (up to
//! the group-commit limit), and runs each unit along one straight line:
//!
//! `validate → gates → frame → write → (batch: fsync) → index insert →
//! in-writer projections`
//!
//! then, once for the whole group: `fsync policy → publish → notify → reply`.
//! A unit that fails after writing is cut back from the file before the next
//! unit starts, so the log never holds bytes of a failed unit.
//!
//! The writer's state sits behind a mutex (`shared`): when the queue is
//! empty and the writer idle, a single append runs this same line on its
//! caller's thread as a group of one. One thread at a time holds the state.

mod active;
mod batch;
mod compact;
mod io_helper;
#[cfg(feature = "replication")]
mod quorum;
mod shared;
mod shutdown;
mod single;
mod sync_ahead;

pub(crate) use shared::SharedWriter;

#[cfg(feature = "replication")]
pub(crate) use quorum::{GroupReplicator, QuorumFailure};

use crate::plugin::GateChain;
use crate::store::config::StoreConfig;
use crate::store::contracts::{AppendOptions, AppendReceipt, BatchAppendItem};
use crate::store::data_dir::DataDir;
use crate::store::index::{IndexGen, StoreIndex};
use crate::store::provenance::Provenance;
use crate::store::subscription::Subscribers;
use crate::store::StoreError;
use crate::Coordinate;
use crate::EventKind;
pub(crate) use active::ActiveSegment;
use std::sync::Arc;

/// Most commands served in one group when the configuration says "unbounded".
const GROUP_LIMIT_MAX: usize = 4096;

/// How long a thread spins for a message before it sleeps. A round trip
/// to the writer usually takes a few microseconds; sleeping and waking
/// costs more than that on each side.
pub(crate) const SPIN_BEFORE_PARK: std::time::Duration = std::time::Duration::from_micros(40);

/// How long a caller waiting on an fsync (a batch, a durable append)
/// spins before it sleeps: about one fsync of a small write here. Waking a
/// sleeping thread costs tens of microseconds on a VM, a large share of a
/// 100-microsecond fsync; only one caller spins at a time.
pub(crate) const SPIN_FOR_FSYNC: std::time::Duration = std::time::Duration::from_micros(300);

/// Receives from `rx`, spinning first only if no other caller is already
/// spinning (`spinners` counts them): on a small machine, many spinning
/// callers would steal the cores the writer needs.
pub(crate) fn caller_recv<T>(
    rx: &flume::Receiver<T>,
    spinners: &std::sync::atomic::AtomicUsize,
    spin: std::time::Duration,
) -> Result<T, flume::RecvError> {
    use std::sync::atomic::Ordering;
    if spinners.fetch_add(1, Ordering::AcqRel) > 0 {
        spinners.fetch_sub(1, Ordering::AcqRel);
        return rx.recv();
    }
    let result = spin_recv_for(rx, spin);
    spinners.fetch_sub(1, Ordering::AcqRel);
    result
}

/// Receives from `rx`, spinning briefly before parking the thread.
pub(crate) fn spin_recv<T>(rx: &flume::Receiver<T>) -> Result<T, flume::RecvError> {
    spin_recv_for(rx, SPIN_BEFORE_PARK)
}

/// Receives from `rx`, spinning for up to `spin` before parking the thread.
pub(crate) fn spin_recv_for<T>(
    rx: &flume::Receiver<T>,
    spin: std::time::Duration,
) -> Result<T, flume::RecvError> {
    let start = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(flume::TryRecvError::Disconnected) => return Err(flume::RecvError::Disconnected),
            Err(flume::TryRecvError::Empty) => {}
        }
        if start.elapsed() >= spin {
            return rx.recv();
        }
        // Stay runnable but let any other ready thread have the core (on
        // a 2-core machine a spinning caller and writer could otherwise
        // starve a third thread for the whole spin).
        std::thread::yield_now();
    }
}

/// A reply channel (one-shot).
pub(crate) type Reply<T> = flume::Sender<Result<T, StoreError>>;

/// One single-event append, prepared on the caller's thread.
pub(crate) struct SingleRequest {
    pub coord: Coordinate,
    pub kind: EventKind,
    pub payload: Vec<u8>,
    pub options: AppendOptions,
    pub event_id: u128,
    pub timestamp_us: i64,
}

/// One validated batch, prepared on the caller's thread.
pub(crate) struct BatchRequest {
    /// The items; the writer frees them after the reply, while the caller
    /// goes on.
    pub items: Arc<Vec<BatchAppendItem>>,
    /// One fresh id per item, used unless the item carries an idempotency key.
    pub fresh_ids: Vec<u128>,
    pub timestamp_us: i64,
    /// Per-item timestamps, when a replica imports events committed at
    /// different times (empty: every item takes `timestamp_us`).
    pub item_timestamps: Vec<i64>,
    /// Whether the batch is fsynced before it is published (every public
    /// batch). A replica's imports are not: the stream holds them, and
    /// they fall under the sync policy like single appends.
    pub durable: bool,
}

impl BatchRequest {
    /// The timestamp item `i` is written with.
    pub(crate) fn timestamp_of(&self, i: usize) -> i64 {
        self.item_timestamps.get(i).copied().unwrap_or(self.timestamp_us)
    }
}

/// What the writer can be asked to do.
pub(crate) enum Command {
    Append(Box<SingleRequest>, Reply<AppendReceipt>),
    Batch(Box<BatchRequest>, Reply<Vec<AppendReceipt>>),
    Sync(Reply<()>),
    Shutdown(Reply<()>),
    SetGates(Box<crate::plugin::ChainEdit>, Reply<()>),
    /// The segments and the byte lengths that hold every published event.
    SnapshotPlan(Reply<Vec<(u64, u64)>>),
    /// Names the sealed segments a compaction may rewrite.
    CompactBegin(Reply<crate::store::compaction::CompactionStart>),
    /// Commits a prepared compaction.
    CompactCommit(
        Box<crate::store::compaction::rewrite::Prepared>,
        Reply<crate::store::compaction::CompactionResult>,
    ),
    /// Acknowledge appends only once the replicated log holds them.
    #[cfg(feature = "replication")]
    InstallQuorum(Box<dyn GroupReplicator>, Reply<()>),
    #[cfg(feature = "dangerous-test-hooks")]
    Panic(Reply<()>),
}

/// A unit that went through the writer, waiting for the group's end.
struct Staged {
    receipts: Vec<AppendReceipt>,
    /// Whether it wrote anything (a replayed idempotent append did not).
    wrote: bool,
}

enum Waiting {
    One(Result<Staged, StoreError>, Reply<AppendReceipt>),
    /// The request is kept so that its items are freed after the reply.
    Many(Result<Staged, StoreError>, Reply<Vec<AppendReceipt>>, Box<BatchRequest>),
}

/// Everything the writer owns (whichever thread holds it; see `shared`).
pub(crate) struct Writer {
    cfg: Arc<StoreConfig>,
    dir: Arc<DataDir>,
    index: Arc<StoreIndex>,
    /// The index's live generation, held so the write path's lookups and
    /// inserts skip the shared pointer's load. Only the writer replaces
    /// the generation, and it takes the new one at once (`compact`).
    gen: Arc<IndexGen>,
    subscribers: Arc<Subscribers>,
    provenance: Arc<Provenance>,
    projections: Arc<crate::store::projections::ProjectionSet>,
    gates: GateChain,
    active: Option<ActiveSegment>,
    /// Segments on disk, in order (the last may be the active one).
    segments: Vec<u64>,
    /// Acknowledged single appends no completed fsync covers yet.
    unsynced: u32,
    /// The periodic fsync in flight on its helper thread, if any.
    sync_ahead: sync_ahead::SyncAhead,
    poisoned: Option<String>,
    /// Whether `index.ckpt` already describes everything on disk.
    checkpoint_current: bool,
    /// Whether `index.image` describes the index as `index.ckpt` left it
    /// (only meaningful while `checkpoint_current`).
    image_current: bool,
    /// New segments get ids at least this high (compaction frees ids that
    /// readers of an older index generation may still name).
    next_segment_floor: u64,
    buf: Vec<u8>,
    /// Whether a caller's thread is running this writer now (see `shared`):
    /// no guest may run then.
    in_caller: bool,
    /// The fsync helper for large batches, started on first use.
    io_helper: Option<io_helper::IoHelper>,
    /// Quorum acks: the replicated log each group goes to before it is published.
    #[cfg(feature = "replication")]
    quorum: Option<quorum::QuorumLink>,
}

/// Whether the loop should keep serving.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

impl Writer {
    // Each argument is a distinct shared handle; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: Arc<StoreConfig>,
        dir: Arc<DataDir>,
        index: Arc<StoreIndex>,
        subscribers: Arc<Subscribers>,
        provenance: Arc<Provenance>,
        projections: Arc<crate::store::projections::ProjectionSet>,
        gates: GateChain,
        segments: Vec<u64>,
        checkpoint_current: bool,
        image_current: bool,
        active: Option<ActiveSegment>,
    ) -> Self {
        Self {
            cfg,
            dir,
            gen: index.live(),
            index,
            subscribers,
            provenance,
            projections,
            gates,
            active,
            segments,
            unsynced: 0,
            sync_ahead: sync_ahead::SyncAhead::default(),
            poisoned: None,
            checkpoint_current,
            image_current,
            next_segment_floor: 1,
            buf: Vec::with_capacity(64 * 1024),
            in_caller: false,
            io_helper: None,
            #[cfg(feature = "replication")]
            quorum: None,
        }
    }

    /// Whether a caller may run a single append on its own thread (see
    /// `shared`): no guest to run, no quorum to wait on, and no fsync per
    /// append that a group commit would share.
    fn may_run_in_caller(&self) -> bool {
        self.gates.is_empty()
            && self.projections.is_empty()
            && !self.quorum_on()
            && self.cfg.sync.every_n_events > 1
    }

    /// One single append as a group of one, on the caller's thread.
    fn serve_in_caller(&mut self, req: SingleRequest) -> Result<AppendReceipt, StoreError> {
        self.in_caller = true;
        let mut result = self.stage_single(req);
        self.in_caller = false;
        self.apply_sync_policy(std::iter::once(&mut result));
        if self.poisoned.is_none() {
            self.gen.publish();
        }
        result.and_then(|s| {
            self.notify(&s);
            s.receipts.into_iter().next().ok_or(StoreError::WriterCrashed)
        })
    }

    fn group_limit(&self) -> usize {
        match self.cfg.batch.group_commit_max_batch {
            0 => GROUP_LIMIT_MAX,
            n => (n as usize).min(GROUP_LIMIT_MAX),
        }
    }

    fn serve_group(&mut self, first: Command, rx: &flume::Receiver<Command>) -> Flow {
        let limit = self.group_limit();
        let started = std::time::Instant::now();
        let mut waiting: Vec<Waiting> = Vec::new();
        let mut next = Some(first);
        let mut control = None;
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Append(req, reply) => waiting.push(Waiting::One(self.stage_single(*req), reply)),
                Command::Batch(req, reply) => waiting.push(Waiting::Many(self.stage_batch(&req), reply, req)),
                other => {
                    control = Some(other);
                    break;
                }
            }
            if waiting.len() < limit {
                next = rx.try_recv().ok().or_else(|| self.linger(rx, waiting.len(), started));
            }
        }
        self.note_group_size(waiting.len());
        self.finish_group(waiting);
        match control {
            Some(cmd) => self.control(cmd, rx),
            None => Flow::Continue,
        }
    }

    /// fsync policy → publish → notify → reply, once for the group.
    fn finish_group(&mut self, mut waiting: Vec<Waiting>) {
        self.apply_sync_policy(waiting.iter_mut().map(|w| match w {
            Waiting::One(r, _) | Waiting::Many(r, _, _) => r,
        }));
        match self.replicate_group(&mut waiting) {
            Some(bound) => self.gen.publish_to(bound),
            None if self.poisoned.is_none() => self.gen.publish(),
            None => {}
        }
        let mut spent = Vec::new();
        for w in waiting {
            match w {
                Waiting::One(result, reply) => {
                    let result = result.and_then(|s| {
                        self.notify(&s);
                        s.receipts.into_iter().next().ok_or(StoreError::WriterCrashed)
                    });
                    let _ = reply.send(result);
                }
                Waiting::Many(result, reply, request) => {
                    let result = result.map(|s| {
                        self.notify(&s);
                        s.receipts
                    });
                    let _ = reply.send(result);
                    spent.push(request);
                }
            }
        }
        // Every caller has its reply: freeing the items now delays no one.
        drop(spent);
    }

    /// Keeps at most `sync.every_n_events − 1` acknowledged single appends
    /// unsynced (see `sync_ahead`): collects a finished fsync, waits for
    /// the one in flight or fsyncs here when the group would reach the
    /// bound, and starts the next fsync ahead at three quarters of it. If
    /// an fsync fails, the writer is poisoned and every unit of the group
    /// that wrote fails.
    fn apply_sync_policy<'r>(&mut self, results: impl Iterator<Item = &'r mut Result<Staged, StoreError>>) {
        let threshold = self.cfg.sync.every_n_events.max(1);
        let mut outcome = self.collect_sync(false);
        if outcome.is_ok() && self.unsynced >= threshold {
            // The fsync in flight covers the older appends...
            outcome = self.collect_sync(true);
        }
        if outcome.is_ok() && self.unsynced >= threshold {
            // ...and if none was, or it covered too few, the writer syncs.
            outcome = self.sync_active();
        }
        if let Err(e) = outcome {
            let why = format!("fsync failed: {e}");
            self.poison(&why);
            for result in results {
                if result.as_ref().is_ok_and(|s| s.wrote) {
                    *result = Err(StoreError::Poisoned(why.clone()));
                }
            }
            return;
        }
        let due = threshold >= sync_ahead::MIN_EVERY_N && self.unsynced >= sync_ahead::start_at(threshold);
        if due && !self.sync_ahead.in_flight() && self.poisoned.is_none() {
            if let Some(seg) = &self.active {
                self.sync_ahead.start(seg.sync_handle(), self.cfg.sync.mode, self.unsynced);
            }
        }
    }

    /// Collects the fsync in flight (waiting for it with `wait`): what it
    /// covered is no longer unsynced; a failure poisons the writer.
    fn collect_sync(&mut self, wait: bool) -> Result<(), StoreError> {
        match self.sync_ahead.collect(wait) {
            sync_ahead::Collected::Nothing => Ok(()),
            sync_ahead::Collected::Synced(covered) => {
                self.unsynced = self.unsynced.saturating_sub(covered);
                Ok(())
            }
            sync_ahead::Collected::Failed(e) => {
                let why = format!("fsync failed: {e}");
                self.poison(&why);
                Err(StoreError::Poisoned(why))
            }
        }
    }

    /// Everything written so far is on stable storage (an fsync of the
    /// active segment by the writer itself completed).
    fn all_synced(&mut self) {
        self.unsynced = 0;
        self.sync_ahead.overtaken();
    }

    /// Tells subscribers about a published unit. Notifications are built
    /// from the index only when someone is subscribed.
    fn notify(&self, staged: &Staged) {
        if !staged.wrote {
            return;
        }
        self.subscribers.broadcast_with(|| {
            staged
                .receipts
                .iter()
                .filter_map(|r| self.gen.get_any(r.sequence))
                .map(|e| single::notification(&e))
                .collect()
        });
    }

    fn control(&mut self, cmd: Command, rx: &flume::Receiver<Command>) -> Flow {
        match cmd {
            Command::Sync(reply) => {
                // A poisoned writer cannot vouch for the file, even if
                // this fsync succeeds (see `sync_active`).
                let _ = reply.send(self.check_poisoned().and_then(|()| self.sync_active()));
                Flow::Continue
            }
            Command::Shutdown(reply) => {
                self.drain_for_shutdown(rx);
                let _ = reply.send(self.shutdown());
                Flow::Exit
            }
            Command::SetGates(edit, reply) => {
                let _ = reply.send(self.gates.apply(*edit).map_err(StoreError::Configuration));
                Flow::Continue
            }
            Command::SnapshotPlan(reply) => {
                let _ = reply.send(self.snapshot_plan());
                Flow::Continue
            }
            Command::CompactBegin(reply) => {
                let _ = reply.send(self.begin_compaction());
                Flow::Continue
            }
            Command::CompactCommit(prepared, reply) => {
                let _ = reply.send(self.commit_compaction(*prepared));
                Flow::Continue
            }
            #[cfg(feature = "replication")]
            Command::InstallQuorum(replicator, reply) => {
                let _ = reply.send(self.install_quorum(replicator));
                Flow::Continue
            }
            // The test hook exists to panic the writer; the restart policy catches it.
            #[cfg(feature = "dangerous-test-hooks")]
            #[allow(clippy::panic)]
            Command::Panic(reply) => {
                drop(reply);
                std::panic::panic_any("writer panic requested by panic_writer_for_test");
            }
            Command::Append(..) | Command::Batch(..) => Flow::Continue,
        }
    }

    /// Serves what was queued before the shutdown, up to the drain limit.
    fn drain_for_shutdown(&mut self, rx: &flume::Receiver<Command>) {
        let mut waiting = Vec::new();
        for _ in 0..self.cfg.writer.shutdown_drain_limit {
            match rx.try_recv() {
                Ok(Command::Append(req, reply)) => waiting.push(Waiting::One(self.stage_single(*req), reply)),
                Ok(Command::Batch(req, reply)) => {
                    waiting.push(Waiting::Many(self.stage_batch(&req), reply, req))
                }
                Ok(Command::Sync(reply)) | Ok(Command::Shutdown(reply)) => {
                    let _ = reply.send(Ok(()));
                }
                Ok(Command::SetGates(_, reply)) => {
                    let _ = reply.send(Err(StoreError::WriterCrashed));
                }
                Ok(Command::SnapshotPlan(reply)) => {
                    let _ = reply.send(Err(StoreError::WriterCrashed));
                }
                Ok(Command::CompactBegin(reply)) => {
                    let _ = reply.send(Err(StoreError::WriterCrashed));
                }
                Ok(Command::CompactCommit(_, reply)) => {
                    let _ = reply.send(Err(StoreError::WriterCrashed));
                }
                #[cfg(feature = "replication")]
                Ok(Command::InstallQuorum(_, reply)) => {
                    let _ = reply.send(Err(StoreError::WriterCrashed));
                }
                #[cfg(feature = "dangerous-test-hooks")]
                Ok(Command::Panic(reply)) => {
                    let _ = reply.send(Ok(()));
                }
                Err(_) => break,
            }
        }
        self.finish_group(waiting);
    }

    fn check_poisoned(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(why) if self.fenced() => Err(StoreError::Fenced(why.clone())),
            Some(why) => Err(StoreError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Refuses to write once the index lost entries it had moved to its
    /// scratch file: a head, an id or a footer entry read from a missing
    /// slot must never chain, deduplicate or seal an event.
    fn check_index(&mut self) -> Result<(), StoreError> {
        match self.gen.scratch_failure() {
            Some(why) => {
                self.poison(&why);
                Err(StoreError::Poisoned(why))
            }
            None => Ok(()),
        }
    }

    fn poison(&mut self, why: &str) {
        tracing::error!(reason = why, "writer poisoned; reopen the store to recover");
        if self.poisoned.is_none() {
            self.poisoned = Some(why.to_string());
        }
    }

    /// fsyncs the active segment. The fsync in flight is collected first:
    /// a later fsync of the file can succeed after a failed one without the
    /// pages that one lost, so it must not hide that failure.
    fn sync_active(&mut self) -> Result<(), StoreError> {
        self.collect_sync(true)?;
        if let Some(seg) = &self.active {
            seg.sync(self.cfg.sync.mode)?;
        }
        self.all_synced();
        Ok(())
    }

    /// Undoes a failed unit: forget its strings, cut its bytes. An fsync
    /// in flight may have carried the unit's bytes to the disk, so the
    /// writer waits for it and then makes the cut durable too.
    fn undo_unit(&mut self, added: &[Arc<str>]) {
        let raced = self.sync_ahead.in_flight();
        if raced {
            // A failure poisons the writer inside; the cut still happens.
            let _ = self.collect_sync(true);
        }
        if let Some(seg) = self.active.as_mut() {
            seg.forget_strings(added);
            if let Err(e) = seg.cut_back() {
                let why = format!("could not cut back a failed write: {e}");
                self.poison(&why);
            }
        }
        if raced {
            if let Err(e) = self.sync_active() {
                self.poison(&format!("could not make a cut-back durable: {e}"));
            }
        }
    }

    /// The active segment, created or rotated as needed before a unit.
    fn ensure_active(&mut self) -> Result<(), StoreError> {
        let full = self.active.as_ref().is_some_and(|s| s.len >= self.cfg.segment_max_bytes);
        if self.active.is_some() && !full {
            return Ok(());
        }
        let next_id = self.segments.last().map_or(1, |id| id + 1).max(self.next_segment_floor);
        if self.active.is_some() {
            // The seal's fsync must not hide a failed one in flight.
            self.collect_sync(true)?;
        }
        if let Some(old) = &mut self.active {
            inject(&self.cfg, crate::store::fault_point::rotation(old.id, next_id))?;
            old.seal(&self.index, self.gen.inserted())?;
            self.active = None;
        }
        let seg = ActiveSegment::create(
            &self.dir,
            next_id,
            self.gen.inserted(),
            self.cfg.now_us(),
            self.cfg.segment_max_bytes,
            || inject(&self.cfg, crate::store::fault_point::segment_staged(next_id)),
        )?;
        self.segments.push(next_id);
        self.checkpoint_current = false;
        self.image_current = false;
        self.active = Some(seg);
        Ok(())
    }

    /// Every segment with the length that covers its committed units: whole
    /// files for sealed segments, the committed length for the active one.
    /// Those bytes never change afterwards (the writer only appends past
    /// them), so they can be copied while appends continue.
    fn snapshot_plan(&mut self) -> Result<Vec<(u64, u64)>, StoreError> {
        self.check_poisoned()?;
        self.sync_active()?;
        let mut plan = Vec::with_capacity(self.segments.len());
        for &id in &self.segments {
            let len = match &self.active {
                Some(seg) if seg.id == id => seg.len,
                _ => self.dir.open_segment(id)?.metadata()?.len(),
            };
            plan.push((id, len));
        }
        Ok(plan)
    }

    /// Records the installed gate set in the log the first time it admits
    /// an event (its own small committed unit), and returns its id.
    fn ensure_gate_set_recorded(&mut self) -> Result<Option<u32>, StoreError> {
        let Some((id, body)) = self.gates.record() else { return Ok(None) };
        if self.provenance.is_recorded(id) {
            return Ok(Some(id));
        }
        let body = body.to_vec();
        let Some(seg) = self.active.as_mut() else { return Ok(None) };
        let mut bytes = Vec::with_capacity(body.len() + 16);
        let record = crate::store::segment::frame::Record::GateSet { id, body: &body };
        crate::store::segment::frame::encode(&mut bytes, &record);
        let at = seg.len;
        if let Err(e) = seg.write_at_end(at, &bytes) {
            self.undo_unit(&[]);
            return Err(e);
        }
        seg.commit(at + bytes.len() as u64);
        seg.gate_sets.push((id, body.clone()));
        self.provenance.record(id, &body);
        Ok(Some(id))
    }
}

/// Without replication there is never a replicated log to wait for.
#[cfg(not(feature = "replication"))]
impl Writer {
    #[inline(always)]
    fn replicate_group(&mut self, _waiting: &mut [Waiting]) -> Option<u64> {
        None
    }

    #[inline(always)]
    fn quorum_check_unit(&self, _items: usize) -> Result<(), StoreError> {
        Ok(())
    }

    #[inline(always)]
    fn quorum_on(&self) -> bool {
        false
    }

    #[inline(always)]
    fn fenced(&self) -> bool {
        false
    }

    #[inline(always)]
    fn linger(
        &self,
        _rx: &flume::Receiver<Command>,
        _gathered: usize,
        _started: std::time::Instant,
    ) -> Option<Command> {
        None
    }

    #[inline(always)]
    fn note_group_size(&mut self, _units: usize) {}

    #[inline(always)]
    fn quorum_capture<'p>(
        &mut self,
        _events: impl Iterator<Item = (&'p single::Planned<'p>, &'p crate::store::index::IndexEntry)>,
    ) {
    }
}

/// Runs the configured fault injector at `point` (nothing without the feature).
#[cfg(feature = "dangerous-test-hooks")]
fn inject(cfg: &StoreConfig, point: Option<crate::store::fault::InjectionPoint>) -> Result<(), StoreError> {
    match point {
        Some(p) => crate::store::fault::maybe_inject(p, &cfg.fault_injector),
        None => Ok(()),
    }
}

/// Runs the configured fault injector at `point` (nothing without the feature).
#[cfg(not(feature = "dangerous-test-hooks"))]
#[inline(always)]
fn inject(_cfg: &StoreConfig, _point: Option<std::convert::Infallible>) -> Result<(), StoreError> {
    Ok(())
}

/// After the writer is gone for good: answer every command with
/// `WriterCrashed` (so no caller waits forever on a queued command) until
/// the store shuts down or drops its sender.
fn refuse_until_shutdown(rx: &flume::Receiver<Command>) {
    for cmd in rx.iter() {
        if refuse(cmd) {
            return;
        }
    }
}

/// Answers `cmd` with `WriterCrashed`; true if it was a shutdown.
fn refuse(cmd: Command) -> bool {
    let shutting_down = matches!(cmd, Command::Shutdown(_));
    match cmd {
        Command::Append(_, r) => drop(r.send(Err(StoreError::WriterCrashed))),
        Command::Batch(_, r) => drop(r.send(Err(StoreError::WriterCrashed))),
        Command::Sync(r) | Command::Shutdown(r) => drop(r.send(Err(StoreError::WriterCrashed))),
        Command::SetGates(_, r) => drop(r.send(Err(StoreError::WriterCrashed))),
        Command::SnapshotPlan(r) => drop(r.send(Err(StoreError::WriterCrashed))),
        Command::CompactBegin(r) => drop(r.send(Err(StoreError::WriterCrashed))),
        Command::CompactCommit(_, r) => drop(r.send(Err(StoreError::WriterCrashed))),
        #[cfg(feature = "replication")]
        Command::InstallQuorum(_, r) => drop(r.send(Err(StoreError::WriterCrashed))),
        #[cfg(feature = "dangerous-test-hooks")]
        Command::Panic(r) => drop(r.send(Err(StoreError::WriterCrashed))),
    }
    shutting_down
}

/// Spawns the writer thread with its restart policy.
pub(crate) fn spawn(
    shared: Arc<SharedWriter>,
    stack_size: Option<usize>,
    rx: flume::Receiver<Command>,
    name: String,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    let mut builder = std::thread::Builder::new().name(name);
    // The stack must hold a gate's wasm stack and a projection's nested in
    // it (checked against the plugins at open and at every install).
    builder = builder.stack_size(stack_size.unwrap_or(crate::plugin::DEFAULT_WRITER_STACK));
    let handle = builder.spawn(move || {
        shared.serve(&rx);
        if shared.is_dead() {
            refuse_until_shutdown(&rx);
        }
    })?;
    Ok(handle)
}
