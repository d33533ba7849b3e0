//! Everything most users need: `use batpak::prelude::*;`.

pub use crate::coordinate::{Coordinate, CoordinateError, DagPosition, KindFilter, Region};
pub use crate::event::{Event, EventHeader, EventKind, EventSourced, HashChain, Reactive, StoredEvent};
pub use crate::guard::{Denial, Gate, GateSet, Receipt};
pub use crate::id::EventId;
pub use crate::outcome::{ErrorKind, Outcome, OutcomeError};
pub use crate::pipeline::{Committed, Pipeline, Proposal};
pub use crate::plugin::{GatePlugin, PluginError, PluginLimits, ProjectionPlugin};
pub use crate::store::projection::{Freshness, NoCache};
pub use crate::store::{
    AppendOptions, AppendReceipt, BatchAppendItem, BatchConfig, BatchStage, CausationRef, Closed,
    CompactionConfig, CompactionStrategy, Cursor, DiskPos, IndexConfig, IndexEntry, IndexLayout,
    Notification, Open, RestartPolicy, Store, StoreConfig, StoreError, Subscription, SubscriptionOps,
    SyncConfig, SyncMode, WriterConfig,
};
