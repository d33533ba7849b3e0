//! Events: kinds, headers, the hash chain, and the traits that fold events
//! into state ([`EventSourced`]) or react to them ([`Reactive`]).

pub mod hash;
pub mod header;
/// [`EventKind`] at its 0.3.0 path (`event::kind`); it lives below both
/// `coordinate` and `event`, which use it.
pub mod kind {
    pub use crate::kind::EventKind;
}
pub mod sourcing;

pub use crate::kind::EventKind;
pub use hash::HashChain;
#[cfg(feature = "blake3")]
pub use hash::{compute_hash, verify_chain};
pub use header::{EventHeader, FLAG_REPLAY, FLAG_REQUIRES_ACK, FLAG_TRANSACTIONAL};
pub use sourcing::{EventSourced, Reactive};

use crate::coordinate::{Coordinate, DagPosition};
use serde::{Deserialize, Serialize};

/// An event: its header, its payload and its link in the entity's hash chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event<P> {
    /// Metadata.
    pub header: EventHeader,
    /// The payload.
    pub payload: P,
    /// The hash-chain link, when known.
    pub hash_chain: Option<HashChain>,
}

impl<P> Event<P> {
    /// An event without a hash-chain link.
    pub fn new(header: EventHeader, payload: P) -> Self {
        Self { header, payload, hash_chain: None }
    }

    /// This event with a hash-chain link.
    pub fn with_hash_chain(mut self, chain: HashChain) -> Self {
        self.hash_chain = Some(chain);
        self
    }

    /// The event id.
    pub fn event_id(&self) -> u128 {
        self.header.event_id
    }

    /// The event kind.
    pub fn event_kind(&self) -> EventKind {
        self.header.event_kind
    }

    /// The event position.
    pub fn position(&self) -> &DagPosition {
        &self.header.position
    }

    /// Whether this is the first event of its entity's chain.
    pub fn is_genesis(&self) -> bool {
        self.hash_chain.as_ref().is_none_or(HashChain::is_genesis)
    }

    /// The same event with its payload transformed.
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> Event<Q> {
        Event { header: self.header, payload: f(self.payload), hash_chain: self.hash_chain }
    }
}

/// An event together with where it is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent<P> {
    /// Entity and scope.
    pub coordinate: Coordinate,
    /// The event.
    pub event: Event<P>,
}

impl<P> StoredEvent<P> {
    /// The event position.
    pub fn position(&self) -> &DagPosition {
        self.event.position()
    }
}
