//! The WebAssembly plugin runtime: policy gates as sandboxed components.
//!
//! A gate is a component of the `gate-plugin` world (wit/batpak.wit) that
//! imports nothing but `host-state` (projection states, as of the last
//! committed event). The store compiles it once at install, keeps one live
//! instance per gate, and calls it inside the writer for every proposed
//! event, before the event gets a sequence. Each call runs under hard
//! limits (fuel, memory, stack); a guest that traps, runs out of fuel or
//! memory fails closed with a `GATE_DEFECT` denial and is re-instantiated
//! for the next call. It never crashes, hangs or corrupts the store.
//!
//! Projections (`ProjectionPlugin`) run under the same engine and limits.
//!
//! This module is not a general plugin host: no WASI, no host calls but
//! `host-state`, no async, no threads in guests.

mod bindings;
mod disk_cache;
mod error;
mod gate_instance;
mod limits;
mod projection_instance;

pub use error::PluginError;
pub use limits::{
    writer_stack_needed, PluginLimits, DEFAULT_WRITER_STACK, MAX_STACK_BYTES, MIN_STACK_BYTES,
    WRITER_STACK_MARGIN,
};
pub(crate) use projection_instance::{pack, LoadedProjection, ProjectionEvent};
pub use projection_instance::{ProjectionInfo, ProjectionPlugin};

use crate::coordinate::Coordinate;
use crate::event::EventKind;
use crate::guard::Denial;
pub(crate) use gate_instance::LoadedGate;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// The process-wide engine for guests whose wasm stack may reach
/// `stack_bytes`: fuel metering on, NaN canonicalisation on, component
/// model without async. The stack limit is an engine setting in wasmtime,
/// so each distinct limit gets an engine of its own (at most
/// [`MAX_ENGINES`]; a component is compiled for the engine of its limit).
pub(crate) fn engine(stack_bytes: usize) -> Result<&'static Engine, PluginError> {
    type Engines = parking_lot::Mutex<Vec<(usize, &'static Engine)>>;
    static ENGINES: OnceLock<Engines> = OnceLock::new();
    limits::check_stack(stack_bytes)?;
    let mut engines = ENGINES.get_or_init(Default::default).lock();
    if let Some((_, e)) = engines.iter().find(|(s, _)| *s == stack_bytes) {
        return Ok(e);
    }
    if engines.len() >= MAX_ENGINES {
        return Err(PluginError::InvalidLimits(format!(
            "at most {MAX_ENGINES} distinct wasm stack sizes per process (in use: {:?})",
            engines.iter().map(|(s, _)| s).collect::<Vec<_>>()
        )));
    }
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.cranelift_nan_canonicalization(true);
    config.max_wasm_stack(stack_bytes);
    let engine = Engine::new(&config).map_err(|e| PluginError::Engine(error::chain(&e)))?;
    // Engines live for the process: compiled components and instances
    // borrow them, and there are at most MAX_ENGINES.
    let engine: &'static Engine = Box::leak(Box::new(engine));
    start_epoch_ticker(engine)?;
    engines.push((stack_bytes, engine));
    Ok(engine)
}

/// How often every engine's epoch advances: the granularity of
/// `PluginLimits::deadline_ms`.
pub(crate) const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(EPOCH_TICK_MS);
const EPOCH_TICK_MS: u64 = 5;

/// Epoch ticks for a deadline of `ms` milliseconds: rounded up, plus one,
/// since the first tick may come at once. A call is stopped between `ms`
/// and `ms` + one tick after it starts.
pub(crate) fn deadline_ticks(ms: u64) -> u64 {
    ms.div_ceil(EPOCH_TICK_MS).saturating_add(1)
}

/// One thread for the process advances the epoch of every engine once per
/// [`EPOCH_TICK`], so a guest call past its deadline traps.
fn start_epoch_ticker(engine: &'static Engine) -> Result<(), PluginError> {
    static TICKED: OnceLock<parking_lot::Mutex<Vec<&'static Engine>>> = OnceLock::new();
    let mut started = Ok(());
    let ticked = TICKED.get_or_init(|| {
        started = std::thread::Builder::new()
            .name("batpak-epoch".into())
            .spawn(|| loop {
                std::thread::sleep(EPOCH_TICK);
                if let Some(list) = TICKED.get() {
                    list.lock().iter().for_each(|e| e.increment_epoch());
                }
            })
            .map(drop)
            .map_err(|e| PluginError::Engine(format!("could not start the epoch thread: {e}")));
        parking_lot::Mutex::new(Vec::new())
    });
    started?;
    ticked.lock().push(engine);
    Ok(())
}

