//! [`StoreConfig`] and its sub-structs, with the limits checked at open.

use crate::store::StoreError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the writer makes data durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyncMode {
    /// `fsync`: data and metadata (the default).
    #[default]
    SyncAll,
    /// `fdatasync`: data and the metadata needed to read it back.
    SyncData,
}

/// In-memory index layout. The index here has one layout (a sequence-ordered
/// log plus secondary maps); the variants are accepted for batpak 0.3.0
/// compatibility and reported in diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IndexLayout {
    /// Array of structs (the default).
    #[default]
    AoS,
    /// Struct of arrays.
    SoA,
    /// Tiles of 8.
    AoSoA8,
    /// Tiles of 16.
    AoSoA16,
    /// Tiles of 64.
    AoSoA64,
    /// Per-entity struct of arrays.
    SoAoS,
}

impl IndexLayout {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::AoS => "aos",
            Self::SoA => "soa",
            Self::AoSoA8 => "aosoa8",
            Self::AoSoA16 => "aosoa16",
            Self::AoSoA64 => "aosoa64",
            Self::SoAoS => "soaos",
        }
    }
}

/// What happens when the writer thread panics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Restart once for the store's lifetime (the default).
    #[default]
    Once,
    /// Restart at most `max_restarts` times within any `within_ms` window.
    Bounded {
        /// Restarts allowed per window.
        max_restarts: u32,
        /// Window length in milliseconds.
        within_ms: u64,
    },
}

/// Batch limits.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// Most items in one batch (1..=4096, default 256).
    pub max_size: u32,
    /// Most payload bytes in one batch (1..=16 MiB, default 1 MiB).
    pub max_bytes: u32,
    /// Most commands the writer takes from its queue per group commit
    /// (default 256; 0 = as many as are queued, capped at 4096). Grouping
    /// never requires idempotency keys, and only shares work (one fsync, one
    /// publish) between appends that were already queued together.
    pub group_commit_max_batch: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_size: 256, max_bytes: 1024 * 1024, group_commit_max_batch: 256 }
    }
}

/// Writer thread settings.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Capacity of the writer's command queue (default 4096).
    pub channel_capacity: usize,
    /// Stack size of the writer thread (`None`: 4 MiB,
    /// `plugin::DEFAULT_WRITER_STACK`). Gates run on it, each nesting the
    /// stack of a projection it reads: a size below
    /// `plugin::writer_stack_needed(gate, projection)` for the installed
    /// plugins is refused at open and at install, never left to overflow.
    pub stack_size: Option<usize>,
    /// What to do when the writer panics.
    pub restart_policy: RestartPolicy,
    /// Most queued commands served after a shutdown request (default 1024).
    pub shutdown_drain_limit: usize,
    /// Gates installed at open, in evaluation order (they run inside the
    /// writer). Not a batpak 0.3.0 field: 0.3.0 code that builds this struct
    /// with `..Default::default()` still compiles.
    pub gates: Vec<crate::plugin::GatePlugin>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            channel_capacity: 4096,
            stack_size: None,
            restart_policy: RestartPolicy::Once,
            shutdown_drain_limit: 1024,
            gates: Vec::new(),
        }
    }
}

/// Durability settings. See docs/design.md, "Durability contract".
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// fsync or fdatasync.
    pub mode: SyncMode,
    /// Single appends are fsynced at least every this many events, before the
    /// reply of the event that reaches the count (default 1000; 0 or 1 = every
    /// append). Batches are always fsynced before they are acknowledged.
    pub every_n_events: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self { mode: SyncMode::SyncAll, every_n_events: 1000 }
    }
}

