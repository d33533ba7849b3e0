//! [`StoreError`] and [`BatchStage`].

use crate::coordinate::CoordinateError;
use crate::event::EventKind;
use crate::guard::Denial;
use std::fmt;

/// Everything a store operation can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// An operating-system I/O error.
    Io(std::io::Error),
    /// An invalid coordinate.
    Coordinate(CoordinateError),
    /// A payload could not be encoded or decoded as JSON.
    Serialization(Box<dyn std::error::Error + Send + Sync>),
    /// A stored frame failed its CRC check.
    CrcMismatch {
        /// Segment holding the frame.
        segment_id: u64,
        /// Byte offset of the frame in the segment.
        offset: u64,
    },
    /// A segment, footer or checkpoint is malformed.
    CorruptSegment {
        /// The segment (0 for the checkpoint).
        segment_id: u64,
        /// What is wrong, with the byte offset when known.
        detail: String,
    },
    /// No visible event has this id.
    NotFound(u128),
    /// Optimistic concurrency: the entity's latest clock is not the expected one.
    SequenceMismatch {
        /// The entity.
        entity: String,
        /// The clock the caller expected.
        expected: u32,
        /// The entity's latest clock.
        actual: u32,
    },
    /// Optimistic concurrency: the caller expected an existing latest clock
    /// but the entity has no events at all (use `AppendOptions::with_cas_empty`).
    EntityHasNoEvents {
        /// The entity.
        entity: String,
        /// The clock the caller expected.
        expected: u32,
    },
    /// Optimistic concurrency: the caller expected an empty entity but it has events.
    EntityNotEmpty {
        /// The entity.
        entity: String,
        /// The entity's latest clock.
        actual: u32,
    },
    /// The writer did not reply: it panicked while serving this request,
    /// panicked past its restart budget, or the store closed. The outcome
    /// of the request is **unknown**: an append the writer had already
    /// written may be visible after the writer restarts and is kept on
    /// reopen. Retry with an idempotency key to make sure it is stored once.
    WriterCrashed,
    /// A projection cache failed.
    CacheFailed(Box<dyn std::error::Error + Send + Sync>),
    /// An invalid configuration value (reported at open).
    Configuration(String),
    /// batpak 0.3.0 returned this for appends without an idempotency key
    /// while group commit was on. This crate group-commits any append, so it
    /// never returns this variant; it is kept so that code matching on
    /// 0.3.0's errors still compiles.
    IdempotencyRequired,
    /// An idempotency key was reused for a different event.
    IdempotencyConflict {
        /// The key.
        key: u128,
        /// What differs.
        detail: String,
    },
    /// A payload is larger than the configured limit.
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The kind is reserved for the store itself (system category, batch markers).
    ReservedKind(EventKind),
    /// Another handle (in this or another process) holds the data directory.
    Locked(String),
    /// A failed fsync or an undoable write left the writer unable to vouch
    /// for the segment; reopen the store to recover.
    Poisoned(String),
    /// A policy gate denied the append.
    Denied(Denial),
    /// A WebAssembly plugin could not be loaded or installed.
    Plugin(crate::plugin::PluginError),
    /// One item of a batch failed; nothing of the batch was written.
    BatchFailed {
        /// Index of the failing item.
        item_index: usize,
        /// Where it failed.
        stage: BatchStage,
        /// Why.
        source: Box<StoreError>,
    },
    /// Quorum acks (feature `replication`): another writer has extended
    /// the replicated log, so this store is no longer its writer. The
    /// append was not acknowledged and is not on the log; every later
    /// append fails the same way. Open the store as a replica of the
    /// stream instead.
    Fenced(String),
    /// Quorum acks (feature `replication`): the replicated log did not
    /// confirm the append within the quorum timeout. Its outcome is
    /// **unknown** (it may be on the log); the store refuses appends until
    /// it is reopened, which settles the outcome. Retry with an
    /// idempotency key to make sure it is stored once.
    QuorumUnavailable(String),
    /// A fault injected by a test hook.
    #[cfg(feature = "dangerous-test-hooks")]
    FaultInjected(String),
}

