//! Power-loss simulation.
//!
//! Every fsync and every change of the data directory's names goes through
//! one seam (`store::durability`), which reports each step to the fault
//! injector's `observe_io`. [`Sim`] keeps, from those reports, what a disk
//! would hold after a power cut:
//! - a file's contents as they were when its last completed fsync started
//!   (by inode, so hard links and renames carry them): bytes written while
//!   an fsync runs (the periodic fsync on the writer's helper thread) are
//!   not counted as carried by it;
//! - the directory's names as of its last completed fsync, plus the listing
//!   after each name change since (a journaling file system commits them in
//!   order, so a cut keeps some prefix of them).
//!
//! At a random step (before an fsync, or right after a name change) the
//! power goes: the simulator picks a prefix of the name changes, and for
//! each file keeps the bytes written since its last fsync whole, tears them
//! at a random byte, or loses them. The store then opens on what is left,
//! and must keep every promise docs/design.md makes ("Durability
//! contract"): every event acknowledged under a promise of durability is
//! there with its payload, batches are whole or absent, entity clocks have
//! no holes, `verify` passes, and a second open (from the checkpoint and
//! footers the first one wrote) agrees with the first.
//!
//! Seeds: `BATPAK_POWER_LOSS_SEEDS` (default 200 per sync setting) and
//! `BATPAK_POWER_LOSS_SEED=<seed>` to replay one; a failure prints its seed.

#![cfg(feature = "dangerous-test-hooks")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

mod common;

use batpak::prelude::*;
use batpak::store::fault::FaultInjector;
use common::power::{scratch, torn, write_image, Rng, Sim};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
struct Setting {
    mode: SyncMode,
    every_n_events: u32,
}

#[derive(Debug)]
enum Op {
    /// Event ids and payloads; `batch` if written as one batch.
    Append {
        events: Vec<(u128, Value)>,
        batch: bool,
    },
    /// `sync()` or `close()` returned: everything acknowledged before is durable.
    Durable,
    Other,
}

fn coord(entity: u64) -> Coordinate {
    Coordinate::new(format!("e{entity}"), "power").unwrap()
}

fn config(dir: &Path, setting: Setting, sim: &Arc<Sim>) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir)
        .with_segment_max_bytes(6 * 1024)
        .with_sync_mode(setting.mode)
        .with_sync_every_n_events(setting.every_n_events);
    cfg.fault_injector = Some(Arc::clone(sim) as Arc<dyn FaultInjector>);
    cfg
}

/// Runs a random workload; returns what each operation did, and the store,
/// still open (the power goes before it is closed).
fn workload(dir: &Path, setting: Setting, sim: &Arc<Sim>, rng: &mut Rng, ops: usize) -> (Vec<Op>, Store) {
    let mut store = Some(Store::open(config(dir, setting, sim)).unwrap());
    let mut log = Vec::with_capacity(ops);
    for i in 0..ops {
        let s = store.as_ref().unwrap();
        let roll = rng.below(100);
        let op = if roll < 55 {
            let payload = json!({"op": i, "pad": "p".repeat(rng.below(200) as usize)});
            let r = s.append(&coord(rng.below(4)), EventKind::DATA, &payload).unwrap();
            Op::Append { events: vec![(r.event_id, payload)], batch: false }
        } else if roll < 80 {
            // One batch in eight is large enough for the writer's I/O helper.
            let n = if rng.below(8) == 0 { 64 + rng.below(16) as usize } else { 2 + rng.below(5) as usize };
            let mut items = Vec::new();
            let mut payloads = Vec::new();
            for k in 0..n {
                let payload = json!({"op": i, "item": k});
                let causation = CausationRef::None;
                let item = BatchAppendItem::new(
                    coord(rng.below(4)),
                    EventKind::DATA,
                    &payload,
                    AppendOptions::new(),
                    causation,
                );
                items.push(item.unwrap());
                payloads.push(payload);
            }
            let receipts = s.append_batch(items).unwrap();
            Op::Append { events: receipts.iter().map(|r| r.event_id).zip(payloads).collect(), batch: true }
        } else if roll < 87 {
            s.sync().unwrap();
            Op::Durable
        } else if roll < 93 {
            s.compact(&CompactionConfig::default()).unwrap();
            Op::Other
        } else {
            store.take().unwrap().close().unwrap();
            store = Some(Store::open(config(dir, setting, sim)).unwrap());
            Op::Durable
        };
        log.push(op);
        sim.done.fetch_add(1, Ordering::SeqCst);
    }
    (log, store.unwrap())
}

