//! Installed WASM projections: fed every committed event in commit order —
//! inside the writer right after the event is indexed (so a gate reading a
//! projection sees every committed event before it), or, for projections
//! installed `in_background`, by the projector thread after each publish
//! (off the append path; readers may see them lag) — snapshotted durably,
//! restored on install, rebuilt from the log when the component changes.
//! A projection that traps is marked failed with the event it failed on;
//! appends and other projections go on.

use crate::plugin::{
    LoadedProjection, PluginError, ProjectionEvent, ProjectionInfo, ProjectionPlugin, StateRead, StateReader,
};
use crate::store::data_dir::DataDir;
use crate::store::index::StoreIndex;
use crate::store::reader::SegmentReader;
use crate::store::segment::codec::{Cursor, PutBytes};
use crate::store::StoreError;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Where a projection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectionStatus {
    /// Up to date through this sequence (`None`: no event yet).
    Ready {
        /// Last sequence folded in.
        applied_through: Option<u64>,
    },
    /// Stopped at an event it could not fold.
    Failed {
        /// Why (trap, fuel, memory).
        error: String,
        /// The event's global sequence.
        sequence: u64,
    },
}

struct Installed {
    /// The name it is installed under (its snapshot file's name).
    name: String,
    /// Where its snapshot file lives.
    dir: Arc<DataDir>,
    plugin: ProjectionPlugin,
    proj: LoadedProjection,
    status: ProjectionStatus,
    watermark: Option<u64>,
    since_snapshot: u64,
    /// Set while a batch folds its items in tentatively: what to go back
    /// to if the batch is rejected. Readers other than the writer's gates
    /// wait until it is cleared, so they never see an uncommitted item.
    pending: Option<PreImage>,
}

/// A projection as it stood before a batch began folding into it.
struct PreImage {
    /// The guest state's snapshot, taken before the first event the
    /// projection wanted (none if it wanted none of the batch so far).
    state: Option<Vec<u8>>,
    status: ProjectionStatus,
    watermark: Option<u64>,
    since_snapshot: u64,
}

/// The in-writer projections as one batch began (see
/// [`ProjectionSet::writer_set`]).
pub(crate) struct WriterSet(Vec<(String, Arc<Mutex<Installed>>)>);

/// Every installed projection.
pub(crate) struct ProjectionSet {
    dir: Arc<DataDir>,
    map: RwLock<BTreeMap<String, Arc<Mutex<Installed>>>>,
    count: AtomicUsize,
    /// Read-held by a caller that runs an append on its own thread while
    /// no projection is installed; an install takes it to write, so it
    /// never lands in the middle of such an append.
    quiet: RwLock<()>,
    /// Signalled after each background catch-up.
    progressed: (Mutex<()>, parking_lot::Condvar),
    /// Signalled when a batch's tentative folds are committed or undone.
    settled: (Mutex<()>, parking_lot::Condvar),
    /// The log, to rebuild an instance that trapped (set once at open).
    sources: std::sync::OnceLock<(Arc<StoreIndex>, Arc<SegmentReader>)>,
}

const SNAP_MAGIC: &[u8; 8] = b"BPSNAP01";

fn snapshot_file(name: &str) -> String {
    format!("proj-{name}.snap")
}

impl ProjectionSet {
    pub(crate) fn new(dir: Arc<DataDir>) -> Self {
        Self {
            dir,
            map: RwLock::new(BTreeMap::new()),
            count: AtomicUsize::new(0),
            quiet: RwLock::new(()),
            progressed: (Mutex::new(()), parking_lot::Condvar::new()),
            settled: (Mutex::new(()), parking_lot::Condvar::new()),
            sources: std::sync::OnceLock::new(),
        }
    }

    /// Gives the set the log it rebuilds trapped instances from.
    pub(crate) fn set_sources(&self, index: Arc<StoreIndex>, reader: Arc<SegmentReader>) {
        let _ = self.sources.set((index, reader));
    }

