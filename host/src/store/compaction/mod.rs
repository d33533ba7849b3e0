//! Online compaction: rewriting the sealed segments into fewer, smaller
//! ones while appends and reads go on.
//!
//! The work is split so the writer pauses only briefly:
//!
//! 1. **begin** (writer): name the sealed segments (the *run*: every
//!    segment but the active one, so always a prefix of the log) and the
//!    sequence everything before which is published;
//! 2. **rewrite** (caller's thread, module `rewrite`): decide each event's fate
//!    (kept, tombstoned, removed), write the survivors into new segments
//!    under temporary names, fsync them, and build the next index
//!    generation for everything up to that sequence;
//! 3. **commit** (writer): add the entries appended meanwhile to the new
//!    generation, write the plan (the commit point, module `plan`), rename the
//!    outputs into place, swap the index generation, forget cached files.
//!
//! Sequences, ids, clocks and hashes never change. An event whose entity
//! predecessor was removed carries that predecessor's hash (an *anchor*),
//! and a tombstone carries its original hash, so every entity's chain still
//! verifies. The last event of each entity in the run is never removed
//! outright (a `Retention` that drops it turns it into a tombstone): the
//! next append, and any later event in the active segment, chains from it.
//!
//! Not done here: reclaiming index memory of removed events beyond whole
//! 64 Ki chunks, and forgetting idempotency keys of removed events is by
//! design (a retried append whose original was removed appends again).

pub(crate) mod plan;
pub(crate) mod rewrite;

use crate::event::StoredEvent;

/// Decides whether an event survives a `Retention` (true: keep) or stays
/// whole under `Tombstone` (true: keep as is).
pub type RetentionPredicate = Box<dyn Fn(&StoredEvent<serde_json::Value>) -> bool + Send>;

/// What a compaction does with the events of the sealed segments.
#[non_exhaustive]
#[derive(Default)]
pub enum CompactionStrategy {
    /// Keep every event; pack the sealed segments into as few as fit
    /// (each output up to `segment_max_bytes` or 256 MiB, whichever is larger).
    #[default]
    Merge,
    /// Keep the events for which the predicate is true, remove the rest.
    /// The last event of each entity within the sealed segments is kept as
    /// a tombstone instead of removed, so the entity's chain and clock go on.
    Retention(RetentionPredicate),
    /// Keep every event; those for which the predicate is false become
    /// tombstones: kind [`crate::event::EventKind::TOMBSTONE`], payload
    /// `null`, same id, coordinate, clock and hash.
    Tombstone(RetentionPredicate),
}

impl std::fmt::Debug for CompactionStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Merge => "Merge",
            Self::Retention(_) => "Retention(<predicate>)",
            Self::Tombstone(_) => "Tombstone(<predicate>)",
        })
    }
}

/// Settings of [`crate::store::Store::compact`].
#[derive(Debug)]
pub struct CompactionConfig {
    /// What to do with the events.
    pub strategy: CompactionStrategy,
    /// Do nothing unless at least this many sealed segments exist (default 2).
    pub min_segments: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self { strategy: CompactionStrategy::Merge, min_segments: 2 }
    }
}

/// What a compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionResult {
    /// Segment files fewer than before.
    pub segments_removed: usize,
    /// Bytes of segment files fewer than before.
    pub bytes_reclaimed: u64,
    /// Events removed (`Retention`).
    pub events_removed: u64,
    /// Events turned into tombstones.
    pub events_tombstoned: u64,
}

/// What the writer reports when a compaction begins.
pub(crate) struct CompactionStart {
    /// The sealed segments, in order.
    pub run: Vec<u64>,
    /// Every event below this sequence is published; the rewrite covers them.
    pub watermark: u64,
}