/// What the store after the cut must hold, given what was acknowledged.
struct Promise {
    /// Acknowledged under a promise of durability: must be present.
    durable: HashMap<u128, Value>,
    /// Every event ever attempted, with its payload.
    attempted: HashMap<u128, Value>,
    /// Acknowledged without a promise (singles between fsyncs): at most
    /// `every_n_events - 1` of them may be lost.
    unpromised: Vec<u128>,
    batches: Vec<Vec<u128>>,
}

fn promise(log: &[Op], done_at_crash: usize, setting: Setting) -> Promise {
    let mut p = Promise {
        durable: HashMap::new(),
        attempted: HashMap::new(),
        unpromised: Vec::new(),
        batches: Vec::new(),
    };
    let acked = &log[..done_at_crash.min(log.len())];
    // docs/design.md: a batch is fsynced with everything before it, and so
    // is everything acknowledged before a `sync()` or `close()` returned.
    let last_durable =
        acked.iter().rposition(|op| matches!(op, Op::Durable | Op::Append { batch: true, .. }));
    for (i, op) in log.iter().enumerate() {
        let Op::Append { events, batch } = op else { continue };
        for (id, payload) in events {
            p.attempted.insert(*id, payload.clone());
        }
        if *batch {
            p.batches.push(events.iter().map(|(id, _)| *id).collect());
        }
        let acknowledged = i < acked.len();
        let promised = *batch || setting.every_n_events <= 1 || last_durable.is_some_and(|d| d > i);
        if acknowledged && promised {
            p.durable.extend(events.iter().cloned());
        } else if acknowledged {
            p.unpromised.extend(events.iter().map(|(id, _)| *id));
        }
    }
    p
}

fn check_store(store: &Store, p: &Promise, setting: Setting, what: &str) -> HashSet<u128> {
    let present: HashSet<u128> = store.query(&Region::all()).iter().map(|e| e.event_id).collect();
    for (id, payload) in &p.durable {
        assert!(present.contains(id), "{what}: a durable acknowledged event {id:032x} is lost");
        assert_eq!(&store.get(*id).unwrap().event.payload, payload, "{what}: payload of {id:032x}");
    }
    for id in &present {
        assert!(p.attempted.contains_key(id), "{what}: event {id:032x} was never written");
    }
    let lost = p.unpromised.iter().filter(|id| !present.contains(id)).count();
    let bound = setting.every_n_events.saturating_sub(1) as usize;
    assert!(
        lost <= bound,
        "{what}: {lost} acknowledged appends lost, more than every_n_events - 1 = {bound}"
    );
    for batch in &p.batches {
        let kept = batch.iter().filter(|id| present.contains(id)).count();
        assert!(kept == 0 || kept == batch.len(), "{what}: batch kept {kept} of {}", batch.len());
    }
    for entity in 0..4 {
        let clocks: Vec<u32> = store.stream(&format!("e{entity}")).iter().map(|e| e.clock).collect();
        let expected: Vec<u32> = (0..clocks.len() as u32).collect();
        assert_eq!(clocks, expected, "{what}: entity e{entity} has a hole in its clocks");
    }
    let report = store.verify();
    assert!(report.is_ok(), "{what}: verify found {:?}", report.issues);
    present
}

