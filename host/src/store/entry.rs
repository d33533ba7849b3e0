//! The index's entry types: what readers get back, what loaders put in.

use crate::coordinate::Coordinate;
use crate::event::{EventKind, HashChain};

/// Where a frame sits on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DiskPos {
    /// Segment id.
    pub segment_id: u64,
    /// Byte offset of the frame's first byte.
    pub offset: u64,
    /// Length of the whole frame, header included.
    pub length: u32,
}

/// One committed event as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
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
    /// Monotonic per-entity wall clock, in ms.
    pub wall_ms: u64,
    /// Per-entity clock (0, 1, 2, ...).
    pub clock: u32,
    /// Hash-chain link.
    pub hash_chain: HashChain,
    /// Frame location.
    pub disk_pos: DiskPos,
    /// Store-wide sequence (0, 1, 2, ...; dense, never reused).
    pub global_sequence: u64,
    /// Caller flags.
    pub(crate) flags: u8,
    /// Gate set that admitted the event, if any gates were installed.
    pub(crate) gate_set: Option<u32>,
}

impl IndexEntry {
    /// Whether the event belongs to a chain started by another event.
    pub fn is_correlated(&self) -> bool {
        self.correlation_id != self.event_id
    }

    /// Whether `id` directly caused this event.
    pub fn is_caused_by(&self, id: u128) -> bool {
        self.causation_id == Some(id)
    }

    /// Whether nothing caused this event.
    pub fn is_root_cause(&self) -> bool {
        self.causation_id.is_none()
    }

    /// The id of the gate set that admitted this event (`None` if no gate was installed).
    pub fn gate_set(&self) -> Option<u32> {
        self.gate_set
    }

    /// The caller flags the event was appended with.
    pub fn flags(&self) -> u8 {
        self.flags
    }
}

/// An entry whose entity and scope are already store-wide string ids:
/// what loaders hand the index (no names, so no shared-string traffic).
#[derive(Clone, Debug)]
pub(crate) struct LoadedEntry {
    pub event_id: u128,
    pub correlation_id: u128,
    pub causation_id: Option<u128>,
    pub kind: EventKind,
    pub wall_ms: u64,
    pub clock: u32,
    /// A zero `prev_hash` means "the entity's previous event's hash".
    pub hash_chain: HashChain,
    pub disk_pos: DiskPos,
    pub global_sequence: u64,
    pub flags: u8,
    pub gate_set: Option<u32>,
    /// String id of the entity name.
    pub entity: u32,
    /// String id of the scope name.
    pub scope: u32,
}

/// Ordering key of an entity's stream: wall clock, then clock, then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockKey {
    /// Wall clock in ms.
    pub wall_ms: u64,
    /// Per-entity clock.
    pub clock: u32,
    /// Event id.
    pub uuid: u128,
}

/// What a reader needs to fetch and label one event's frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadTarget {
    pub event_id: u128,
    pub disk_pos: DiskPos,
    pub kind: EventKind,
    pub hash_chain: HashChain,
}

/// The tip of an entity's chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntityHead {
    pub clock: u32,
    pub hash: [u8; 32],
    pub wall_ms: u64,
}