/// Distinct wasm stack limits (hence engines) one process may use.
pub const MAX_ENGINES: usize = 8;

/// A gate component to install, with its limits.
#[derive(Clone)]
pub struct GatePlugin {
    bytes: Arc<[u8]>,
    name: Option<String>,
    limits: PluginLimits,
    /// Its compiled form once compiled, shared by every clone, keyed by the
    /// stack limit it was compiled for: rebuilding a chain of k gates to add
    /// one compiles only the new one, whatever k is.
    compiled: Arc<parking_lot::Mutex<Option<(usize, Component)>>>,
    /// Where compiled components are kept on disk (none: memory only).
    cache_dir: Option<Arc<Path>>,
}

impl std::fmt::Debug for GatePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatePlugin")
            .field("bytes", &self.bytes.len())
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish()
    }
}

impl GatePlugin {
    /// A plugin from component bytes (checked at install).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: Arc::from(bytes.into()),
            name: None,
            limits: PluginLimits::default(),
            compiled: Arc::default(),
            cache_dir: None,
        }
    }

    /// A plugin read from a `.wasm` component file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PluginError> {
        Ok(Self::from_bytes(read_component(path.as_ref())?))
    }

    /// Installs the gate under this name instead of the one it describes itself with.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Fuel per call.
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.limits.fuel_per_call = fuel;
        self
    }

    /// Largest linear memory in bytes.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.limits.memory_bytes = bytes;
        self
    }

    /// Every limit at once.
    pub fn with_limits(mut self, limits: PluginLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Keeps the compiled component in `dir` (created if missing), so the
    /// next process that installs the same component with the same engine
    /// settings loads it instead of compiling it. Damaged or foreign
    /// entries are detected and recompiled (see docs/guest-abi.md).
    pub fn with_compile_cache(mut self, dir: impl AsRef<Path>) -> Self {
        self.cache_dir = Some(Arc::from(dir.as_ref()));
        self
    }

    /// The limits this plugin will run under.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Whether `other` installs exactly as this does (same component
    /// bytes, name and limits).
    fn same_install(&self, other: &GatePlugin) -> bool {
        (Arc::ptr_eq(&self.bytes, &other.bytes) || self.bytes == other.bytes)
            && self.name == other.name
            && self.limits == other.limits
    }

    /// blake3 of the component bytes.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.bytes)
    }

    /// Compiles and instantiates the component (what install does).
    pub(crate) fn load(&self, states: Option<Arc<dyn StateReader>>) -> Result<LoadedGate, PluginError> {
        limits::check(&self.limits)?;
        let stack = self.limits.stack_bytes;
        // One digest of the bytes serves the memory cache, the disk cache
        // and the gate's identity (an 18 MB guest takes milliseconds to hash).
        let digest = self.digest();
        let mut memo = self.compiled.lock();
        let component = match memo.as_ref() {
            Some((s, c)) if *s == stack => c.clone(),
            _ => {
                let c = compile(&self.bytes, &digest, stack, self.cache_dir.as_deref())?;
                *memo = Some((stack, c.clone()));
                c
            }
        };
        drop(memo);
        LoadedGate::load(&component, digest, self.name.as_deref(), self.limits, states)
    }
}

#[cfg(feature = "blake3")]
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// [`digest`] fed in pieces: the same result for the same bytes.
#[cfg(feature = "blake3")]
#[derive(Default)]
pub(crate) struct Digester(blake3::Hasher);

