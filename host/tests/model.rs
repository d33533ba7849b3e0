//! Model-based random test: random sequences of operations run against the
//! store and against a plain in-memory model, which must agree after every
//! step: each entity's events, the WASM `balance` projection's state, the
//! event count, a cursor kept across steps. Operations include gates that
//! deny, CAS, idempotent retries, injected faults, compaction, snapshots,
//! close/reopen and a simulated power loss (host/tests/common/power.rs;
//! every append is fsynced here, so a cut after an acknowledgement loses
//! nothing). Seeded and replayable (proptest prints the failing seed and
//! shrinks the sequence to a minimal one; failures are kept in
//! model.proptest-regressions).

#![cfg(feature = "dangerous-test-hooks")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

mod common;

use batpak::prelude::*;
use batpak::store::fault::{CountdownAction, CountdownInjector, FaultInjector, InjectionPoint};
use batpak_test_artifacts as art;
use common::power::{scratch, write_image, Sim};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

const ENTITIES: u8 = 4;
/// The kind the `balance` projection adds up.
const DEPOSIT: EventKind = EventKind::custom(1, 1);

#[derive(Clone, Debug)]
enum Op {
    /// A single append (amounts over 10 000 are denied by the gate).
    Append(u8, i64),
    /// An atomic batch.
    Batch(Vec<(u8, i64)>),
    /// CAS on the entity's latest clock: right, or off by `skew`.
    Cas(u8, i64, u32),
    /// An append with an idempotency key (a small key space, so retries happen).
    Keyed(u8, i64, u8),
    /// A batch whose write fails at an injected fault after its `n`-th item.
    FaultyBatch(Vec<(u8, i64)>, usize),
    /// Close and reopen.
    Reopen,
    /// Merge-compact sealed segments.
    Compact,
    /// Read everything new through a cursor kept across steps.
    Drain,
    /// Copy the store with `snapshot` and open the copy.
    Snapshot,
    /// The power goes (after the last acknowledgement); the store reopens on
    /// what a disk would hold, the seed picking names kept and bytes torn.
    PowerLoss(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let e = 0..ENTITIES;
    let amount = prop_oneof![9 => 0i64..10_000, 1 => 10_001i64..20_000];
    let items = prop::collection::vec((0..ENTITIES, 0i64..12_000), 1..6);
    prop_oneof![
        6 => (e.clone(), amount.clone()).prop_map(|(e, a)| Op::Append(e, a)),
        3 => items.clone().prop_map(Op::Batch),
        2 => (e.clone(), amount.clone(), 0u32..2).prop_map(|(e, a, s)| Op::Cas(e, a, s)),
        2 => (e, amount, 0u8..6).prop_map(|(e, a, k)| Op::Keyed(e, a, k)),
        1 => (items, 0usize..6).prop_map(|(i, n)| Op::FaultyBatch(i, n)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
        2 => Just(Op::Drain),
        1 => Just(Op::Snapshot),
        1 => any::<u64>().prop_map(Op::PowerLoss),
    ]
}

/// What the store must hold: each entity's amounts in order, and the
/// event id and entity each idempotency key was first stored under.
#[derive(Default)]
struct Model {
    streams: BTreeMap<u8, Vec<i64>>,
    keys: BTreeMap<u8, (u128, u8, i64)>,
    total: usize,
}

impl Model {
    fn push(&mut self, e: u8, a: i64) {
        self.streams.entry(e).or_default().push(a);
        self.total += 1;
    }
    /// What the `balance` projection must answer for each entity.
    fn balances(&self) -> BTreeMap<u8, Option<i64>> {
        (0..ENTITIES).map(|e| (e, self.streams.get(&e).map(|s| s.iter().sum()))).collect()
    }
    fn clock(&self, e: u8) -> Option<u32> {
        self.streams.get(&e).and_then(|s| s.len().checked_sub(1)).map(|c| c as u32)
    }
}

fn entity(e: u8) -> String {
    format!("account:e{e}")
}

fn coord(e: u8) -> Coordinate {
    Coordinate::new(entity(e), "model").unwrap()
}

/// Every append fsynced; the power-loss simulator watching, or an injector
/// failing a batch after its `n`-th item.
fn config(dir: &Path, sim: &Arc<Sim>, fail_after_items: Option<usize>) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir)
        .with_segment_max_bytes(2048)
        .with_sync_every_n_events(1)
        .with_gate(GatePlugin::from_file(art::AMOUNT_LIMIT).unwrap());
    cfg.fault_injector = Some(match fail_after_items {
        None => Arc::clone(sim) as Arc<dyn FaultInjector>,
        Some(n) => Arc::new(CountdownInjector::new(1, CountdownAction::Fail("model fault")).with_filter(
            move |p| matches!(p, InjectionPoint::BatchItemWritten { item_index, .. } if item_index == n),
        )),
    });
    cfg
}

