//! Single appends that run on their caller's thread while the writer is
//! idle (docs/design.md, "Who runs the writer"): when they do, when they
//! must not, and that concurrency, projection installs and panics keep
//! every invariant of the single writer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::plugin::{GatePlugin, ProjectionPlugin};
use batpak::prelude::*;
use batpak_test_artifacts as art;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "caller").expect("coord")
}

fn in_caller(store: &Store) -> u64 {
    store.diagnostics().single_appends_in_caller
}

/// Every entity's stream has clocks 0..n and a chain that links; the
/// global sequences are 0..total with no gap or repeat.
fn assert_log_is_whole(store: &Store, total: usize) {
    assert_eq!(store.stats().event_count, total);
    assert!(store.verify().is_ok(), "verify: {:?}", store.verify());
    let all = store.query(&Region::all());
    let mut seqs: Vec<u64> = all.iter().map(|e| e.global_sequence).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..total as u64).collect::<Vec<_>>());
    let mut per_entity: HashMap<String, usize> = HashMap::new();
    for e in &all {
        *per_entity.entry(e.coord.entity().to_string()).or_default() += 1;
    }
    for (entity, n) in per_entity {
        let stream = store.stream(&entity);
        assert_eq!(stream.len(), n);
        for (i, e) in stream.iter().enumerate() {
            assert_eq!(e.clock as usize, i, "{entity}: clock {} at position {i}", e.clock);
            if i > 0 {
                assert_eq!(e.hash_chain.prev_hash, stream[i - 1].hash_chain.event_hash, "{entity}: chain");
            }
        }
    }
}

#[test]
fn an_idle_writer_lets_a_lone_caller_append_itself() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    for i in 0..300 {
        store.append(&coord(&format!("e:{}", i % 7)), EventKind::DATA, &json!({"i": i})).expect("append");
    }
    assert_eq!(in_caller(&store), 300, "nothing was queued, so every append ran in its caller");
    // A batch and a sync still go through the writer thread.
    let item = BatchAppendItem::new(
        coord("e:0"),
        EventKind::DATA,
        &json!({}),
        AppendOptions::new(),
        CausationRef::None,
    )
    .expect("item");
    store.append_batch(vec![item]).expect("batch");
    store.sync().expect("sync");
    assert_eq!(in_caller(&store), 300);
    // CAS and idempotency behave the same on this path.
    let head = store.stream("e:0").last().map(|e| e.clock).expect("head");
    let stale = AppendOptions::new().with_cas(head.saturating_sub(1));
    assert!(matches!(
        store.append_with_options(&coord("e:0"), EventKind::DATA, &json!({}), stale),
        Err(StoreError::SequenceMismatch { .. })
    ));
    let keyed = AppendOptions::new().with_idempotency(42);
    let first =
        store.append_with_options(&coord("e:9"), EventKind::DATA, &json!({"k": 1}), keyed).expect("first");
    let again =
        store.append_with_options(&coord("e:9"), EventKind::DATA, &json!({"k": 1}), keyed).expect("retry");
    assert_eq!(first.sequence, again.sequence);
    assert_log_is_whole(&store, 302);
    store.close().expect("close");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
    assert_log_is_whole(&store, 302);
}

#[test]
fn an_fsync_per_append_keeps_appends_on_the_writer_thread() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path()).with_sync_every_n_events(1)).expect("open");
    for i in 0..20 {
        store.append(&coord("e"), EventKind::DATA, &json!({"i": i})).expect("append");
    }
    assert_eq!(in_caller(&store), 0, "group commit shares fsyncs; callers must queue for it");
}

#[test]
fn guests_keep_appends_on_the_writer_thread() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    store.append(&coord("e"), EventKind::DATA, &json!({})).expect("append");
    assert_eq!(in_caller(&store), 1);
    let gate = GatePlugin::from_file(art::ALLOW_ALL).expect("gate").with_name("allow");
    store.install_gate(gate).expect("install gate");
    for _ in 0..5 {
        store.append(&coord("e"), EventKind::DATA, &json!({})).expect("append");
    }
    assert_eq!(in_caller(&store), 1, "a gate runs on the writer's own stack");
    store.remove_gate("allow").expect("remove gate");
    store.append(&coord("e"), EventKind::DATA, &json!({})).expect("append");
    assert_eq!(in_caller(&store), 2);
    store
        .install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).expect("read"))
        .expect("install");
    store.append(&coord("e"), EventKind::DATA, &json!({})).expect("append");
    assert_eq!(in_caller(&store), 2, "an in-writer projection runs on the writer's own stack");
    assert_log_is_whole(&store, 8);
}

