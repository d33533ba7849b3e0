//! Fault injection at the points the reference declared but never fired,
//! and the writer restart policy. Run with `--features dangerous-test-hooks`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code
#![cfg(feature = "dangerous-test-hooks")]

use batpak::prelude::*;
use batpak::store::{CountdownAction, CountdownInjector, InjectionPoint};
use serde_json::json;
use std::sync::Arc;

fn coord() -> Coordinate {
    Coordinate::new("e", "s").expect("valid")
}

#[test]
fn single_append_points_fire_and_leave_nothing_behind() {
    for which in ["start", "written"] {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut cfg = StoreConfig::new(tmp.path());
        let inj = CountdownInjector::new(2, CountdownAction::Fail("single")).with_filter(move |p| match p {
            InjectionPoint::SingleAppendStart { entity } => which == "start" && entity == "e",
            InjectionPoint::SingleAppendWritten { entity } => which == "written" && entity == "e",
            _ => false,
        });
        cfg.fault_injector = Some(Arc::new(inj));
        let store = Store::open(cfg).expect("open");
        store.append(&coord(), EventKind::DATA, &json!({"n": 1})).expect("first passes");
        let err = store.append(&coord(), EventKind::DATA, &json!({"n": 2})).expect_err("second faults");
        assert!(matches!(err, StoreError::FaultInjected(_)), "{err:?}");
        drop(store);
        let store = Store::open(StoreConfig::new(tmp.path()).with_enable_checkpoint(false)).expect("reopen");
        assert_eq!(store.stats().event_count, 1, "{which}: the faulted frame was cut back");
        let next = store.append(&coord(), EventKind::DATA, &json!({"n": 3})).expect("append");
        assert_eq!(next.sequence, 1);
        assert!(store.verify().is_ok());
    }
}

#[test]
fn rotation_point_fires_with_old_and_new_segment_ids() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = StoreConfig::new(tmp.path()).with_segment_max_bytes(256);
    let seen = Arc::new(parking_lot_free::Seen::default());
    let seen2 = Arc::clone(&seen);
    cfg.fault_injector =
        Some(Arc::new(CountdownInjector::new(1, CountdownAction::Fail("rotation")).with_filter(move |p| {
            if let InjectionPoint::SegmentRotation { old_segment, new_segment } = p {
                seen2.record(old_segment, new_segment);
                return true;
            }
            false
        })));
    let store = Store::open(cfg).expect("open");
    let mut faults = 0;
    for i in 0..10 {
        if store.append(&coord(), EventKind::DATA, &json!({"pad": "x".repeat(100), "i": i})).is_err() {
            faults += 1;
        }
    }
    assert!(faults > 0, "rotation must have been attempted and faulted");
    assert_eq!(seen.first(), Some((1, 2)));
    assert_eq!(store.stats().event_count, 10 - faults);
}

#[test]
fn writer_restarts_once_then_reports_crashed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    store.append(&coord(), EventKind::DATA, &json!({"n": 1})).expect("append");
    store.panic_writer_for_test().expect("the writer panics");
    store.append(&coord(), EventKind::DATA, &json!({"n": 2})).expect("restarted writer serves");
    store.panic_writer_for_test().expect("the writer panics");
    assert!(matches!(
        store.append(&coord(), EventKind::DATA, &json!({"n": 3})),
        Err(StoreError::WriterCrashed)
    ));
    assert!(
        matches!(store.panic_writer_for_test(), Err(StoreError::WriterCrashed)),
        "no writer left to panic"
    );
    drop(store);
    let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
    assert_eq!(store.stats().event_count, 2);
    assert!(store.verify().is_ok());
}

mod parking_lot_free {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Seen(Mutex<Vec<(u64, u64)>>);

    impl Seen {
        pub fn record(&self, old: u64, new: u64) {
            if let Ok(mut v) = self.0.lock() {
                v.push((old, new));
            }
        }
        pub fn first(&self) -> Option<(u64, u64)> {
            self.0.lock().ok()?.first().copied()
        }
    }
}

#[test]
fn singles_after_a_failed_batch_survive_a_scan_path_reopen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = StoreConfig::new(tmp.path());
    cfg.fault_injector = Some(Arc::new(CountdownInjector::after_batch_items(2)));
    let store = Store::open(cfg).expect("open");
    let items: Vec<_> = (0..3)
        .map(|i| {
            BatchAppendItem::new(
                coord(),
                EventKind::DATA,
                &json!({"b": i}),
                AppendOptions::new(),
                CausationRef::None,
            )
            .expect("item")
        })
        .collect();
    assert!(store.append_batch(items).is_err());
    let acked: Vec<u128> = (0..5)
        .map(|i| store.append(&coord(), EventKind::DATA, &json!({"s": i})).expect("single").event_id)
        .collect();
    drop(store);
    // Force the slowest path: no checkpoint, no footer.
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("remove checkpoint");
    let seg = tmp.path().join("000001.fbat");
    let bytes = std::fs::read(&seg).expect("read");
    let start = u64::from_le_bytes(bytes[bytes.len() - 16..bytes.len() - 8].try_into().expect("8")) as usize;
    std::fs::write(&seg, &bytes[..start]).expect("strip footer");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
    assert_eq!(store.diagnostics().recovery.scanned, 1);
    for id in &acked {
        store.get(*id).expect("acknowledged single survives");
    }
    assert_eq!(store.stats().event_count, 5, "no item of the failed batch reappears");
    let clocks: Vec<u32> = store.stream("e").iter().map(|e| e.clock).collect();
    assert_eq!(clocks, vec![0, 1, 2, 3, 4]);
    assert!(store.verify().is_ok());
}