/// The step of a batch append at which an item failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BatchStage {
    /// Checking limits, kinds, causation references and idempotency.
    Validation,
    /// Encoding the payload.
    Encoding,
    /// A policy gate denied the item (or failed closed).
    Gating,
    /// Writing frames.
    Writing,
    /// Making the batch durable.
    Syncing,
    /// Publishing to the index (never produced: publication cannot fail).
    Indexing,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Coordinate(e) => write!(f, "invalid coordinate: {e}"),
            Self::Serialization(e) => write!(f, "payload encoding error: {e}"),
            Self::CrcMismatch { segment_id, offset } => {
                write!(f, "CRC mismatch in segment {segment_id} at offset {offset}")
            }
            Self::CorruptSegment { segment_id, detail } => {
                write!(f, "corrupt segment {segment_id}: {detail}")
            }
            Self::NotFound(id) => write!(f, "no event with id {id:032x}"),
            Self::SequenceMismatch { entity, expected, actual } => {
                write!(f, "entity {entity:?}: expected latest clock {expected}, found {actual}")
            }
            Self::EntityHasNoEvents { entity, expected } => {
                write!(f, "entity {entity:?} has no events (expected latest clock {expected})")
            }
            Self::EntityNotEmpty { entity, actual } => {
                write!(f, "entity {entity:?} was expected empty but has latest clock {actual}")
            }
            Self::WriterCrashed => write!(f, "the writer thread is not running"),
            Self::CacheFailed(e) => write!(f, "projection cache failed: {e}"),
            Self::Configuration(msg) => write!(f, "invalid configuration: {msg}"),
            Self::IdempotencyRequired => {
                write!(f, "group commit requires an idempotency key on every append")
            }
            Self::IdempotencyConflict { key, detail } => {
                write!(f, "idempotency key {key:032x} reused for a different event: {detail}")
            }
            Self::PayloadTooLarge { size, max } => {
                write!(f, "payload of {size} bytes exceeds the limit of {max} bytes")
            }
            Self::ReservedKind(kind) => write!(f, "event kind {kind} is reserved for the store"),
            Self::Locked(msg) => write!(f, "data directory is locked: {msg}"),
            Self::Poisoned(msg) => write!(f, "writer is poisoned: {msg}"),
            Self::Denied(d) => write!(f, "denied: {d}"),
            Self::Plugin(e) => write!(f, "plugin error: {e}"),
            Self::BatchFailed { item_index, stage, source } => {
                write!(f, "batch item {item_index} failed at {stage:?}: {source}")
            }
            Self::Fenced(msg) => write!(f, "fenced: another writer owns the replicated log: {msg}"),
            Self::QuorumUnavailable(msg) => {
                write!(f, "the replicated log did not confirm the append (outcome unknown): {msg}")
            }
            #[cfg(feature = "dangerous-test-hooks")]
            Self::FaultInjected(msg) => write!(f, "injected fault: {msg}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Coordinate(e) => Some(e),
            Self::Serialization(e) | Self::CacheFailed(e) => Some(&**e),
            Self::Denied(d) => Some(d),
            Self::Plugin(e) => Some(e),
            Self::BatchFailed { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<CoordinateError> for StoreError {
    fn from(e: CoordinateError) -> Self {
        Self::Coordinate(e)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Serialization(Box::new(e))
    }
}

impl StoreError {
    pub(crate) fn corrupt(segment_id: u64, detail: impl Into<String>) -> Self {
        Self::CorruptSegment { segment_id, detail: detail.into() }
    }

    /// Wraps this error as the failure of batch item `item_index` at `stage`.
    pub(crate) fn in_batch(self, item_index: usize, stage: BatchStage) -> Self {
        match self {
            already @ Self::BatchFailed { .. } => already,
            other => Self::BatchFailed { item_index, stage, source: Box::new(other) },
        }
    }
}