/// Many threads mixing single appends (some in their callers, some queued),
/// batches, CAS appends and syncs on shared and own entities: the log is
/// whole, every receipt names its own event, and a subscriber sees every
/// event once, in sequence order.
#[test]
fn concurrent_callers_keep_one_writer_order() {
    const THREADS: usize = 6;
    const PER_THREAD: usize = 400;
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(StoreConfig::new(tmp.path())).expect("open"));
    let sub = store.subscribe_lossy(&Region::all());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut written = Vec::new();
                for i in 0..PER_THREAD {
                    let entity = if i % 2 == 0 { format!("own:{t}") } else { format!("shared:{}", i % 3) };
                    match i % 50 {
                        7 => {
                            let items = (0..3)
                                .map(|k| {
                                    BatchAppendItem::new(
                                        coord(&entity),
                                        EventKind::DATA,
                                        &json!({"t": t, "i": i, "k": k}),
                                        AppendOptions::new(),
                                        CausationRef::None,
                                    )
                                    .expect("item")
                                })
                                .collect();
                            written.extend(store.append_batch(items).expect("batch"));
                        }
                        13 => store.sync().expect("sync"),
                        _ => written.push(
                            store
                                .append(&coord(&entity), EventKind::DATA, &json!({"t": t, "i": i}))
                                .expect("append"),
                        ),
                    }
                }
                written
            })
        })
        .collect();
    let receipts: Vec<AppendReceipt> = handles.into_iter().flat_map(|h| h.join().expect("join")).collect();
    let total = receipts.len();
    let by_id: HashMap<u128, u64> =
        store.query(&Region::all()).iter().map(|e| (e.event_id, e.global_sequence)).collect();
    for r in &receipts {
        assert_eq!(by_id.get(&r.event_id), Some(&r.sequence), "a receipt names its own event");
    }
    assert_log_is_whole(&store, total);
    let mut seen = Vec::new();
    while seen.len() < total {
        match sub.recv() {
            Some(n) => seen.push(n.sequence),
            None => break,
        }
    }
    assert_eq!(seen, (0..total as u64).collect::<Vec<_>>(), "one notification per event, in order");
    assert!(in_caller(&store) <= (total as u64));
}

/// Projections installed and removed while another thread appends (mostly
/// on its own thread): an install waits for any append running in a
/// caller, no guest ever runs on a caller's thread (a debug assertion in
/// the writer), and the last install folds every event exactly once.
#[test]
fn projections_installed_mid_stream_miss_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(StoreConfig::new(tmp.path())).expect("open"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        let account = Coordinate::new("account:0", "bank").expect("coord");
        std::thread::spawn(move || {
            let mut n: i64 = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.append(&account, EventKind::custom(1, 1), &json!({"amount": 1})).expect("deposit");
                n += 1;
            }
            n
        })
    };
    let wait_for_more = |more: usize| {
        let target = store.stats().event_count + more;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while store.stats().event_count < target {
            assert!(!appender.is_finished(), "the appender stopped: {:?}", store.diagnostics().recovery);
            assert!(std::time::Instant::now() < deadline, "no progress in 60 s");
            std::thread::yield_now();
        }
    };
    let balance = || ProjectionPlugin::from_file(art::BALANCE).expect("read");
    wait_for_more(100);
    let before_any = in_caller(&store);
    for _ in 0..8 {
        store.install_projection("balance", balance()).expect("install");
        store.remove_projection("balance").expect("remove");
        wait_for_more(100);
    }
    store.install_projection("balance", balance()).expect("install");
    wait_for_more(300);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let deposits = appender.join().expect("join");
    let state = store.projection_state("balance", "account:0").expect("state").expect("a balance");
    assert_eq!(String::from_utf8(state).expect("utf8"), deposits.to_string());
    assert!(before_any > 0, "the appends before the first install ran in their caller");
}

/// Panics on the first two writes of `entity`.
#[cfg(feature = "dangerous-test-hooks")]
struct PanicOn(&'static str, std::sync::atomic::AtomicU32);

#[cfg(feature = "dangerous-test-hooks")]
impl batpak::store::FaultInjector for PanicOn {
    fn check(&self, point: batpak::store::InjectionPoint) -> Option<StoreError> {
        if let batpak::store::InjectionPoint::SingleAppendStart { entity, .. } = point {
            if entity == self.0 && self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                panic!("planted panic in a single append");
            }
        }
        None
    }
}

/// A panic while a caller runs the writer costs a restart from the same
/// budget as a panic on the writer thread; past the budget every append
/// fails with `WriterCrashed`, and nothing acknowledged is lost.
#[cfg(feature = "dangerous-test-hooks")]
#[test]
fn a_panic_in_a_caller_spends_the_writer_restart_budget() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = StoreConfig::new(tmp.path());
    cfg.fault_injector = Some(Arc::new(PanicOn("boom", std::sync::atomic::AtomicU32::new(0))));
    let store = Store::open(cfg).expect("open");
    store.append(&coord("ok"), EventKind::DATA, &json!({"n": 1})).expect("append");
    assert!(matches!(
        store.append(&coord("boom"), EventKind::DATA, &json!({})),
        Err(StoreError::WriterCrashed)
    ));
    store.append(&coord("ok"), EventKind::DATA, &json!({"n": 2})).expect("the restarted writer serves");
    assert!(matches!(
        store.append(&coord("boom"), EventKind::DATA, &json!({})),
        Err(StoreError::WriterCrashed)
    ));
    assert!(matches!(
        store.append(&coord("ok"), EventKind::DATA, &json!({"n": 3})),
        Err(StoreError::WriterCrashed)
    ));
    assert_eq!(in_caller(&store), 4, "each append but the last ran in its caller");
    drop(store);
    let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
    assert_log_is_whole(&store, 2);
    assert_eq!(store.stream("ok").len(), 2);
}
