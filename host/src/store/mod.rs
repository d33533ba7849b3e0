//! The store: a segmented append-only log with one writer thread, an
//! in-memory index published through a visibility watermark, and gates
//! run on every append.
//!
//! Reading order for newcomers: [`config`] → `writer` (the append path) →
//! `segment` (bytes on disk) → `index` (what readers see) → `recovery`
//! (open) → `checkpoint`.

pub mod checkpoint;
pub mod config;
pub mod contracts;
pub mod cursor;
mod data_dir;
pub mod error;
#[cfg(feature = "dangerous-test-hooks")]
pub mod fault;
mod fault_point;
pub mod index;
pub mod log_reader;
mod projections;
mod provenance;
mod reader;
pub mod recovery;
pub mod segment;
pub mod stats;
pub mod subscription;
pub mod verify;
mod writer;

pub use config::{
    BatchConfig, Clock, IndexConfig, IndexLayout, RestartPolicy, StoreConfig, SyncConfig, SyncMode,
    WriterConfig,
};
pub use contracts::{AppendOptions, AppendReceipt, BatchAppendItem, CausationRef, Notification};
pub use cursor::Cursor;
pub use data_dir::LOCK_FILE;
pub use error::{BatchStage, StoreError};
#[cfg(feature = "dangerous-test-hooks")]
pub use fault::{CountdownAction, CountdownInjector, FaultInjector, InjectionPoint, ProbabilisticInjector};
pub use index::{ClockKey, DiskPos, IndexEntry};
pub use log_reader::{LogReader, LoggedEvent, SegmentSummary};
pub use projections::ProjectionStatus;
pub use recovery::RecoveryReport;
pub use stats::{StoreDiagnostics, StoreStats};
pub use subscription::{Subscription, SubscriptionOps};
pub use verify::{VerifyIssue, VerifyReport};

use crate::coordinate::{Coordinate, KindFilter, Region};
use crate::event::{EventKind, EventSourced, Reactive, StoredEvent};
use crate::plugin::{GateChain, GatePlugin, GateSetInfo, ProjectionInfo, ProjectionPlugin, StateReader};
use crate::projection::{CacheMeta, Freshness, NativeCache, NoCache, ProjectionCache, ProjectionWatcher};
use data_dir::DataDir;
use index::StoreIndex;
use parking_lot::Mutex;
use projections::ProjectionSet;
use provenance::Provenance;
use reader::SegmentReader;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use subscription::Subscribers;
use writer::{BatchRequest, Command, Reply, SingleRequest, Writer};

/// Typestate marker: an open store.
#[derive(Debug, Clone, Copy)]
pub struct Open;

/// Typestate marker and proof of a clean close.
#[derive(Debug, Clone, Copy)]
pub struct Closed;

/// An event store. `Send + Sync`; every method blocks until done.
pub struct Store<State = Open> {
    cfg: Arc<StoreConfig>,
    index: Arc<StoreIndex>,
    reader: Arc<SegmentReader>,
    subscribers: Arc<Subscribers>,
    provenance: Arc<Provenance>,
    tx: flume::Sender<Command>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    plugins: Mutex<Vec<GatePlugin>>,
    next_set_id: AtomicU32,
    gate_names: Mutex<Vec<String>>,
    report: RecoveryReport,
    projections: Arc<ProjectionSet>,
    /// Folds background projections after each publish (started on demand).
    projector: Mutex<Option<std::thread::JoinHandle<()>>>,
    cache: Box<dyn ProjectionCache>,
    closed: AtomicBool,
    /// Callers currently spinning for a reply (at most one spins).
    spinners: std::sync::atomic::AtomicUsize,
    _state: PhantomData<State>,
}

