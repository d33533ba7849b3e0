//! Projections: fold committed events into state, inside the store.
//!
//! ```no_run
//! use batpak_guest::projection::{Event, Projection};
//! use std::collections::BTreeMap;
//!
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! struct Counts(BTreeMap<String, u64>);
//!
//! impl Projection for Counts {
//!     const NAME: &'static str = "counts";
//!     fn apply(&mut self, e: &Event) {
//!         *self.0.entry(e.entity.clone()).or_default() += 1;
//!     }
//!     fn read(&self, key: &str) -> Option<Vec<u8>> {
//!         self.0.get(key).map(|n| n.to_string().into_bytes())
//!     }
//! }
//!
//! batpak_guest::export_projection!(Counts);
//! ```
//!
//! The state is serialised with serde_json for snapshots; implement
//! `snapshot`/`restore` yourself for another encoding.

use std::string::String;
use std::vec::Vec;

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "wit",
        world: "projection-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_projection_world",
        default_bindings_module: "batpak_guest::projection::wit",
    });
}

use wit::batpak::plugin::types as t;

/// A committed event, as a projection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Entity name.
    pub entity: String,
    /// Scope name.
    pub scope: String,
    /// Event kind.
    pub kind: u16,
    /// Payload as canonical JSON bytes.
    pub payload: Vec<u8>,
    /// Event id.
    pub event_id: u128,
    /// Store-wide sequence.
    pub sequence: u64,
    /// Per-entity clock.
    pub clock: u32,
}

impl Event {
    /// The payload parsed into `T` (fields `T` does not name are skipped,
    /// which is much cheaper than building a whole `serde_json::Value`).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.payload).ok()
    }

    /// Appends this event to `out` in the `apply-packed` layout
    /// (docs/guest-abi.md), exactly as the host packs it: handy for testing
    /// a projection's `apply-packed` path natively. Fields longer than
    /// `u32::MAX` bytes cannot be packed and return `false`, leaving `out`
    /// as it was.
    pub fn pack(&self, out: &mut Vec<u8>) -> bool {
        let fields = [self.entity.as_bytes(), self.scope.as_bytes(), &self.payload];
        if fields.iter().any(|f| u32::try_from(f.len()).is_err()) {
            return false;
        }
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.clock.to_le_bytes());
        out.extend_from_slice(&((self.event_id >> 64) as u64).to_le_bytes());
        out.extend_from_slice(&(self.event_id as u64).to_le_bytes());
        for field in fields {
            out.extend_from_slice(&(field.len() as u32).to_le_bytes());
            out.extend_from_slice(field);
        }
        true
    }

    /// A top-level field of a JSON object payload.
    pub fn field(&self, name: &str) -> Option<serde_json::Value> {
        match serde_json::from_slice(&self.payload).ok()? {
            serde_json::Value::Object(mut map) => map.remove(name),
            _ => None,
        }
    }
}

/// A projection. Its value is the state; `export_projection!` keeps one in
/// the instance and hands events to it in commit order.
pub trait Projection: Default + serde::Serialize + serde::de::DeserializeOwned + 'static {
    /// The projection's name.
    const NAME: &'static str;
    /// Its version.
    const VERSION: &'static str = "0.1.0";
    /// Bump when the state's shape changes (the host rebuilds from the log).
    const SCHEMA_VERSION: u64 = 0;
    /// Event kinds to receive (empty: all).
    const KINDS: &'static [u16] = &[];
    /// Entity-name prefix of events to receive (empty: all).
    const ENTITY_PREFIX: &'static str = "";
    /// Folds one event in. Must be deterministic.
    fn apply(&mut self, event: &Event);
    /// The state for one key.
    fn read(&self, key: &str) -> Option<Vec<u8>>;
    /// The whole state as bytes (JSON by default).
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    /// A state from `snapshot` bytes (JSON by default).
    fn restore(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[doc(hidden)]
pub fn __describe<P: Projection>() -> t::ProjectionDescription {
    t::ProjectionDescription {
        name: P::NAME.into(),
        version: P::VERSION.into(),
        schema_version: P::SCHEMA_VERSION,
        kinds: P::KINDS.to_vec(),
        entity_prefix: P::ENTITY_PREFIX.into(),
    }
}

#[doc(hidden)]
pub fn __event(e: t::Event) -> Event {
    Event {
        entity: e.coordinate.entity,
        scope: e.coordinate.scope,
        kind: e.kind,
        payload: e.payload,
        event_id: (u128::from(e.event_id.hi) << 64) | u128::from(e.event_id.lo),
        sequence: e.sequence,
        clock: e.clock,
    }
}

/// Decodes the events of an `apply-packed` call (layout in
/// docs/guest-abi.md), calling `each` on every one in order. Stops at the
/// first malformed record (the host never sends one).
#[doc(hidden)]
pub fn __unpack(bytes: &[u8], mut each: impl FnMut(Event)) {
    let mut r = Unpacker { bytes, at: 0 };
    while r.at < bytes.len() {
        match r.event() {
            Some(e) => each(e),
            None => return,
        }
    }
}

/// A cursor over packed events.
struct Unpacker<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Unpacker<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let out = self.bytes.get(self.at..self.at.checked_add(N)?)?;
        self.at += N;
        out.try_into().ok()
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = u32::from_le_bytes(self.take::<4>()?) as usize;
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out.to_vec())
    }

    fn event(&mut self) -> Option<Event> {
        let kind = u16::from_le_bytes(self.take()?);
        let sequence = u64::from_le_bytes(self.take()?);
        let clock = u32::from_le_bytes(self.take()?);
        let hi = u64::from_le_bytes(self.take()?);
        let lo = u64::from_le_bytes(self.take()?);
        let entity = String::from_utf8(self.bytes()?).ok()?;
        let scope = String::from_utf8(self.bytes()?).ok()?;
        let payload = self.bytes()?;
        let event_id = (u128::from(hi) << 64) | u128::from(lo);
        Some(Event { entity, scope, kind, payload, event_id, sequence, clock })
    }
}

