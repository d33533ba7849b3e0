//! The traits that fold events into state ([`EventSourced`]) and answer
//! events with more events ([`Reactive`]).

use super::{Event, EventKind};
use crate::coordinate::Coordinate;

/// State rebuilt by folding an entity's events.
pub trait EventSourced<P>: Sized {
    /// Builds the state from events in order; `None` if there is nothing to build.
    fn from_events(events: &[Event<P>]) -> Option<Self>;
    /// Folds one more event in.
    fn apply_event(&mut self, event: &Event<P>);
    /// The kinds this state cares about (empty = all).
    fn relevant_event_kinds() -> &'static [EventKind];
    /// Bumped when the state's shape changes, so cached states are not reused.
    fn schema_version() -> u64 {
        0
    }
    /// Whether `apply_event` on a cached state equals `from_events` on the whole stream.
    fn supports_incremental_apply() -> bool {
        false
    }
}

/// Something that answers an event with new events to append.
pub trait Reactive<P> {
    /// The events to append in reaction to `event`.
    fn react(&self, event: &Event<P>) -> Vec<(Coordinate, EventKind, P)>;
}