#[cfg(feature = "blake3")]
impl Digester {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub(crate) fn finish(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

#[cfg(not(feature = "blake3"))]
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut d = Digester::default();
    d.update(bytes);
    d.finish()
}

/// [`digest`] fed in pieces: the same result for the same bytes.
#[cfg(not(feature = "blake3"))]
#[derive(Default)]
pub(crate) struct Digester(crc32fast::Hasher, u64);

#[cfg(not(feature = "blake3"))]
impl Digester {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
        self.1 += bytes.len() as u64;
    }
    pub(crate) fn finish(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..4].copy_from_slice(&self.0.clone().finalize().to_le_bytes());
        out[4..12].copy_from_slice(&self.1.to_le_bytes());
        out
    }
}

/// Compiled components by content digest: installing the same component
/// again (hot swap, reinstall, another store) reuses its machine code.
const COMPILE_CACHE_MAX: usize = 64;

type MemoryCache = parking_lot::Mutex<std::collections::HashMap<([u8; 32], usize), Component>>;
static COMPILE_CACHE: OnceLock<MemoryCache> = OnceLock::new();

static COMPILATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many components this process has compiled to machine code so far
/// (a diagnostic: installs and opens should compile each component once).
pub fn compilations() -> u64 {
    COMPILATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The compiled form of `bytes` for the engine of `stack_bytes`: from the
/// process-wide memory cache, else from `disk` (if given), else compiled.
pub(crate) fn compile(
    bytes: &[u8],
    component_digest: &[u8; 32],
    stack_bytes: usize,
    disk: Option<&Path>,
) -> Result<Component, PluginError> {
    let cache = COMPILE_CACHE.get_or_init(Default::default);
    let key = (*component_digest, stack_bytes);
    if let Some(found) = cache.lock().get(&key) {
        return Ok(found.clone());
    }
    let engine = engine(stack_bytes)?;
    let component = match disk {
        Some(dir) => disk_cache::load_or_compile(dir, bytes, component_digest, engine)?,
        None => compile_uncached(bytes, engine)?,
    };
    let mut cache = cache.lock();
    if cache.len() >= COMPILE_CACHE_MAX {
        // Forget one entry, not all: a chain of more gates than the cache
        // holds then recompiles only the ones that were dropped.
        if let Some(victim) = cache.keys().next().copied() {
            cache.remove(&victim);
        }
    }
    cache.insert(key, component.clone());
    Ok(component)
}

/// Drops every compiled component this process keeps in memory for reuse
/// (installed plugins keep theirs). The next install of another plugin
/// value compiles again, or loads from its disk cache.
pub fn clear_compile_cache() {
    if let Some(cache) = COMPILE_CACHE.get() {
        cache.lock().clear();
    }
}

pub(crate) fn compile_uncached(bytes: &[u8], engine: &Engine) -> Result<Component, PluginError> {
    COMPILATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    const COMPONENT_LAYER: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    if bytes.get(..4) != Some(b"\0asm") {
        return Err(PluginError::NotAComponent("missing the \\0asm magic: not WebAssembly".into()));
    }
    if bytes.get(4..8) != Some(&COMPONENT_LAYER[..]) {
        return Err(PluginError::NotAComponent(
            "this is a core WebAssembly module; make it a component (wit-component / `wasm-tools component new`)".into(),
        ));
    }
    Component::new(engine, bytes).map_err(|e| PluginError::NotAComponent(error::chain(&e)))
}

/// The bytes of a component file, with the path in the error.
pub(crate) fn read_component(path: &Path) -> Result<Vec<u8>, PluginError> {
    std::fs::read(path).map_err(|source| PluginError::Read { path: path.display().to_string(), source })
}

/// What a component file is, as `batpak guest info` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentInfo {
    /// Size in bytes.
    pub size: usize,
    /// blake3 of the bytes, hex.
    pub digest: String,
    /// Names the component imports (a gate may import only `host-state`).
    pub imports: Vec<String>,
    /// Names the component exports.
    pub exports: Vec<String>,
    /// `Ok` with the gate's name and version if it installs as a gate, else why not.
    pub gate: Result<(String, String), String>,
    /// `Ok` with what the projection declared if it installs as a projection, else why not.
    pub projection: Result<ProjectionInfo, String>,
}

