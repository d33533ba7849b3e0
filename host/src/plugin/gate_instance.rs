//! One installed gate: its compiled component, its pre-instantiation, and a
//! live instance reused across calls. A trap poisons a wasmtime store, so
//! after any trap the store is dropped and the next call re-instantiates
//! from the pre-instantiated component.

use super::bindings::gate::batpak::plugin::types as wit_types;
use super::bindings::gate::exports::batpak::plugin::gate as wit_gate;
use super::bindings::gate::{GatePlugin as WitGate, GatePluginPre};
use super::error::{chain, PluginError};
use super::limits::{truncate_utf8, GuestState, PluginLimits};
use super::{GateInput, StateRead, StateReader};
use crate::guard::denial::{intern_gate_name, MAX_INTERNED_GATE_NAMES};
use crate::guard::Denial;
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::{Store, StoreContextMut, Trap};

/// The one interface a gate may import.
const HOST_STATE: &str = "batpak:plugin/host-state@0.1.0";
/// The interface of shared types (no functions; linked so that a component
/// naming it as an import still links).
const TYPES: &str = "batpak:plugin/types@0.1.0";
/// Fuel charged for each `projection-state` call, before any byte moves.
pub const HOST_CALL_FUEL: u64 = 1_000;
/// Bytes copied across the boundary per unit of fuel charged.
pub const HOST_BYTES_PER_FUEL: u64 = 1;
/// Longest key `projection-state` accepts; a longer one fails the gate closed.
pub const MAX_STATE_KEY_BYTES: usize = 16 * 1024;

/// A gate ready to evaluate proposals.
pub(crate) struct LoadedGate {
    pub name: &'static str,
    pub version: String,
    pub digest: [u8; 32],
    limits: PluginLimits,
    pre: GatePluginPre<GuestState>,
    live: Option<(Store<GuestState>, WitGate)>,
    /// Calls that ended in a trap (for diagnostics).
    pub defects: u64,
    /// Fuel the last `evaluate` consumed (host calls included).
    pub last_fuel: u64,
    /// What `host-state` answers from.
    states: Option<Arc<dyn StateReader>>,
}

impl LoadedGate {
    /// Validates, links and instantiates `component`; asks it to describe itself.
    pub(crate) fn load(
        component: &Component,
        digest: [u8; 32],
        name: Option<&str>,
        limits: PluginLimits,
        states: Option<Arc<dyn StateReader>>,
    ) -> Result<Self, PluginError> {
        let engine = component.engine();
        let mut linker: Linker<GuestState> = Linker::new(engine);
        link_host_state(&mut linker).map_err(|e| PluginError::Engine(chain(&e)))?;
        let wrong = |e: wasmtime::Error| PluginError::WrongWorld(format!("not a gate-plugin: {}", chain(&e)));
        let pre = linker.instantiate_pre(component).map_err(wrong)?;
        let pre = GatePluginPre::new(pre).map_err(wrong)?;
        let mut gate = Self {
            name: "",
            version: String::new(),
            digest,
            limits,
            pre,
            live: None,
            defects: 0,
            last_fuel: 0,
            states,
        };
        let (mut store, instance) = gate.instantiate().map_err(|e| PluginError::Instantiation(chain(&e)))?;
        store.set_fuel(limits.fuel_per_call).map_err(|e| PluginError::Engine(chain(&e)))?;
        store.set_epoch_deadline(super::deadline_ticks(limits.deadline_ms));
        let desc = instance
            .batpak_plugin_gate()
            .call_describe(&mut store)
            .map_err(|e| PluginError::Instantiation(format!("describe() failed: {}", chain(&e))))?;
        let chosen = truncate_utf8(name.map_or(desc.name, str::to_string), 256);
        gate.name = intern_gate_name(&chosen).ok_or_else(|| {
            PluginError::InvalidName(format!(
                "gate name {chosen:?}: this process already holds {MAX_INTERNED_GATE_NAMES} distinct gate names"
            ))
        })?;
        gate.version = truncate_utf8(desc.version, 64);
        gate.live = Some((store, instance));
        Ok(gate)
    }

