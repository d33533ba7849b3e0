//! The storage core: recovery paths, crash safety, locking, validation,
//! concurrency, cursors and subscriptions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use serde_json::json;
use std::path::Path;

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "scope").expect("valid coordinate")
}

fn fill(dir: &Path, segment_max: u64, n: usize) -> Vec<AppendReceipt> {
    let store = Store::open(StoreConfig::new(dir).with_segment_max_bytes(segment_max)).expect("open");
    let mut receipts = Vec::new();
    for i in 0..n {
        if i % 7 == 3 {
            let items = (0..3)
                .map(|j| {
                    BatchAppendItem::new(
                        coord(&format!("e{}", (i + j) % 5)),
                        EventKind::DATA,
                        &json!({"i": i, "j": j}),
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                    .expect("item")
                })
                .collect();
            receipts.extend(store.append_batch(items).expect("batch"));
        } else {
            receipts.push(
                store
                    .append(&coord(&format!("e{}", i % 5)), EventKind::DATA, &json!({"i": i}))
                    .expect("append"),
            );
        }
    }
    store.close().expect("close");
    receipts
}

/// (id, sequence, clock, prev hash, event hash) of every visible event.
type Snapshot = Vec<(u128, u64, u32, [u8; 32], [u8; 32])>;

/// Where the footer of a segment file starts (its trailer's first 8 bytes).
fn footer_start(bytes: &[u8]) -> usize {
    let at = bytes.len() - 16;
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) as usize
}

fn snapshot(store: &Store) -> Snapshot {
    store
        .query(&Region::all())
        .into_iter()
        .map(|e| (e.event_id, e.global_sequence, e.clock, e.hash_chain.prev_hash, e.hash_chain.event_hash))
        .collect()
}

#[test]
fn checkpoint_footer_and_scan_paths_yield_the_same_index() {
    let tmp = tempfile::tempdir().expect("tmp");
    let receipts = fill(tmp.path(), 4096, 300);
    let by_checkpoint = {
        let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
        assert!(store.diagnostics().recovery.from_checkpoint > 1, "{:?}", store.diagnostics().recovery);
        let s = snapshot(&store);
        drop(store);
        s
    };
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("remove checkpoint");
    let by_footers = {
        let store = Store::open(StoreConfig::new(tmp.path()).with_enable_checkpoint(false)).expect("open");
        assert_eq!(store.diagnostics().recovery.scanned, 0);
        snapshot(&store)
    };
    // Strip every footer: the frame scan must agree too.
    for entry in std::fs::read_dir(tmp.path()).expect("ls") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "fbat") {
            let bytes = std::fs::read(&path).expect("read");
            if bytes.len() >= 16 && &bytes[bytes.len() - 4..] == b"SIDX" {
                std::fs::write(&path, &bytes[..footer_start(&bytes)]).expect("truncate");
            }
        }
    }
    let by_scan = {
        let store = Store::open(StoreConfig::new(tmp.path()).with_enable_checkpoint(false)).expect("open");
        assert!(store.diagnostics().recovery.scanned > 1);
        assert!(store.verify().is_ok());
        snapshot(&store)
    };
    assert_eq!(by_checkpoint.len(), receipts.len());
    assert_eq!(by_checkpoint, by_footers);
    assert_eq!(by_checkpoint, by_scan);
    let seqs: Vec<u64> = by_scan.iter().map(|e| e.1).collect();
    assert_eq!(seqs, (0..receipts.len() as u64).collect::<Vec<_>>(), "dense sequences on every path");
}

#[test]
fn a_second_open_of_the_same_dir_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    match Store::open(StoreConfig::new(tmp.path())) {
        Err(StoreError::Locked(msg)) => assert!(msg.contains("another")),
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(_) => panic!("second open must fail"),
    }
    drop(store);
    Store::open(StoreConfig::new(tmp.path())).expect("lock released on drop");
}

