//! §1.10–§1.15 and §1.17: the store's constructors, writes, reads,
//! maintenance, every config builder, contracts, errors, read types and the
//! projection cache, called as 0.3.0 code calls them.

use batpak::coordinate::{Coordinate, Region};
use batpak::event::sourcing::{EventSourced, Reactive};
use batpak::event::{Event, EventKind, StoredEvent};
use batpak::store::projection::{CacheCapabilities, CacheMeta, Freshness, NativeCache, ProjectionCache};
use batpak::store::segment::CompactionResult;
use batpak::store::{
    AppendOptions, BatchAppendItem, BatchStage, CausationRef, Closed, CompactionConfig, CompactionStrategy,
    IndexLayout, RestartPolicy, RetentionPredicate, Store, StoreConfig, StoreError, SyncMode,
};
use batpak::typestate::transition::Transition;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn coord(e: &str) -> Coordinate {
    Coordinate::new(e, "compat").unwrap()
}

fn small(dir: &std::path::Path) -> StoreConfig {
    StoreConfig::new(dir).with_segment_max_bytes(4 * 1024).with_sync_every_n_events(1)
}

#[test]
fn every_config_builder_takes_its_0_3_0_type_and_bad_values_are_configuration_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Fn() -> i64 + Send + Sync> = Arc::new(|| 1_700_000_000_000_000);
    let cfg = StoreConfig::new(tmp.path())
        .with_segment_max_bytes(1 << 20)
        .with_fd_budget(8)
        .with_broadcast_capacity(64)
        .with_single_append_max_bytes(1 << 20)
        .with_batch_max_size(64)
        .with_batch_max_bytes(1 << 20)
        .with_group_commit_max_batch(1)
        .with_writer_channel_capacity(64)
        .with_writer_stack_size(None)
        .with_restart_policy(RestartPolicy::Once)
        .with_shutdown_drain_limit(16)
        .with_sync_mode(SyncMode::SyncAll)
        .with_sync_every_n_events(1000)
        .with_index_layout(IndexLayout::SoA)
        .with_incremental_projection(true)
        .with_enable_checkpoint(false)
        .with_clock(Some(clock));
    assert_eq!(cfg.fd_budget, 8);
    assert_eq!(cfg.batch.max_size, 64);
    assert!(cfg.index.incremental_projection && !cfg.index.enable_checkpoint);
    let store = Store::open(cfg.clone()).unwrap();
    let r = store.append(&coord("c"), EventKind::DATA, &1).unwrap();
    assert_eq!(store.get(r.event_id).unwrap().event.header.timestamp_us, 1_700_000_000_000_000);
    store.close().unwrap();
    let _ = format!("{cfg:?}");

    for layout in [IndexLayout::AoS, IndexLayout::SoA, IndexLayout::AoSoA8, IndexLayout::AoSoA16] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path()).with_index_layout(layout)).unwrap();
        store.append(&coord("l"), EventKind::DATA, &1).unwrap();
        assert_eq!(store.stream("l").len(), 1);
    }
    for layout in [IndexLayout::AoSoA64, IndexLayout::SoAoS] {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open(StoreConfig::new(dir.path()).with_index_layout(layout)).is_ok());
    }
    let bad = [
        StoreConfig::new(tmp.path()).with_segment_max_bytes(0),
        StoreConfig::new(tmp.path()).with_fd_budget(0),
        StoreConfig::new(tmp.path()).with_broadcast_capacity(0),
        StoreConfig::new(tmp.path()).with_single_append_max_bytes(65 * 1024 * 1024),
        StoreConfig::new(tmp.path()).with_batch_max_size(4097),
        StoreConfig::new(tmp.path()).with_batch_max_bytes(0),
        StoreConfig::new(tmp.path()).with_writer_channel_capacity(0),
    ];
    for cfg in bad {
        assert!(matches!(Store::open(cfg), Err(StoreError::Configuration(_))));
    }
    let _ = SyncMode::SyncData;
    let _ = RestartPolicy::Bounded { max_restarts: 1, within_ms: 1 };
}

