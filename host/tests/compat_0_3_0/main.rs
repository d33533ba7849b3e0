//! Source compatibility with batpak 0.3.0, written from its reference
//! description (shared/reference/batpak-0.3.0.md §0–§1): every path used
//! here is a 0.3.0 path, every call has 0.3.0's argument and return types,
//! and config structs are built by literal as 0.3.0 code builds them.

//!
//! `main.rs` holds the paths and config literals; the modules call every
//! function and method §1 lists, one module per part of the reference, and
//! check the behaviour the reference gives for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

mod policy;
mod store_api;
mod values;

use batpak::coordinate::position::DagPosition as PositionAtItsPath;
use batpak::coordinate::{
    Coordinate, CoordinateError, DagPosition, KindFilter, Region, MAX_COORDINATE_COMPONENT_LEN,
};
use batpak::event::hash::HashChain as HashAtItsPath;
use batpak::event::header::EventHeader as HeaderAtItsPath;
use batpak::event::kind::EventKind as KindAtItsPath;
use batpak::event::sourcing::{EventSourced, Reactive};
use batpak::event::{Event, EventHeader, EventKind, HashChain, StoredEvent};
use batpak::guard::denial::Denial as DenialAtItsPath;
use batpak::guard::receipt::Receipt as ReceiptAtItsPath;
use batpak::guard::{Denial, Gate, GateSet};
use batpak::id::{generate_v7_id, EntityIdType, EventId};
use batpak::outcome::combine::{join_all, join_any, zip};
use batpak::outcome::error::{ErrorKind, OutcomeError};
use batpak::outcome::wait::{CompensationAction, WaitCondition};
use batpak::outcome::Outcome;
use batpak::pipeline::bypass::{BypassReason, BypassReceipt};
use batpak::pipeline::{Committed, Pipeline, Proposal};
use batpak::store::cursor::Cursor as CursorAtItsPath;
use batpak::store::index::{
    ClockKey as ClockKeyAtItsPath, DiskPos as DiskPosAtItsPath, IndexEntry as EntryAtItsPath,
};
use batpak::store::projection::{
    CacheCapabilities, CacheMeta, Freshness, NativeCache, NoCache, ProjectionCache, ProjectionWatcher,
};
use batpak::store::segment::{
    frame_decode, frame_encode, segment_filename, FrameDecodeError, SegmentHeader, SEGMENT_EXTENSION,
    SEGMENT_MAGIC,
};
use batpak::store::stats::{StoreDiagnostics, StoreStats};
use batpak::store::subscription::{Subscription, SubscriptionOps};
use batpak::store::{
    AppendOptions, AppendReceipt, BatchAppendItem, BatchConfig, BatchStage, CausationRef, ClockKey,
    CompactionConfig, CompactionStrategy, Cursor, DiskPos, IndexConfig, IndexEntry, IndexLayout,
    Notification, RestartPolicy, Store, StoreConfig, StoreError, SyncConfig, SyncMode, WriterConfig,
};
use batpak::typestate::transition::Transition as TransitionAtItsPath;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

fn coord(e: &str) -> Coordinate {
    Coordinate::new(e, "compat").unwrap()
}

/// Every field of 0.3.0's StoreConfig, by literal; sub-configs as 0.3.0
/// code writes them, with `..Default::default()`.
fn literal_config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        segment_max_bytes: 64 * 1024,
        fd_budget: 16,
        broadcast_capacity: 1024,
        single_append_max_bytes: 1024 * 1024,
        batch: BatchConfig { max_size: 512, max_bytes: 2 * 1024 * 1024, group_commit_max_batch: 1 },
        writer: WriterConfig {
            channel_capacity: 128,
            stack_size: None,
            restart_policy: RestartPolicy::Bounded { max_restarts: 2, within_ms: 60_000 },
            shutdown_drain_limit: 64,
            ..Default::default()
        },
        sync: SyncConfig { mode: SyncMode::SyncData, every_n_events: 1 },
        index: IndexConfig {
            layout: IndexLayout::AoS,
            incremental_projection: false,
            enable_checkpoint: true,
            ..Default::default()
        },
        clock: None,
        #[cfg(feature = "dangerous-test-hooks")]
        fault_injector: None,
    }
}

