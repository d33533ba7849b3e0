//! Fault injection for crash tests (feature `dangerous-test-hooks`).
//!
//! The writer calls [`FaultInjector::check`] at each [`InjectionPoint`]; a
//! returned error makes the operation fail there, exactly as a real I/O
//! failure at that step would. Without the feature none of this exists and
//! the writer's hook calls compile to nothing.

use crate::store::StoreError;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A step of the writer where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectionPoint {
    /// A validated batch is about to be written.
    BatchStart {
        /// The batch id (its first sequence).
        batch_id: u64,
        /// Items.
        item_count: usize,
    },
    /// The batch's begin record is written.
    BatchBeginWritten {
        /// The batch id.
        batch_id: u64,
        /// Items.
        item_count: usize,
    },
    /// One item's frame is written.
    BatchItemWritten {
        /// The batch id.
        batch_id: u64,
        /// The item.
        item_index: usize,
        /// Items.
        total_items: usize,
    },
    /// Every item's frame is written.
    BatchItemsComplete {
        /// The batch id.
        batch_id: u64,
        /// Items.
        item_count: usize,
    },
    /// The commit record is written.
    BatchCommitWritten {
        /// The batch id.
        batch_id: u64,
    },
    /// Just before the batch's fsync.
    BatchFsync {
        /// The batch id.
        batch_id: u64,
    },
    /// Durable, about to enter the index.
    BatchPrePublish {
        /// The batch id.
        batch_id: u64,
        /// Items.
        item_count: usize,
    },
    /// A single append is about to be written.
    SingleAppendStart {
        /// The entity.
        entity: &'static str,
    },
    /// A single append's frame is written.
    SingleAppendWritten {
        /// The entity.
        entity: &'static str,
    },
    /// The active segment is about to be sealed and a new one created.
    SegmentRotation {
        /// The segment being sealed.
        old_segment: u64,
        /// The segment about to be created.
        new_segment: u64,
    },
    /// A new segment's header is written and fsynced under a temporary
    /// name; the segment does not exist under its own name yet.
    SegmentStaged {
        /// The segment being created.
        segment: u64,
    },
    /// A compaction's outputs are written and fsynced; its plan is not yet written.
    CompactionOutputsWritten {
        /// Output segments.
        outputs: usize,
    },
    /// A compaction's plan is durable (it has happened); its files are not yet in place.
    CompactionCommitted,
}

/// Decides whether to fail at an injection point.
pub trait FaultInjector: Send + Sync {
    /// `Some(error)` fails the operation at `point`.
    fn check(&self, point: InjectionPoint) -> Option<StoreError>;
    /// Checks the injector's own settings (called at open).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// Whether this injector may fail operations (not a batpak 0.3.0
    /// method). While an injector that does is configured, the writer
    /// writes every batch on its own thread so each point fires in order;
    /// one that only observes (`false`) leaves the writer on the paths it
    /// takes without an injector, its I/O helper included.
    fn injects(&self) -> bool {
        true
    }
    /// Sees each fsync and each change of the directory's names as it
    /// happens, on the thread doing it (not a batpak 0.3.0 method; the
    /// default ignores them). An observer may read the step's files: what
    /// a file holds at `FileSyncing` is durable once its `FileSynced` is
    /// reported. Only the active segment is written to while it is being
    /// fsynced (the periodic fsync of single appends runs on a helper
    /// thread, `batpak-sync-ahead`), and bytes written meanwhile may or may
    /// not be carried by that fsync. The power-loss simulation in
    /// host/tests/power_loss.rs models what survives from these steps.
    fn observe_io(&self, step: IoStep<'_>) {
        let _ = step;
    }
    /// `Some(error)` makes the fsync of `name` in `dir` fail with it,
    /// without syncing anything (not a batpak 0.3.0 method; the default
    /// fails none). Asked right after `FileSyncing` is reported; a failed
    /// fsync reports no `FileSynced`. It models a disk that reports a
    /// write-back error.
    fn fail_fsync(&self, dir: &std::path::Path, name: &str) -> Option<std::io::Error> {
        let _ = (dir, name);
        None
    }
}

/// A durability step of the store's file I/O, reported to
/// [`FaultInjector::observe_io`]. `dir` is the data directory and `name` a
/// file in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoStep<'a> {
    /// `name` is about to be fsynced; what it holds is not yet durable.
    FileSyncing {
        /// The data directory.
        dir: &'a std::path::Path,
        /// The file.
        name: &'a str,
    },
    /// `name`'s contents are durable (the fsync returned).
    FileSynced {
        /// The data directory.
        dir: &'a std::path::Path,
        /// The file.
        name: &'a str,
    },
    /// The directory is about to be fsynced.
    DirSyncing {
        /// The data directory.
        dir: &'a std::path::Path,
    },
    /// Every name change so far is durable.
    DirSynced {
        /// The data directory.
        dir: &'a std::path::Path,
    },
    /// A name was created, linked, renamed or removed (durable only after
    /// the next `DirSynced`).
    NamesChanged {
        /// The data directory.
        dir: &'a std::path::Path,
    },
}