/// Index settings.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    /// Layout name reported in diagnostics.
    pub layout: IndexLayout,
    /// Whether cached projections may be advanced incrementally.
    pub incremental_projection: bool,
    /// Whether `close()` writes `index.ckpt` for a fast next open (default true).
    pub enable_checkpoint: bool,
    /// Most events whose parsed form `Store::project` keeps between
    /// replays, to overwrite in place the next time (default 16 384; 0
    /// keeps none; at most 2^20). Also bounded by 4 MiB of stored payload.
    /// Not a batpak 0.3.0 field (see [`WriterConfig::gates`]).
    pub replay_scratch_events: usize,
    /// Most events whose index entries stay in memory (default 32 768).
    /// Entries of older events are written, in chunks of up to 65 536, to
    /// an unnamed scratch file in the data directory and read back through
    /// the cache below, so resident memory does not grow with the log by
    /// their 96 bytes each. `u64::MAX` keeps every entry in memory. At
    /// least 2 048. Not a batpak 0.3.0 field (see [`WriterConfig::gates`]).
    pub resident_events: u64,
    /// Bytes of index entries read back from the scratch file that are
    /// cached in memory (default 8 MiB; 0 caches none; at most 1 GiB).
    /// Not a batpak 0.3.0 field (see [`WriterConfig::gates`]).
    pub cache_bytes: usize,
    /// Bytes of decoded events that [`Store::get`](crate::store::Store::get)
    /// keeps, so a hot id is answered without reading and parsing its
    /// frame (default 4 MiB; 0 keeps none; at most 1 GiB). Each event is
    /// charged its frame's length plus 256 bytes. Not a batpak 0.3.0 field
    /// (see [`WriterConfig::gates`]).
    pub event_cache_bytes: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            layout: IndexLayout::AoS,
            incremental_projection: false,
            enable_checkpoint: true,
            replay_scratch_events: 16_384,
            resident_events: DEFAULT_RESIDENT_EVENTS,
            cache_bytes: 8 * MIB as usize,
            event_cache_bytes: 4 * MIB as usize,
        }
    }
}

/// Default [`IndexConfig::resident_events`]: two chunks of 16 Ki entries.
const DEFAULT_RESIDENT_EVENTS: u64 = 1 << (crate::store::index::MAX_CHUNK_BITS - 1);
/// Smallest [`IndexConfig::resident_events`]: two of the smallest chunks.
const MIN_RESIDENT_EVENTS: u64 = 2 << crate::store::index::MIN_CHUNK_BITS;
/// Largest [`IndexConfig::cache_bytes`].
const MAX_INDEX_CACHE_BYTES: usize = 1 << 30;

impl IndexConfig {
    /// How the index keeps its entry log, for a store in `data_dir`: the
    /// largest power-of-two chunk (within the supported range) of which
    /// two fit in `resident_events`.
    pub(crate) fn log_settings(&self, data_dir: &std::path::Path) -> crate::store::index::LogSettings {
        use crate::store::index::{LogSettings, MAX_CHUNK_BITS, MIN_CHUNK_BITS};
        if self.resident_events == u64::MAX {
            return LogSettings::in_memory();
        }
        let half = (self.resident_events / 2).max(1);
        let chunk_bits = (63 - half.leading_zeros()).clamp(MIN_CHUNK_BITS, MAX_CHUNK_BITS);
        LogSettings { chunk_bits, scratch_dir: Some(data_dir.to_path_buf()), cache_bytes: self.cache_bytes }
    }
}

/// A clock returning microseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Everything [`crate::store::Store::open`] needs.
#[derive(Clone)]
pub struct StoreConfig {
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
    /// A segment is sealed and a new one started once it reaches this size
    /// (default 256 MiB). A batch is never split across segments, so a
    /// segment can exceed this by at most one batch.
    pub segment_max_bytes: u64,
    /// Most segment files kept open for reads (default 64).
    pub fd_budget: usize,
    /// Queue capacity of each lossy subscription (default 8192).
    pub broadcast_capacity: usize,
    /// Largest single payload in bytes (1..=64 MiB, default 16 MiB).
    pub single_append_max_bytes: u32,
    /// Batch limits.
    pub batch: BatchConfig,
    /// Writer thread settings.
    pub writer: WriterConfig,
    /// Durability settings.
    pub sync: SyncConfig,
    /// Index settings.
    pub index: IndexConfig,
    /// The store's clock (default: the system clock).
    pub clock: Option<Clock>,
    /// Fault injection for crash tests.
    #[cfg(feature = "dangerous-test-hooks")]
    pub fault_injector: Option<Arc<dyn crate::store::fault::FaultInjector>>,
}

const MIB: u32 = 1024 * 1024;
/// Frame offsets are kept as u32 in memory: a segment may reach this size
/// plus one batch and stay under 4 GiB.
const MAX_SEGMENT_BYTES: u64 = 3 * 1024 * 1024 * 1024;

