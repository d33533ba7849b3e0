//! Online compaction: what each strategy keeps, that every recovery path
//! agrees afterwards, that appends and reads go on during it, and that a
//! SIGKILL at any point leaves the old state or the new one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use batpak::store::segment::CompactionResult;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const SEGMENT: u64 = 4096;

mod common;
use common::leftovers;

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "scope").expect("valid coordinate")
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir).with_segment_max_bytes(SEGMENT)
}

/// `n` events over five entities (every seventh a batch of three), payload `{"i": i}`.
fn fill(store: &Store, from: u64, n: u64) {
    let mut i = from;
    while i < from + n {
        if i % 7 == 3 {
            let items = (0..3)
                .map(|j| {
                    BatchAppendItem::new(
                        coord(&format!("e{}", (i + j) % 5)),
                        EventKind::DATA,
                        &json!({"i": i + j}),
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                    .expect("item")
                })
                .collect();
            store.append_batch(items).expect("batch");
            i += 3;
        } else {
            store.append(&coord(&format!("e{}", i % 5)), EventKind::DATA, &json!({"i": i})).expect("append");
            i += 1;
        }
    }
}

/// Everything about each visible event except where it sits on disk.
type Facts = Vec<(u128, u64, u32, u16, [u8; 32], [u8; 32], Value)>;

fn facts(store: &Store) -> Facts {
    store
        .query(&Region::all())
        .into_iter()
        .map(|e| {
            let payload = store.get(e.event_id).expect("every listed event reads").event.payload;
            (
                e.event_id,
                e.global_sequence,
                e.clock,
                e.kind.as_raw(),
                e.hash_chain.prev_hash,
                e.hash_chain.event_hash,
                payload,
            )
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "fbat"))
        .collect();
    out.sort();
    out
}

/// Reopens through the checkpoint, then the footers, then a frame scan,
/// and checks each yields `expected` and verifies.
fn every_recovery_path_agrees(dir: &Path, expected: &Facts) {
    let store = Store::open(config(dir)).expect("open via checkpoint");
    assert_eq!(&facts(&store), expected, "checkpoint path");
    assert!(store.verify().is_ok(), "{:?}", store.verify().issues);
    store.close().expect("close");
    let _ = std::fs::remove_file(dir.join("index.ckpt"));
    let store = Store::open(config(dir)).expect("open via footers");
    assert!(store.diagnostics().recovery.from_footers > 0);
    assert_eq!(&facts(&store), expected, "footer path");
    drop(store);
    let _ = std::fs::remove_file(dir.join("index.ckpt"));
    for path in segment_files(dir) {
        let bytes = std::fs::read(&path).expect("read segment");
        let at = bytes.len() - 16;
        if &bytes[at + 12..] == b"SIDX" {
            let start = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            std::fs::write(&path, &bytes[..start as usize]).expect("strip footer");
        }
    }
    let store = Store::open(config(dir)).expect("open via scan");
    assert!(store.diagnostics().recovery.scanned > 0);
    assert_eq!(&facts(&store), expected, "scan path");
    assert!(store.verify().is_ok(), "{:?}", store.verify().issues);
    store.close().expect("close");
}

#[test]
fn merge_packs_sealed_segments_and_changes_no_event() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(config(tmp.path())).expect("open");
    fill(&store, 0, 600);
    let before = facts(&store);
    let files_before = segment_files(tmp.path()).len();
    let result = store
        .compact(&CompactionConfig { strategy: CompactionStrategy::Merge, min_segments: 2 })
        .expect("compact");
    assert!(result.segments_removed > 0, "{result:?}");
    assert_eq!(result.events_removed + result.events_tombstoned, 0);
    assert_eq!(segment_files(tmp.path()).len(), files_before - result.segments_removed);
    assert_eq!(facts(&store), before, "ids, sequences, clocks, hashes and payloads unchanged");
    assert!(store.verify().is_ok(), "{:?}", store.verify().issues);
    fill(&store, 600, 50);
    let after = facts(&store);
    assert_eq!(&after[..before.len()], &before[..]);
    assert!(leftovers(tmp.path()).is_empty());
    store.close().expect("close");
    every_recovery_path_agrees(tmp.path(), &after);
}

