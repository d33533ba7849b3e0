//! Model-based random test: random sequences of operations run against the
//! store and against a plain in-memory model, which must agree after every
//! step. Seeded and replayable (proptest prints the failing seed and
//! shrinks the sequence to a minimal one; failures are kept in
//! model.proptest-regressions).

#![cfg(feature = "dangerous-test-hooks")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use batpak::store::fault::{CountdownAction, CountdownInjector, InjectionPoint};
use batpak_test_artifacts as art;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

const ENTITIES: u8 = 4;

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
    fn clock(&self, e: u8) -> Option<u32> {
        self.streams.get(&e).and_then(|s| s.len().checked_sub(1)).map(|c| c as u32)
    }
}

fn coord(e: u8) -> Coordinate {
    Coordinate::new(format!("e{e}"), "model").unwrap()
}

fn config(dir: &std::path::Path, fail_after_items: Option<usize>) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir)
        .with_segment_max_bytes(2048)
        .with_gate(GatePlugin::from_file(art::AMOUNT_LIMIT).unwrap());
    if let Some(n) = fail_after_items {
        let injector = CountdownInjector::new(1, CountdownAction::Fail("model fault")).with_filter(
            move |p| matches!(p, InjectionPoint::BatchItemWritten { item_index, .. } if item_index == n),
        );
        cfg.fault_injector = Some(Arc::new(injector));
    }
    cfg
}

fn item(e: u8, a: i64) -> BatchAppendItem {
    BatchAppendItem::new(
        coord(e),
        EventKind::DATA,
        &json!({"amount": a}),
        AppendOptions::new(),
        CausationRef::None,
    )
    .unwrap()
}

/// Every entity's amounts as the store reads them back.
fn observed(store: &Store) -> BTreeMap<u8, Vec<i64>> {
    (0..ENTITIES)
        .filter_map(|e| {
            let amounts: Vec<i64> = store
                .stream(&format!("e{e}"))
                .iter()
                .map(|x| store.get(x.event_id).unwrap().event.payload["amount"].as_i64().unwrap())
                .collect();
            (!amounts.is_empty()).then_some((e, amounts))
        })
        .collect()
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(config(tmp.path(), None)).unwrap();
    let mut model = Model::default();
    let mut cursor_at = 0u64;
    let mut drained = 0usize;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append(e, a) => {
                let r = store.append(&coord(*e), EventKind::DATA, &json!({"amount": a}));
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
                let r =
                    store.append_with_options(&coord(*e), EventKind::DATA, &json!({"amount": a}), options);
                let ok = *skew == 0 && *a <= 10_000;
                prop_assert_eq!(r.is_ok(), ok, "step {}: {:?} -> {:?}", step, op, r.err());
                if ok {
                    model.push(*e, *a);
                }
            }
            Op::Keyed(e, a, k) => {
                let key = 0xabc0_0000 + u128::from(*k);
                let options = AppendOptions::new().with_idempotency(key);
                let r =
                    store.append_with_options(&coord(*e), EventKind::DATA, &json!({"amount": a}), options);
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
                store.close().unwrap();
                store = Store::open(config(tmp.path(), Some(*n))).unwrap();
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
                store.close().unwrap();
                store = Store::open(config(tmp.path(), None)).unwrap();
            }
            Op::Reopen => {
                store.close().unwrap();
                store = Store::open(config(tmp.path(), None)).unwrap();
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
        prop_assert_eq!(store.stats().event_count, model.total, "step {}", step);
    }
    prop_assert!(store.verify().is_ok(), "{:?}", store.verify().issues);
    store.close().unwrap();
    let store = Store::open(config(tmp.path(), None)).unwrap();
    prop_assert_eq!(observed(&store), model.streams, "after the final reopen");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn the_store_agrees_with_a_model_step_by_step(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