#[test]
fn a_config_built_by_literal_opens_and_its_builders_take_0_3_0_types() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = literal_config(tmp.path())
        .with_writer_stack_size(Some(8 * 1024 * 1024))
        .with_writer_stack_size(None)
        .with_sync_every_n_events(1)
        .with_group_commit_max_batch(0);
    let store: Store<batpak::store::Open> = Store::open(cfg).unwrap();
    let r: AppendReceipt = store.append(&coord("a"), EventKind::DATA, &json!({"n": 1})).unwrap();
    let _: DiskPos = r.disk_pos;
    let stats: StoreStats = store.stats();
    assert_eq!((stats.event_count, stats.global_sequence), (1, 1));
    let diag: StoreDiagnostics = store.diagnostics();
    assert_eq!(diag.segment_max_bytes, 64 * 1024);
    assert_eq!(diag.fd_budget, 16);
    store.close().unwrap();
}

#[derive(Default, Serialize, Deserialize)]
struct Count(u64);

impl EventSourced<Value> for Count {
    fn from_events(events: &[Event<Value>]) -> Option<Self> {
        let mut c = Count(0);
        events.iter().for_each(|e| c.apply_event(e));
        Some(c)
    }
    fn apply_event(&mut self, _: &Event<Value>) {
        self.0 += 1;
    }
    fn relevant_event_kinds() -> &'static [EventKind] {
        &[]
    }
}

#[test]
fn events_positions_and_projections_at_their_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    for n in 0..3 {
        store.append(&coord("p"), EventKind::DATA, &json!({"n": n})).unwrap();
    }
    let last = store.stream("p").last().cloned().unwrap();
    let stored: StoredEvent<Value> = store.get(last.event_id).unwrap();
    let from_stored: &DagPosition = stored.position();
    let from_event: &PositionAtItsPath = stored.event.position();
    assert_eq!(from_stored, from_event);
    assert_eq!(from_stored.sequence, 2, "v1 semantics: the sequence is the entity clock");
    let header: &HeaderAtItsPath = &stored.event.header;
    let _: &EventHeader = header;
    let _: KindAtItsPath = stored.event.event_kind();
    let _: Option<HashAtItsPath> = stored.event.hash_chain;
    assert!(HashChain::default().is_genesis());
    let count: Option<Count> = store.project("p", &Freshness::Consistent).unwrap();
    assert_eq!(count.map(|c| c.0), Some(3));
    let stale = Freshness::MaybeStale { max_stale_ms: 10 };
    assert_eq!(store.project::<Count>("p", &stale).unwrap().map(|c| c.0), Some(3));
    // Cache items at batpak::store::projection (and at batpak::store).
    let caps: CacheCapabilities = CacheCapabilities::none();
    assert!(!caps.supports_prefetch);
    assert!(CacheCapabilities::prefetch_hints().supports_prefetch);
    let meta = CacheMeta { watermark: 7, cached_at_us: 1 };
    let cache = NativeCache::open(tmp.path().join("cache")).unwrap();
    cache.put(b"k", b"v", meta).unwrap();
    let (value, got): (Vec<u8>, CacheMeta) = cache.get(b"k").unwrap().unwrap();
    assert_eq!((value.as_slice(), got.watermark), (&b"v"[..], 7));
    let _: Box<dyn ProjectionCache> = Box::new(NoCache);
    let _: Option<ProjectionWatcher<Count>> = None;
    let _: Option<batpak::store::Freshness> = Some(Freshness::Consistent);
    let _: Option<batpak::store::NativeCache> = None;
    let _: Option<batpak::store::CacheMeta> = None;
}