/// Opens the store in `dir` with the balance projection installed.
fn open(dir: &Path, sim: &Arc<Sim>, fail_after_items: Option<usize>) -> Store {
    let store = Store::open(config(dir, sim, fail_after_items)).unwrap();
    if store.projection_status("balance").is_none() {
        store.install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).unwrap()).unwrap();
    }
    store
}

/// Closes `store` cleanly: everything in `dir` is durable after it.
fn close(store: Store, dir: &Path, sim: &Sim) {
    store.close().unwrap();
    sim.settle(dir);
}

fn item(e: u8, a: i64) -> BatchAppendItem {
    BatchAppendItem::new(coord(e), DEPOSIT, &json!({"amount": a}), AppendOptions::new(), CausationRef::None)
        .unwrap()
}

/// Every entity's amounts as the store reads them back.
fn observed(store: &Store) -> BTreeMap<u8, Vec<i64>> {
    (0..ENTITIES)
        .filter_map(|e| {
            let amounts: Vec<i64> = store
                .stream(&entity(e))
                .iter()
                .map(|x| store.get(x.event_id).unwrap().event.payload["amount"].as_i64().unwrap())
                .collect();
            (!amounts.is_empty()).then_some((e, amounts))
        })
        .collect()
}

/// Each entity's balance as the WASM projection answers it.
fn balances(store: &Store) -> BTreeMap<u8, Option<i64>> {
    if let Some(last) = store.query(&Region::all()).last().map(|e| e.global_sequence) {
        let caught_up =
            store.wait_for_projection("balance", last, std::time::Duration::from_secs(10)).unwrap();
        assert!(caught_up, "the balance projection reached sequence {last}");
    }
    (0..ENTITIES)
        .map(|e| {
            let state = store.projection_state("balance", &entity(e)).unwrap();
            (e, state.map(|b| String::from_utf8(b).unwrap().parse().unwrap()))
        })
        .collect()
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    // Every store directory of the run (a power loss moves to a new one).
    let mut dirs = vec![scratch()];
    let mut dir: PathBuf = dirs[0].path().to_path_buf();
    let sim = Arc::new(Sim::new(0, u64::MAX, Arc::new(AtomicUsize::new(0))));
    let mut store = open(&dir, &sim, None);
    let mut model = Model::default();
    let mut cursor_at = 0u64;
    let mut drained = 0usize;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append(e, a) => {
                let r = store.append(&coord(*e), DEPOSIT, &json!({"amount": a}));
                prop_assert_eq!(r.is_ok(), *a <= 10_000, "step {}: {:?} -> {:?}", step, op, r.err());
                if *a <= 10_000 {
                    model.push(*e, *a);
                }
            }
            Op::Batch(items) => {
                let ok = items.iter().all(|(_, a)| *a <= 10_000);
                let r = store.append_batch(items.iter().map(|(e, a)| item(*e, *a)).collect());
                prop_assert_eq!(r.is_ok(), ok, "step {}: {:?}", step, op);
                if ok {
                    items.iter().for_each(|(e, a)| model.push(*e, *a));
                }
            }
            Op::Cas(e, a, skew) => {
                let options = match model.clock(*e) {
                    Some(c) => AppendOptions::new().with_cas(c + skew),
                    None if *skew == 0 => AppendOptions::new().with_cas_empty(),
                    None => AppendOptions::new().with_cas(*skew),
                };
                let r = store.append_with_options(&coord(*e), DEPOSIT, &json!({"amount": a}), options);
                let ok = *skew == 0 && *a <= 10_000;
                prop_assert_eq!(r.is_ok(), ok, "step {}: {:?} -> {:?}", step, op, r.err());
                if ok {
                    model.push(*e, *a);
                }
            }
            Op::Keyed(e, a, k) => {
                let key = 0xabc0_0000 + u128::from(*k);
                let options = AppendOptions::new().with_idempotency(key);
                let r = store.append_with_options(&coord(*e), DEPOSIT, &json!({"amount": a}), options);
                match model.keys.get(k).copied() {
                    Some((id, e0, a0)) if (e0, a0) == (*e, *a) => {
                        prop_assert_eq!(
                            r.map(|r| r.event_id).ok(),
                            Some(id),
                            "step {}: a retry returns the original",
                            step
                        );
                    }
                    Some(_) => {
                        prop_assert!(r.is_err(), "step {}: a key reused for another event conflicts", step)
                    }
                    None if *a > 10_000 => prop_assert!(r.is_err(), "step {}: denied", step),
                    None => {
                        let r = r.map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                        model.keys.insert(*k, (r.event_id, *e, *a));
                        model.push(*e, *a);
                    }
                }
            }
            Op::FaultyBatch(items, n) => {
                close(store, &dir, &sim);
                store = open(&dir, &sim, Some(*n));
                let fits = *n < items.len() && items.iter().all(|(_, a)| *a <= 10_000);
                let r = store.append_batch(items.iter().map(|(e, a)| item(*e, *a)).collect());
                if fits {
                    prop_assert!(r.is_err(), "step {}: the fault fails the batch", step);
                } else {
                    // Denied before writing, or the fault point is never reached.
                    let ok = items.iter().all(|(_, a)| *a <= 10_000);
                    prop_assert_eq!(r.is_ok(), ok, "step {}: {:?}", step, op);
                    if ok {
                        items.iter().for_each(|(e, a)| model.push(*e, *a));
                    }
                }
                close(store, &dir, &sim);
                store = open(&dir, &sim, None);
            }
            Op::Reopen => {
                close(store, &dir, &sim);
                store = open(&dir, &sim, None);
            }
            Op::Snapshot => {
                let copy = scratch();
                let into = copy.path().join("snapshot");
                store.snapshot(&into).unwrap();
                let copied = Store::open(StoreConfig::new(&into)).unwrap();
                prop_assert_eq!(observed(&copied), model.streams.clone(), "step {}: the snapshot", step);
                prop_assert!(copied.verify().is_ok(), "step {}: the snapshot verifies", step);
                copied.close().unwrap();
            }
            Op::PowerLoss(seed) => {
                sim.reseed(*seed);
                let (image, _) = sim.take_image(&dir);
                drop(store);
                let after = scratch();
                write_image(&image, after.path());
                dir = after.path().to_path_buf();
                dirs.push(after);
                sim.settle(&dir);
                store = open(&dir, &sim, None);
                // The cursor's position is a sequence: it stays valid.
            }
            Op::Compact => {
                store.compact(&CompactionConfig::default()).unwrap();
            }
            Op::Drain => {
                let mut cursor = store.cursor_from(&Region::all(), cursor_at);
                let got = cursor.poll_batch(10_000);
                let mut seqs: Vec<u64> = got.iter().map(|e| e.global_sequence).collect();
                let sorted = {
                    let mut s = seqs.clone();
                    s.sort();
                    s
                };
                prop_assert_eq!(&seqs, &sorted, "step {}: a cursor yields in order", step);
                drained += seqs.len();
                cursor_at = cursor.position();
                seqs.clear();
                prop_assert_eq!(drained, model.total, "step {}: the cursor saw every event once", step);
            }
        }
        prop_assert_eq!(observed(&store), model.streams.clone(), "step {}: after {:?}", step, op);
        prop_assert_eq!(balances(&store), model.balances(), "step {}: the balance projection", step);
        prop_assert_eq!(store.stats().event_count, model.total, "step {}", step);
    }
    prop_assert!(store.verify().is_ok(), "{:?}", store.verify().issues);
    close(store, &dir, &sim);
    let store = open(&dir, &sim, None);
    prop_assert_eq!(observed(&store), model.streams.clone(), "after the final reopen");
    prop_assert_eq!(balances(&store), model.balances(), "after the final reopen");
    store.close().unwrap();
    drop(dirs);
    Ok(())
}

fn model_cases() -> u32 {
    std::env::var("BATPAK_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

proptest! {
    // 24 sequences per run; BATPAK_MODEL_CASES=N for a longer campaign.
    #![proptest_config(ProptestConfig { cases: model_cases(), ..ProptestConfig::default() })]
    #[test]
    fn the_store_agrees_with_a_model_step_by_step(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
