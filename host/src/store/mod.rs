//! The store: a segmented append-only log with one writer at a time, an
//! in-memory index published through a visibility watermark, and gates
//! run on every append.
//!
//! Reading order for newcomers: [`config`] → `writer` (the append path) →
//! `segment` (bytes on disk) → `index` (what readers see) → `recovery`
//! (open) → `checkpoint`.
//!
//! Layers, each importing only those before it: `entry` (the records the
//! format and the index share) → `segment` (format: frames, footers,
//! reading a frame by position) and `checkpoint` → `index` → `reader` →
//! `compaction` (reads through the reader) → `writer` (commits compactions)
//! and `recovery` (finishes a compaction cut short) → `api` (the `Store`
//! methods) → `projection` (native projections, watchers and reactors,
//! which call the `Store` API). `segment` names `CompactionResult` only as
//! a re-export, at its 0.3.0 path.

mod api;
pub mod checkpoint;
pub mod compaction;
pub mod config;
pub mod contracts;
pub mod cursor;
mod data_dir;
mod durability;
// The records the segment format and the index share (below both).
mod entry;
pub mod error;
#[cfg(feature = "dangerous-test-hooks")]
pub mod fault;
mod fault_point;
pub mod index;
pub mod log_reader;
pub mod projection;
pub(crate) mod projections;
mod provenance;
pub mod reader;
pub mod recovery;
pub mod segment;
pub mod stats;
pub mod subscription;
pub mod verify;
pub mod writer;

#[cfg(feature = "replication")]
pub(crate) use api::PendingImport;
pub use compaction::{CompactionConfig, CompactionResult, CompactionStrategy, RetentionPredicate};
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
pub use projection::{
    CacheCapabilities, CacheMeta, Freshness, NativeCache, NoCache, ProjectionCache, ProjectionWatcher,
};
pub use projections::ProjectionStatus;
pub use recovery::RecoveryReport;
pub use stats::{StoreDiagnostics, StoreStats};
pub use subscription::{Subscription, SubscriptionOps};
pub use verify::{VerifyIssue, VerifyReport};