    /// A guest call trapped and took the instance (and its state) with it.
    /// Rebuilds the state it had, from the saved snapshot and the log up to
    /// the projection's watermark, so one bad call (a read with a key the
    /// guest cannot handle) does not end the projection. If that is not
    /// possible, or the fold traps again, the projection is failed with the
    /// cause; it never goes on reporting `Ready` without an instance.
    fn recover_after_trap(&self, name: &str, p: &mut Installed, why: String) {
        let seq = p.watermark.unwrap_or(0);
        let Some((index, reader)) = self.sources.get() else { return mark_failed(p, why, seq) };
        if p.pending.is_some() {
            // Uncommitted folds cannot be rebuilt from the log.
            return mark_failed(p, why, seq);
        }
        let target = p.watermark;
        let usable = |w: &Option<u64>| match (w, target) {
            (None, _) => true,
            (Some(w), Some(t)) => *w <= t,
            (Some(_), None) => false,
        };
        let origin = saved(&p.dir, &p.name, &p.proj.info).filter(|(_, w)| usable(w));
        let (snapshot, from) = origin.map_or((None, None), |(s, w)| (Some(s), w));
        if let Err(e) = p.proj.init(snapshot) {
            return mark_failed(p, format!("{why}; rebuilding the instance failed: {e}"), seq);
        }
        p.watermark = from;
        p.status = ProjectionStatus::Ready { applied_through: from };
        let how = Replay { index, reader, bulk: false, pack_limit: PACK_EVENTS, may_blame: false };
        let (start, end) = (from.map_or(0, |w| w + 1), target.map_or(0, |t| t + 1));
        if let Err(e) = how.run(p, start, end, &mut |_, _| {}) {
            return mark_failed(p, format!("{why}; rebuilding the instance failed: {e}"), seq);
        }
        match &p.status {
            ProjectionStatus::Ready { .. } if p.watermark == target => {
                tracing::warn!(projection = name, error = %why, "projection instance rebuilt after a trap");
            }
            ProjectionStatus::Ready { .. } => {
                mark_failed(p, format!("{why}; the rebuild stopped short"), seq)
            }
            ProjectionStatus::Failed { error, .. } => {
                let error = format!("{why}; rebuilding the instance failed: {error}");
                mark_failed(p, error, seq);
            }
        }
    }

    /// One key's state, or the failure that stops the projection answering.
    fn read_state(&self, name: &str, p: &mut Installed, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let ProjectionStatus::Failed { error, sequence } = &p.status {
            return Err(failed(name, error.clone(), *sequence));
        }
        let seq = p.watermark.unwrap_or(0);
        p.proj.read(key).map_err(|e| {
            self.recover_after_trap(name, p, format!("read() trapped: {e}"));
            failed(name, e, seq)
        })
    }

    /// The largest wasm stack limit of the installed projections (0: none).
    pub(crate) fn max_stack(&self) -> usize {
        self.map.read().values().map(|p| p.lock().plugin.stack_bytes()).max().unwrap_or(0)
    }

    /// A guard under which no projection gets installed, if none is now
    /// (`None` also while an install is under way).
    pub(crate) fn quiet(&self) -> Option<parking_lot::RwLockReadGuard<'_, ()>> {
        let guard = self.quiet.try_read()?;
        self.is_empty().then_some(guard)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    fn get(&self, name: &str) -> Option<Arc<Mutex<Installed>>> {
        self.map.read().get(name).cloned()
    }