#[test]
fn a_torn_tail_is_cut_and_every_whole_event_kept() {
    let tmp = tempfile::tempdir().expect("tmp");
    let receipts = fill(tmp.path(), 1 << 30, 20);
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("remove checkpoint");
    let seg = tmp.path().join("000001.fbat");
    let bytes = std::fs::read(&seg).expect("read");
    let start = footer_start(&bytes);
    // Drop the footer and half of the last frame's bytes: a crash mid-write.
    let last = receipts.last().expect("some");
    let cut = last.disk_pos.offset as usize + last.disk_pos.length as usize / 2;
    assert!(cut < start);
    std::fs::write(&seg, &bytes[..cut]).expect("tear");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open after tear");
    let report = store.diagnostics().recovery;
    assert!(report.truncated_bytes > 0, "{report:?}");
    assert_eq!(store.stats().event_count, receipts.len() - 1, "only the torn event is lost");
    let next = store.append(&coord("e0"), EventKind::DATA, &json!({"after": "tear"})).expect("append");
    assert_eq!(next.sequence, receipts.len() as u64 - 1, "the torn event's sequence is reused");
    assert!(store.verify().is_ok());
}

#[test]
fn after_a_crash_appends_continue_in_the_cut_back_segment_and_every_open_path_agrees() {
    let tmp = tempfile::tempdir().expect("tmp");
    let receipts = fill(tmp.path(), 1 << 30, 40);
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("remove checkpoint");
    let seg = tmp.path().join("000001.fbat");
    let bytes = std::fs::read(&seg).expect("read");
    let last = receipts.last().expect("some");
    // A crash mid-write: no footer, a torn last frame, then junk.
    let cut = last.disk_pos.offset as usize + 3;
    let mut torn = bytes[..cut].to_vec();
    torn.extend_from_slice(&[0xAB; 50]);
    std::fs::write(&seg, &torn).expect("tear");
    let after_crash = {
        let store = Store::open(StoreConfig::new(tmp.path())).expect("open after tear");
        assert_eq!(store.diagnostics().recovery.scanned, 1);
        assert_eq!(
            std::fs::metadata(&seg).expect("stat").len(),
            last.disk_pos.offset,
            "cut to the last whole unit"
        );
        for i in 0..5 {
            store.append(&coord("e1"), EventKind::DATA, &json!({"after": i})).expect("append");
        }
        store
            .append_batch(vec![BatchAppendItem::new(
                coord("new"),
                EventKind::DATA,
                &json!({"b": 0}),
                AppendOptions::new(),
                CausationRef::None,
            )
            .expect("item")])
            .expect("batch");
        let segments: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "fbat"))
            .collect();
        assert_eq!(segments.len(), 1, "appends went into the crashed segment, not a new one");
        let s = snapshot(&store);
        store.close().expect("close seals the resumed segment");
        s
    };
    assert_eq!(after_crash.len(), receipts.len() - 1 + 6);
    let by_checkpoint = snapshot(&Store::open(StoreConfig::new(tmp.path())).expect("reopen"));
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("remove checkpoint");
    let by_footer = {
        let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen by footer");
        assert_eq!(store.diagnostics().recovery.from_footers, 1, "the resumed segment was sealed at close");
        assert!(store.verify().is_ok());
        snapshot(&store)
    };
    let bytes = std::fs::read(&seg).expect("read");
    std::fs::write(&seg, &bytes[..footer_start(&bytes)]).expect("strip footer");
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("remove checkpoint");
    let by_scan = snapshot(&Store::open(StoreConfig::new(tmp.path())).expect("reopen by scan"));
    assert_eq!(after_crash, by_checkpoint);
    assert_eq!(after_crash, by_footer);
    assert_eq!(after_crash, by_scan);
}

