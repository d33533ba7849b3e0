//! One projection component: compiled, instantiated, fed events. A trap
//! poisons the instance; the owner marks the projection failed.

use super::bindings::projection::batpak::plugin::types as wit_types;
use super::bindings::projection::{ProjectionPlugin as WitProjection, ProjectionPluginPre};
use super::error::{chain, PluginError};
use super::limits::{truncate_utf8, GuestState, PluginLimits};
use super::{compile, digest, hex};
use crate::coordinate::Coordinate;
use crate::event::EventKind;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{Linker, ResourceAny};
use wasmtime::Store;

/// A projection component to install, with its limits.
#[derive(Clone)]
pub struct ProjectionPlugin {
    bytes: Arc<[u8]>,
    limits: PluginLimits,
    snapshot_every: u64,
    background: bool,
    /// Where compiled components are kept on disk (none: memory only).
    cache_dir: Option<Arc<Path>>,
}

impl std::fmt::Debug for ProjectionPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionPlugin")
            .field("bytes", &self.bytes.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl ProjectionPlugin {
    /// A projection from component bytes (checked at install).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: Arc::from(bytes.into()),
            limits: PluginLimits::default(),
            snapshot_every: 10_000,
            background: false,
            cache_dir: None,
        }
    }

    /// A projection read from a `.wasm` component file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PluginError> {
        Ok(Self::from_bytes(super::read_component(path.as_ref())?))
    }

    /// Fuel per call (each `apply`, `read`, `snapshot`).
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.limits.fuel_per_call = fuel;
        self
    }

    /// Largest linear memory in bytes.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.limits.memory_bytes = bytes;
        self
    }

    /// Every limit at once (fuel, memory, stack, deadline; checked at install).
    pub fn with_limits(mut self, limits: PluginLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Keeps the compiled component in `dir` (see
    /// `GatePlugin::with_compile_cache`).
    pub fn with_compile_cache(mut self, dir: impl AsRef<Path>) -> Self {
        self.cache_dir = Some(Arc::from(dir.as_ref()));
        self
    }

    /// Persist a snapshot every `n` applied events (default 10 000; 0 = only at close).
    pub fn with_snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = n;
        self
    }

    /// Fold off the append path, on the store's projector thread, after each
    /// publish. Appends no longer wait for this projection, but its state may
    /// lag the log, so a gate must not rely on it (gates should read
    /// projections folded in the writer, the default).
    pub fn in_background(mut self) -> Self {
        self.background = true;
        self
    }

    pub(crate) fn in_background_mode(&self) -> bool {
        self.background
    }

    /// The wasm stack limit it runs under.
    pub(crate) fn stack_bytes(&self) -> usize {
        self.limits.stack_bytes
    }

    pub(crate) fn snapshot_every(&self) -> u64 {
        self.snapshot_every
    }

    pub(crate) fn load(&self) -> Result<LoadedProjection, PluginError> {
        super::limits::check(&self.limits)?;
        LoadedProjection::load(&self.bytes, self.limits, self.cache_dir.as_deref())
    }
}

/// What a projection declared about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectionInfo {
    /// Declared name.
    pub name: String,
    /// Declared version.
    pub version: String,
    /// Declared schema version.
    pub schema_version: u64,
    /// Kinds it receives (empty: all).
    pub kinds: Vec<u16>,
    /// Entity prefix it receives.
    pub entity_prefix: String,
    /// blake3 of the component, hex.
    pub digest: String,
}

/// One event handed to projections.
pub(crate) struct ProjectionEvent<'a> {
    pub coord: &'a Coordinate,
    pub kind: EventKind,
    pub payload: &'a [u8],
    pub event_id: u128,
    pub sequence: u64,
    pub clock: u32,
}

/// A live projection instance.
pub(crate) struct LoadedProjection {
    pub info: ProjectionInfo,
    limits: PluginLimits,
    pre: ProjectionPluginPre<GuestState>,
    live: Option<Live>,
    /// Fuel the last guest call consumed.
    last_fuel: u64,
}

/// An instance and the one `state` resource it holds for the host.
struct Live {
    store: Store<GuestState>,
    instance: WitProjection,
    /// Built by `init`; `None` until then.
    state: Option<ResourceAny>,
}

