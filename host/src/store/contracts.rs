//! What callers hand the store and what it hands back: append options,
//! receipts, batch items and notifications.

use crate::coordinate::Coordinate;
use crate::event::EventKind;
use crate::store::index::DiskPos;
use crate::store::StoreError;
use serde::Serialize;

/// Options of one append.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOptions {
    /// Optimistic concurrency: append only if the entity's latest clock is this.
    /// An entity without events fails with [`StoreError::EntityHasNoEvents`].
    pub expected_sequence: Option<u32>,
    /// Makes the append idempotent: the key becomes the event id, and a retry
    /// with the same key and the same content returns the original receipt.
    pub idempotency_key: Option<u128>,
    /// Correlation id (default: the event's own id).
    pub correlation_id: Option<u128>,
    /// Causation id.
    pub causation_id: Option<u128>,
    /// Caller flags (`FLAG_*`), stored with the event.
    pub flags: u8,
    /// Optimistic concurrency: append only if the entity has no events yet.
    pub expect_empty: bool,
}

impl AppendOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Expect the entity's latest clock to be `expected`.
    pub fn with_cas(mut self, expected: u32) -> Self {
        self.expected_sequence = Some(expected);
        self
    }
    /// Expect the entity to have no events.
    pub fn with_cas_empty(mut self) -> Self {
        self.expect_empty = true;
        self
    }
    /// Make the append idempotent under `key`.
    pub fn with_idempotency(mut self, key: u128) -> Self {
        self.idempotency_key = Some(key);
        self
    }
    /// Set caller flags.
    pub fn with_flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }
    /// Set the correlation id.
    pub fn with_correlation(mut self, id: u128) -> Self {
        self.correlation_id = Some(id);
        self
    }
    /// Set the causation id.
    pub fn with_causation(mut self, id: u128) -> Self {
        self.causation_id = Some(id);
        self
    }
}

/// What a successful append returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The event's id.
    pub event_id: u128,
    /// Its global sequence.
    pub sequence: u64,
    /// Where its frame is.
    pub disk_pos: DiskPos,
}

/// How a batch item names its cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CausationRef {
    /// Use `options.causation_id`.
    #[default]
    None,
    /// This event id.
    Absolute(u128),
    /// The event of an earlier item of the same batch (index must be lower).
    PriorItem(usize),
}

/// One item of an atomic batch.
#[derive(Clone, Debug)]
pub struct BatchAppendItem {
    /// Entity and scope.
    pub coord: Coordinate,
    /// Kind.
    pub kind: EventKind,
    /// The payload, already encoded as canonical JSON.
    pub payload_bytes: Vec<u8>,
    /// Options (CAS, idempotency, correlation, causation, flags).
    pub options: AppendOptions,
    /// Causation reference.
    pub causation: CausationRef,
}

impl BatchAppendItem {
    /// Builds an item, encoding `payload` as JSON (the same encoding as a
    /// single append, so both read back identically).
    pub fn new(
        coord: Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
        options: AppendOptions,
        causation: CausationRef,
    ) -> Result<Self, StoreError> {
        let payload_bytes = serde_json::to_vec(payload)?;
        Ok(Self { coord, kind, payload_bytes, options, causation })
    }
}

/// What a lossy subscription delivers for each committed event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Event id.
    pub event_id: u128,
    /// Correlation id.
    pub correlation_id: u128,
    /// Causation id.
    pub causation_id: Option<u128>,
    /// Entity and scope.
    pub coord: Coordinate,
    /// Kind.
    pub kind: EventKind,
    /// Global sequence.
    pub sequence: u64,
}