#[test]
fn outcome_modules_are_public_and_combine() {
    let a: Outcome<u32> = Outcome::ok(1);
    let b: Outcome<u32> = Outcome::ok(2);
    assert!(zip(a, b).is_ok());
    let all = join_all(vec![Outcome::ok(1u32), Outcome::ok(2)]);
    assert!(matches!(all, Outcome::Ok(v) if v == vec![1, 2]));
    let any: Outcome<u32> =
        join_any(vec![Outcome::err(OutcomeError::new(ErrorKind::NotFound, "x")), Outcome::ok(5)]);
    assert!(matches!(any, Outcome::Ok(5)));
    let _ = WaitCondition::Event { event_id: 9 };
    let _ = CompensationAction::Rollback { event_ids: vec![1] };
}

struct Migration;
impl BypassReason for Migration {
    fn name(&self) -> &'static str {
        "migration"
    }
    fn justification(&self) -> &'static str {
        "historical import"
    }
}
static MIGRATION: Migration = Migration;

struct AlwaysYes;
impl Gate<()> for AlwaysYes {
    fn name(&self) -> &'static str {
        "yes"
    }
    fn evaluate(&self, _: &()) -> Result<(), Denial> {
        Ok(())
    }
}

#[test]
fn pipeline_bypass_is_a_module_and_a_function() {
    let receipt: BypassReceipt<u32> = batpak::pipeline::bypass(Proposal::new(7u32), &MIGRATION);
    assert_eq!((receipt.reason(), receipt.justification()), ("migration", "historical import"));
    let also: BypassReceipt<u32> = batpak::pipeline::bypass::bypass(Proposal::new(8u32), &MIGRATION);
    assert_eq!(*also.payload(), 8);
    let via_pipeline = Pipeline::<()>::bypass(Proposal::new(9u32), &MIGRATION);
    let committed: Result<Committed<u32>, StoreError> = Pipeline::<()>::commit_bypass(via_pipeline, |p| {
        Ok(Committed { payload: p, event_id: 1, sequence: 0, hash: [0; 32] })
    });
    assert_eq!(committed.unwrap().payload, 9);
    let mut gates = GateSet::new();
    gates.push(AlwaysYes);
    let receipt: ReceiptAtItsPath<u32> = Pipeline::new(gates).evaluate(&(), Proposal::new(1u32)).unwrap();
    assert_eq!(receipt.gates_passed(), &["yes"]);
    let _: Option<DenialAtItsPath> = None;
}

#[test]
fn segment_helpers_round_trip_and_reject_damage_with_typed_errors() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Body {
        n: u32,
        s: String,
    }
    let frame: Vec<u8> = frame_encode(&Body { n: 3, s: "x".into() }).unwrap();
    let (body, used): (&[u8], usize) = frame_decode(&frame).unwrap();
    assert_eq!(used, frame.len());
    assert_eq!(serde_json::from_slice::<Body>(body).unwrap(), Body { n: 3, s: "x".into() });
    for cut in 0..frame.len() {
        let err = frame_decode(&frame[..cut]).unwrap_err();
        assert!(matches!(err, FrameDecodeError::TooShort | FrameDecodeError::Truncated { .. }), "{cut}");
    }
    for i in 8..frame.len() {
        let mut bad = frame.clone();
        bad[i] ^= 0xff;
        assert!(matches!(frame_decode(&bad), Err(FrameDecodeError::CrcMismatch { .. })), "{i}");
    }
    let header = SegmentHeader { version: 1, flags: 0, created_ns: 1_000, segment_id: 3 };
    let json = serde_json::to_string(&header).unwrap();
    assert_eq!(serde_json::from_str::<SegmentHeader>(&json).unwrap(), header);
    assert_eq!(segment_filename(3), format!("000003.{SEGMENT_EXTENSION}"));
    assert_eq!(SEGMENT_MAGIC.len(), 4);
}