impl LoadedProjection {
    fn load(bytes: &[u8], limits: PluginLimits, disk: Option<&Path>) -> Result<Self, PluginError> {
        let component_digest = digest(bytes);
        let component = compile(bytes, &component_digest, limits.stack_bytes, disk)?;
        let linker: Linker<GuestState> = Linker::new(component.engine());
        let wrong =
            |e: wasmtime::Error| PluginError::WrongWorld(format!("not a projection-plugin: {}", chain(&e)));
        let pre = linker.instantiate_pre(&component).map_err(wrong)?;
        let pre = ProjectionPluginPre::new(pre).map_err(wrong)?;
        let mut me = Self {
            info: ProjectionInfo {
                name: String::new(),
                version: String::new(),
                schema_version: 0,
                kinds: Vec::new(),
                entity_prefix: String::new(),
                digest: hex(&component_digest),
            },
            limits,
            pre,
            live: None,
            last_fuel: 0,
        };
        me.instantiate().map_err(|e| PluginError::Instantiation(chain(&e)))?;
        let desc = me
            .call(|inst, store, _| inst.batpak_plugin_projection().call_describe(store))
            .map_err(|e| PluginError::Instantiation(format!("describe() failed: {e}")))?;
        me.info.name = truncate_utf8(desc.name, 64);
        me.info.version = truncate_utf8(desc.version, 64);
        me.info.schema_version = desc.schema_version;
        me.info.kinds = desc.kinds;
        me.info.entity_prefix = desc.entity_prefix;
        Ok(me)
    }

    fn instantiate(&mut self) -> wasmtime::Result<()> {
        let state = GuestState::new(self.limits.memory_bytes, None);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| s);
        store.set_fuel(self.limits.fuel_per_call)?;
        store.set_epoch_deadline(super::deadline_ticks(self.limits.instantiate_ms));
        let instance = self.pre.instantiate(&mut store)?;
        self.live = Some(Live { store, instance, state: None });
        Ok(())
    }

    /// Runs one guest call under a fresh fuel budget; a trap drops the instance.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&WitProjection, &mut Store<GuestState>, Option<ResourceAny>) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        self.call_with_fuel(self.limits.fuel_per_call, f)
    }

    /// [`LoadedProjection::call`] with a budget of `fuel`.
    fn call_with_fuel<R>(
        &mut self,
        fuel: u64,
        f: impl FnOnce(&WitProjection, &mut Store<GuestState>, Option<ResourceAny>) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        let Some(Live { store, instance, state }) = self.live.as_mut() else {
            return Err("no live instance".into());
        };
        store.set_fuel(fuel).map_err(|e| chain(&e))?;
        // A call with the fuel of n calls (a packed fold) gets n deadlines.
        let calls = (fuel / self.limits.fuel_per_call.max(1)).max(1);
        store.set_epoch_deadline(super::deadline_ticks(self.limits.deadline_ms).saturating_mul(calls));
        store.data_mut().memory_refused = false;
        let result = f(instance, store, *state);
        self.last_fuel = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                let why = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::OutOfFuel) => format!("out of fuel: {}", chain(&e)),
                    Some(wasmtime::Trap::Interrupt) => format!("deadline exceeded: {}", chain(&e)),
                    _ if store.data().memory_refused => format!("out of memory: {}", chain(&e)),
                    _ => chain(&e),
                };
                self.live = None;
                Err(truncate_utf8(why, self.limits.max_message_bytes))
            }
        }
    }

    /// Starts the state afresh, or from a snapshot: drops the old `state`
    /// resource (if any) and constructs a new one.
    pub(crate) fn init(&mut self, snapshot: Option<Vec<u8>>) -> Result<(), String> {
        if self.live.is_none() {
            self.instantiate().map_err(|e| chain(&e))?;
        }
        if let Some(old) = self.live.as_mut().and_then(|l| l.state.take()) {
            self.call(|_, s, _| old.resource_drop(s))?;
        }
        let built = self
            .call(|i, s, _| i.batpak_plugin_projection().state().call_constructor(s, snapshot.as_deref()))?;
        if let Some(live) = self.live.as_mut() {
            live.state = Some(built);
        }
        Ok(())
    }

    /// The same call with the live `state` resource, which `init` built.
    fn with_state<R>(
        &mut self,
        f: impl FnOnce(&WitProjection, &mut Store<GuestState>, ResourceAny) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        self.with_state_fuel(self.limits.fuel_per_call, f)
    }

    fn with_state_fuel<R>(
        &mut self,
        fuel: u64,
        f: impl FnOnce(&WitProjection, &mut Store<GuestState>, ResourceAny) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        self.call_with_fuel(fuel, |i, s, state| match state {
            Some(state) => f(i, s, state),
            None => Err(wasmtime::Error::msg("the projection state was not built (init not called)")),
        })
    }

    /// Whether the projection wants this event.
    pub(crate) fn wants(&self, coord: &Coordinate, kind: EventKind) -> bool {
        (self.info.kinds.is_empty() || self.info.kinds.contains(&kind.as_raw()))
            && coord.entity().starts_with(&self.info.entity_prefix)
    }

    pub(crate) fn apply(&mut self, e: &ProjectionEvent<'_>) -> Result<(), String> {
        let event = wit_types::Event {
            coordinate: wit_types::Coordinate {
                entity: e.coord.entity().into(),
                scope: e.coord.scope().into(),
            },
            kind: e.kind.as_raw(),
            payload: e.payload.to_vec(),
            event_id: wit_types::Id128 { hi: (e.event_id >> 64) as u64, lo: e.event_id as u64 },
            sequence: e.sequence,
            clock: e.clock,
        };
        self.with_state(|i, s, st| i.batpak_plugin_projection().state().call_apply(s, st, &event))
    }

    /// Folds `count` events packed by [`pack`] in one guest call, with the
    /// fuel of `count` single calls.
    pub(crate) fn apply_packed(&mut self, packed: &[u8], count: usize) -> Result<(), String> {
        let fuel = self.limits.fuel_per_call.saturating_mul(count.max(1) as u64);
        self.with_state_fuel(fuel, |i, s, st| {
            i.batpak_plugin_projection().state().call_apply_packed(s, st, packed)
        })
    }

    pub(crate) fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        self.with_state(|i, s, st| i.batpak_plugin_projection().state().call_snapshot(s, st))
    }

    /// Fuel the last guest call consumed.
    pub(crate) fn last_fuel(&self) -> u64 {
        self.last_fuel
    }

    pub(crate) fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.with_state(|i, s, st| i.batpak_plugin_projection().state().call_read(s, st, key))
    }
}

