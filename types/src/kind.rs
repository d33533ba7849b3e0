//! [`EventKind`]: a 16-bit kind, upper 4 bits category, lower 12 bits type.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of an event. Category 0 is reserved for the system, 0xD for effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventKind(u16);

const CATEGORY_SYSTEM: u8 = 0x0;
const CATEGORY_EFFECT: u8 = 0xD;

impl EventKind {
    /// Plain data (category 1, type 0).
    pub const DATA: EventKind = EventKind(0x1000);
    /// System: store initialised.
    pub const SYSTEM_INIT: EventKind = EventKind(0x0001);
    /// System: store shut down.
    pub const SYSTEM_SHUTDOWN: EventKind = EventKind(0x0002);
    /// System: heartbeat.
    pub const SYSTEM_HEARTBEAT: EventKind = EventKind(0x0003);
    /// System: configuration changed.
    pub const SYSTEM_CONFIG_CHANGE: EventKind = EventKind(0x0004);
    /// System: checkpoint taken.
    pub const SYSTEM_CHECKPOINT: EventKind = EventKind(0x0005);
    /// System: batch begin marker (never visible to readers).
    pub const SYSTEM_BATCH_BEGIN: EventKind = EventKind(0x0006);
    /// System: batch commit marker (never visible to readers).
    pub const SYSTEM_BATCH_COMMIT: EventKind = EventKind(0x0007);
    /// A tombstone left by compaction.
    pub const TOMBSTONE: EventKind = EventKind(0x0FFE);
    /// Effect: error.
    pub const EFFECT_ERROR: EventKind = EventKind(0xD001);
    /// Effect: retry.
    pub const EFFECT_RETRY: EventKind = EventKind(0xD002);
    /// Effect: acknowledgement.
    pub const EFFECT_ACK: EventKind = EventKind(0xD004);
    /// Effect: back-pressure.
    pub const EFFECT_BACKPRESSURE: EventKind = EventKind(0xD005);
    /// Effect: cancellation.
    pub const EFFECT_CANCEL: EventKind = EventKind(0xD006);
    /// Effect: conflict.
    pub const EFFECT_CONFLICT: EventKind = EventKind(0xD007);

    /// A user kind in `category` (1..=15 except 0xD) with a 12-bit `type_id`
    /// (higher bits are masked off).
    ///
    /// # Panics
    /// At compile time when used in a `const`, or at run time otherwise, if
    /// `category` is 0 (system), 0xD (effect) or above 15 — as in batpak 0.3.0.
    /// Use [`EventKind::try_custom`] for a fallible version.
    pub const fn custom(category: u8, type_id: u16) -> Self {
        assert!(category < 16, "EventKind category must fit in 4 bits");
        assert!(category != CATEGORY_SYSTEM, "category 0 is reserved for system kinds");
        assert!(category != CATEGORY_EFFECT, "category 0xD is reserved for effect kinds");
        Self(((category as u16) << 12) | (type_id & 0x0FFF))
    }

    /// Like [`EventKind::custom`] but returns `None` for a reserved or out-of-range category.
    pub const fn try_custom(category: u8, type_id: u16) -> Option<Self> {
        if category >= 16 || category == CATEGORY_SYSTEM || category == CATEGORY_EFFECT {
            return None;
        }
        Some(Self(((category as u16) << 12) | (type_id & 0x0FFF)))
    }

    /// The kind with this raw 16-bit value (no checks; used when decoding).
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw)
    }

    /// The raw 16-bit value.
    pub const fn as_raw(self) -> u16 {
        self.0
    }

    /// The upper 4 bits.
    pub const fn category(self) -> u8 {
        (self.0 >> 12) as u8
    }

    /// The lower 12 bits.
    pub const fn type_id(self) -> u16 {
        self.0 & 0x0FFF
    }

    /// Whether this is a system kind (category 0).
    pub const fn is_system(self) -> bool {
        self.category() == CATEGORY_SYSTEM
    }

    /// Whether this is an effect kind (category 0xD).
    pub const fn is_effect(self) -> bool {
        self.category() == CATEGORY_EFFECT
    }

    /// Whether users may append this kind: system kinds (batch markers
    /// included) are written by the store only.
    pub const fn is_reserved_for_store(self) -> bool {
        self.is_system()
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X}", self.0)
    }
}