/// Copies the store files of `from` into a new directory, as a crash would
/// leave them (no lock holder, the active segment unsealed).
fn crash_copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tmp");
    for entry in std::fs::read_dir(from).expect("ls") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "fbat") {
            std::fs::copy(&path, to.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    to
}

#[test]
fn zeros_written_ahead_are_cut_after_a_crash_but_only_torn_data_counts_as_lost() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    let mut last = None;
    for i in 0..30 {
        last = Some(store.append(&coord("z"), EventKind::DATA, &json!({"i": i})).expect("append"));
    }
    let last = last.expect("appended");
    let frames_end = last.disk_pos.offset + u64::from(last.disk_pos.length);
    let seg = tmp.path().join("000001.fbat");
    let len = std::fs::metadata(&seg).expect("stat").len();
    assert!(len > frames_end, "the writer keeps zeros ahead of its frames ({len} <= {frames_end})");
    let clean = crash_copy(tmp.path());
    let torn = crash_copy(tmp.path());
    drop(store);
    let mut bytes = std::fs::read(torn.path().join("000001.fbat")).expect("read");
    bytes[frames_end as usize..frames_end as usize + 7].copy_from_slice(&[9; 7]);
    std::fs::write(torn.path().join("000001.fbat"), &bytes).expect("tear");
    for (dir, lost) in [(&clean, 0), (&torn, 7)] {
        let store = Store::open(StoreConfig::new(dir.path())).expect("open after crash");
        let report = store.diagnostics().recovery;
        assert_eq!(report.scanned, 1);
        assert_eq!(report.truncated_bytes, lost, "{report:?}");
        assert_eq!(store.stats().event_count, 30);
        let next = store.append(&coord("z"), EventKind::DATA, &json!({"i": 30})).expect("append after crash");
        assert_eq!(next.disk_pos.offset, frames_end, "appends continue right after the last frame");
        store.close().expect("close");
        let store = Store::open(StoreConfig::new(dir.path())).expect("reopen");
        assert_eq!(store.stats().event_count, 31);
        assert!(store.verify().is_ok());
    }
}

#[test]
fn a_corrupt_frame_in_a_sealed_segment_is_an_error_naming_segment_and_offset() {
    let tmp = tempfile::tempdir().expect("tmp");
    let receipts = fill(tmp.path(), 2048, 60);
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("remove checkpoint");
    let victim = receipts[2].disk_pos;
    let path = tmp.path().join(format!("{:06}.fbat", victim.segment_id));
    let mut bytes = std::fs::read(&path).expect("read");
    let start = footer_start(&bytes);
    bytes.truncate(start); // force the frame scan
    bytes[victim.offset as usize + 20] ^= 0xFF;
    std::fs::write(&path, &bytes).expect("corrupt");
    match Store::open(StoreConfig::new(tmp.path())) {
        Err(StoreError::CrcMismatch { segment_id, offset }) => {
            assert_eq!((segment_id, offset), (victim.segment_id, victim.offset));
        }
        Err(other) => panic!("expected CrcMismatch, got {other}"),
        Ok(_) => panic!("a corrupt sealed segment must not open silently"),
    }
}

#[test]
fn bad_input_gets_typed_errors_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path()).with_single_append_max_bytes(1024)).expect("open");
    let c = coord("e");
    for kind in [EventKind::SYSTEM_BATCH_BEGIN, EventKind::SYSTEM_BATCH_COMMIT, EventKind::SYSTEM_INIT] {
        assert!(matches!(store.append(&c, kind, &json!({})), Err(StoreError::ReservedKind(k)) if k == kind));
    }
    assert!(matches!(
        store.append(&c, EventKind::DATA, &json!({"big": "x".repeat(2000)})),
        Err(StoreError::PayloadTooLarge { max: 1024, .. })
    ));
    assert_eq!(Coordinate::new("", "s"), Err(CoordinateError::EmptyEntity));
    assert!(matches!(Coordinate::new("x".repeat(1025), "s"), Err(CoordinateError::EntityTooLong { .. })));
    assert!(matches!(store.get(42), Err(StoreError::NotFound(42))));
    // CAS: the empty entity case is its own error; then exact clocks.
    let cas = |o: AppendOptions| store.append_with_options(&c, EventKind::DATA, &json!({}), o);
    assert!(matches!(
        cas(AppendOptions::new().with_cas(0)),
        Err(StoreError::EntityHasNoEvents { expected: 0, .. })
    ));
    cas(AppendOptions::new().with_cas_empty()).expect("creates the entity");
    assert!(matches!(
        cas(AppendOptions::new().with_cas_empty()),
        Err(StoreError::EntityNotEmpty { actual: 0, .. })
    ));
    assert!(matches!(
        cas(AppendOptions::new().with_cas(5)),
        Err(StoreError::SequenceMismatch { expected: 5, actual: 0, .. })
    ));
    cas(AppendOptions::new().with_cas(0)).expect("latest clock is 0");
    assert_eq!(store.stats().event_count, 2);
    assert_eq!(store.stats().global_sequence, 2, "refused appends burn no sequence");
}