    fn instantiate(&self) -> wasmtime::Result<(Store<GuestState>, WitGate)> {
        let state = GuestState::new(self.limits.memory_bytes, self.states.clone());
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| s);
        store.set_fuel(self.limits.fuel_per_call)?;
        store.set_epoch_deadline(super::deadline_ticks(self.limits.instantiate_ms));
        let instance = self.pre.instantiate(&mut store)?;
        Ok((store, instance))
    }

    /// Runs the gate on one proposal. Any fault fails closed as a
    /// `GATE_DEFECT` denial; the next call starts from a fresh instance.
    pub(crate) fn evaluate(&mut self, input: &GateInput<'_>) -> Result<(), Denial> {
        if self.live.is_none() {
            match self.instantiate() {
                Ok(live) => self.live = Some(live),
                Err(e) => return Err(self.defect("instantiation failed", chain(&e))),
            }
        }
        let Some((store, instance)) = self.live.as_mut() else {
            return Err(self.defect("instantiation failed", "no instance".into()));
        };
        if let Err(e) = store.set_fuel(self.limits.fuel_per_call) {
            return Err(self.defect("engine error", chain(&e)));
        }
        store.set_epoch_deadline(super::deadline_ticks(self.limits.deadline_ms));
        store.data_mut().memory_refused = false;
        store.data_mut().host_failure = None;
        let proposal = to_wit(input);
        let result = instance.batpak_plugin_gate().call_evaluate(&mut *store, &proposal);
        self.last_fuel = self.limits.fuel_per_call.saturating_sub(store.get_fuel().unwrap_or(0));
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(denial)) => Err(self.denial_from_guest(denial)),
            Err(e) => {
                let (kind, detail) = match (store.data_mut().host_failure.take(), e.downcast_ref::<Trap>()) {
                    (Some((kind, detail)), _) => (kind, detail),
                    (None, Some(Trap::OutOfFuel)) => ("out of fuel", chain(&e)),
                    (None, Some(Trap::Interrupt)) => ("deadline exceeded", chain(&e)),
                    (None, Some(Trap::StackOverflow)) => ("stack overflow", chain(&e)),
                    (None, _) if store.data().memory_refused => ("out of memory", chain(&e)),
                    (None, _) => ("trap", chain(&e)),
                };
                self.live = None;
                Err(self.defect(kind, detail))
            }
        }
    }

    fn defect(&mut self, kind: &str, detail: String) -> Denial {
        self.defects += 1;
        tracing::warn!(gate = %self.name, cause = kind, %detail, "gate failed closed");
        Denial::new(self.name, format!("gate {} failed: {kind}", self.name))
            .with_code("GATE_DEFECT")
            .with_context("cause", kind)
            .with_context("detail", truncate_utf8(detail, self.limits.max_message_bytes))
    }

    fn denial_from_guest(&self, d: wit_gate::Denial) -> Denial {
        let mut denial = Denial::new(self.name, truncate_utf8(d.message, self.limits.max_message_bytes))
            .with_code(truncate_utf8(d.code, 128));
        for (k, v) in d.context.into_iter().take(self.limits.max_context_pairs) {
            denial =
                denial.with_context(truncate_utf8(k, 256), truncate_utf8(v, self.limits.max_message_bytes));
        }
        if !d.gate.is_empty() && d.gate != self.name {
            denial = denial.with_context("guest_gate_name", truncate_utf8(d.gate, 256));
        }
        denial
    }
}

fn to_wit(input: &GateInput<'_>) -> wit_gate::Proposal {
    let id = |v: u128| wit_types::Id128 { hi: (v >> 64) as u64, lo: v as u64 };
    wit_gate::Proposal {
        coordinate: wit_types::Coordinate {
            entity: input.coord.entity().to_string(),
            scope: input.coord.scope().to_string(),
        },
        kind: input.kind.as_raw(),
        payload: input.payload.to_vec(),
        correlation_id: id(input.correlation_id),
        causation_id: input.causation_id.map(id),
        entity_clock: input.clock,
    }
}

/// Defines `host-state.projection-state` for gates: every call is charged
/// to the calling gate's fuel (a fixed cost, the bytes copied each way, and
/// the fuel the projection burned answering), its key is capped, and a
/// projection that cannot answer fails the gate closed.
fn link_host_state(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.instance(TYPES)?;
    linker.instance(HOST_STATE)?.func_wrap(
        "projection-state",
        |mut cx: StoreContextMut<'_, GuestState>, (projection, key): (String, String)| {
            projection_state(&mut cx, &projection, &key).map(|state| (state,))
        },
    )
}

fn projection_state(
    cx: &mut StoreContextMut<'_, GuestState>,
    projection: &str,
    key: &str,
) -> wasmtime::Result<Option<Vec<u8>>> {
    let copied_in = (projection.len() + key.len()) as u64;
    charge(cx, HOST_CALL_FUEL.saturating_add(copied_in / HOST_BYTES_PER_FUEL))?;
    if key.len() > MAX_STATE_KEY_BYTES {
        let why = format!("projection-state key of {} bytes (at most {MAX_STATE_KEY_BYTES})", key.len());
        return Err(refuse(cx, "host call refused", why));
    }
    let Some(states) = cx.data().states.clone() else { return Ok(None) };
    match states.read(projection, key) {
        Ok(StateRead { state, fuel }) => {
            let copied_out = state.as_ref().map_or(0, |s| s.len() as u64);
            charge(cx, fuel.saturating_add(copied_out / HOST_BYTES_PER_FUEL))?;
            Ok(state)
        }
        Err(why) => {
            Err(refuse(cx, "projection failed", format!("projection `{projection}` cannot answer: {why}")))
        }
    }
}

/// Takes `fuel` from the calling gate; when it has less, the gate is out.
fn charge(cx: &mut StoreContextMut<'_, GuestState>, fuel: u64) -> wasmtime::Result<()> {
    let left = cx.get_fuel()?;
    match left.checked_sub(fuel) {
        Some(rest) => cx.set_fuel(rest),
        None => {
            cx.set_fuel(0)?;
            Err(refuse(cx, "out of fuel", format!("a host call cost {fuel} fuel with {left} left")))
        }
    }
}

/// Records why a host call refused, and the trap that fails the gate.
fn refuse(cx: &mut StoreContextMut<'_, GuestState>, cause: &'static str, why: String) -> wasmtime::Error {
    cx.data_mut().host_failure = Some((cause, why.clone()));
    wasmtime::Error::msg(why)
}