/// Appends `e` to a batch for `apply-packed` (layout in docs/guest-abi.md):
/// `u16 kind, u64 sequence, u32 clock, u64 id high, u64 id low`, then
/// entity, scope and payload, each as `u32 length, bytes`; little-endian.
pub(crate) fn pack(out: &mut Vec<u8>, e: &ProjectionEvent<'_>) {
    out.extend_from_slice(&e.kind.as_raw().to_le_bytes());
    out.extend_from_slice(&e.sequence.to_le_bytes());
    out.extend_from_slice(&e.clock.to_le_bytes());
    out.extend_from_slice(&((e.event_id >> 64) as u64).to_le_bytes());
    out.extend_from_slice(&(e.event_id as u64).to_le_bytes());
    for field in [e.coord.entity().as_bytes(), e.coord.scope().as_bytes(), e.payload] {
        out.extend_from_slice(&(field.len() as u32).to_le_bytes());
        out.extend_from_slice(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of docs/guest-abi.md is what `pack` produces.
    #[test]
    fn the_documented_packed_example_is_what_the_host_packs() {
        let coord = Coordinate::new("acct:a", "bank").unwrap();
        let event = ProjectionEvent {
            coord: &coord,
            kind: EventKind::from_raw(0x1001),
            payload: br#"{"amount":5}"#,
            event_id: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
            sequence: 7,
            clock: 2,
        };
        let mut packed = Vec::new();
        pack(&mut packed, &event);
        let doc = include_str!("../../../docs/guest-abi.md");
        let start = doc.find("```text\n01 10").expect("the worked example is in the doc") + "```text\n".len();
        let table = &doc[start..start + doc[start..].find("```").expect("the table ends")];
        let documented: Vec<u8> = table
            .lines()
            .flat_map(|line| line.split("  ").next().unwrap_or("").split_whitespace())
            .map(|byte| u8::from_str_radix(byte, 16).unwrap())
            .collect();
        assert_eq!(documented, packed);
    }
}