/// Describes a component: size, hash, imports, exports, and whether it
/// installs as a gate (it is loaded with production limits to find out).
pub fn inspect_component(bytes: &[u8]) -> Result<ComponentInfo, PluginError> {
    let stack = PluginLimits::default().stack_bytes;
    let component_digest = digest(bytes);
    let component = compile(bytes, &component_digest, stack, None)?;
    let engine = engine(stack)?;
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(name, _)| name.to_string()).collect();
    let exports = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    let gate = LoadedGate::load(&component, component_digest, None, PluginLimits::default(), None)
        .map(|g| (g.name.to_string(), g.version))
        .map_err(|e| e.to_string());
    let projection =
        ProjectionPlugin::from_bytes(bytes.to_vec()).load().map(|p| p.info).map_err(|e| e.to_string());
    Ok(ComponentInfo {
        size: bytes.len(),
        digest: hex(&component_digest),
        imports,
        exports,
        gate,
        projection,
    })
}

/// Answers a gate's `projection-state` import.
pub(crate) trait StateReader: Send + Sync {
    /// The bytes projection `projection` returns for `key` (`None`: no
    /// data, or no such projection), and the fuel the projection burned
    /// answering. `Err` says why the projection cannot answer (it failed);
    /// the calling gate then fails closed.
    fn read(&self, projection: &str, key: &str) -> Result<StateRead, String>;
}

/// A projection's answer to a gate, and what it cost.
pub(crate) struct StateRead {
    pub state: Option<Vec<u8>>,
    /// Fuel the projection's `read` consumed (charged to the gate).
    pub fuel: u64,
}

/// What a gate sees of a proposed event.
pub(crate) struct GateInput<'a> {
    pub coord: &'a Coordinate,
    pub kind: EventKind,
    pub payload: &'a [u8],
    pub correlation_id: u128,
    pub causation_id: Option<u128>,
    /// The entity's latest clock before this event.
    pub clock: Option<u32>,
}

/// One gate of a recorded gate set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateInfo {
    /// Installed name.
    pub name: String,
    /// Version the gate reported.
    pub version: String,
    /// blake3 of the component, hex.
    pub digest: String,
}

/// A set of gates that admitted events, as recorded in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateSetInfo {
    /// Store-wide id (events carry it).
    pub id: u32,
    /// The gates, in evaluation order.
    pub gates: Vec<GateInfo>,
}

impl GateSetInfo {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.gates).unwrap_or_default()
    }

    pub(crate) fn decode(id: u32, body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok().map(|gates| Self { id, gates })
    }
}

/// The installed gates, owned by the writer, run in order, fail-fast.
#[derive(Default)]
pub(crate) struct GateChain {
    gates: Vec<LoadedGate>,
    /// Gate-set id and its encoded record (none when the chain is empty).
    record: Option<(u32, Vec<u8>)>,
}

impl GateChain {
    /// Loads every plugin; fails on the first that cannot be installed.
    pub(crate) fn build(
        plugins: &[GatePlugin],
        states: Option<Arc<dyn StateReader>>,
    ) -> Result<Self, PluginError> {
        let mut gates: Vec<LoadedGate> = Vec::with_capacity(plugins.len());
        for plugin in plugins {
            let gate = plugin.load(states.clone())?;
            if gates.iter().any(|g| g.name == gate.name) {
                return Err(PluginError::DuplicateName(gate.name.to_string()));
            }
            gates.push(gate);
        }
        Ok(Self { gates, record: None })
    }

    /// The gate set's id and record body, if any gate is installed.
    pub(crate) fn record(&self) -> Option<(u32, &[u8])> {
        self.record.as_ref().map(|(id, body)| (*id, body.as_slice()))
    }

