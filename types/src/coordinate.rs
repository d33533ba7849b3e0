//! Where an event lives: its [`Coordinate`] (entity and scope), the [`Region`]s
//! that select events for queries and subscriptions, and [`DagPosition`].

use crate::kind::EventKind;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Longest entity or scope name, in bytes.
pub const MAX_COORDINATE_COMPONENT_LEN: usize = 1024;

/// An entity within a scope: the address of an event stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Coordinate {
    entity: Arc<str>,
    scope: Arc<str>,
}

/// Why a [`Coordinate`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoordinateError {
    /// The entity name is empty.
    EmptyEntity,
    /// The scope name is empty.
    EmptyScope,
    /// The entity name is longer than [`MAX_COORDINATE_COMPONENT_LEN`] bytes.
    EntityTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The scope name is longer than [`MAX_COORDINATE_COMPONENT_LEN`] bytes.
    ScopeTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for CoordinateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyEntity => write!(f, "coordinate entity is empty"),
            Self::EmptyScope => write!(f, "coordinate scope is empty"),
            Self::EntityTooLong { len, max } => {
                write!(f, "coordinate entity is {len} bytes, the limit is {max}")
            }
            Self::ScopeTooLong { len, max } => {
                write!(f, "coordinate scope is {len} bytes, the limit is {max}")
            }
        }
    }
}

impl std::error::Error for CoordinateError {}

impl Coordinate {
    /// Builds a coordinate, checking (in this order) for an empty entity, an
    /// empty scope, an over-long entity and an over-long scope.
    pub fn new(entity: impl AsRef<str>, scope: impl AsRef<str>) -> Result<Self, CoordinateError> {
        let (entity, scope) = (entity.as_ref(), scope.as_ref());
        if entity.is_empty() {
            return Err(CoordinateError::EmptyEntity);
        }
        if scope.is_empty() {
            return Err(CoordinateError::EmptyScope);
        }
        let max = MAX_COORDINATE_COMPONENT_LEN;
        if entity.len() > max {
            return Err(CoordinateError::EntityTooLong { len: entity.len(), max });
        }
        if scope.len() > max {
            return Err(CoordinateError::ScopeTooLong { len: scope.len(), max });
        }
        Ok(Self { entity: Arc::from(entity), scope: Arc::from(scope) })
    }

    /// Builds a coordinate from names that are already shared (no copy).
    #[doc(hidden)]
    pub fn from_shared(entity: Arc<str>, scope: Arc<str>) -> Self {
        Self { entity, scope }
    }

    /// The entity name.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// The scope name.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    #[doc(hidden)]
    pub fn entity_arc(&self) -> &Arc<str> {
        &self.entity
    }

    #[doc(hidden)]
    pub fn scope_arc(&self) -> &Arc<str> {
        &self.scope
    }
}

impl fmt::Display for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.entity, self.scope)
    }
}

/// Which event kinds a [`Region`] selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KindFilter {
    /// Exactly this kind.
    Exact(EventKind),
    /// Every kind of this category (upper 4 bits).
    Category(u8),
    /// Every kind.
    Any,
}

impl KindFilter {
    /// Whether `kind` passes the filter.
    pub fn matches(&self, kind: EventKind) -> bool {
        match self {
            Self::Exact(k) => *k == kind,
            Self::Category(c) => kind.category() == *c,
            Self::Any => true,
        }
    }
}

/// A selection of events: an entity-name prefix, an exact scope, a kind
/// filter and an inclusive per-entity clock range, all optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// Entity names starting with this prefix.
    pub entity_prefix: Option<Arc<str>>,
    /// Exactly this scope.
    pub scope: Option<Arc<str>>,
    /// Kinds passing this filter.
    pub fact: Option<KindFilter>,
    /// Per-entity clocks in this inclusive range.
    pub clock_range: Option<(u32, u32)>,
}

impl Region {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Events whose entity name starts with `prefix` (a prefix match, as in batpak 0.3.0).
    pub fn entity(prefix: impl AsRef<str>) -> Self {
        Self { entity_prefix: Some(Arc::from(prefix.as_ref())), ..Self::default() }
    }

    /// Events in exactly this scope.
    pub fn scope(scope: impl AsRef<str>) -> Self {
        Self { scope: Some(Arc::from(scope.as_ref())), ..Self::default() }
    }