use crate::coordinate::{Coordinate, KindFilter, Region};
use crate::event::{EventKind, EventSourced, Reactive, StoredEvent};
use crate::plugin::{GateChain, GatePlugin, GateSetInfo, ProjectionInfo, ProjectionPlugin, StateReader};
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
    dir: Arc<DataDir>,
    index: Arc<StoreIndex>,
    reader: Arc<SegmentReader>,
    /// The event vector `project` reuses between replays.
    scratch: reader::ReplayScratch,
    /// Events `get` returned recently, decoded.
    hot: reader::EventCache,
    /// Serialises compaction, snapshots and verification (each needs the
    /// segment files to hold still).
    maintenance: Mutex<()>,
    subscribers: Arc<Subscribers>,
    provenance: Arc<Provenance>,
    tx: flume::Sender<Command>,
    /// The writer's state: served by its thread, or by an idle caller.
    shared: Arc<writer::SharedWriter>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    plugins: Mutex<Vec<GatePlugin>>,
    next_set_id: AtomicU32,
    gate_names: Mutex<Vec<String>>,
    /// What the installed gates report, in order (plans chain edits).
    gate_infos: Mutex<Vec<crate::plugin::GateInfo>>,
    report: RecoveryReport,
    projections: Arc<ProjectionSet>,
    /// Folds background projections after each publish (started on demand).
    projector: Mutex<Option<std::thread::JoinHandle<()>>>,
    cache: Box<dyn ProjectionCache>,
    closed: AtomicBool,
    /// Set on a read replica's store: appends come only from the stream.
    read_only: AtomicBool,
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
        let dir = Arc::new(DataDir::open(&config.data_dir, durability::Durability::for_config(&config))?);
        let settings = config.index.log_settings(&config.data_dir);
        let (index, recovered) = recovery::recover(&dir, config.index.enable_checkpoint, &settings)?;
        let index = Arc::new(index);
        let provenance = Arc::new(Provenance::load(recovered.gate_sets));
        let next_set_id = AtomicU32::new(provenance.max_id() + 1);
        let projections = Arc::new(ProjectionSet::new(Arc::clone(&dir)));
        let states: Arc<dyn StateReader> = Arc::clone(&projections) as Arc<dyn StateReader>;
        let mut chain = GateChain::build(&config.writer.gates, Some(states)).map_err(StoreError::Plugin)?;
        chain.assign_set_id(&provenance.list(), || next_set_id.fetch_add(1, Ordering::SeqCst));
        let gate_names = chain.names();
        let gate_infos = chain.infos();
        let cfg = Arc::new(config);
        let subscribers = Arc::new(Subscribers::default());
        let checkpoint_current = recovered.report.from_checkpoint as usize == recovered.segments.len();
        let resumed = recovered
            .resume
            .map(|r| writer::ActiveSegment::resume(&dir, r, cfg.segment_max_bytes))
            .transpose()?;
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
            recovered.report.from_image,
            resumed,
        );
        let (tx, rx) = flume::bounded(cfg.writer.channel_capacity);
        let shared = writer::SharedWriter::new(writer);
        let handle = writer::spawn(Arc::clone(&shared), cfg.writer.stack_size, rx, writer_thread_name(&cfg))?;
        let reader = Arc::new(SegmentReader::new(Arc::clone(&dir), Arc::clone(&index), cfg.fd_budget));
        projections.set_sources(Arc::clone(&index), Arc::clone(&reader));
        Ok(Self {
            reader,
            scratch: reader::ReplayScratch::new(cfg.index.replay_scratch_events),
            hot: reader::EventCache::new(cfg.index.event_cache_bytes),
            dir,
            maintenance: Mutex::new(()),
            projector: Mutex::new(None),
            plugins: Mutex::new(cfg.writer.gates.clone()),
            cfg,
            index,
            subscribers,
            provenance,
            tx,
            shared,
            writer: Mutex::new(Some(handle)),
            next_set_id,
            gate_names: Mutex::new(gate_names),
            gate_infos: Mutex::new(gate_infos),
            report: recovered.report,
            projections,
            cache,
            closed: AtomicBool::new(false),
            read_only: AtomicBool::new(false),
            spinners: std::sync::atomic::AtomicUsize::new(0),
            _state: PhantomData,
        })
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
    /// Returns once the writer has panicked (its restart policy then
    /// decides whether it comes back); `Err(WriterCrashed)` if no writer was
    /// running to receive the request.
    #[cfg(feature = "dangerous-test-hooks")]
    pub fn panic_writer_for_test(&self) -> Result<(), StoreError> {
        let (tx, rx) = flume::bounded(1);
        self.tx.send(Command::Panic(tx)).map_err(|_| StoreError::WriterCrashed)?;
        match rx.recv() {
            // The writer drops the reply as it panics.
            Err(flume::RecvError::Disconnected) => Ok(()),
            // A writer already refusing commands answers instead of panicking.
            Ok(answer) => answer,
        }
    }
}

impl<State> Store<State> {
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        self.call_spinning(writer::SPIN_BEFORE_PARK, make)
    }

    /// [`Store::call`], spinning for up to `spin` before sleeping on the reply.
    fn call_spinning<T>(
        &self,
        spin: std::time::Duration,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, StoreError> {
        let rx = self.submit(make)?;
        writer::caller_recv(&rx, &self.spinners, spin).map_err(|_| StoreError::WriterCrashed)?
    }

    /// Queues a command for the writer thread; its answer comes on the
    /// returned channel.
    fn submit<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<flume::Receiver<Result<T, StoreError>>, StoreError> {
        let (tx, rx) = flume::bounded(1);
        self.tx.send(make(tx)).map_err(|_| StoreError::WriterCrashed)?;
        Ok(rx)
    }

    fn shutdown(&self) -> Result<(), StoreError> {
        let Some(handle) = self.writer.lock().take() else { return Ok(()) };
        let result = self.call(Command::Shutdown);
        let _ = handle.join();
        self.subscribers.close_all();
        if let Some(projector) = self.projector.lock().take() {
            let _ = projector.join();
        }
        // A projection snapshot that fails loses nothing (the projection is
        // rebuilt from the log), so it is logged and does not fail the
        // close of the log, which has already succeeded or failed above.
        let _not_snapshotted = self.projections.persist_all();
        match result {
            Err(StoreError::WriterCrashed) => Ok(()),
            other => other,
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