#[test]
fn too_few_sealed_segments_is_a_no_op() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    fill(&store, 0, 20);
    let result = store.compact(&CompactionConfig::default()).expect("compact");
    assert_eq!(result, CompactionResult::default());
    assert_eq!(store.query(&Region::all()).len(), 20);
}

#[test]
fn retention_removes_events_yet_chains_clocks_and_appends_go_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(config(tmp.path())).expect("open");
    fill(&store, 0, 500);
    let before: HashMap<u128, (u64, IndexEntry)> = store
        .query(&Region::all())
        .into_iter()
        .map(|e| {
            let i = store.get(e.event_id).expect("get").event.payload["i"].as_u64().expect("i");
            (e.event_id, (i, e))
        })
        .collect();
    let keep = |e: &StoredEvent<Value>| e.event.payload["i"].as_u64().is_some_and(|i| i % 3 == 0);
    let result = store
        .compact(&CompactionConfig {
            strategy: CompactionStrategy::Retention(Box::new(keep)),
            min_segments: 2,
        })
        .expect("compact");
    assert!(result.events_removed > 200, "{result:?}");
    assert!(result.bytes_reclaimed > 0, "{result:?}");
    let mut removed = 0u64;
    let mut tombstoned = 0u64;
    for (id, (i, old)) in &before {
        match store.get(*id) {
            Err(StoreError::NotFound(_)) => {
                assert_ne!(i % 3, 0, "event {i} should have been kept");
                removed += 1;
            }
            Ok(ev) if ev.event.header.event_kind == EventKind::TOMBSTONE => {
                assert_ne!(i % 3, 0);
                assert_eq!(ev.event.payload, Value::Null);
                tombstoned += 1;
            }
            Ok(ev) => {
                assert_eq!(ev.event.payload, json!({"i": i}), "kept payload intact");
                let now =
                    store.query(&Region::all()).into_iter().find(|e| e.event_id == *id).expect("listed");
                assert_eq!((now.global_sequence, now.clock), (old.global_sequence, old.clock));
                assert_eq!(now.hash_chain, old.hash_chain);
            }
            Err(e) => panic!("unexpected error for {i}: {e}"),
        }
    }
    assert_eq!((removed, tombstoned), (result.events_removed, result.events_tombstoned));
    let stats = store.stats();
    assert_eq!(
        stats.event_count as u64,
        before.len() as u64 - removed,
        "event_count counts what is left, not the sequence watermark"
    );
    assert_eq!(stats.event_count, store.query(&Region::all()).len());
    assert!(stats.global_sequence > stats.event_count as u64);
    assert!(store.verify().is_ok(), "{:?}", store.verify().issues);
    // Each entity's chain continues from its (possibly tombstoned) last event.
    let heads: HashMap<String, u32> = (0..5)
        .map(|k| {
            let name = format!("e{k}");
            let last = store.stream(&name).last().map(|e| e.clock).expect("head kept");
            (name, last)
        })
        .collect();
    for k in 0..5 {
        let name = format!("e{k}");
        let r = store.append(&coord(&name), EventKind::DATA, &json!({"i": 10_000 + k})).expect("append");
        let entry = store.stream(&name).into_iter().find(|e| e.event_id == r.event_id).expect("appended");
        assert_eq!(entry.clock, heads[&name] + 1, "clocks continue after the removed events");
    }
    assert!(store.verify().is_ok(), "{:?}", store.verify().issues);
    let after = facts(&store);
    store.close().expect("close");
    every_recovery_path_agrees(tmp.path(), &after);
}