#[test]
fn idempotent_retries_return_the_original_and_conflicts_are_typed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    let c = coord("e");
    let opts = AppendOptions::new().with_idempotency(7);
    let first = store.append_with_options(&c, EventKind::DATA, &json!({"v": 1}), opts).expect("first");
    let again = store.append_with_options(&c, EventKind::DATA, &json!({"v": 1}), opts).expect("retry");
    assert_eq!(first, again);
    assert!(matches!(
        store.append_with_options(&c, EventKind::DATA, &json!({"v": 2}), opts),
        Err(StoreError::IdempotencyConflict { key: 7, .. })
    ));
    let item = |k: u128, v: i32| {
        BatchAppendItem::new(
            c.clone(),
            EventKind::DATA,
            &json!({"v": v}),
            AppendOptions::new().with_idempotency(k),
            CausationRef::None,
        )
        .expect("item")
    };
    let batch = store.append_batch(vec![item(100, 1), item(101, 2)]).expect("batch");
    assert_eq!(batch[0].event_id, 100);
    let retried = store.append_batch(vec![item(100, 1), item(101, 2)]).expect("retry batch");
    assert_eq!(batch, retried);
    assert!(matches!(
        store.append_batch(vec![item(100, 1), item(101, 3)]),
        Err(StoreError::BatchFailed { item_index: 1, stage: BatchStage::Validation, .. })
    ));
    assert!(matches!(
        store.append_batch(vec![item(100, 1), item(102, 3)]),
        Err(StoreError::BatchFailed { item_index: 1, .. })
    ));
    // One key twice in one batch: refused before anything is written.
    match store.append_batch(vec![item(200, 1), item(201, 2), item(200, 3)]) {
        Err(StoreError::BatchFailed { item_index: 2, stage: BatchStage::Validation, source }) => {
            assert!(matches!(*source, StoreError::IdempotencyConflict { key: 200, .. }), "{source}");
        }
        other => panic!("a key used twice in one batch: {other:?}"),
    }
    assert_eq!(store.stats().event_count, 3);
}

#[test]
fn cursors_resume_and_subscribers_hear_only_committed_events() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    let sub = store.subscribe_lossy(&Region::entity("a"));
    for i in 0..10 {
        store
            .append(&coord(if i % 2 == 0 { "a" } else { "b" }), EventKind::DATA, &json!({"i": i}))
            .expect("append");
    }
    let mut cursor = store.cursor_guaranteed(&Region::entity("a"));
    let first = cursor.poll_batch(3);
    assert_eq!(first.len(), 3);
    let mut resumed = store.cursor_from(&Region::entity("a"), cursor.position());
    let rest = resumed.poll_batch(100);
    assert_eq!(rest.len(), 2);
    assert!(resumed.poll().is_none());
    assert!(first.iter().chain(&rest).all(|e| e.coord.entity() == "a"));
    let heard: Vec<u64> = std::iter::from_fn(|| sub.receiver().try_recv().ok()).map(|n| n.sequence).collect();
    assert_eq!(heard, vec![0, 2, 4, 6, 8]);
    assert_eq!(store.by_scope("scope").len(), 10);
    assert_eq!(store.by_fact(EventKind::DATA).len(), 10);
}

/// Writer `t`'s batch size: one writer's batches are large enough to be
/// written and fsynced on the writer's helper thread while it hashes.
fn batch_size(t: usize) -> usize {
    if t == 0 {
        100
    } else {
        4
    }
}