#[test]
fn writes_with_options_reactions_batches_and_transitions() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    let c = coord("w");
    let root = store.append(&c, EventKind::DATA, &json!({"n": 0})).unwrap();
    let root_entry = store.stream("w")[0].clone();
    assert_eq!(root_entry.correlation_id, root.event_id, "correlation defaults to the event's own id");
    assert!(root_entry.is_root_cause() && !root_entry.is_correlated());

    let reaction =
        store.append_reaction(&c, EventKind::DATA, &json!({"n": 1}), root.event_id, root.event_id).unwrap();
    let entry =
        store.query(&Region::entity("w")).into_iter().find(|e| e.event_id == reaction.event_id).unwrap();
    assert!(entry.is_correlated() && entry.is_caused_by(root.event_id));

    let key = 0x1234_u128;
    let options = AppendOptions { idempotency_key: Some(key), ..AppendOptions::default() };
    let first = store.append_with_options(&c, EventKind::DATA, &json!({"n": 2}), options).unwrap();
    assert_eq!(first.event_id, key, "the idempotency key is the event id");
    let again = store.append_with_options(&c, EventKind::DATA, &json!({"n": 2}), options).unwrap();
    assert_eq!(again.sequence, first.sequence, "a retry returns the first receipt");

    // CAS names the entity's latest clock (events 0, 1, 2 so far).
    let cas = AppendOptions::new().with_cas(2).with_flags(1);
    store.append_with_options(&c, EventKind::DATA, &json!({"n": 3}), cas).unwrap();
    match store.append_with_options(&c, EventKind::DATA, &json!({"n": 4}), AppendOptions::new().with_cas(2)) {
        Err(StoreError::SequenceMismatch { entity, expected, actual }) => {
            assert_eq!((entity.as_str(), expected, actual), ("w", 2, 3));
        }
        other => panic!("{other:?}"),
    }
    let _ = AppendOptions::new().with_idempotency(9).with_correlation(1).with_causation(2);

    let items = vec![
        BatchAppendItem::new(
            coord("b"),
            EventKind::DATA,
            &json!(1),
            AppendOptions::new(),
            CausationRef::None,
        )
        .unwrap(),
        BatchAppendItem::new(
            coord("b"),
            EventKind::DATA,
            &json!(2),
            AppendOptions::new(),
            CausationRef::PriorItem(0),
        )
        .unwrap(),
    ];
    let receipts = store.append_reaction_batch(root.event_id, root.event_id, items).unwrap();
    let batch: Vec<_> = store.stream("b");
    assert!(batch.iter().all(|e| e.correlation_id == root.event_id));
    assert!(batch[0].is_caused_by(root.event_id));
    assert!(batch[1].is_caused_by(receipts[0].event_id));

    let forward = BatchAppendItem {
        coord: coord("b"),
        kind: EventKind::DATA,
        payload_bytes: b"1".to_vec(),
        options: AppendOptions::default(),
        causation: CausationRef::PriorItem(0),
    };
    match store.append_batch(vec![forward]) {
        Err(StoreError::BatchFailed { item_index: 0, stage: BatchStage::Validation, source }) => {
            assert!(!source.to_string().is_empty());
        }
        other => panic!("a PriorItem that is not prior: {other:?}"),
    }

    let t: Transition<(), (), Value> = Transition::new(EventKind::custom(2, 1), json!({"to": "open"}));
    let r = store.apply_transition(&coord("t"), t).unwrap();
    assert_eq!(store.get(r.event_id).unwrap().event.event_kind(), EventKind::custom(2, 1));
    store.sync().unwrap();
    let closed: Closed = store.close().unwrap();
    let _ = closed;
}

#[test]
fn reads_by_scope_fact_and_ancestors_and_subscription_ops() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    let kind = EventKind::custom(4, 2);
    let sub = store.subscribe_lossy(&Region::all());
    let receiver = sub.receiver().clone();
    let mut ops = store
        .subscribe_lossy(&Region::all())
        .ops()
        .filter(move |n| n.kind == kind)
        .map(|n| Some(n.clone()))
        .take(1);
    let a = store.append(&coord("x"), kind, &1).unwrap();
    let b = store.append_reaction(&coord("x"), EventKind::DATA, &2, a.event_id, a.event_id).unwrap();
    store.append(&Coordinate::new("y", "elsewhere").unwrap(), kind, &3).unwrap();
    assert_eq!(store.by_scope("compat").len(), 2);
    assert_eq!(store.by_fact(kind).len(), 2);
    let walk: Vec<StoredEvent<Value>> = store.walk_ancestors(b.event_id, 10);
    let ids: Vec<u128> = walk.iter().map(|e| e.event.event_id()).collect();
    assert_eq!(ids, vec![b.event_id, a.event_id], "newest to oldest, starting with itself");
    assert_eq!(store.walk_ancestors(b.event_id, 1).len(), 1);
    let n = ops.recv().unwrap();
    assert_eq!((n.event_id, n.sequence), (a.event_id, a.sequence));
    assert_eq!(receiver.recv_timeout(Duration::from_secs(5)).unwrap().event_id, a.event_id);
    let mut cursor = store.cursor_guaranteed(&Region::entity("x"));
    assert_eq!(cursor.poll().unwrap().event_id, a.event_id);
    assert_eq!(cursor.poll().unwrap().event_id, b.event_id);
    assert!(cursor.poll().is_none());
    let d = store.diagnostics();
    assert_eq!((d.event_count, d.global_sequence, d.visible_sequence), (3, 3, 3));
    assert_eq!(d.data_dir, tmp.path());
    assert!(matches!(d.restart_policy, RestartPolicy::Once));
    assert!(!d.index_layout.is_empty());
    let _ = d.tile_count;
    assert!(matches!(store.get(42), Err(StoreError::NotFound(42))));
}

