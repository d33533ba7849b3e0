//! [`WaitCondition`] and [`CompensationAction`]: pure data.

use serde::{Deserialize, Serialize};

/// What a pending outcome waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WaitCondition {
    /// A point in time (ms since the epoch).
    Timeout {
        /// When to resume.
        resume_at_ms: u64,
    },
    /// An event.
    Event {
        /// Its id.
        event_id: u128,
    },
    /// All of these.
    All(Vec<WaitCondition>),
    /// Any of these.
    Any(Vec<WaitCondition>),
    /// Application-defined.
    Custom {
        /// Tag.
        tag: u16,
        /// Data.
        data: Vec<u8>,
    },
}

/// How to undo the effects of a failed step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CompensationAction {
    /// Append compensating events for these.
    Rollback {
        /// Events to roll back.
        event_ids: Vec<u128>,
    },
    /// Tell someone.
    Notify {
        /// Whom.
        target_id: u128,
        /// What.
        message: String,
    },
    /// Release held resources.
    Release {
        /// Which.
        resource_ids: Vec<u128>,
    },
    /// Application-defined.
    Custom {
        /// Kind of action.
        action_type: String,
        /// Data.
        data: Vec<u8>,
    },
}