#[test]
fn reads_cursors_subscriptions_and_contracts_at_their_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    let sub: Subscription = store.subscribe_lossy(&Region::entity("r"));
    let _: SubscriptionOps = store.subscribe_lossy(&Region::all()).ops();
    let first = store.append(&coord("r"), EventKind::DATA, &json!(1)).unwrap();
    let items = vec![BatchAppendItem::new(
        coord("r"),
        EventKind::DATA,
        &json!(2),
        AppendOptions::new().with_correlation(first.event_id),
        CausationRef::Absolute(first.event_id),
    )
    .unwrap()];
    store.append_batch(items).unwrap();
    let mut cursor: Cursor =
        store.cursor_guaranteed(&Region::all().with_fact(KindFilter::Exact(EventKind::DATA)));
    let seen: Vec<IndexEntry> = cursor.poll_batch(10);
    assert_eq!(seen.len(), 2);
    assert!(seen[1].is_caused_by(first.event_id));
    let n: Notification = sub.recv().unwrap();
    assert_eq!(n.event_id, first.event_id);
    let _ = ClockKey { wall_ms: 0, clock: 0, uuid: 0 };
    let _: Option<(CursorAtItsPath, EntryAtItsPath, DiskPosAtItsPath, ClockKeyAtItsPath)> = None;
    let _: CompactionConfig = CompactionConfig { strategy: CompactionStrategy::Merge, min_segments: 2 };
    let _: BatchStage = BatchStage::Validation;
    assert!(matches!(Coordinate::new("", "s"), Err(CoordinateError::EmptyEntity)));
    assert_eq!(MAX_COORDINATE_COMPONENT_LEN, 1024);
    let id = EventId::new(generate_v7_id());
    assert_ne!(id.as_u128(), 0);
    let _: Option<TransitionAtItsPath<(), (), u8>> = None;
    let _: Option<&dyn Reactive<Value>> = None;
    let _ = Arc::new(store);
}

#[cfg(feature = "dangerous-test-hooks")]
#[test]
fn the_test_hooks_have_0_3_0_signatures() {
    use batpak::store::fault::{CountdownAction, CountdownInjector, FaultInjector, InjectionPoint};
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(tmp.path());
    let injector: Arc<dyn FaultInjector> = Arc::new(CountdownInjector::new(1, CountdownAction::Noop));
    assert!(injector.check(InjectionPoint::BatchFsync { batch_id: 0 }).is_none());
    cfg.fault_injector = Some(injector);
    let store = Store::open(cfg).unwrap();
    let result: Result<(), StoreError> = store.panic_writer_for_test();
    result.unwrap();
    store.append(&coord("after"), EventKind::DATA, &json!(1)).unwrap();
}

#[test]
fn a_raw_segment_takes_frames_and_copies_a_store_segments_frames() {
    use batpak::store::segment::{Active, FramePayload, Sealed, Segment};
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(store_dir.path())).unwrap();
    for n in 0..3 {
        store.append(&coord("raw"), EventKind::DATA, &json!({"n": n})).unwrap();
    }
    let original = store.get(store.stream("raw")[0].event_id).unwrap();
    store.close().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut seg: Segment<Active> = Segment::create(out.path(), 7).unwrap();
    assert!(Segment::<Active>::create(out.path(), 7).is_err(), "create never replaces a segment");
    let copied = seg.append_frames_from_segment(&store_dir.path().join(segment_filename(1))).unwrap();
    assert!(copied > 0);
    // Every copied byte is a whole, CRC-checked frame (the footer was left out).
    let bytes = std::fs::read(seg.path()).unwrap();
    let mut at = 32;
    let mut frames = 0;
    while at < bytes.len() {
        let (_, used) = frame_decode(&bytes[at..]).unwrap();
        at += used;
        frames += 1;
    }
    assert!(frames >= 3, "string records and three events");
    let payload = FramePayload { event: original.event, entity: "raw".into(), scope: "compat".into() };
    let offset = seg.write_frame(&frame_encode(&payload).unwrap()).unwrap();
    assert_eq!(offset as usize, bytes.len());
    assert!(!seg.needs_rotation(1 << 20) && seg.needs_rotation(64));
    seg.sync_with_mode(&SyncMode::SyncData).unwrap();
    let sealed: Segment<Sealed> = seg.seal().unwrap();
    let bytes = std::fs::read(sealed.path()).unwrap();
    let (body, _) = frame_decode(&bytes[offset as usize..]).unwrap();
    let back: FramePayload<Value> = serde_json::from_slice(body).unwrap();
    assert_eq!(back.event.payload, json!({"n": 0}));
    assert_eq!(sealed.len(), bytes.len() as u64);
}