#[test]
fn tombstones_erase_payloads_but_keep_identity_order_and_hash() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(config(tmp.path())).expect("open");
    fill(&store, 0, 400);
    let before = facts(&store);
    // Read twice, every event is now in `get`'s decoded-event cache; none
    // of them may be answered from it after the compaction below.
    assert_eq!(facts(&store), before);
    let keep = |e: &StoredEvent<Value>| e.event.payload["i"].as_u64().is_some_and(|i| i % 4 != 0);
    let result = store
        .compact(&CompactionConfig {
            strategy: CompactionStrategy::Tombstone(Box::new(keep)),
            min_segments: 1,
        })
        .expect("compact");
    assert!(result.events_tombstoned > 50, "{result:?}");
    assert_eq!(result.events_removed, 0);
    let after = facts(&store);
    assert_eq!(after.len(), before.len());
    let mut changed = 0;
    for (old, new) in before.iter().zip(&after) {
        assert_eq!((old.0, old.1, old.2, old.4, old.5), (new.0, new.1, new.2, new.4, new.5));
        if new.3 == EventKind::TOMBSTONE.as_raw() {
            assert_eq!(old.6["i"].as_u64().map(|i| i % 4), Some(0));
            assert_eq!(new.6, Value::Null);
            changed += 1;
        } else {
            assert_eq!(old.6, new.6);
        }
    }
    assert_eq!(changed, result.events_tombstoned);
    assert_eq!(store.by_fact(EventKind::TOMBSTONE).len() as u64, result.events_tombstoned);
    assert!(store.verify().is_ok(), "{:?}", store.verify().issues);
    store.close().expect("close");
    every_recovery_path_agrees(tmp.path(), &after);
}

#[test]
fn appends_and_reads_go_on_during_repeated_compactions() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(config(tmp.path())).expect("open"));
    fill(&store, 0, 300);
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let appenders: Vec<_> = (0..2u64)
        .map(|t| {
            let (store, stop, appended) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&appended));
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut i = 1_000_000 * (t + 1);
                while !stop.load(Ordering::Relaxed) {
                    let r = store
                        .append(&coord(&format!("t{t}-{}", i % 3)), EventKind::DATA, &json!({"i": i}))
                        .expect("append during compaction");
                    acked.push((r.event_id, i));
                    appended.fetch_add(1, Ordering::Release);
                    i += 1;
                }
                acked
            })
        })
        .collect();
    let reader = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut cursor = store.cursor_guaranteed(&Region::all());
                let mut last = None;
                while let Some(e) = cursor.poll() {
                    assert!(last.is_none_or(|l| l < e.global_sequence), "cursor order");
                    last = Some(e.global_sequence);
                    let ev = store.get(e.event_id).expect("a listed event stays readable during compaction");
                    assert_eq!(ev.event.header.event_id, e.event_id);
                    assert!(ev.event.payload["i"].is_u64(), "payload intact: {}", ev.event.payload);
                    reads += 1;
                }
            }
            reads
        })
    };
    let mut total = CompactionResult::default();
    for round in 1..=6u64 {
        // Each compaction starts once the appenders have added more events
        // (enough to seal new segments), not after a fixed time.
        while appended.load(Ordering::Acquire) < round * 150 {
            std::thread::yield_now();
        }
        let r = store.compact(&CompactionConfig::default()).expect("compact under load");
        total.segments_removed += r.segments_removed;
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(u128, u64)> = appenders.into_iter().flat_map(|h| h.join().expect("appender")).collect();
    let reads = reader.join().expect("reader");
    assert!(total.segments_removed > 0, "compactions did work");
    assert!(reads > 0);
    for (id, i) in &acked {
        assert_eq!(store.get(*id).expect("acknowledged").event.payload, json!({"i": i}));
    }
    assert!(store.verify().is_ok(), "{:?}", store.verify().issues);
    let expected = facts(&store);
    Arc::into_inner(store).expect("sole owner").close().expect("close");
    every_recovery_path_agrees(tmp.path(), &expected);
}

#[test]
fn a_snapshot_and_a_compaction_do_not_interleave() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(config(tmp.path())).expect("open"));
    fill(&store, 0, 400);
    let copy = tmp.path().join("copy");
    let snap = {
        let (store, copy) = (Arc::clone(&store), copy.clone());
        std::thread::spawn(move || store.snapshot(&copy))
    };
    store.compact(&CompactionConfig::default()).expect("compact");
    snap.join().expect("thread").expect("snapshot");
    let expected = facts(&store);
    let copied = Store::open(config(&copy)).expect("snapshot opens");
    assert_eq!(facts(&copied), expected);
}