#[test]
fn concurrent_appenders_and_readers_see_whole_batches_in_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = std::sync::Arc::new(
        Store::open(StoreConfig::new(tmp.path()).with_sync_every_n_events(1).with_group_commit_max_batch(64))
            .expect("open"),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, stop) = (std::sync::Arc::clone(&store), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut checks = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) || checks == 0 {
                for t in 0..4 {
                    let all = store.query(&Region::entity(format!("batch{t}")));
                    assert_eq!(all.len() % batch_size(t), 0, "partial batch visible");
                }
                let seqs: Vec<u64> = store.query(&Region::all()).iter().map(|e| e.global_sequence).collect();
                assert!(seqs.iter().enumerate().all(|(i, s)| *s == i as u64), "gap or disorder");
                checks += 1;
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..50 {
                    store
                        .append(&coord(&format!("w{t}")), EventKind::DATA, &json!({"i": i}))
                        .expect("append");
                    if i % 10 == 0 {
                        let items = (0..batch_size(t))
                            .map(|_| {
                                BatchAppendItem::new(
                                    coord(&format!("batch{t}")),
                                    EventKind::DATA,
                                    &json!({"t": t}),
                                    AppendOptions::new(),
                                    CausationRef::None,
                                )
                                .expect("item")
                            })
                            .collect();
                        store.append_batch(items).expect("batch");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    reader.join().expect("reader");
    assert_eq!(store.stats().event_count, 4 * 50 + 5 * (0..4).map(batch_size).sum::<usize>());
    for t in 0..4 {
        let clocks: Vec<u32> = store.stream(&format!("w{t}")).iter().map(|e| e.clock).collect();
        assert_eq!(clocks, (0..50).collect::<Vec<_>>());
    }
    assert!(store.verify().is_ok());
}

#[test]
fn verify_detects_a_changed_payload_byte_even_with_a_fixed_crc() {
    let tmp = tempfile::tempdir().expect("tmp");
    let receipts = fill(tmp.path(), 1 << 30, 5);
    let victim = receipts[1].disk_pos;
    let path = tmp.path().join("000001.fbat");
    let mut bytes = std::fs::read(&path).expect("read");
    let end = (victim.offset + u64::from(victim.length)) as usize;
    let at = end - 3; // inside the JSON payload
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    let body = &bytes[victim.offset as usize + 8..end];
    let crc = crc32fast_hash(body);
    bytes[victim.offset as usize + 4..victim.offset as usize + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).expect("tamper");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    let report = store.verify();
    assert_eq!(report.issues.len(), 1, "{report:?}");
    assert_eq!(report.issues[0].offset, victim.offset);
    assert!(report.issues[0].detail.contains("hash"));
}

fn crc32fast_hash(bytes: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE), enough for a test that forges a valid frame.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn a_snapshot_taken_during_appends_reopens_to_a_prefix_of_the_log() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = std::sync::Arc::new(
        Store::open(StoreConfig::new(tmp.path().join("live")).with_segment_max_bytes(4096)).expect("open"),
    );
    for i in 0..50 {
        store.append(&coord(&format!("e{}", i % 3)), EventKind::DATA, &json!({"i": i})).expect("append");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (store, stop) = (std::sync::Arc::clone(&store), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 50;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                store
                    .append(&coord(&format!("e{}", i % 3)), EventKind::DATA, &json!({"i": i}))
                    .expect("append");
                i += 1;
            }
        })
    };
    let dest = tmp.path().join("snap");
    store.snapshot(&dest).expect("snapshot");
    stop.store(true, std::sync::atomic::Ordering::Release);
    appender.join().expect("appender");
    assert!(
        matches!(store.snapshot(&dest), Err(StoreError::Configuration(_))),
        "a non-empty destination is refused"
    );
    let live = snapshot(&store);
    let copy = Store::open(StoreConfig::new(&dest)).expect("open snapshot");
    let copied = snapshot(&copy);
    assert!(copied.len() >= 50, "everything published before the snapshot: {}", copied.len());
    assert_eq!(copied[..], live[..copied.len()], "a prefix of the live log");
    assert!(copy.verify().is_ok());
    copy.append(&coord("e0"), EventKind::DATA, &json!({"after": "snapshot"})).expect("the copy is a store");
}