impl Store<Open> {
    /// Opens (or creates) the store in `config.data_dir`: takes the
    /// directory lock, rebuilds the index, installs the configured gates and
    /// starts the writer.
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        Self::open_with_cache(config, Box::new(NoCache))
    }

    /// [`Store::open`] with projection states cached in files under `cache_dir`.
    pub fn open_with_native_cache(
        config: StoreConfig,
        cache_dir: impl AsRef<std::path::Path>,
    ) -> Result<Self, StoreError> {
        Self::open_with_cache(config, Box::new(NativeCache::open(cache_dir)?))
    }

    /// [`Store::open`] with a projection cache of your own.
    pub fn open_with_cache(config: StoreConfig, cache: Box<dyn ProjectionCache>) -> Result<Self, StoreError> {
        let span = tracing::info_span!("batpak.open", dir = %config.data_dir.display());
        let _enter = span.enter();
        config.validate()?;
        #[cfg(feature = "dangerous-test-hooks")]
        if let Some(injector) = &config.fault_injector {
            injector.validate().map_err(StoreError::Configuration)?;
        }
        let dir = Arc::new(DataDir::open(&config.data_dir)?);
        let (index, recovered) = recovery::recover(&dir, config.index.enable_checkpoint)?;
        let index = Arc::new(index);
        let provenance = Arc::new(Provenance::load(recovered.gate_sets));
        let next_set_id = AtomicU32::new(provenance.max_id() + 1);
        let projections = Arc::new(ProjectionSet::new(Arc::clone(&dir)));
        let states: Arc<dyn StateReader> = Arc::clone(&projections) as Arc<dyn StateReader>;
        let mut chain = GateChain::build(&config.gates, Some(states)).map_err(StoreError::Plugin)?;
        chain.assign_set_id(&provenance.list(), || next_set_id.fetch_add(1, Ordering::SeqCst));
        let gate_names = chain.names();
        let cfg = Arc::new(config);
        let subscribers = Arc::new(Subscribers::default());
        let checkpoint_current = recovered.report.from_checkpoint as usize == recovered.segments.len();
        let writer = Writer::new(
            Arc::clone(&cfg),
            Arc::clone(&dir),
            Arc::clone(&index),
            Arc::clone(&subscribers),
            Arc::clone(&provenance),
            Arc::clone(&projections),
            chain,
            recovered.segments,
            checkpoint_current,
        );
        let (tx, rx) = flume::bounded(cfg.writer.channel_capacity);
        let handle = writer::spawn(writer, rx, writer_thread_name(&cfg))?;
        Ok(Self {
            reader: Arc::new(SegmentReader::new(Arc::clone(&dir), cfg.fd_budget)),
            projector: Mutex::new(None),
            plugins: Mutex::new(cfg.gates.clone()),
            cfg,
            index,
            subscribers,
            provenance,
            tx,
            writer: Mutex::new(Some(handle)),
            next_set_id,
            gate_names: Mutex::new(gate_names),
            report: recovered.report,
            projections,
            cache,
            closed: AtomicBool::new(false),
            spinners: std::sync::atomic::AtomicUsize::new(0),
            _state: PhantomData,
        })
    }

    /// Appends one event with a fresh id; its correlation id is its own id.
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
        check_kind(kind)?;
        let payload = serde_json::to_vec(payload)?;
        check_payload_size(payload.len(), self.cfg.single_append_max_bytes)?;
        let req = SingleRequest {
            coord: coord.clone(),
            kind,
            payload,
            options,
            event_id: options.idempotency_key.unwrap_or_else(crate::id::generate_v7_id),
            timestamp_us: self.cfg.now_us(),
        };
        self.call(|reply| Command::Append(Box::new(req), reply))
    }

    /// Appends every item or none. Items are validated before anything is
    /// written; the batch is fsynced before this returns.
    pub fn append_batch(&self, items: Vec<BatchAppendItem>) -> Result<Vec<AppendReceipt>, StoreError> {
        let _span = tracing::debug_span!("batpak.append_batch", items = items.len()).entered();
        validate_batch(&self.cfg, &items)?;
        let items: Arc<[BatchAppendItem]> = items.into();
        let req = BatchRequest {
            fresh_ids: (0..items.len()).map(|_| crate::id::generate_v7_id()).collect(),
            items: Arc::clone(&items),
            timestamp_us: self.cfg.now_us(),
        };
        let result = self.call(|reply| Command::Batch(Box::new(req), reply));
        drop(items);
        result
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

    /// The visible event with this id.
    pub fn get(&self, event_id: u128) -> Result<StoredEvent<serde_json::Value>, StoreError> {
        let entry = self.index.by_id(event_id).ok_or(StoreError::NotFound(event_id))?;
        self.reader.read_event(&entry)
    }

    /// Folds the entity's relevant events into `T`, using the projection
    /// cache as `freshness` allows. `None` when the entity has no relevant
    /// events. Cache failures are logged and fall back to a full replay.
    pub fn project<T>(&self, entity: &str, freshness: &Freshness) -> Result<Option<T>, StoreError>
    where
        T: EventSourced<serde_json::Value> + Serialize + DeserializeOwned + 'static,
    {
        let kinds = T::relevant_event_kinds();
        let entries: Vec<IndexEntry> = self
            .index
            .stream(entity)
            .into_iter()
            .filter(|e| kinds.is_empty() || kinds.contains(&e.kind))
            .collect();
        let Some(watermark) = entries.last().map(|e| e.global_sequence) else { return Ok(None) };
        let key = crate::projection::cache_key::<T>(entity, T::schema_version());
        let cached = self.cache.get(&key).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "projection cache read failed");
            None
        });
        if let Some((bytes, meta)) = cached {
            let fresh = match freshness {
                Freshness::Consistent => meta.watermark == watermark,
                Freshness::MaybeStale { max_stale_ms } => {
                    self.cfg.now_us().saturating_sub(meta.cached_at_us)
                        < (*max_stale_ms as i64).saturating_mul(1000)
                }
            };
            if let Ok(mut state) = serde_json::from_slice::<T>(&bytes) {
                if fresh {
                    return Ok(Some(state));
                }
                let incremental = T::supports_incremental_apply() && self.cfg.index.incremental_projection;
                if incremental && meta.watermark < watermark {
                    for e in entries.iter().filter(|e| e.global_sequence > meta.watermark) {
                        state.apply_event(&self.reader.read_event(e)?.event);
                    }
                    self.cache_state(&key, &state, watermark);
                    return Ok(Some(state));
                }
            }
        }
        let events = entries
            .iter()
            .map(|e| self.reader.read_event(e).map(|s| s.event))
            .collect::<Result<Vec<_>, _>>()?;
        let state = T::from_events(&events);
        if let Some(s) = &state {
            self.cache_state(&key, s, watermark);
        }
        Ok(state)
    }

    fn cache_state<T: Serialize>(&self, key: &[u8], state: &T, watermark: u64) {
        let meta = CacheMeta { watermark, cached_at_us: self.cfg.now_us() };
        let put =
            serde_json::to_vec(state).map_err(StoreError::from).and_then(|b| self.cache.put(key, &b, meta));
        if let Err(e) = put {
            tracing::warn!(error = %e, "projection cache write failed");
        }
    }

    /// A watcher that yields the entity's projection each time it changes.
    pub fn watch_projection<T>(self: &Arc<Self>, entity: &str, freshness: Freshness) -> ProjectionWatcher<T>
    where
        T: EventSourced<serde_json::Value> + Serialize + DeserializeOwned + 'static,
    {
        ProjectionWatcher::new(Arc::clone(self), entity, freshness)
    }

    /// Runs `reactor` on every event of `region` committed from now on, in
    /// order, appending its reactions (correlated with, and caused by, the
    /// trigger) on a thread named `batpak-reactor`. The thread ends when the
    /// store is dropped.
    pub fn react_loop<R>(
        self: &Arc<Self>,
        region: &Region,
        reactor: R,
    ) -> Result<std::thread::JoinHandle<()>, StoreError>
    where
        R: Reactive<serde_json::Value> + Send + 'static,
    {
        let weak = Arc::downgrade(self);
        let (region, from) = (region.clone(), self.index.visible());
        let handle = std::thread::Builder::new()
            .name("batpak-reactor".into())
            .spawn(move || crate::projection::react_run(weak, region, from, reactor))?;
        Ok(handle)
    }

    /// Visible index entries in `region`, in global-sequence order.
    pub fn query(&self, region: &Region) -> Vec<IndexEntry> {
        self.index.query(region)
    }

    /// Visible entries of exactly this entity, oldest first.
    pub fn stream(&self, entity: &str) -> Vec<IndexEntry> {
        self.index.stream(entity)
    }

    /// Visible entries in exactly this scope.
    pub fn by_scope(&self, scope: &str) -> Vec<IndexEntry> {
        self.index.query(&Region::scope(scope))
    }

    /// Visible entries of exactly this kind.
    pub fn by_fact(&self, kind: EventKind) -> Vec<IndexEntry> {
        self.index.query(&Region::all().with_fact(KindFilter::Exact(kind)))
    }

    /// The event and its ancestors along its entity's hash chain, newest
    /// first, at most `limit` events. Stops where the chain does not link.
    pub fn walk_ancestors(&self, event_id: u128, limit: usize) -> Vec<StoredEvent<serde_json::Value>> {
        let Some(start) = self.index.by_id(event_id) else { return Vec::new() };
        let stream = self.index.stream(start.coord.entity());
        let upto = stream.partition_point(|e| e.global_sequence <= start.global_sequence);
        let mut out = Vec::new();
        let mut expected: Option<[u8; 32]> = None;
        for entry in stream[..upto].iter().rev().take(limit) {
            if expected.is_some_and(|h| h != entry.hash_chain.event_hash) {
                break;
            }
            match self.reader.read_event(entry) {
                Ok(ev) => out.push(ev),
                Err(_) => break,
            }
            if entry.hash_chain.is_genesis() {
                break;
            }
            expected = Some(entry.hash_chain.prev_hash);
        }
        out
    }

    /// A cursor over `region` from the first event.
    pub fn cursor_guaranteed(&self, region: &Region) -> Cursor {
        Cursor::new(Arc::clone(&self.index), region.clone(), 0)
    }

    /// A cursor over `region` resuming at global sequence `from` (see [`Cursor::position`]).
    pub fn cursor_from(&self, region: &Region, from: u64) -> Cursor {
        Cursor::new(Arc::clone(&self.index), region.clone(), from)
    }

    /// A lossy push subscription to events committed from now on.
    pub fn subscribe_lossy(&self, region: &Region) -> Subscription {
        self.subscribers.subscribe(region, self.cfg.broadcast_capacity)
    }

    /// Makes every acknowledged append durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.call(Command::Sync)
    }

    /// Counts.
    pub fn stats(&self) -> StoreStats {
        StoreStats { event_count: self.index.visible() as usize, global_sequence: self.index.inserted() }
    }

    /// Counts, settings and how the index was recovered.
    pub fn diagnostics(&self) -> StoreDiagnostics {
        StoreDiagnostics {
            event_count: self.index.visible() as usize,
            global_sequence: self.index.inserted(),
            visible_sequence: self.index.visible(),
            data_dir: self.cfg.data_dir.clone(),
            segment_max_bytes: self.cfg.segment_max_bytes,
            fd_budget: self.cfg.fd_budget,
            restart_policy: self.cfg.writer.restart_policy,
            index_layout: self.cfg.index.layout.name(),
            tile_count: 0,
            entity_count: self.index.entity_count(),
            recovery: self.report.clone(),
            gates: self.gate_names.lock().clone(),
        }
    }

    /// Adds a gate at the end of the chain, atomically between appends. The
    /// component is compiled and instantiated first; on any failure the
    /// installed chain is unchanged.
    pub fn install_gate(&self, plugin: GatePlugin) -> Result<(), StoreError> {
        let mut plugins = self.plugins.lock();
        let mut next = plugins.clone();
        next.push(plugin);
        self.swap_gates(&mut plugins, next)
    }

    /// Replaces the gate named `name` with `plugin`, atomically.
    pub fn replace_gate(&self, name: &str, plugin: GatePlugin) -> Result<(), StoreError> {
        let mut plugins = self.plugins.lock();
        let at = self.gate_position(name)?;
        let mut next = plugins.clone();
        next[at] = plugin;
        self.swap_gates(&mut plugins, next)
    }

    /// Removes the gate named `name`, atomically.
    pub fn remove_gate(&self, name: &str) -> Result<(), StoreError> {
        let mut plugins = self.plugins.lock();
        let at = self.gate_position(name)?;
        let mut next = plugins.clone();
        next.remove(at);
        self.swap_gates(&mut plugins, next)
    }

    /// Names of the installed gates, in evaluation order.
    pub fn gates(&self) -> Vec<String> {
        self.gate_names.lock().clone()
    }

    /// Every gate set that admitted at least one event, as recorded in the log.
    pub fn gate_sets(&self) -> Vec<GateSetInfo> {
        self.provenance.list()
    }

    /// Visible events admitted by gate set `set_id`.
    pub fn events_admitted_by(&self, set_id: u32) -> Vec<IndexEntry> {
        let mut out = self.index.query(&Region::all());
        out.retain(|e| e.gate_set == Some(set_id));
        out
    }

    /// Installs (or replaces) a WASM projection under `name`: restores its
    /// saved snapshot if it matches the component and schema, else rebuilds
    /// from the log; then it follows every committed event.
    pub fn install_projection(&self, name: &str, plugin: ProjectionPlugin) -> Result<(), StoreError> {
        self.install_projection_with_progress(name, plugin, |_, _| {})
    }

    /// [`Store::install_projection`] reporting catch-up progress as (done, total) events.
    pub fn install_projection_with_progress(
        &self,
        name: &str,
        plugin: ProjectionPlugin,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        if plugin.in_background_mode() {
            self.ensure_projector()?;
        }
        self.projections.install(name, plugin, &self.index, &self.reader, &mut progress)
    }

    /// Starts the projector thread once: it wakes on every publish (through a
    /// one-slot lossy subscription: a missed wake-up is covered by the next,
    /// since each catch-up runs to the current watermark).
    fn ensure_projector(&self) -> Result<(), StoreError> {
        let mut slot = self.projector.lock();
        if slot.is_some() {
            return Ok(());
        }
        let sub = self.subscribers.subscribe(&Region::all(), 1);
        let (index, reader, set) =
            (Arc::clone(&self.index), Arc::clone(&self.reader), Arc::clone(&self.projections));
        let handle = std::thread::Builder::new().name("batpak-projector".into()).spawn(move || loop {
            set.catch_up_background(&index, &reader);
            if sub.recv().is_none() {
                return;
            }
        })?;
        *slot = Some(handle);
        Ok(())
    }

    /// Removes a projection and its saved snapshot.
    pub fn remove_projection(&self, name: &str) -> Result<(), StoreError> {
        self.projections.remove(name)
    }

    /// The state projection `name` holds for `key`, as of the last committed event.
    pub fn projection_state(&self, name: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.projections.state(name, key)
    }

    /// Waits until projection `name` has folded the event at `sequence` (for
    /// background projections: "read your writes"); `false` on timeout or
    /// if the projection failed.
    pub fn wait_for_projection(
        &self,
        name: &str,
        sequence: u64,
        timeout: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.projections.wait_for(name, sequence, timeout)
    }

    /// Where projection `name` stands and what it declared.
    pub fn projection_status(&self, name: &str) -> Option<(ProjectionStatus, ProjectionInfo)> {
        self.projections.status(name)
    }

    /// The whole state of projection `name`, as its `snapshot` returns it.
    pub fn projection_snapshot(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.projections.snapshot_bytes(name)
    }

    /// The stored payload bytes (canonical JSON) of a visible event.
    pub fn payload_bytes(&self, event_id: u128) -> Result<Vec<u8>, StoreError> {
        let entry = self.index.by_id(event_id).ok_or(StoreError::NotFound(event_id))?;
        self.reader.read_payload_bytes(&entry)
    }

    /// Copies the store into `dest` (a new or empty directory) while appends
    /// continue: the copy holds every event published when the snapshot
    /// began, opens as a store of its own, and is fsynced before this
    /// returns. Files are written with `create_new`, so a symlink or file
    /// already in `dest` is never followed or overwritten.
    pub fn snapshot(&self, dest: impl AsRef<std::path::Path>) -> Result<(), StoreError> {
        use std::io::{Read, Write};
        let dest = dest.as_ref();
        std::fs::create_dir_all(dest)?;
        if std::fs::read_dir(dest)?.next().is_some() {
            return Err(StoreError::Configuration(format!(
                "snapshot destination {} is not empty",
                dest.display()
            )));
        }
        let plan = self.call(Command::SnapshotPlan)?;
        let out_dir = cap_std::fs::Dir::open_ambient_dir(dest, cap_std::ambient_authority())?;
        for (id, len) in plan {
            let name = segment::segment_filename(id);
            let src = self.reader_file(id)?;
            let opts = cap_std::fs::OpenOptions::new().write(true).create_new(true).clone();
            let mut out = out_dir.open_with(&name, &opts)?.into_std();
            let copied = std::io::copy(&mut (&src).take(len), &mut out)?;
            if copied != len {
                return Err(StoreError::corrupt(id, format!("snapshot copied {copied} of {len} bytes")));
            }
            out.flush()?;
            out.sync_all()?;
        }
        out_dir.open(".")?.into_std().sync_all()?;
        Ok(())
    }

    fn reader_file(&self, id: u64) -> Result<std::fs::File, StoreError> {
        self.reader.open_file(id)
    }

    /// Stops the writer after it seals the active segment and writes the
    /// checkpoint. The honest durable shutdown; `Drop` does the same but
    /// can only log errors.
    pub fn close(self) -> Result<Closed, StoreError> {
        let _span = tracing::info_span!("batpak.close").entered();
        let result = self.shutdown();
        self.closed.store(true, Ordering::SeqCst);
        result.map(|()| Closed)
    }

    /// Makes the writer thread panic once (tests of the restart policy).
    #[cfg(feature = "dangerous-test-hooks")]
    pub fn panic_writer_for_test(&self) {
        let (tx, rx) = flume::bounded(1);
        if self.tx.send(Command::Panic(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    fn gate_position(&self, name: &str) -> Result<usize, StoreError> {
        self.gate_names
            .lock()
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| StoreError::Plugin(crate::plugin::PluginError::UnknownGate(name.to_string())))
    }

    fn swap_gates(&self, plugins: &mut Vec<GatePlugin>, next: Vec<GatePlugin>) -> Result<(), StoreError> {
        let states: Arc<dyn StateReader> = Arc::clone(&self.projections) as Arc<dyn StateReader>;
        let mut chain = GateChain::build(&next, Some(states)).map_err(StoreError::Plugin)?;
        chain.assign_set_id(&self.provenance.list(), || self.next_set_id.fetch_add(1, Ordering::SeqCst));
        let names = chain.names();
        self.call(|reply| Command::SetGates(chain, reply))?;
        *plugins = next;
        *self.gate_names.lock() = names;
        Ok(())
    }
}

impl<State> Store<State> {
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (tx, rx) = flume::bounded(1);
        self.tx.send(make(tx)).map_err(|_| StoreError::WriterCrashed)?;
        writer::caller_recv(&rx, &self.spinners).map_err(|_| StoreError::WriterCrashed)?
    }

    fn shutdown(&self) -> Result<(), StoreError> {
        let Some(handle) = self.writer.lock().take() else { return Ok(()) };
        let result = self.call(Command::Shutdown);
        let _ = handle.join();
        self.subscribers.close_all();
        if let Some(projector) = self.projector.lock().take() {
            let _ = projector.join();
        }
        let persisted = self.projections.persist_all();
        match result {
            Err(StoreError::WriterCrashed) => persisted,
            other => other.and(persisted),
        }
    }
}

impl<State> Drop for Store<State> {
    fn drop(&mut self) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "store dropped without close(); shutdown reported an error");
        }
    }
}

fn writer_thread_name(cfg: &StoreConfig) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in cfg.data_dir.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("batpak-writer-{h:016x}")
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
    let mut keys = std::collections::HashSet::new();
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
