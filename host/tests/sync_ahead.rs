//! The periodic fsync of single appends runs ahead on a helper thread
//! (docs/design.md, "Durability contract"): appends go on while it runs,
//! the append that would leave `every_n_events` unsynced waits for it, and
//! a failed one poisons the store before any later promise of durability
//! (an append's reply, a batch, `sync()`, `close()`) can rest on it.
//! The bound itself, under power cuts at random steps, is checked by
//! host/tests/power_loss.rs (`sync_all_every_4_appends`). The last tests
//! fail the fsyncs the writer runs itself: an append's under an fsync per
//! append, and a batch's, small (written on the writer) and large (written
//! on its I/O helper).

#![cfg(feature = "dangerous-test-hooks")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use batpak::store::fault::{FaultInjector, InjectionPoint, IoStep};
use batpak::store::segment::parse_segment_filename;
use parking_lot::{Condvar, Mutex};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const HELPER: &str = "batpak-sync-ahead";
const EVERY: u32 = 8;
/// Unsynced appends that start an fsync ahead: three quarters of EVERY.
const START: usize = 6;

fn coord(i: usize) -> Coordinate {
    Coordinate::new(format!("e{}", i % 3), "ahead").unwrap()
}

fn on_helper() -> bool {
    std::thread::current().name() == Some(HELPER)
}

/// Observes segment fsyncs; can hold the helper's fsyncs until released
/// and fail them.
#[derive(Default)]
struct Watch {
    /// Segment fsyncs started on the helper thread, and on any other.
    on_helper: AtomicUsize,
    elsewhere: AtomicUsize,
    /// While true, a helper fsync waits in `FileSyncing` until it is false.
    hold: Mutex<bool>,
    released: Condvar,
    /// Helper fsyncs that reached `FileSyncing` while held, counted (and
    /// `now_held` signalled) under `hold`.
    held: AtomicUsize,
    now_held: Condvar,
    /// Fail the helper's segment fsyncs.
    fail: AtomicBool,
    /// Fail every segment fsync, on any thread.
    fail_all: AtomicBool,
}

impl Watch {
    fn release(&self) {
        *self.hold.lock() = false;
        self.released.notify_all();
    }

    /// Waits (bounded) until a helper fsync is held.
    fn wait_until_held(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut hold = self.hold.lock();
        while self.held.load(Ordering::SeqCst) == 0 {
            if self.now_held.wait_until(&mut hold, deadline).timed_out() {
                panic!("no fsync reached the helper thread within 10 s");
            }
        }
    }
}

impl FaultInjector for Watch {
    fn check(&self, _: InjectionPoint) -> Option<StoreError> {
        None
    }

    fn injects(&self) -> bool {
        false
    }

    fn observe_io(&self, step: IoStep<'_>) {
        let IoStep::FileSyncing { name, .. } = step else { return };
        if parse_segment_filename(name).is_none() {
            return;
        }
        if !on_helper() {
            self.elsewhere.fetch_add(1, Ordering::SeqCst);
            return;
        }
        self.on_helper.fetch_add(1, Ordering::SeqCst);
        let mut hold = self.hold.lock();
        if *hold {
            self.held.fetch_add(1, Ordering::SeqCst);
            self.now_held.notify_all();
        }
        while *hold {
            self.released.wait(&mut hold);
        }
    }

    fn fail_fsync(&self, _: &std::path::Path, name: &str) -> Option<std::io::Error> {
        let armed = self.fail_all.load(Ordering::SeqCst) || (self.fail.load(Ordering::SeqCst) && on_helper());
        let fail = armed && parse_segment_filename(name).is_some();
        fail.then(|| std::io::Error::other("injected write-back error"))
    }
}

fn open(dir: &std::path::Path, watch: &Arc<Watch>) -> Store {
    open_every(dir, watch, EVERY)
}

fn open_every(dir: &std::path::Path, watch: &Arc<Watch>, every: u32) -> Store {
    let mut cfg = StoreConfig::new(dir).with_sync_every_n_events(every);
    cfg.fault_injector = Some(Arc::clone(watch) as Arc<dyn FaultInjector>);
    Store::open(cfg).unwrap()
}

/// Releases the held fsyncs from another thread 200 ms from now, setting
/// the flag first. A call that did not wait for them returns long before
/// that, and one that waits passes however slow the machine is: no time
/// is asserted, only the order.
fn release_later(watch: &Arc<Watch>) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let released = Arc::new(AtomicBool::new(false));
    let (watch, flag) = (Arc::clone(watch), Arc::clone(&released));
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        flag.store(true, Ordering::SeqCst);
        watch.release();
    });
    (released, releaser)
}

fn append(store: &Store, i: usize) -> Result<AppendReceipt, StoreError> {
    store.append(&coord(i), EventKind::DATA, &json!({"i": i}))
}

#[test]
fn the_periodic_fsync_runs_on_the_helper_and_appends_go_on_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let watch = Arc::new(Watch::default());
    let store = open(tmp.path(), &watch);
    *watch.hold.lock() = true;
    // Three quarters of EVERY unsynced: the helper's fsync starts, and is held.
    for i in 0..START {
        append(&store, i).unwrap();
    }
    watch.wait_until_held();
    // The appends up to EVERY - 1 unsynced do not wait for it.
    for i in START..EVERY as usize - 1 {
        append(&store, i).unwrap();
    }
    assert_eq!(watch.elsewhere.load(Ordering::SeqCst), 0, "no append fsynced on its own thread");
    // The one that would leave EVERY unsynced waits for the held fsync.
    let (released, releaser) = release_later(&watch);
    append(&store, EVERY as usize - 1).unwrap();
    assert!(released.load(Ordering::SeqCst), "the append that reached the bound did not wait for the fsync");
    releaser.join().unwrap();
    // Many more appends: the helper keeps syncing.
    for i in EVERY as usize..2000 {
        append(&store, i).unwrap();
    }
    assert!(watch.on_helper.load(Ordering::SeqCst) >= 2, "the helper ran one fsync only");
    store.close().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    assert_eq!(store.stats().event_count, 2000);
    assert!(store.verify().is_ok());
}