    /// Folds committed events into every projection that wants them.
    pub(crate) fn apply(&self, events: &[ProjectionEvent<'_>]) {
        let installed: Vec<(String, Arc<Mutex<Installed>>)> =
            self.map.read().iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect();
        for (name, inst) in installed {
            let mut p = inst.lock();
            if p.plugin.in_background_mode() {
                continue;
            }
            for e in events {
                if let Err(why) = fold(&mut p, e) {
                    tracing::warn!(projection = %name, sequence = e.sequence, error = %why, "projection failed");
                }
            }
            self.maybe_snapshot(&name, &mut p);
        }
    }

    /// Marks every in-writer projection failed: its state holds events
    /// the replicated log refused (quorum mode), so it must not answer
    /// until the store is reopened and rebuilds it.
    #[cfg(feature = "replication")]
    pub(crate) fn fail_in_writer(&self, why: &str, sequence: u64) {
        for (_, inst) in self.in_writer() {
            mark_failed(&mut inst.lock(), why.to_string(), sequence);
        }
        self.settle();
    }

    /// The in-writer projections, in name order.
    fn in_writer(&self) -> Vec<(String, Arc<Mutex<Installed>>)> {
        self.map
            .read()
            .iter()
            .filter(|(_, v)| !v.lock().plugin.in_background_mode())
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// The in-writer projections a batch folds into, listed once per batch
    /// (not once per item) by the writer.
    pub(crate) fn writer_set(&self) -> WriterSet {
        WriterSet(self.in_writer())
    }

    /// Folds one item of a batch that is not committed yet, so that the
    /// gates of the batch's later items see it. Each projection's state is
    /// saved the first time the batch folds an event it wants; the batch
    /// then ends with [`ProjectionSet::commit_tentative`] or
    /// [`ProjectionSet::undo_tentative`]. Never persists a snapshot.
    pub(crate) fn fold_tentative(&self, set: &WriterSet, event: &ProjectionEvent<'_>) {
        for (name, inst) in &set.0 {
            let mut p = inst.lock();
            let p = &mut *p;
            let pre = p.pending.get_or_insert_with(|| PreImage {
                state: None,
                status: p.status.clone(),
                watermark: p.watermark,
                since_snapshot: p.since_snapshot,
            });
            let live = matches!(p.status, ProjectionStatus::Ready { .. });
            if live && pre.state.is_none() && p.proj.wants(event.coord, event.kind) {
                match p.proj.snapshot() {
                    Ok(bytes) => pre.state = Some(bytes),
                    Err(why) => {
                        // Without a copy the fold could not be undone: the
                        // projection fails now, before and after the batch.
                        let failed = ProjectionStatus::Failed {
                            error: format!("snapshot before a batch failed: {why}"),
                            sequence: event.sequence,
                        };
                        pre.status = failed.clone();
                        p.status = failed;
                        tracing::warn!(projection = %name, error = %why, "projection failed");
                        continue;
                    }
                }
            }
            if let Err(why) = fold(p, event) {
                tracing::debug!(projection = %name, sequence = event.sequence, error = %why,
                    "projection failed on an uncommitted batch item");
            }
        }
    }

    /// The batch whose items were folded tentatively is committed: keep
    /// the folds, snapshot where due, and let waiting readers in.
    pub(crate) fn commit_tentative(&self) {
        for (name, inst) in self.in_writer() {
            let mut p = inst.lock();
            if p.pending.take().is_some() {
                self.maybe_snapshot(&name, &mut p);
            }
        }
        self.settle();
    }

    /// The batch was rejected: every projection goes back to exactly the
    /// state, status and watermark it had before the batch.
    pub(crate) fn undo_tentative(&self) {
        for (name, inst) in self.in_writer() {
            let mut p = inst.lock();
            let Some(pre) = p.pending.take() else { continue };
            p.status = pre.status;
            p.watermark = pre.watermark;
            p.since_snapshot = pre.since_snapshot;
            if let Some(state) = pre.state {
                if let Err(why) = p.proj.init(Some(state)) {
                    let sequence = p.watermark.unwrap_or(0);
                    tracing::warn!(projection = %name, error = %why, "projection could not be restored");
                    p.status = ProjectionStatus::Failed {
                        error: format!("restoring the state from before a rejected batch failed: {why}"),
                        sequence,
                    };
                }
            }
        }
        self.settle();
    }

    fn settle(&self) {
        let _guard = self.settled.0.lock();
        self.settled.1.notify_all();
    }

    /// Runs `f` on `name` once no batch is folding into it tentatively,
    /// so a reader outside the writer never sees an uncommitted item.
    fn with_settled<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Installed) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let inst =
            self.get(name).ok_or_else(|| StoreError::Plugin(PluginError::UnknownProjection(name.into())))?;
        let mut settled = self.settled.0.lock();
        loop {
            let mut p = inst.lock();
            if p.pending.is_none() {
                drop(settled);
                return f(&mut p);
            }
            drop(p);
            // The writer clears `pending` and then takes `settled` to notify;
            // holding `settled` across the check loses no wake-up.
            self.settled.1.wait_for(&mut settled, std::time::Duration::from_millis(50));
        }
    }