#[test]
fn a_log_reader_follows_a_live_store_without_rereading_sealed_segments() {
    use batpak::store::LogReader;
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path()).with_segment_max_bytes(300)).expect("open");
    for i in 0..30 {
        store.append(&coord("e"), EventKind::DATA, &json!({"i": i})).expect("append");
    }
    let reader = LogReader::open(tmp.path()).expect("reader");
    let all = reader.events_from(0).expect("read");
    assert_eq!(all.len(), 30);
    assert!(reader.segments().expect("segments").len() > 2, "several segments");
    let mut next = 30;
    for round in 0..3 {
        for i in 0..7 {
            store.append(&coord("e"), EventKind::DATA, &json!({"round": round, "i": i})).expect("append");
        }
        let new = reader.events_from(next).expect("read");
        let seqs: Vec<u64> = new.iter().map(|e| e.entry.global_sequence).collect();
        assert_eq!(seqs, (next..next + 7).collect::<Vec<_>>(), "round {round}");
        let ids: Vec<u128> =
            store.query(&Region::all()).iter().skip(next as usize).map(|e| e.event_id).collect();
        assert_eq!(new.iter().map(|e| e.entry.event_id).collect::<Vec<_>>(), ids);
        assert_eq!(
            new[0].entry.hash_chain.event_hash,
            store.query(&Region::all())[next as usize].hash_chain.event_hash
        );
        next += 7;
    }
    assert_eq!(reader.events_from(0).expect("from the start again").len(), 51);
}

#[test]
fn a_large_frame_scan_hashes_in_parallel_and_matches_the_footer_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let store = Store::open(StoreConfig::new(tmp.path()).with_batch_max_size(500)).expect("open");
        for chunk in 0..10 {
            let items = (0..500)
                .map(|i| {
                    BatchAppendItem::new(
                        coord(&format!("p{}", (chunk * 500 + i) % 37)),
                        EventKind::DATA,
                        &json!({"i": i}),
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                    .expect("item")
                })
                .collect();
            store.append_batch(items).expect("batch");
        }
        store.close().expect("close");
    }
    let by_footer = {
        let store = Store::open(StoreConfig::new(tmp.path()).with_enable_checkpoint(false)).expect("open");
        snapshot(&store)
    };
    let seg = tmp.path().join("000001.fbat");
    let bytes = std::fs::read(&seg).expect("read");
    let start = footer_start(&bytes);
    std::fs::write(&seg, &bytes[..start]).expect("strip footer");
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("remove checkpoint");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open by scan");
    assert_eq!(store.diagnostics().recovery.scanned, 1);
    assert_eq!(snapshot(&store), by_footer, "5000 events: the two-thread hash matches the writer's");
    assert!(store.verify().is_ok());
}

#[test]
fn a_scan_of_a_segment_over_four_mebibytes_matches_the_footer_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pad = "x".repeat(120);
    {
        let cfg = StoreConfig::new(tmp.path()).with_batch_max_size(1000).with_batch_max_bytes(1 << 20);
        let store = Store::open(cfg).expect("open");
        for chunk in 0..32 {
            let items = (0..1000)
                .map(|i| {
                    BatchAppendItem::new(
                        coord(&format!("q{}", (chunk * 1000 + i) % 53)),
                        EventKind::DATA,
                        &json!({"i": i, "pad": pad}),
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                    .expect("item")
                })
                .collect();
            store.append_batch(items).expect("batch");
        }
        // Singles between batches too, so committed prefixes end on both kinds.
        for i in 0..100 {
            store
                .append(&coord(&format!("q{}", i % 7)), EventKind::DATA, &json!({"single": i}))
                .expect("single");
        }
        store.close().expect("close");
    }
    let by_footer = {
        let store = Store::open(StoreConfig::new(tmp.path()).with_enable_checkpoint(false)).expect("open");
        snapshot(&store)
    };
    let seg = tmp.path().join("000001.fbat");
    let bytes = std::fs::read(&seg).expect("read");
    assert!(bytes.len() > 4 << 20, "a segment of several mebibytes");
    let start = footer_start(&bytes);
    std::fs::write(&seg, &bytes[..start]).expect("strip footer");
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("remove checkpoint");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open by scan");
    assert_eq!(store.diagnostics().recovery.scanned, 1);
    assert_eq!(
        snapshot(&store),
        by_footer,
        "32 100 events, batches and singles: the scan matches the writer"
    );
    assert!(store.verify().is_ok());
}
