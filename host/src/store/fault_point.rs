//! Constructors for injection points that exist only with the
//! `dangerous-test-hooks` feature. Without it every constructor returns
//! `None` of an uninhabited type, so the writer's checks compile away.

#[cfg(feature = "dangerous-test-hooks")]
mod enabled {
    use crate::store::fault::{static_entity, InjectionPoint};

    pub(crate) type Point = Option<InjectionPoint>;

    pub(crate) fn batch_start(batch_id: u64, item_count: usize) -> Point {
        Some(InjectionPoint::BatchStart { batch_id, item_count })
    }
    pub(crate) fn batch_begin_written(batch_id: u64, item_count: usize) -> Point {
        Some(InjectionPoint::BatchBeginWritten { batch_id, item_count })
    }
    pub(crate) fn batch_item_written(batch_id: u64, item_index: usize, total_items: usize) -> Point {
        Some(InjectionPoint::BatchItemWritten { batch_id, item_index, total_items })
    }
    pub(crate) fn batch_items_complete(batch_id: u64, item_count: usize) -> Point {
        Some(InjectionPoint::BatchItemsComplete { batch_id, item_count })
    }
    pub(crate) fn batch_commit_written(batch_id: u64) -> Point {
        Some(InjectionPoint::BatchCommitWritten { batch_id })
    }
    pub(crate) fn batch_fsync(batch_id: u64) -> Point {
        Some(InjectionPoint::BatchFsync { batch_id })
    }
    pub(crate) fn batch_pre_publish(batch_id: u64, item_count: usize) -> Point {
        Some(InjectionPoint::BatchPrePublish { batch_id, item_count })
    }
    pub(crate) fn single_start(entity: &str) -> Point {
        Some(InjectionPoint::SingleAppendStart { entity: static_entity(entity) })
    }
    pub(crate) fn single_written(entity: &str) -> Point {
        Some(InjectionPoint::SingleAppendWritten { entity: static_entity(entity) })
    }
    pub(crate) fn rotation(old_segment: u64, new_segment: u64) -> Point {
        Some(InjectionPoint::SegmentRotation { old_segment, new_segment })
    }
    pub(crate) fn segment_staged(segment: u64) -> Point {
        Some(InjectionPoint::SegmentStaged { segment })
    }
    pub(crate) fn compaction_outputs_written(outputs: usize) -> Point {
        Some(InjectionPoint::CompactionOutputsWritten { outputs })
    }
    pub(crate) fn compaction_committed() -> Point {
        Some(InjectionPoint::CompactionCommitted)
    }
    /// Whether an injector wants every point fired in order (the writer
    /// then writes batches inline instead of on its I/O helper).
    pub(crate) fn enabled(cfg: &crate::store::StoreConfig) -> bool {
        cfg.fault_injector.as_ref().is_some_and(|f| f.injects())
    }
}

#[cfg(not(feature = "dangerous-test-hooks"))]
mod enabled {
    pub(crate) type Point = Option<std::convert::Infallible>;

    pub(crate) fn batch_start(_: u64, _: usize) -> Point {
        None
    }
    pub(crate) fn batch_begin_written(_: u64, _: usize) -> Point {
        None
    }
    pub(crate) fn batch_item_written(_: u64, _: usize, _: usize) -> Point {
        None
    }
    pub(crate) fn batch_items_complete(_: u64, _: usize) -> Point {
        None
    }
    pub(crate) fn batch_commit_written(_: u64) -> Point {
        None
    }
    pub(crate) fn batch_fsync(_: u64) -> Point {
        None
    }
    pub(crate) fn batch_pre_publish(_: u64, _: usize) -> Point {
        None
    }
    pub(crate) fn single_start(_: &str) -> Point {
        None
    }
    pub(crate) fn single_written(_: &str) -> Point {
        None
    }
    pub(crate) fn rotation(_: u64, _: u64) -> Point {
        None
    }
    pub(crate) fn segment_staged(_: u64) -> Point {
        None
    }
    pub(crate) fn compaction_outputs_written(_: usize) -> Point {
        None
    }
    pub(crate) fn compaction_committed() -> Point {
        None
    }
    pub(crate) fn enabled(_: &crate::store::StoreConfig) -> bool {
        false
    }
}

pub(crate) use enabled::*;
