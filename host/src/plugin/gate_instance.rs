//! One installed gate: its compiled component, its pre-instantiation, and a
//! live instance reused across calls. A trap poisons a wasmtime store, so
//! after any trap the store is dropped and the next call re-instantiates
//! from the pre-instantiated component.

use super::bindings::gate::batpak::plugin::types as wit_types;
use super::bindings::gate::exports::batpak::plugin::gate as wit_gate;
use super::bindings::gate::{GatePlugin as WitGate, GatePluginPre};
use super::error::{chain, PluginError};
use super::limits::{truncate_utf8, GuestState, PluginLimits};
use super::{GateInput, StateReader};
use crate::guard::Denial;
use std::sync::Arc;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Store, Trap};

/// A gate ready to evaluate proposals.
pub(crate) struct LoadedGate {
    pub name: String,
    pub version: String,
    pub digest: [u8; 32],
    limits: PluginLimits,
    pre: GatePluginPre<GuestState>,
    live: Option<(Store<GuestState>, WitGate)>,
    /// Calls that ended in a trap (for diagnostics).
    pub defects: u64,
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
        WitGate::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Engine(chain(&e)))?;
        let wrong = |e: wasmtime::Error| PluginError::WrongWorld(format!("not a gate-plugin: {}", chain(&e)));
        let pre = linker.instantiate_pre(component).map_err(wrong)?;
        let pre = GatePluginPre::new(pre).map_err(wrong)?;
        let mut gate = Self {
            name: String::new(),
            version: String::new(),
            digest,
            limits,
            pre,
            live: None,
            defects: 0,
            states,
        };
        let (mut store, instance) = gate.instantiate().map_err(|e| PluginError::Instantiation(chain(&e)))?;
        store.set_fuel(limits.fuel_per_call).map_err(|e| PluginError::Engine(chain(&e)))?;
        let desc = instance
            .batpak_plugin_gate()
            .call_describe(&mut store)
            .map_err(|e| PluginError::Instantiation(format!("describe() failed: {}", chain(&e))))?;
        gate.name = truncate_utf8(name.map_or(desc.name, str::to_string), 256);
        gate.version = truncate_utf8(desc.version, 64);
        gate.live = Some((store, instance));
        Ok(gate)
    }

    fn instantiate(&self) -> wasmtime::Result<(Store<GuestState>, WitGate)> {
        let state = GuestState {
            memory_bytes: self.limits.memory_bytes,
            memory_refused: false,
            states: self.states.clone(),
            host_failure: None,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| s);
        store.set_fuel(self.limits.fuel_per_call)?;
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
        store.data_mut().memory_refused = false;
        store.data_mut().host_failure = None;
        let proposal = to_wit(input);
        match instance.batpak_plugin_gate().call_evaluate(&mut *store, &proposal) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(denial)) => Err(self.denial_from_guest(denial)),
            Err(e) => {
                let host_failure = store.data_mut().host_failure.take();
                let kind = match e.downcast_ref::<Trap>() {
                    _ if host_failure.is_some() => "projection failed",
                    Some(Trap::OutOfFuel) => "out of fuel",
                    Some(Trap::StackOverflow) => "stack overflow",
                    _ if store.data().memory_refused => "out of memory",
                    _ => "trap",
                };
                let detail = host_failure.unwrap_or_else(|| chain(&e));
                self.live = None;
                Err(self.defect(kind, detail))
            }
        }
    }

    fn defect(&mut self, kind: &str, detail: String) -> Denial {
        self.defects += 1;
        tracing::warn!(gate = %self.name, cause = kind, %detail, "gate failed closed");
        Denial::new(self.name.clone(), format!("gate {} failed: {kind}", self.name))
            .with_code("GATE_DEFECT")
            .with_context("cause", kind)
            .with_context("detail", truncate_utf8(detail, self.limits.max_message_bytes))
    }

    fn denial_from_guest(&self, d: wit_gate::Denial) -> Denial {
        let mut denial =
            Denial::new(self.name.clone(), truncate_utf8(d.message, self.limits.max_message_bytes))
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

impl super::bindings::gate::batpak::plugin::host_state::Host for GuestState {
    fn projection_state(&mut self, projection: String, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let Some(states) = self.states.as_ref() else { return Ok(None) };
        match states.read(&projection, &key) {
            Ok(state) => Ok(state),
            Err(why) => {
                let why = format!("projection `{projection}` cannot answer: {why}");
                self.host_failure = Some(why.clone());
                Err(wasmtime::Error::msg(why))
            }
        }
    }
}

impl super::bindings::gate::batpak::plugin::types::Host for GuestState {}
