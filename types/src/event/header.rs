//! [`EventHeader`]: the metadata every event carries.

use crate::coordinate::DagPosition;
use crate::kind::EventKind;
use serde::{Deserialize, Serialize};

/// Flag: the event asks its consumer for an acknowledgement (carried, not acted on).
pub const FLAG_REQUIRES_ACK: u8 = 0x01;
/// Flag: the event is part of a transaction (carried, not acted on).
pub const FLAG_TRANSACTIONAL: u8 = 0x02;
/// Flag: the event is a replay (carried, not acted on).
pub const FLAG_REPLAY: u8 = 0x08;

/// Metadata of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHeader {
    /// Unique id (UUIDv7 unless the caller gave an idempotency key).
    pub event_id: u128,
    /// The id of the event that started this causal chain (its own id by default).
    pub correlation_id: u128,
    /// The id of the event that directly caused this one.
    pub causation_id: Option<u128>,
    /// Microseconds since the Unix epoch, from the store's clock.
    pub timestamp_us: i64,
    /// Per-entity clock and monotonic wall time.
    pub position: DagPosition,
    /// Length of the stored payload in bytes (canonical JSON).
    pub payload_size: u32,
    /// The event's kind.
    pub event_kind: EventKind,
    /// Caller flags (`FLAG_*`).
    pub flags: u8,
    /// The event's chained hash (equals `HashChain::event_hash`).
    #[serde(default)]
    pub content_hash: [u8; 32],
}

impl EventHeader {
    /// A header with no flags and a zero content hash.
    pub fn new(
        event_id: u128,
        correlation_id: u128,
        causation_id: Option<u128>,
        timestamp_us: i64,
        position: DagPosition,
        payload_size: u32,
        event_kind: EventKind,
    ) -> Self {
        Self {
            event_id,
            correlation_id,
            causation_id,
            timestamp_us,
            position,
            payload_size,
            event_kind,
            flags: 0,
            content_hash: [0u8; 32],
        }
    }

    /// This header with `flags`.
    pub fn with_flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    /// Whether [`FLAG_REQUIRES_ACK`] is set.
    pub fn requires_ack(&self) -> bool {
        self.flags & FLAG_REQUIRES_ACK != 0
    }

    /// Whether [`FLAG_TRANSACTIONAL`] is set.
    pub fn is_transactional(&self) -> bool {
        self.flags & FLAG_TRANSACTIONAL != 0
    }

    /// Whether [`FLAG_REPLAY`] is set.
    pub fn is_replay(&self) -> bool {
        self.flags & FLAG_REPLAY != 0
    }

    /// Microseconds from this event's timestamp to `now_us` (0 if in the future).
    pub fn age_us(&self, now_us: i64) -> u64 {
        u64::try_from(now_us.saturating_sub(self.timestamp_us)).unwrap_or(0)
    }
}