    /// Waits until `name` has folded `sequence` (or failed), at most `timeout`.
    pub(crate) fn wait_for(
        &self,
        name: &str,
        sequence: u64,
        timeout: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut guard = self.progressed.0.lock();
        loop {
            match self.status(name) {
                None => return Err(StoreError::Plugin(PluginError::UnknownProjection(name.into()))),
                Some((ProjectionStatus::Failed { .. }, _)) => return Ok(false),
                Some((ProjectionStatus::Ready { applied_through: Some(w) }, _)) if w >= sequence => {
                    return Ok(true)
                }
                Some(_) => {}
            }
            if self.progressed.1.wait_until(&mut guard, deadline).timed_out() {
                return Ok(false);
            }
        }
    }

    fn maybe_snapshot(&self, name: &str, p: &mut Installed) {
        let every = p.plugin.snapshot_every();
        if every > 0 && p.since_snapshot >= every {
            if let Err(e) = self.persist(name, p) {
                tracing::warn!(projection = %name, error = %e, "projection snapshot failed");
            }
        }
    }

    /// Writes the projection's snapshot durably (atomic replace).
    fn persist(&self, name: &str, p: &mut Installed) -> Result<(), StoreError> {
        if !matches!(p.status, ProjectionStatus::Ready { .. }) {
            return Ok(());
        }
        let seq = p.watermark.unwrap_or(0);
        let state = p.proj.snapshot().map_err(|e| {
            self.recover_after_trap(name, p, format!("snapshot() trapped: {e}"));
            failed(name, e, seq)
        })?;
        let mut out = Vec::with_capacity(state.len() + 128);
        out.extend_from_slice(SNAP_MAGIC);
        out.put_str(&p.proj.info.digest);
        out.put_u64(p.proj.info.schema_version);
        out.put_u64(p.watermark.map_or(u64::MAX, |w| w));
        out.put_u32(crc32fast::hash(&state));
        out.put_varint(state.len() as u64);
        out.extend_from_slice(&state);
        self.dir.write_atomic(&snapshot_file(name), &out)?;
        p.since_snapshot = 0;
        Ok(())
    }

    /// Persists every ready projection (at close). One projection that
    /// cannot be snapshotted (a trap, a full disk) stops none of the others;
    /// each failure is logged and returned as (name, error). Nothing is lost
    /// by a missing snapshot: the projection is rebuilt from its last saved
    /// snapshot and the log when it is next installed.
    pub(crate) fn persist_all(&self) -> Vec<(String, StoreError)> {
        let installed: Vec<(String, Arc<Mutex<Installed>>)> =
            self.map.read().iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect();
        let mut failed = Vec::new();
        for (name, inst) in installed {
            if let Err(e) = self.persist(&name, &mut inst.lock()) {
                tracing::warn!(projection = %name, error = %e, "projection not snapshotted at close");
                failed.push((name, e));
            }
        }
        failed
    }

    /// A saved snapshot for `info`, if one exists and matches it exactly.
    fn saved(&self, name: &str, info: &ProjectionInfo) -> Option<(Vec<u8>, Option<u64>)> {
        saved(&self.dir, name, info)
    }