#[test]
fn a_failed_fsync_ahead_poisons_the_store_before_any_later_promise() {
    let tmp = tempfile::tempdir().unwrap();
    let watch = Arc::new(Watch::default());
    watch.fail.store(true, Ordering::SeqCst);
    let store = open(tmp.path(), &watch);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..EVERY as usize * 2 {
        match append(&store, i) {
            Ok(r) => acked.push(r.event_id),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (at, e) = refused.expect("no append was refused after the fsync failed");
    assert!(matches!(e, StoreError::Poisoned(ref why) if why.contains("injected")), "{e:?}");
    assert!(at < EVERY as usize, "append {at} was acknowledged past the bound on a failed fsync");
    assert!(at >= START, "append {at} failed before any fsync was due");
    // Nothing durable is promised after it.
    assert!(matches!(store.sync(), Err(StoreError::Poisoned(_))));
    assert!(matches!(append(&store, 99), Err(StoreError::Poisoned(_))));
    assert!(store.append_batch(batch(1, "late")).is_err(), "a batch was acknowledged after a failed fsync");
    assert!(store.close().is_err(), "close promised durability after a failed fsync");
    // The disk did not lose anything here: a reopen finds every
    // acknowledged event. The refused append was written before its fsync
    // failed, so its outcome is unknown (docs/design.md): it may be there
    // too, and nothing else may.
    reopened_holds(tmp.path(), &acked, 1);
}

#[test]
fn a_batch_waits_for_the_fsync_in_flight_and_fails_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let watch = Arc::new(Watch::default());
    *watch.hold.lock() = true;
    watch.fail.store(true, Ordering::SeqCst);
    let store = Arc::new(open(tmp.path(), &watch));
    for i in 0..START {
        append(&store, i).unwrap();
    }
    watch.wait_until_held();
    let (released, releaser) = release_later(&watch);
    let result = store.append_batch(batch(1, "waits"));
    assert!(released.load(Ordering::SeqCst), "the batch did not wait for the fsync in flight");
    match result {
        Err(StoreError::BatchFailed { source, .. }) => assert!(matches!(*source, StoreError::Poisoned(_))),
        other => panic!("a batch was not refused after a failed fsync: {other:?}"),
    }
    releaser.join().unwrap();
    assert_eq!(store.query(&Region::all()).len(), START);
}

fn batch(n: usize, tag: &str) -> Vec<BatchAppendItem> {
    (0..n)
        .map(|i| {
            let payload = json!({"tag": tag, "i": i});
            BatchAppendItem::new(
                coord(i),
                EventKind::DATA,
                &payload,
                AppendOptions::new(),
                CausationRef::None,
            )
            .unwrap()
        })
        .collect()
}

/// Reopens `dir` and checks it holds every acknowledged event in order,
/// at most `unknown` more (units whose fsync failed: outcome unknown), and
/// a clean chain.
fn reopened_holds(dir: &std::path::Path, acked: &[u128], unknown: usize) {
    let store = Store::open(StoreConfig::new(dir)).unwrap();
    let present: Vec<u128> = store.query(&Region::all()).iter().map(|e| e.event_id).collect();
    assert!(
        present.len() >= acked.len(),
        "{} events after reopen, {} acknowledged",
        present.len(),
        acked.len()
    );
    assert_eq!(present[..acked.len()], acked[..], "an acknowledged event is missing or moved");
    assert!(present.len() <= acked.len() + unknown, "{} events after reopen", present.len());
    assert!(store.verify().is_ok(), "{:?}", store.verify());
}

#[test]
fn a_failed_fsync_of_an_append_synced_each_time_fails_it_and_poisons() {
    let tmp = tempfile::tempdir().unwrap();
    let watch = Arc::new(Watch::default());
    let store = open_every(tmp.path(), &watch, 1);
    let acked: Vec<u128> = (0..3).map(|i| append(&store, i).unwrap().event_id).collect();
    watch.fail_all.store(true, Ordering::SeqCst);
    let e = append(&store, 3).unwrap_err();
    assert!(matches!(e, StoreError::Poisoned(ref why) if why.contains("injected")), "{e:?}");
    assert!(matches!(append(&store, 4), Err(StoreError::Poisoned(_))));
    assert!(matches!(store.sync(), Err(StoreError::Poisoned(_))));
    drop(store);
    reopened_holds(tmp.path(), &acked, 1);
}

#[test]
fn a_failed_fsync_of_a_batch_fails_it_whole_and_poisons() {
    // 4 items are written on the writer, 100 on its I/O helper.
    for size in [4usize, 100] {
        let tmp = tempfile::tempdir().unwrap();
        let watch = Arc::new(Watch::default());
        let store = open(tmp.path(), &watch);
        let acked: Vec<u128> =
            store.append_batch(batch(size, "kept")).unwrap().iter().map(|r| r.event_id).collect();
        watch.fail_all.store(true, Ordering::SeqCst);
        let e = store.append_batch(batch(size, "lost")).unwrap_err();
        assert!(format!("{e:?}").contains("injected"), "size {size}: {e:?}");
        assert_eq!(store.query(&Region::all()).len(), size, "size {size}: a failed batch became visible");
        assert!(matches!(append(&store, 0), Err(StoreError::Poisoned(_))), "size {size}");
        drop(store);
        // The failed batch is cut back (whole or not at all either way).
        reopened_holds(tmp.path(), &acked, 0);
    }
}
