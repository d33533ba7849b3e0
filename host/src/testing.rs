//! A test harness for guest authors: load a gate or projection component
//! with production limits and assert its verdicts or states in
//! `cargo test`, no store needed.
//!
//! ```no_run
//! use batpak::testing::{GuestHarness, TestProposal};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), batpak::plugin::PluginError> {
//! let mut gate = GuestHarness::load("amount_limit.component.wasm")?;
//! gate.assert_allows(&TestProposal::json("acct:1", json!({"amount": 5})));
//! let denial = gate.assert_denies(&TestProposal::json("acct:1", json!({"amount": 50_000})), "AMOUNT_LIMIT");
//! assert_eq!(denial.context_value("limit"), Some("10000"));
//! # Ok(()) }
//! ```

use crate::coordinate::Coordinate;
use crate::event::EventKind;
use crate::guard::Denial;
use crate::plugin::{GateInput, GatePlugin, PluginError, ProjectionEvent, ProjectionPlugin};
use std::path::Path;

/// A proposal built for a test.
#[derive(Clone, Debug)]
pub struct TestProposal {
    /// Entity and scope.
    pub coord: Coordinate,
    /// Kind.
    pub kind: EventKind,
    /// Payload bytes (normally canonical JSON).
    pub payload: Vec<u8>,
    /// Correlation id.
    pub correlation_id: u128,
    /// Causation id.
    pub causation_id: Option<u128>,
    /// The entity's latest clock before this event.
    pub entity_clock: Option<u32>,
}

impl TestProposal {
    /// A `DATA` proposal for `entity` in scope `test` with a JSON payload.
    pub fn json(entity: &str, payload: serde_json::Value) -> Self {
        let coord = Coordinate::new(entity, "test")
            .unwrap_or_else(|_| Coordinate::from_shared("?".into(), "test".into()));
        Self {
            coord,
            kind: EventKind::DATA,
            payload: serde_json::to_vec(&payload).unwrap_or_default(),
            correlation_id: 1,
            causation_id: None,
            entity_clock: None,
        }
    }

    /// This proposal at another coordinate.
    pub fn at(mut self, coord: Coordinate) -> Self {
        self.coord = coord;
        self
    }

    /// This proposal with another kind.
    pub fn kind(mut self, kind: EventKind) -> Self {
        self.kind = kind;
        self
    }

    /// This proposal with the entity's latest clock set.
    pub fn clock(mut self, clock: Option<u32>) -> Self {
        self.entity_clock = clock;
        self
    }
}

/// One gate component under test.
pub struct GuestHarness {
    gate: crate::plugin::LoadedGate,
}

impl GuestHarness {
    /// Loads a component file with the production limits.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PluginError> {
        Self::from_plugin(GatePlugin::from_file(path)?)
    }

    /// Loads a plugin with its own limits.
    pub fn from_plugin(plugin: GatePlugin) -> Result<Self, PluginError> {
        Ok(Self { gate: plugin.load(None)? })
    }

    /// The name the gate describes itself with.
    pub fn name(&self) -> &str {
        self.gate.name
    }

    /// The version the gate reports.
    pub fn version(&self) -> &str {
        &self.gate.version
    }

    /// Runs the gate exactly as the store would.
    pub fn evaluate(&mut self, p: &TestProposal) -> Result<(), Denial> {
        let input = GateInput {
            coord: &p.coord,
            kind: p.kind,
            payload: &p.payload,
            correlation_id: p.correlation_id,
            causation_id: p.causation_id,
            clock: p.entity_clock,
        };
        self.gate.evaluate(&input)
    }

    /// Fuel the last [`GuestHarness::evaluate`] consumed, host calls
    /// included: what to measure before setting `PluginLimits::fuel_per_call`.
    pub fn last_fuel(&self) -> u64 {
        self.gate.last_fuel
    }

    /// Asserts the gate allows `p`.
    ///
    /// # Panics
    /// If the gate denies (this is a test assertion).
    #[allow(clippy::panic)] // an assertion helper for tests: panicking is its job
    pub fn assert_allows(&mut self, p: &TestProposal) {
        if let Err(d) = self.evaluate(p) {
            panic!("gate {} denied {}: {d}", self.name(), p.coord);
        }
    }

    /// Asserts the gate denies `p` with `code`; returns the denial.
    ///
    /// # Panics
    /// If the gate allows, or denies with another code.
    #[allow(clippy::panic)] // an assertion helper for tests: panicking is its job
    pub fn assert_denies(&mut self, p: &TestProposal, code: &str) -> Denial {
        match self.evaluate(p) {
            Ok(()) => panic!("gate {} allowed {} but {code} was expected", self.name(), p.coord),
            Err(d) if d.code == code => d,
            Err(d) => panic!("gate {} denied with {} ({}), expected {code}", self.name(), d.code, d.message),
        }
    }
}