/// Most events a replay's kept vector may hold (its slots alone take
/// about 256 MiB at this size).
const MAX_REPLAY_SCRATCH_EVENTS: usize = 1 << 20;

impl StoreConfig {
    /// The default configuration for `data_dir`.
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Self {
            data_dir: data_dir.as_ref().to_path_buf(),
            segment_max_bytes: 256 * u64::from(MIB),
            fd_budget: 64,
            broadcast_capacity: 8192,
            single_append_max_bytes: 16 * MIB,
            batch: BatchConfig::default(),
            writer: WriterConfig::default(),
            sync: SyncConfig::default(),
            index: IndexConfig::default(),
            clock: None,
            #[cfg(feature = "dangerous-test-hooks")]
            fault_injector: None,
        }
    }

    /// Sets `segment_max_bytes`.
    pub fn with_segment_max_bytes(mut self, v: u64) -> Self {
        self.segment_max_bytes = v;
        self
    }
    /// Sets `fd_budget`.
    pub fn with_fd_budget(mut self, v: usize) -> Self {
        self.fd_budget = v;
        self
    }
    /// Sets `broadcast_capacity`.
    pub fn with_broadcast_capacity(mut self, v: usize) -> Self {
        self.broadcast_capacity = v;
        self
    }
    /// Sets `single_append_max_bytes`.
    pub fn with_single_append_max_bytes(mut self, v: u32) -> Self {
        self.single_append_max_bytes = v;
        self
    }
    /// Sets `batch.max_size`.
    pub fn with_batch_max_size(mut self, v: u32) -> Self {
        self.batch.max_size = v;
        self
    }
    /// Sets `batch.max_bytes`.
    pub fn with_batch_max_bytes(mut self, v: u32) -> Self {
        self.batch.max_bytes = v;
        self
    }
    /// Sets `batch.group_commit_max_batch`.
    pub fn with_group_commit_max_batch(mut self, v: u32) -> Self {
        self.batch.group_commit_max_batch = v;
        self
    }
    /// Sets `writer.channel_capacity`.
    pub fn with_writer_channel_capacity(mut self, v: usize) -> Self {
        self.writer.channel_capacity = v;
        self
    }
    /// Sets `writer.stack_size`.
    pub fn with_writer_stack_size(mut self, v: Option<usize>) -> Self {
        self.writer.stack_size = v;
        self
    }
    /// Sets `writer.restart_policy`.
    pub fn with_restart_policy(mut self, v: RestartPolicy) -> Self {
        self.writer.restart_policy = v;
        self
    }
    /// Sets `writer.shutdown_drain_limit`.
    pub fn with_shutdown_drain_limit(mut self, v: usize) -> Self {
        self.writer.shutdown_drain_limit = v;
        self
    }
    /// Sets `sync.mode`.
    pub fn with_sync_mode(mut self, v: SyncMode) -> Self {
        self.sync.mode = v;
        self
    }
    /// Sets `sync.every_n_events`.
    pub fn with_sync_every_n_events(mut self, v: u32) -> Self {
        self.sync.every_n_events = v;
        self
    }
    /// Sets `index.layout`.
    pub fn with_index_layout(mut self, v: IndexLayout) -> Self {
        self.index.layout = v;
        self
    }
    /// Sets `index.incremental_projection`.
    pub fn with_incremental_projection(mut self, v: bool) -> Self {
        self.index.incremental_projection = v;
        self
    }
    /// Sets `index.enable_checkpoint`.
    pub fn with_enable_checkpoint(mut self, v: bool) -> Self {
        self.index.enable_checkpoint = v;
        self
    }
    /// Sets the clock (`None` = system clock).
    pub fn with_clock(mut self, clock: Option<Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Sets `replay_scratch_events`.
    pub fn with_replay_scratch_events(mut self, v: usize) -> Self {
        self.index.replay_scratch_events = v;
        self
    }
    /// Sets [`IndexConfig::resident_events`].
    pub fn with_resident_events(mut self, v: u64) -> Self {
        self.index.resident_events = v;
        self
    }

    /// Sets [`IndexConfig::cache_bytes`].
    pub fn with_index_cache_bytes(mut self, v: usize) -> Self {
        self.index.cache_bytes = v;
        self
    }

    /// Sets [`IndexConfig::event_cache_bytes`].
    pub fn with_event_cache_bytes(mut self, v: usize) -> Self {
        self.index.event_cache_bytes = v;
        self
    }
    /// Appends a WebAssembly gate to the gates installed at open.
    pub fn with_gate(mut self, gate: crate::plugin::GatePlugin) -> Self {
        self.writer.gates.push(gate);
        self
    }

    /// Microseconds since the Unix epoch from the configured clock.
    pub(crate) fn now_us(&self) -> i64 {
        match &self.clock {
            Some(clock) => clock(),
            None => system_now_us(),
        }
    }

    /// Checks every limit; the first violation is a `Configuration` error.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let bad = |msg: String| Err(StoreError::Configuration(msg));
        if let Some(size) = self.writer.stack_size {
            let gate = self.writer.gates.iter().map(|g| g.limits().stack_bytes).max().unwrap_or(0);
            let needed = crate::plugin::writer_stack_needed(gate, 0);
            if size < needed {
                return bad(format!(
                    "writer.stack_size {size} is below the {needed} bytes its gates' wasm stacks need"
                ));
            }
        }
        if self.segment_max_bytes == 0 || self.segment_max_bytes > MAX_SEGMENT_BYTES {
            return bad(format!("segment_max_bytes {} must be in 1..=3 GiB", self.segment_max_bytes));
        }
        if self.fd_budget == 0 {
            return bad("fd_budget must be > 0".into());
        }
        if self.broadcast_capacity == 0 {
            return bad("broadcast_capacity must be > 0".into());
        }
        if !(1..=64 * MIB).contains(&self.single_append_max_bytes) {
            return bad(format!(
                "single_append_max_bytes {} must be in 1..=64 MiB",
                self.single_append_max_bytes
            ));
        }
        if !(1..=4096).contains(&self.batch.max_size) {
            return bad(format!("batch.max_size {} must be in 1..=4096", self.batch.max_size));
        }
        if !(1..=16 * MIB).contains(&self.batch.max_bytes) {
            return bad(format!("batch.max_bytes {} must be in 1..=16 MiB", self.batch.max_bytes));
        }
        if self.writer.channel_capacity == 0 {
            return bad("writer.channel_capacity must be > 0".into());
        }
        if self.index.resident_events < MIN_RESIDENT_EVENTS {
            return bad(format!(
                "index.resident_events {} must be at least {MIN_RESIDENT_EVENTS} (u64::MAX keeps all)",
                self.index.resident_events
            ));
        }
        if self.index.event_cache_bytes > MAX_INDEX_CACHE_BYTES {
            return bad(format!(
                "index.event_cache_bytes {} must be at most {MAX_INDEX_CACHE_BYTES}",
                self.index.event_cache_bytes
            ));
        }
        if self.index.cache_bytes > MAX_INDEX_CACHE_BYTES {
            return bad(format!(
                "index.cache_bytes {} must be at most {MAX_INDEX_CACHE_BYTES}",
                self.index.cache_bytes
            ));
        }
        if self.index.replay_scratch_events > MAX_REPLAY_SCRATCH_EVENTS {
            return bad(format!(
                "replay_scratch_events {} must be at most {MAX_REPLAY_SCRATCH_EVENTS}",
                self.index.replay_scratch_events
            ));
        }
        if let RestartPolicy::Bounded { max_restarts: 0, .. } = self.writer.restart_policy {
            return bad("RestartPolicy::Bounded needs max_restarts > 0".into());
        }
        Ok(())
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("data_dir", &self.data_dir)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("fd_budget", &self.fd_budget)
            .field("broadcast_capacity", &self.broadcast_capacity)
            .field("single_append_max_bytes", &self.single_append_max_bytes)
            .field("batch", &self.batch)
            .field("writer", &self.writer)
            .field("sync", &self.sync)
            .field("index", &self.index)
            .field("clock", &self.clock.as_ref().map(|_| "custom"))
            .field("gates", &self.writer.gates.len())
            .field("replay_scratch_events", &self.index.replay_scratch_events)
            .finish_non_exhaustive()
    }
}

pub(crate) use batpak_types::clock::system_now_us;