    /// Installs (or replaces) `name`: restore its snapshot if it matches the
    /// component, then fold every committed event after it. Appends wait for
    /// this projection while it catches up.
    pub(crate) fn install(
        &self,
        name: &str,
        plugin: ProjectionPlugin,
        index: &StoreIndex,
        reader: &SegmentReader,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StoreError::Plugin(PluginError::InvalidName(name.to_string())));
        }
        let mut proj = plugin.load().map_err(StoreError::Plugin)?;
        let (snapshot, watermark) = match self.saved(name, &proj.info) {
            Some((state, w)) if w.is_none_or(|w| w < index.inserted()) => (Some(state), w),
            _ => (None, None),
        };
        let mut restored = snapshot.is_some();
        let mut watermark = watermark;
        if let Err(why) = proj.init(snapshot) {
            if !restored {
                return Err(StoreError::Plugin(PluginError::Instantiation(why)));
            }
            // The saved state no longer restores (the constructor traps, runs
            // out of memory or fuel): rebuild from the log instead.
            tracing::warn!(projection = name, error = %why, "snapshot does not restore; rebuilding from the log");
            proj.init(None).map_err(|e| StoreError::Plugin(PluginError::Instantiation(e)))?;
            (restored, watermark) = (false, None);
        }
        let inst = Arc::new(Mutex::new(Installed {
            name: name.to_string(),
            dir: Arc::clone(&self.dir),
            plugin,
            proj,
            status: ProjectionStatus::Ready { applied_through: watermark },
            watermark,
            since_snapshot: 0,
            pending: None,
        }));
        let mut guard = inst.lock();
        {
            let _no_append_in_a_caller = self.quiet.write();
            if self.map.write().insert(name.to_string(), Arc::clone(&inst)).is_none() {
                self.count.fetch_add(1, Ordering::AcqRel);
            }
        }
        let from = watermark.map_or(0, |w| w + 1);
        let to = index.inserted();
        tracing::info!(projection = name, restored, from, to, "projection catching up");
        catch_up(&mut guard, from, to, index, reader, true, progress)?;
        Ok(())
    }

    /// Brings every background projection up to the visible watermark
    /// (called by the projector thread after each publish).
    pub(crate) fn catch_up_background(&self, index: &StoreIndex, reader: &SegmentReader) {
        let installed: Vec<(String, Arc<Mutex<Installed>>)> =
            self.map.read().iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect();
        for (name, inst) in installed {
            let mut p = inst.lock();
            if !p.plugin.in_background_mode() || matches!(p.status, ProjectionStatus::Failed { .. }) {
                continue;
            }
            let from = p.watermark.map_or(0, |w| w + 1);
            let to = index.visible();
            if from >= to {
                continue;
            }
            if let Err(e) = catch_up(&mut p, from, to, index, reader, false, &mut |_, _| {}) {
                tracing::warn!(projection = %name, error = %e, "background projection could not read the log");
            }
            self.maybe_snapshot(&name, &mut p);
        }
        let _guard = self.progressed.0.lock();
        self.progressed.1.notify_all();
    }

    /// Removes `name` (and its saved snapshot).
    pub(crate) fn remove(&self, name: &str) -> Result<(), StoreError> {
        if self.map.write().remove(name).is_none() {
            return Err(StoreError::Plugin(PluginError::UnknownProjection(name.to_string())));
        }
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.dir.remove_optional(&snapshot_file(name))
    }

    /// The state `name` holds for `key`, as of the last committed event.
    pub(crate) fn state(&self, name: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_settled(name, |p| self.read_state(name, p, key))
    }

    /// The state `name` holds for `key` as the writer's gates see it: with
    /// the earlier items of the batch being gated folded in.
    fn state_for_gate(&self, name: &str, key: &str) -> Result<StateRead, StoreError> {
        let inst =
            self.get(name).ok_or_else(|| StoreError::Plugin(PluginError::UnknownProjection(name.into())))?;
        let mut p = inst.lock();
        let state = self.read_state(name, &mut p, key)?;
        Ok(StateRead { state, fuel: p.proj.last_fuel() })
    }

    /// Where `name` stands, and what it declared.
    pub(crate) fn status(&self, name: &str) -> Option<(ProjectionStatus, ProjectionInfo)> {
        let inst = self.get(name)?;
        let p = inst.lock();
        let (status, watermark) = match &p.pending {
            Some(pre) => (&pre.status, pre.watermark),
            None => (&p.status, p.watermark),
        };
        let status = match status {
            ProjectionStatus::Ready { .. } => ProjectionStatus::Ready { applied_through: watermark },
            failed => failed.clone(),
        };
        Some((status, p.proj.info.clone()))
    }

    /// The whole state of `name` (its snapshot bytes), as of the last
    /// committed event.
    pub(crate) fn snapshot_bytes(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.with_settled(name, |p| {
            if let ProjectionStatus::Failed { error, sequence } = &p.status {
                return Err(failed(name, error.clone(), *sequence));
            }
            let seq = p.watermark.unwrap_or(0);
            p.proj.snapshot().map_err(|e| {
                self.recover_after_trap(name, p, format!("snapshot() trapped: {e}"));
                failed(name, e, seq)
            })
        })
    }
}

/// Wanted events packed into one guest call while catching up.
const PACK_EVENTS: usize = 64;
/// A pack also ends once it holds this many bytes.
const PACK_BYTES: usize = 1 << 20;

/// Events waiting to be folded with one `apply-packed` call.
#[derive(Default)]
struct Pack {
    bytes: Vec<u8>,
    seqs: Vec<u64>,
    /// Highest sequence looked at since the last flush (wanted or not).
    high: Option<u64>,
}