/// One projection component under test: feed it events, read its state.
pub struct ProjectionHarness {
    proj: crate::plugin::LoadedProjection,
    next_sequence: u64,
    clocks: std::collections::HashMap<String, u32>,
}

impl ProjectionHarness {
    /// Loads a projection component with the production limits and starts it empty.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PluginError> {
        Self::from_plugin(ProjectionPlugin::from_file(path)?)
    }

    /// Loads a projection with its own limits and starts it empty.
    pub fn from_plugin(plugin: ProjectionPlugin) -> Result<Self, PluginError> {
        let mut proj = plugin.load()?;
        proj.init(None).map_err(PluginError::Instantiation)?;
        Ok(Self { proj, next_sequence: 0, clocks: std::collections::HashMap::new() })
    }

    /// What the projection declared.
    pub fn info(&self) -> &crate::plugin::ProjectionInfo {
        &self.proj.info
    }

    /// Folds one event (if the projection wants its kind and entity); the
    /// sequence and per-entity clock are assigned as the store would.
    /// `Err` carries the trap message.
    pub fn apply(
        &mut self,
        coord: &Coordinate,
        kind: EventKind,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        let bytes = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
        let clock = self.clocks.entry(coord.entity().to_string()).or_insert(0);
        let event = ProjectionEvent {
            coord,
            kind,
            payload: &bytes,
            event_id: u128::from(self.next_sequence) + 1,
            sequence: self.next_sequence,
            clock: *clock,
        };
        *clock += 1;
        self.next_sequence += 1;
        if self.proj.wants(coord, kind) {
            self.proj.apply(&event)?;
        }
        Ok(())
    }

    /// Folds `events` in one `apply-packed` call, the way the host catches a
    /// projection up (layout in docs/guest-abi.md). Sequences and clocks are
    /// assigned as [`ProjectionHarness::apply`] would, so folding the same
    /// events either way must give the same state. Events the projection
    /// does not want are skipped before packing; `Err` carries the trap.
    pub fn apply_packed(
        &mut self,
        events: &[(Coordinate, EventKind, serde_json::Value)],
    ) -> Result<(), String> {
        let mut packed = Vec::new();
        let mut count = 0;
        for (coord, kind, payload) in events {
            let bytes = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
            let clock = self.clocks.entry(coord.entity().to_string()).or_insert(0);
            let event = ProjectionEvent {
                coord,
                kind: *kind,
                payload: &bytes,
                event_id: u128::from(self.next_sequence) + 1,
                sequence: self.next_sequence,
                clock: *clock,
            };
            *clock += 1;
            self.next_sequence += 1;
            if self.proj.wants(coord, *kind) {
                crate::plugin::pack(&mut packed, &event);
                count += 1;
            }
        }
        if count == 0 {
            return Ok(());
        }
        self.proj.apply_packed(&packed, count)
    }

    /// Drops the live state and builds a new one from `snapshot` (bytes
    /// [`ProjectionHarness::snapshot`] returned), as the host does at open.
    pub fn restore(&mut self, snapshot: Vec<u8>) -> Result<(), String> {
        self.proj.init(Some(snapshot))
    }

    /// The state for `key`.
    pub fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.proj.read(key)
    }

    /// Fuel the last call into the projection consumed.
    pub fn last_fuel(&self) -> u64 {
        self.proj.last_fuel()
    }

    /// The whole state (the projection's snapshot bytes).
    pub fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        self.proj.snapshot()
    }
}
