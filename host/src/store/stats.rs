//! [`StoreStats`] and [`StoreDiagnostics`].

use crate::store::config::RestartPolicy;
use crate::store::recovery::RecoveryReport;
use std::path::PathBuf;

/// Counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// Visible events, without those a compaction removed (so it can be
    /// less than `global_sequence`).
    pub event_count: usize,
    /// The next global sequence.
    pub global_sequence: u64,
}

/// Everything useful when something looks wrong.
#[derive(Clone, Debug)]
pub struct StoreDiagnostics {
    /// Visible events.
    pub event_count: usize,
    /// The next global sequence.
    pub global_sequence: u64,
    /// Exclusive bound of visible sequences.
    pub visible_sequence: u64,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Segment size limit.
    pub segment_max_bytes: u64,
    /// Open-file budget for reads.
    pub fd_budget: usize,
    /// Writer restart policy.
    pub restart_policy: RestartPolicy,
    /// Configured index layout name.
    pub index_layout: &'static str,
    /// Index chunk count (always 0: the index has a single layout).
    pub tile_count: usize,
    /// Distinct entities.
    pub entity_count: usize,
    /// Index entries (by position) kept in the index's scratch file rather
    /// than in memory (see [`crate::store::IndexConfig::resident_events`]).
    /// Not a batpak 0.3.0 field.
    pub index_entries_on_disk: u64,
    /// Values of the index's position lists (the id list and the
    /// per-scope and per-kind lists) kept in pages in that file rather
    /// than in memory. Not a batpak 0.3.0 field.
    pub index_list_values_on_disk: u64,
    /// Event ids that did not rise (idempotency keys, ids from a clock that
    /// stepped back) kept in sorted runs in that file rather than in the
    /// index's hash table in memory. Not a batpak 0.3.0 field.
    pub index_ids_on_disk: u64,
    /// Single appends since open that ran on their caller's thread because
    /// the writer was idle (see docs/design.md, "Who runs the writer").
    /// Not a batpak 0.3.0 field.
    pub single_appends_in_caller: u64,
    /// How the last open rebuilt the index.
    pub recovery: RecoveryReport,
    /// Installed gates, in order.
    pub gates: Vec<String>,
}