/// One seeded run: workload, cut, reopen twice, check. Returns events checked.
fn run(seed: u64, setting: Setting) -> usize {
    let mut rng = Rng(seed ^ 0x5EED);
    let live = scratch();
    let done = Arc::new(AtomicUsize::new(0));
    // About 4 steps per operation: cut anywhere in the run, or after it.
    let ops = 10 + rng.below(30) as usize;
    let crash_at = 1 + rng.below(ops as u64 * 5);
    let sim = Arc::new(Sim::new(seed, crash_at, Arc::clone(&done)));
    let (log, store) = workload(live.path(), setting, &sim, &mut rng, ops);
    let (image, done_at_crash) = sim.take_image(live.path());
    drop(store);
    let p = promise(&log, done_at_crash, setting);

    let after = scratch();
    write_image(&image, after.path());
    let what =
        format!("seed {seed} ({setting:?}, cut at step {crash_at} after {done_at_crash} of {ops} ops)");
    let store = Store::open(StoreConfig::new(after.path()))
        .unwrap_or_else(|e| panic!("{what}: the store does not open after the cut: {e}"));
    let first = check_store(&store, &p, setting, &what);
    store.close().unwrap();
    let store = Store::open(StoreConfig::new(after.path())).unwrap();
    let second = check_store(&store, &p, setting, &format!("{what}, second open"));
    assert_eq!(first, second, "{what}: the second open sees other events");
    store.close().unwrap();
    p.durable.len()
}

fn seeds() -> Vec<u64> {
    if let Ok(one) = std::env::var("BATPAK_POWER_LOSS_SEED") {
        return vec![one.parse().expect("BATPAK_POWER_LOSS_SEED is a number")];
    }
    let n = std::env::var("BATPAK_POWER_LOSS_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200u64);
    (0..n).collect()
}

fn campaign(setting: Setting, salt: u64) {
    let (mut runs, mut checked) = (0usize, 0usize);
    for seed in seeds() {
        let seed = seed.wrapping_mul(0x100).wrapping_add(salt);
        let result = std::panic::catch_unwind(|| run(seed, setting));
        match result {
            Ok(n) => checked += n,
            Err(e) => {
                eprintln!("power-loss failure: replay with BATPAK_POWER_LOSS_SEED={seed}");
                std::panic::resume_unwind(e);
            }
        }
        runs += 1;
    }
    eprintln!("power loss {setting:?}: {runs} seeds, {checked} durable acknowledged events checked, 0 lost");
}

#[test]
fn sync_all_every_append() {
    campaign(Setting { mode: SyncMode::SyncAll, every_n_events: 1 }, 1);
}

#[test]
fn sync_data_every_append() {
    campaign(Setting { mode: SyncMode::SyncData, every_n_events: 1 }, 2);
}

#[test]
fn sync_all_every_1000_appends() {
    campaign(Setting { mode: SyncMode::SyncAll, every_n_events: 1000 }, 3);
}

#[test]
fn sync_data_every_1000_appends() {
    campaign(Setting { mode: SyncMode::SyncData, every_n_events: 1000 }, 4);
}

/// A bound of 4 starts each periodic fsync ahead, on the helper thread,
/// at 3 unsynced appends, and the 4th waits for it.
#[test]
fn sync_all_every_4_appends() {
    campaign(Setting { mode: SyncMode::SyncAll, every_n_events: 4 }, 5);
}

#[test]
fn a_torn_write_keeps_the_old_bytes_past_the_cut() {
    assert_eq!(torn(b"abcdef", b"xy", 3), b"abc".to_vec());
    assert_eq!(torn(b"ab", b"wxyz", 1), b"axyz".to_vec());
    assert_eq!(torn(b"abcd", b"wxyz", 0), b"wxyz".to_vec());
    assert_eq!(torn(b"abcd", b"", 9), b"abcd".to_vec());
}