#[derive(Default, Serialize, Deserialize, PartialEq, Debug)]
struct Total(i64);

impl EventSourced<Value> for Total {
    fn from_events(events: &[Event<Value>]) -> Option<Self> {
        let mut t = Total(0);
        events.iter().for_each(|e| t.apply_event(e));
        Some(t)
    }
    fn apply_event(&mut self, event: &Event<Value>) {
        self.0 += event.payload["amount"].as_i64().unwrap_or(0);
    }
    fn relevant_event_kinds() -> &'static [EventKind] {
        &[]
    }
    fn supports_incremental_apply() -> bool {
        true
    }
}

struct Echo;
impl Reactive<Value> for Echo {
    fn react(&self, event: &Event<Value>) -> Vec<(Coordinate, EventKind, Value)> {
        vec![(coord("echo"), EventKind::DATA, json!({"saw": event.payload["amount"]}))]
    }
}

#[test]
fn projections_through_caches_watchers_and_reactors() {
    assert_eq!(<Total as EventSourced<Value>>::schema_version(), 0, "the default");
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let store = Arc::new(
        Store::open_with_native_cache(StoreConfig::new(tmp.path().join("data")), &cache_dir).unwrap(),
    );
    let echoes = store.subscribe_lossy(&Region::entity("echo"));
    let handle = store.react_loop(&Region::entity("acct"), Echo).unwrap();
    let mut watcher = store.watch_projection::<Total>("acct", Freshness::Consistent);
    store.append(&coord("acct"), EventKind::DATA, &json!({"amount": 5})).unwrap();
    assert_eq!(watcher.recv().unwrap(), Some(Total(5)));
    store.append(&coord("acct"), EventKind::DATA, &json!({"amount": 7})).unwrap();
    assert_eq!(watcher.recv().unwrap(), Some(Total(12)));
    assert_eq!(store.project::<Total>("acct", &Freshness::Consistent).unwrap(), Some(Total(12)));
    for _ in 0..2 {
        let n = echoes.receiver().recv_timeout(Duration::from_secs(10)).expect("a reaction");
        assert_eq!(n.coord.entity(), "echo");
    }
    assert_eq!(store.stream("echo").len(), 2, "the reactor answered both events");
    drop(watcher);
    // The reactor may hold the store for a moment; it ends once the store is
    // gone, and the store is gone (its lock released) once it has ended.
    drop(store);
    handle.join().unwrap();

    let boxed: Box<dyn ProjectionCache> = Box::new(NativeCache::open(tmp.path().join("other")).unwrap());
    let store = Store::open_with_cache(StoreConfig::new(tmp.path().join("data")), boxed).unwrap();
    assert_eq!(
        store.project::<Total>("acct", &Freshness::MaybeStale { max_stale_ms: 1_000 }).unwrap(),
        Some(Total(12))
    );
    store.close().unwrap();

    let cache = NativeCache::open(tmp.path().join("direct")).unwrap();
    assert!(!cache.capabilities().supports_prefetch);
    let meta = CacheMeta { watermark: 1, cached_at_us: 2 };
    cache.put(b"proj/a", b"1", meta).unwrap();
    cache.put(b"proj/b", b"2", meta).unwrap();
    cache.put(b"other", b"3", meta).unwrap();
    cache.prefetch(b"proj/a", meta);
    assert_eq!(cache.delete_prefix(b"proj/").unwrap(), 2);
    assert!(cache.get(b"proj/a").unwrap().is_none());
    assert!(cache.get(b"other").unwrap().is_some());
    cache.sync().unwrap();
    let _: CacheCapabilities = CacheCapabilities { supports_prefetch: false };
}