/// Folds the events `from..to`, packed into few guest calls. With `bulk`,
/// each segment is read whole once (install); otherwise one read per event
/// (background).
fn catch_up(
    p: &mut Installed,
    from: u64,
    to: u64,
    index: &StoreIndex,
    reader: &SegmentReader,
    bulk: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), StoreError> {
    let how = Replay { index, reader, bulk, pack_limit: PACK_EVENTS, may_blame: true };
    how.run(p, from, to, progress)
}

/// How to fold a range of the log into a projection.
struct Replay<'a> {
    index: &'a StoreIndex,
    reader: &'a SegmentReader,
    bulk: bool,
    pack_limit: usize,
    /// Whether a failed pack is replayed event by event to name its event.
    may_blame: bool,
}

impl Replay<'_> {
    fn run(
        &self,
        p: &mut Installed,
        from: u64,
        to: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        let mut segment: Option<(u64, Vec<u8>)> = None;
        let mut pack = Pack::default();
        for seq in from..to {
            if matches!(p.status, ProjectionStatus::Failed { .. }) {
                break;
            }
            let Some(entry) = self.index.get_any(seq) else { continue };
            if p.watermark.is_some_and(|w| seq <= w) {
                continue;
            }
            if p.proj.wants(&entry.coord, entry.kind) {
                let single;
                let payload = if self.bulk {
                    let id = entry.disk_pos.segment_id;
                    if segment.as_ref().is_none_or(|(s, _)| *s != id) {
                        segment = Some((id, self.reader.read_segment(id)?));
                    }
                    let bytes = segment.as_ref().map_or(&[][..], |(_, b)| b.as_slice());
                    match crate::store::reader::payload_at(bytes, &entry) {
                        Ok(payload) => payload,
                        // Moved by a compaction since the segment was read.
                        Err(_) => {
                            single = self.reader.read_payload_bytes(&entry)?;
                            &single[..]
                        }
                    }
                } else {
                    single = self.reader.read_payload_bytes(&entry)?;
                    &single[..]
                };
                let event = ProjectionEvent {
                    coord: &entry.coord,
                    kind: entry.kind,
                    payload,
                    event_id: entry.event_id,
                    sequence: seq,
                    clock: entry.clock,
                };
                crate::plugin::pack(&mut pack.bytes, &event);
                pack.seqs.push(seq);
            }
            pack.high = Some(seq);
            if pack.seqs.len() >= self.pack_limit || pack.bytes.len() >= PACK_BYTES {
                self.flush(p, &mut pack)?;
            } else if pack.seqs.is_empty() {
                p.watermark = Some(seq);
                pack.high = None;
            }
            if (seq - from).is_multiple_of(10_000) {
                progress(seq - from, to - from);
            }
        }
        self.flush(p, &mut pack)?;
        if let ProjectionStatus::Ready { .. } = p.status {
            p.status = ProjectionStatus::Ready { applied_through: p.watermark };
        }
        progress(to - from, to - from);
        Ok(())
    }

    /// Folds the pack in one guest call. A failure marks the projection
    /// failed at the event that failed (found by [`Replay::blame`]).
    fn flush(&self, p: &mut Installed, pack: &mut Pack) -> Result<(), StoreError> {
        let result = match pack.seqs.len() {
            0 => Ok(()),
            n => p.proj.apply_packed(&pack.bytes, n),
        };
        match result {
            Ok(()) => {
                p.since_snapshot += pack.seqs.len() as u64;
                if pack.high.is_some() {
                    p.watermark = pack.high;
                }
            }
            Err(why) if pack.seqs.len() == 1 || !self.may_blame => {
                let sequence = pack.seqs.first().copied().unwrap_or(0);
                p.status = ProjectionStatus::Failed { error: why, sequence };
            }
            Err(why) => self.blame(p, &pack.seqs, why)?,
        }
        *pack = Pack::default();
        Ok(())
    }

    /// A pack failed somewhere in `seqs`. Projections are deterministic, so
    /// rebuilding the state from the saved snapshot (or from nothing),
    /// folding up to the pack and then its events one at a time fails at
    /// the same event, which names it.
    fn blame(&self, p: &mut Installed, seqs: &[u64], why: String) -> Result<(), StoreError> {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else { return Ok(()) };
        let origin = saved(&p.dir, &p.name, &p.proj.info).filter(|(_, w)| w.is_none_or(|w| w < first));
        let (snapshot, watermark) = origin.map_or((None, None), |(s, w)| (Some(s), w));
        if let Err(e) = p.proj.init(snapshot) {
            p.status = ProjectionStatus::Failed {
                error: format!("{why}; rebuilding to find the event: {e}"),
                sequence: first,
            };
            return Ok(());
        }
        p.watermark = watermark;
        p.status = ProjectionStatus::Ready { applied_through: watermark };
        let quiet = &mut |_: u64, _: u64| {};
        let before = Replay { pack_limit: PACK_EVENTS, may_blame: false, ..*self };
        before.run(p, watermark.map_or(0, |w| w + 1), first, quiet)?;
        let exact = Replay { pack_limit: 1, may_blame: false, ..*self };
        exact.run(p, first, last + 1, quiet)?;
        if let ProjectionStatus::Ready { .. } = p.status {
            // Not reproduced: the component is not deterministic. Stay failed.
            p.status = ProjectionStatus::Failed {
                error: format!("{why} (not reproduced event by event: the projection is not deterministic)"),
                sequence: first,
            };
        }
        Ok(())
    }
}