/// What a countdown injector does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountdownAction {
    /// Fail with this message.
    Fail(&'static str),
    /// Count but never fail.
    Noop,
}

type PointFilter = Arc<dyn Fn(InjectionPoint) -> bool + Send + Sync>;

/// Fires on every matching point from the `trigger_after`-th onwards.
pub struct CountdownInjector {
    trigger_after: u64,
    seen: AtomicU64,
    action: CountdownAction,
    filter: Option<PointFilter>,
}

impl CountdownInjector {
    /// Fires from the `trigger_after`-th matching point on (1 = the first).
    pub fn new(trigger_after: u64, action: CountdownAction) -> Self {
        Self { trigger_after, seen: AtomicU64::new(0), action, filter: None }
    }

    /// Only points passing `filter` count.
    pub fn with_filter(mut self, filter: impl Fn(InjectionPoint) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Fails once `n` items of a batch are written.
    pub fn after_batch_items(n: usize) -> Self {
        Self::new(1, CountdownAction::Fail("injected after batch items")).with_filter(
            move |p| matches!(p, InjectionPoint::BatchItemWritten { item_index, .. } if item_index + 1 == n),
        )
    }

    /// Fails right after a batch's begin record is written.
    pub fn after_batch_begin() -> Self {
        Self::new(1, CountdownAction::Fail("injected after batch begin"))
            .with_filter(|p| matches!(p, InjectionPoint::BatchBeginWritten { .. }))
    }

    /// Fails after a batch's commit record is written, before its fsync.
    pub fn after_commit_before_fsync() -> Self {
        Self::new(1, CountdownAction::Fail("injected after commit, before fsync"))
            .with_filter(|p| matches!(p, InjectionPoint::BatchCommitWritten { .. }))
    }
}

impl FaultInjector for CountdownInjector {
    fn check(&self, point: InjectionPoint) -> Option<StoreError> {
        if let Some(filter) = &self.filter {
            if !filter(point) {
                return None;
            }
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        match self.action {
            CountdownAction::Fail(msg) if n >= self.trigger_after => {
                Some(StoreError::FaultInjected(format!("{msg} at {point:?}")))
            }
            _ => None,
        }
    }
}

/// Fires on each matching point with probability `p` (deterministic per seed).
pub struct ProbabilisticInjector {
    threshold: u64,
    state: AtomicU64,
    action: CountdownAction,
    filter: Option<PointFilter>,
}

impl ProbabilisticInjector {
    /// Fires with probability `p`, clamped to `[0, 1]`.
    pub fn new(p: f64, action: CountdownAction) -> Self {
        Self::with_seed(p, action, 0x9E37_79B9_7F4A_7C15)
    }

    /// Like [`ProbabilisticInjector::new`] with an explicit seed.
    pub fn with_seed(p: f64, action: CountdownAction, seed: u64) -> Self {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        let threshold = if p >= 1.0 { u64::MAX } else { (p * u64::MAX as f64) as u64 };
        Self { threshold, state: AtomicU64::new(seed | 1), action, filter: None }
    }

    /// Only points passing `filter` count.
    pub fn with_filter(mut self, filter: impl Fn(InjectionPoint) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    fn next(&self) -> u64 {
        // xorshift64*: small, deterministic, good enough for test faults.
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl FaultInjector for ProbabilisticInjector {
    fn check(&self, point: InjectionPoint) -> Option<StoreError> {
        if self.filter.as_ref().is_some_and(|f| !f(point)) {
            return None;
        }
        match self.action {
            CountdownAction::Fail(msg) if self.threshold > 0 && self.next() <= self.threshold => {
                Some(StoreError::FaultInjected(format!("{msg} at {point:?}")))
            }
            _ => None,
        }
    }
}

/// Runs the injector, if any, at `point`.
pub fn maybe_inject(
    point: InjectionPoint,
    injector: &Option<Arc<dyn FaultInjector>>,
) -> Result<(), StoreError> {
    match injector.as_ref().and_then(|i| i.check(point)) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Entity names as `&'static str` for injection points. Entities are
/// leaked once each, and only while an injector is installed (test builds).
pub(crate) fn static_entity(entity: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = NAMES.lock();
    let names = guard.get_or_insert_with(HashSet::new);
    if let Some(found) = names.get(entity) {
        return found;
    }
    let leaked: &'static str = Box::leak(entity.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}