#[test]
fn snapshot_and_compaction_by_merge_retention_and_tombstone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(small(tmp.path())).unwrap();
    for n in 0..200 {
        store
            .append(&coord(&format!("e{}", n % 4)), EventKind::DATA, &json!({"n": n, "pad": "x".repeat(40)}))
            .unwrap();
    }
    let backup = tmp.path().join("backup");
    store.snapshot(&backup).unwrap();
    let merged: CompactionResult = store.compact(&CompactionConfig::default()).unwrap();
    assert!(merged.segments_removed > 0);
    let keep_even: RetentionPredicate =
        Box::new(|e: &StoredEvent<Value>| e.event.payload["n"].as_u64().unwrap().is_multiple_of(2));
    let config = CompactionConfig { strategy: CompactionStrategy::Retention(keep_even), min_segments: 1 };
    store.compact(&config).unwrap();
    let remaining = store.query(&Region::all()).len();
    assert!(remaining < 200, "odd events in sealed segments are gone ({remaining} left)");
    let not_e0: RetentionPredicate = Box::new(|e: &StoredEvent<Value>| e.coordinate.entity() != "e0");
    let tomb = CompactionConfig { strategy: CompactionStrategy::Tombstone(not_e0), min_segments: 1 };
    store.compact(&tomb).unwrap();
    assert!(store.stream("e0").iter().any(|e| e.kind == EventKind::TOMBSTONE));
    store.close().unwrap();
    let restored = Store::open(StoreConfig::new(&backup)).unwrap();
    assert_eq!(restored.query(&Region::all()).len(), 200, "the snapshot is whole and reopens");
}

#[cfg(feature = "dangerous-test-hooks")]
#[test]
fn every_injector_and_injection_point_of_0_3_0() {
    use batpak::store::fault::{
        maybe_inject, CountdownAction, CountdownInjector, FaultInjector, InjectionPoint,
        ProbabilisticInjector,
    };
    let points = [
        InjectionPoint::BatchStart { batch_id: 1, item_count: 2 },
        InjectionPoint::BatchBeginWritten { batch_id: 1, item_count: 2 },
        InjectionPoint::BatchItemWritten { batch_id: 1, item_index: 0, total_items: 2 },
        InjectionPoint::BatchItemsComplete { batch_id: 1, item_count: 2 },
        InjectionPoint::BatchCommitWritten { batch_id: 1 },
        InjectionPoint::BatchFsync { batch_id: 1 },
        InjectionPoint::BatchPrePublish { batch_id: 1, item_count: 2 },
        InjectionPoint::SingleAppendStart { entity: "e" },
        InjectionPoint::SingleAppendWritten { entity: "e" },
        InjectionPoint::SegmentRotation { old_segment: 1, new_segment: 2 },
    ];
    let countdown = CountdownInjector::new(3, CountdownAction::Fail("boom"));
    let fired: Vec<bool> = points[..4].iter().map(|p| countdown.check(*p).is_some()).collect();
    assert_eq!(fired, vec![false, false, true, true], "fires from the third match on");
    assert!(countdown.validate().is_ok());
    let only_fsync = CountdownInjector::new(1, CountdownAction::Fail("fsync"))
        .with_filter(|p| matches!(p, InjectionPoint::BatchFsync { .. }));
    assert!(only_fsync.check(points[0]).is_none());
    assert!(matches!(only_fsync.check(points[5]), Some(StoreError::FaultInjected(m)) if m.contains("fsync")));
    let _ = (CountdownInjector::after_batch_items(2), CountdownInjector::after_batch_begin());
    let always: Option<Arc<dyn FaultInjector>> =
        Some(Arc::new(ProbabilisticInjector::new(1.0, CountdownAction::Fail("p")).with_filter(|_| true)));
    assert!(maybe_inject(points[6], &always).is_err());
    assert!(maybe_inject(points[6], &None).is_ok());

    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(tmp.path());
    cfg.fault_injector = Some(Arc::new(CountdownInjector::after_commit_before_fsync()));
    let store = Store::open(cfg).unwrap();
    let item =
        BatchAppendItem::new(coord("f"), EventKind::DATA, &1, AppendOptions::new(), CausationRef::None)
            .unwrap();
    assert!(store.append_batch(vec![item]).is_err());
    assert!(store.stream("f").is_empty(), "a failed batch is not visible");
}
