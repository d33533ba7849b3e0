//! The per-entity hash chain.
//!
//! Each event's hash is `blake3(prev_hash ‖ canonical header ‖ payload)`, so
//! changing any committed byte, or reordering an entity's events, changes
//! every later hash of that entity. The canonical header layout is given in
//! docs/design.md ("Hash chain").

use serde::{Deserialize, Serialize};

/// The two links of an event in its entity's chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HashChain {
    /// Hash of the entity's previous event (all zero for its first event).
    pub prev_hash: [u8; 32],
    /// Hash of this event.
    pub event_hash: [u8; 32],
}

impl HashChain {
    /// Whether this is the first event of its entity.
    pub fn is_genesis(&self) -> bool {
        self.prev_hash == [0u8; 32]
    }
}

/// blake3 of `bytes`.
#[cfg(feature = "blake3")]
pub fn compute_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// Whether `chain` links to `expected_prev` and its event hash is the hash of `content`.
#[cfg(feature = "blake3")]
pub fn verify_chain(content: &[u8], chain: &HashChain, expected_prev: &[u8; 32]) -> bool {
    chain.prev_hash == *expected_prev && compute_hash(content) == chain.event_hash
}