    /// Whether no gate is installed.
    pub(crate) fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }

    /// Runs every gate; the first denial wins.
    pub(crate) fn evaluate(&mut self, input: &GateInput<'_>) -> Result<(), Denial> {
        for gate in &mut self.gates {
            gate.evaluate(input)?;
        }
        Ok(())
    }

    /// The gates this chain runs, as they would be recorded.
    pub(crate) fn infos(&self) -> Vec<GateInfo> {
        self.gates.iter().map(LoadedGate::info).collect()
    }

    /// Numbers the chain's gate set: an identical recorded set keeps its id.
    pub(crate) fn assign_set_id(&mut self, recorded: &[GateSetInfo], fresh: impl FnOnce() -> u32) {
        self.record = set_record(&self.infos(), recorded, fresh);
    }

    /// Installed gate names, in order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.gates.iter().map(|g| g.name.to_string()).collect()
    }

    /// Plans the chain `next` from the installed `now` (whose gates report
    /// `infos`): a plugin already installed (the same component bytes,
    /// name and limits) keeps its live instance, and only the others are
    /// compiled and instantiated, here on the caller's thread. Fails, with
    /// nothing changed, on the first plugin that cannot be loaded or on a
    /// duplicate name.
    pub(crate) fn plan(
        next: &[GatePlugin],
        now: &[GatePlugin],
        infos: &[GateInfo],
        states: Option<Arc<dyn StateReader>>,
    ) -> Result<ChainEdit, PluginError> {
        let mut used = vec![false; now.len()];
        let mut slots = Vec::with_capacity(next.len());
        let mut next_infos: Vec<GateInfo> = Vec::with_capacity(next.len());
        for plugin in next {
            let same = |(j, p): &(usize, &GatePlugin)| {
                !used[*j] && infos.get(*j).is_some() && p.same_install(plugin)
            };
            let (slot, info) = match now.iter().enumerate().find(same) {
                Some((j, _)) => {
                    used[j] = true;
                    (Slot::Keep(j), infos[j].clone())
                }
                None => {
                    let gate = plugin.load(states.clone())?;
                    let info = gate.info();
                    (Slot::New(Box::new(gate)), info)
                }
            };
            if next_infos.iter().any(|i| i.name == info.name) {
                return Err(PluginError::DuplicateName(info.name));
            }
            slots.push(slot);
            next_infos.push(info);
        }
        Ok(ChainEdit { slots, infos: next_infos, record: None })
    }

    /// Applies a planned edit (on the writer): kept gates move from this
    /// chain, new ones were loaded by [`GateChain::plan`].
    pub(crate) fn apply(&mut self, edit: ChainEdit) -> Result<(), String> {
        let mut old: Vec<Option<LoadedGate>> =
            std::mem::take(&mut self.gates).into_iter().map(Some).collect();
        let keeps_valid = edit.slots.iter().all(|s| match s {
            Slot::Keep(j) => old.get(*j).is_some_and(Option::is_some),
            Slot::New(_) => true,
        });
        if !keeps_valid {
            self.gates = old.into_iter().flatten().collect();
            return Err("the gate chain changed since the edit was planned".into());
        }
        let mut gates = Vec::with_capacity(edit.slots.len());
        for slot in edit.slots {
            match slot {
                Slot::Keep(j) => gates.extend(old.get_mut(j).and_then(Option::take)),
                Slot::New(g) => gates.push(*g),
            }
        }
        self.gates = gates;
        self.record = edit.record;
        Ok(())
    }
}

/// Where each gate of a new chain comes from.
pub(crate) enum Slot {
    /// The installed gate at this position, with its live instance.
    Keep(usize),
    /// A gate loaded for this edit.
    New(Box<LoadedGate>),
}

/// A new gate chain, planned off the writer: see [`GateChain::plan`].
pub(crate) struct ChainEdit {
    slots: Vec<Slot>,
    /// The new chain's gates, as they will be recorded.
    pub infos: Vec<GateInfo>,
    record: Option<(u32, Vec<u8>)>,
}

impl ChainEdit {
    /// Numbers the new gate set: an identical recorded set keeps its id.
    pub(crate) fn assign_set_id(&mut self, recorded: &[GateSetInfo], fresh: impl FnOnce() -> u32) {
        self.record = set_record(&self.infos, recorded, fresh);
    }
}

/// The gate-set record of a chain reporting `infos` (none if empty).
fn set_record(
    infos: &[GateInfo],
    recorded: &[GateSetInfo],
    fresh: impl FnOnce() -> u32,
) -> Option<(u32, Vec<u8>)> {
    if infos.is_empty() {
        return None;
    }
    let id = recorded.iter().find(|s| s.gates == infos).map_or_else(fresh, |s| s.id);
    Some((id, GateSetInfo { id, gates: infos.to_vec() }.encode()))
}

impl LoadedGate {
    fn info(&self) -> GateInfo {
        GateInfo { name: self.name.to_string(), version: self.version.clone(), digest: hex(&self.digest) }
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
