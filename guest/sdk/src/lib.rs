//! # batpak-guest
//!
//! Write a batpak policy gate in a few lines of Rust:
//!
//! ```no_run
//! use batpak_guest::{export_gate, Denial, Gate, Proposal};
//!
//! struct MaxAmount;
//!
//! impl Gate for MaxAmount {
//!     const NAME: &'static str = "max-amount";
//!     fn evaluate(p: &Proposal) -> Result<(), Denial> {
//!         let amount = p.u64_field("amount").unwrap_or(0);
//!         if amount > 1_000 {
//!             return Err(Denial::new("AMOUNT_LIMIT", "amount over 1000").with("amount", amount));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_gate!(MaxAmount);
//! ```
//!
//! Build with `cargo build --target wasm32-unknown-unknown --release`, then
//! make the core module a component (the batpak test-artifacts crate does
//! this with `wit-component`). The component imports nothing, or only
//! `host-state` if it calls [`projection_state`].
//!
//! The generated bindings live in hidden modules; authors only see
//! [`Gate`], [`Proposal`], [`Denial`], [`export_gate!`], and for projections
//! [`projection::Projection`] and [`export_projection!`].

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "wit",
        world: "gate-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_gate_world",
        default_bindings_module: "batpak_guest::wit",
    });
}

pub mod projection;

use wit::batpak::plugin::types as t;

/// The state projection `projection` holds for `key`, as of the last
/// committed event (gates only: the host answers inside the writer, so a
/// decision and the append it guards are serialised).
pub fn projection_state(projection: &str, key: &str) -> Option<Vec<u8>> {
    wit::batpak::plugin::host_state::projection_state(projection, key)
}

/// [`projection_state`] parsed as JSON.
pub fn projection_json(projection: &str, key: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&projection_state(projection, key)?).ok()
}

/// An event proposed for append, as a gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Entity name.
    pub entity: String,
    /// Scope name.
    pub scope: String,
    /// Event kind (upper 4 bits category, lower 12 bits type).
    pub kind: u16,
    /// Payload as canonical JSON bytes.
    pub payload: Vec<u8>,
    /// Correlation id.
    pub correlation_id: u128,
    /// Causation id.
    pub causation_id: Option<u128>,
    /// The entity's latest clock before this event (`None`: first event).
    pub entity_clock: Option<u32>,
}

impl Proposal {
    /// The kind's category (upper 4 bits).
    pub fn category(&self) -> u8 {
        (self.kind >> 12) as u8
    }

    /// The payload parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }

    /// The payload parsed into `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }

    /// A top-level field of a JSON object payload.
    pub fn field(&self, name: &str) -> Option<serde_json::Value> {
        match self.json().ok()? {
            serde_json::Value::Object(mut map) => map.remove(name),
            _ => None,
        }
    }

    /// A top-level unsigned integer field.
    pub fn u64_field(&self, name: &str) -> Option<u64> {
        self.field(name)?.as_u64()
    }

    /// A top-level string field.
    pub fn str_field(&self, name: &str) -> Option<String> {
        self.field(name)?.as_str().map(ToString::to_string)
    }
}

/// Why a gate refuses a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Machine-readable code.
    pub code: String,
    /// For people.
    pub message: String,
    /// Extra facts.
    pub context: Vec<(String, String)>,
}

impl Denial {
    /// A denial with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), context: Vec::new() }
    }

    /// This denial with one more context pair.
    pub fn with(mut self, key: impl Into<String>, value: impl core::fmt::Display) -> Self {
        self.context.push((key.into(), format!("{value}")));
        self
    }
}

/// A policy gate. Implement it, then `export_gate!(YourType)`.
pub trait Gate {
    /// The gate's name.
    const NAME: &'static str;
    /// The gate's version.
    const VERSION: &'static str = "0.1.0";
    /// Allow or deny one proposal. Must be deterministic.
    fn evaluate(proposal: &Proposal) -> Result<(), Denial>;
}

#[doc(hidden)]
pub fn __describe<G: Gate>() -> t::Description {
    t::Description { name: G::NAME.to_string(), version: G::VERSION.to_string() }
}

#[doc(hidden)]
pub fn __evaluate<G: Gate>(p: t::Proposal) -> Result<(), t::Denial> {
    let id = |v: t::Id128| (u128::from(v.hi) << 64) | u128::from(v.lo);
    let proposal = Proposal {
        entity: p.coordinate.entity,
        scope: p.coordinate.scope,
        kind: p.kind,
        payload: p.payload,
        correlation_id: id(p.correlation_id),
        causation_id: p.causation_id.map(id),
        entity_clock: p.entity_clock,
    };
    G::evaluate(&proposal).map_err(|d| t::Denial {
        gate: G::NAME.to_string(),
        code: d.code,
        message: d.message,
        context: d.context,
    })
}

/// Exports a [`Gate`] implementation as the component's `gate` interface.
#[macro_export]
macro_rules! export_gate {
    ($gate:ty) => {
        #[doc(hidden)]
        pub struct __BatpakGateExport;

        impl $crate::wit::exports::batpak::plugin::gate::Guest for __BatpakGateExport {
            fn describe() -> $crate::wit::batpak::plugin::types::Description {
                $crate::__describe::<$gate>()
            }
            fn evaluate(
                proposal: $crate::wit::batpak::plugin::types::Proposal,
            ) -> Result<(), $crate::wit::batpak::plugin::types::Denial> {
                $crate::__evaluate::<$gate>(proposal)
            }
        }

        $crate::wit::__export_gate_world!(__BatpakGateExport with_types_in $crate::wit);
    };
}