/// The snapshot saved for projection `name`, if it exists and matches
/// `info` exactly: its state bytes and the last sequence folded into them.
fn saved(dir: &DataDir, name: &str, info: &ProjectionInfo) -> Option<(Vec<u8>, Option<u64>)> {
    let bytes = dir.read_optional(&snapshot_file(name)).ok()??;
    parse_snapshot(&bytes, &info.digest, info.schema_version)
}

/// The state bytes and watermark of a snapshot file, if it is whole and
/// belongs to the component with `digest` and `schema`.
pub(crate) fn parse_snapshot(bytes: &[u8], digest: &str, schema: u64) -> Option<(Vec<u8>, Option<u64>)> {
    let mut c = Cursor::new(bytes);
    if c.take(8, "magic").ok()? != SNAP_MAGIC || c.str("digest").ok()? != digest {
        return None;
    }
    if c.u64("schema").ok()? != schema {
        return None;
    }
    let watermark = match c.u64("watermark").ok()? {
        u64::MAX => None,
        w => Some(w),
    };
    let crc = c.u32("crc").ok()?;
    let len = usize::try_from(c.varint("len").ok()?).ok()?;
    let state = c.take(len, "state").ok()?;
    (crc32fast::hash(state) == crc).then(|| (state.to_vec(), watermark))
}

/// Folds one event unless already folded; a failure marks the projection failed.
fn fold(p: &mut Installed, e: &ProjectionEvent<'_>) -> Result<(), String> {
    if matches!(p.status, ProjectionStatus::Failed { .. }) || p.watermark.is_some_and(|w| e.sequence <= w) {
        return Ok(());
    }
    if p.proj.wants(e.coord, e.kind) {
        if let Err(why) = p.proj.apply(e) {
            p.status = ProjectionStatus::Failed { error: why.clone(), sequence: e.sequence };
            return Err(why);
        }
        p.since_snapshot += 1;
    }
    p.watermark = Some(e.sequence);
    Ok(())
}

/// A guest call trapped and took the instance with it: the projection is
/// failed from now on (also past an undone batch), with the real cause,
/// until it is reinstalled. It never goes on answering as `Ready`.
fn mark_failed(p: &mut Installed, error: String, sequence: u64) {
    let status = ProjectionStatus::Failed { error, sequence };
    if let Some(pre) = p.pending.as_mut() {
        pre.status = status.clone();
        pre.state = None;
    }
    p.status = status;
}

fn failed(name: &str, error: String, sequence: u64) -> StoreError {
    StoreError::Plugin(PluginError::ProjectionFailed { name: name.to_string(), error, sequence })
}

impl StateReader for ProjectionSet {
    fn read(&self, projection: &str, key: &str) -> Result<StateRead, String> {
        match self.state_for_gate(projection, key) {
            Ok(read) => Ok(read),
            Err(StoreError::Plugin(PluginError::UnknownProjection(_))) => {
                Ok(StateRead { state: None, fuel: 0 })
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