/// Events from `next` on, as a follower sees them; advances `next`.
fn follow(reader: &batpak::store::LogReader, next: &mut u64, seen: &mut Vec<u64>) {
    for e in reader.events_from(*next).expect("poll") {
        *next = e.entry.global_sequence + 1;
        seen.push(e.entry.global_sequence);
    }
}

#[test]
fn a_log_reader_following_the_store_misses_nothing_across_a_compaction() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(config(tmp.path())).expect("open");
    let follower = batpak::store::LogReader::open(tmp.path()).expect("reader");
    let (mut seen, mut next) = (Vec::new(), 0);
    // A sealed segment and an active one, polled twice: the second poll
    // remembers the sealed one as passed.
    fill(&store, 0, 120);
    follow(&follower, &mut next, &mut seen);
    follow(&follower, &mut next, &mut seen);
    // The compaction rewrites that segment, under the same id, with events
    // the follower has not seen yet.
    fill(&store, 120, 200);
    store.compact(&CompactionConfig::default()).expect("compact");
    fill(&store, 320, 20);
    follow(&follower, &mut next, &mut seen);
    let all: Vec<u64> = store.query(&Region::all()).iter().map(|e| e.global_sequence).collect();
    assert_eq!(seen, all, "every event once, in order");
}

#[cfg(feature = "dangerous-test-hooks")]
mod injected {
    use super::*;
    use batpak::store::{CountdownAction, CountdownInjector, InjectionPoint};

    fn failing_at(dir: &Path, point: fn(&InjectionPoint) -> bool) -> Store {
        let mut cfg = config(dir);
        let injector = CountdownInjector::new(1, CountdownAction::Fail("injected compaction fault"))
            .with_filter(move |p| point(&p));
        cfg.fault_injector = Some(Arc::new(injector));
        Store::open(cfg).expect("open")
    }

    #[test]
    fn a_failure_before_the_plan_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = failing_at(tmp.path(), |p| matches!(p, InjectionPoint::CompactionOutputsWritten { .. }));
        fill(&store, 0, 300);
        let before = facts(&store);
        let files = segment_files(tmp.path());
        let err = store.compact(&CompactionConfig::default()).expect_err("injected");
        assert!(matches!(err, StoreError::FaultInjected(_)), "{err}");
        assert!(leftovers(tmp.path()).is_empty(), "outputs removed: {:?}", leftovers(tmp.path()));
        assert_eq!(segment_files(tmp.path()), files);
        assert_eq!(facts(&store), before);
        fill(&store, 300, 10);
        let after = facts(&store);
        store.close().expect("close");
        every_recovery_path_agrees(tmp.path(), &after);
    }

    #[test]
    fn a_failure_after_the_plan_is_finished_by_the_next_open() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = failing_at(tmp.path(), |p| matches!(p, InjectionPoint::CompactionCommitted));
        fill(&store, 0, 300);
        let before = facts(&store);
        let files = segment_files(tmp.path()).len();
        let err = store.compact(&CompactionConfig::default()).expect_err("injected");
        assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
        assert!(leftovers(tmp.path()).iter().any(|n| n == "compact.plan"), "the plan is the commit point");
        assert_eq!(facts(&store), before, "reads still see the old files");
        let refused = store.append(&coord("e0"), EventKind::DATA, &json!({"i": 1}));
        assert!(matches!(refused, Err(StoreError::Poisoned(_))), "{refused:?}");
        drop(store);
        let reopened = Store::open(config(tmp.path())).expect("reopen finishes the compaction");
        assert!(leftovers(tmp.path()).is_empty(), "{:?}", leftovers(tmp.path()));
        assert!(segment_files(tmp.path()).len() < files, "the new state, not the old");
        assert_eq!(facts(&reopened), before);
        assert!(reopened.verify().is_ok(), "{:?}", reopened.verify().issues);
        reopened.close().expect("close");
        every_recovery_path_agrees(tmp.path(), &before);
    }
}