/// Exports a [`Projection`] as the component's `projection` interface: the
/// projection's value becomes the interface's `state` resource.
#[macro_export]
macro_rules! export_projection {
    ($proj:ty) => {
        #[doc(hidden)]
        pub struct __BatpakProjectionExport;

        /// The `state` resource: the projection's value behind a cell
        /// (resource methods take `&self`).
        #[doc(hidden)]
        pub struct __BatpakProjectionState(std::cell::RefCell<$proj>);

        impl $crate::projection::wit::exports::batpak::plugin::projection::Guest for __BatpakProjectionExport {
            type State = __BatpakProjectionState;

            fn describe() -> $crate::projection::wit::batpak::plugin::types::ProjectionDescription {
                $crate::projection::__describe::<$proj>()
            }
        }

        impl $crate::projection::wit::exports::batpak::plugin::projection::GuestState
            for __BatpakProjectionState
        {
            fn new(snapshot: Option<Vec<u8>>) -> Self {
                let state = snapshot
                    .and_then(|b| <$proj as $crate::projection::Projection>::restore(&b))
                    .unwrap_or_default();
                Self(std::cell::RefCell::new(state))
            }
            fn apply(&self, event: $crate::projection::wit::batpak::plugin::types::Event) {
                let event = $crate::projection::__event(event);
                $crate::projection::Projection::apply(&mut *self.0.borrow_mut(), &event);
            }
            fn apply_packed(&self, events: Vec<u8>) {
                let mut state = self.0.borrow_mut();
                $crate::projection::__unpack(&events, |e| {
                    $crate::projection::Projection::apply(&mut *state, &e)
                });
            }
            fn snapshot(&self) -> Vec<u8> {
                $crate::projection::Projection::snapshot(&*self.0.borrow())
            }
            fn read(&self, key: String) -> Option<Vec<u8>> {
                $crate::projection::Projection::read(&*self.0.borrow(), &key)
            }
        }

        $crate::projection::wit::__export_projection_world!(
            __BatpakProjectionExport with_types_in $crate::projection::wit
        );
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)] // test code
    use super::*;

    fn event(i: u64) -> Event {
        Event {
            entity: format!("acct:{i}"),
            scope: "bank".into(),
            kind: (i as u16).wrapping_mul(7),
            payload: format!("{{\"amount\":{i}}}").into_bytes(),
            event_id: (u128::from(i) << 70) | u128::from(i),
            sequence: i,
            clock: i as u32,
        }
    }

    fn unpack(bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        __unpack(bytes, |e| out.push(e));
        out
    }

    /// Packed events decode to exactly the events that were packed.
    #[test]
    fn packed_events_round_trip() {
        let events: Vec<Event> = (0..50).map(event).collect();
        let mut packed = Vec::new();
        for e in &events {
            assert!(e.pack(&mut packed));
        }
        assert_eq!(unpack(&packed), events);
    }

    /// Every cut and every byte flip of a packed batch decodes to a prefix
    /// of whole events that re-packs to a prefix of the input: the decoder
    /// never reads past its input, invents bytes, or panics.
    #[test]
    fn damaged_packed_events_decode_to_a_repackable_prefix() {
        let mut packed = Vec::new();
        for e in (0..4).map(event) {
            assert!(e.pack(&mut packed));
        }
        let mut inputs: Vec<Vec<u8>> = (0..packed.len()).map(|n| packed[..n].to_vec()).collect();
        for at in 0..packed.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = packed.clone();
                b[at] ^= flip;
                inputs.push(b);
            }
        }
        for input in inputs {
            let mut repacked = Vec::new();
            for e in unpack(&input) {
                assert!(e.pack(&mut repacked));
            }
            assert!(input.starts_with(&repacked), "decoded bytes that are not in the input");
        }
    }
}