    /// This region narrowed to one scope.
    pub fn with_scope(mut self, scope: impl AsRef<str>) -> Self {
        self.scope = Some(Arc::from(scope.as_ref()));
        self
    }

    /// This region narrowed by a kind filter.
    pub fn with_fact(mut self, fact: KindFilter) -> Self {
        self.fact = Some(fact);
        self
    }

    /// This region narrowed to one kind category.
    pub fn with_fact_category(self, category: u8) -> Self {
        self.with_fact(KindFilter::Category(category))
    }

    /// This region narrowed to an inclusive range of per-entity clocks.
    pub fn with_clock_range(mut self, range: (u32, u32)) -> Self {
        self.clock_range = Some(range);
        self
    }

    /// Whether an event at this entity, scope and kind is in the region
    /// (the clock range is not consulted).
    pub fn matches_event(&self, entity: &str, scope: &str, kind: EventKind) -> bool {
        if let Some(prefix) = &self.entity_prefix {
            if !entity.starts_with(&**prefix) {
                return false;
            }
        }
        if let Some(s) = &self.scope {
            if &**s != scope {
                return false;
            }
        }
        self.fact.is_none_or(|f| f.matches(kind))
    }

    /// Whether an event is in the region, clock range included.
    #[doc(hidden)]
    pub fn matches_full(&self, entity: &str, scope: &str, kind: EventKind, clock: u32) -> bool {
        self.matches_event(entity, scope, kind)
            && self.clock_range.is_none_or(|(lo, hi)| clock >= lo && clock <= hi)
    }
}

/// An event's position: wall-clock milliseconds with a counter, and the
/// per-entity clock in `sequence`. `depth` and `lane` are always 0 here
/// (they are kept for batpak 0.3.0 compatibility).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DagPosition {
    /// Milliseconds since the Unix epoch, never decreasing per entity.
    pub wall_ms: u64,
    /// Tie-break counter within one millisecond (always 0 here).
    pub counter: u16,
    /// DAG depth (always 0 here).
    pub depth: u32,
    /// DAG lane (always 0 here).
    pub lane: u32,
    /// Per-entity clock: 0 for an entity's first event, then 1, 2, ...
    pub sequence: u32,
}

impl DagPosition {
    /// A position with no wall clock.
    pub fn new(depth: u32, lane: u32, sequence: u32) -> Self {
        Self { wall_ms: 0, counter: 0, depth, lane, sequence }
    }

    /// A position with every field given.
    pub fn with_hlc(wall_ms: u64, counter: u16, depth: u32, lane: u32, sequence: u32) -> Self {
        Self { wall_ms, counter, depth, lane, sequence }
    }

    /// The origin.
    pub fn root() -> Self {
        Self::default()
    }

    /// A position on the root lane at `sequence`.
    pub fn child(sequence: u32) -> Self {
        Self::new(0, 0, sequence)
    }

    /// A position on the root lane at `sequence` with a wall clock.
    pub fn child_at(sequence: u32, wall_ms: u64, counter: u16) -> Self {
        Self::with_hlc(wall_ms, counter, 0, 0, sequence)
    }

    /// The first position of a new lane one level deeper.
    pub fn fork(parent_depth: u32, new_lane: u32) -> Self {
        Self::new(parent_depth.saturating_add(1), new_lane, 0)
    }

    /// Whether this is the origin of its lane.
    pub fn is_root(&self) -> bool {
        self.depth == 0 && self.lane == 0 && self.sequence == 0
    }

    /// Whether this position precedes `other` on the same lane and depth.
    pub fn is_ancestor_of(&self, other: &DagPosition) -> bool {
        self.lane == other.lane && self.depth == other.depth && self.sequence < other.sequence
    }
}

impl PartialOrd for DagPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        if self.lane != other.lane || self.depth != other.depth {
            return None;
        }
        Some(self.sequence.cmp(&other.sequence))
    }
}

impl fmt::Display for DagPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}@{}.{}", self.depth, self.lane, self.sequence, self.wall_ms, self.counter)
    }
}

/// [`DagPosition`] at the path batpak 0.3.0 gives it (`coordinate::position`).
pub mod position {
    pub use super::DagPosition;
}
