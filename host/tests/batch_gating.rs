//! A batch is gated as if its items were appended one after another: item
//! k's gates see every in-writer projection after items 0..k-1, and a
//! rejected batch leaves every projection exactly as it was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

mod common;

use batpak::plugin::ProjectionPlugin;
use batpak::prelude::*;
use batpak::store::BatchStage;
use batpak_test_artifacts as art;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

const DEPOSIT: EventKind = EventKind::custom(1, 1);
const WITHDRAW: EventKind = EventKind::custom(1, 2);

fn acct(n: u32) -> Coordinate {
    Coordinate::new(format!("account:{n}"), "bank").expect("coord")
}

fn bank(dir: &std::path::Path) -> Store {
    let store = Store::open(StoreConfig::new(dir)).expect("open");
    store
        .install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).expect("read"))
        .expect("install");
    store.install_gate(GatePlugin::from_file(art::OVERDRAFT).expect("read")).expect("gate");
    store
}

fn balance(store: &Store, n: u32) -> Option<i64> {
    let bytes = store.projection_state("balance", &format!("account:{n}")).expect("state")?;
    String::from_utf8(bytes).ok()?.parse().ok()
}

fn item(n: u32, deposit: bool, amount: i64) -> BatchAppendItem {
    let kind = if deposit { DEPOSIT } else { WITHDRAW };
    BatchAppendItem::new(acct(n), kind, &json!({"amount": amount}), AppendOptions::new(), CausationRef::None)
        .expect("item")
}

/// The item index and code of a batch denied by a gate.
fn denied_at(err: &StoreError) -> Option<(usize, String)> {
    match err {
        StoreError::BatchFailed { item_index, stage: BatchStage::Gating, source } => match &**source {
            StoreError::Denied(d) => Some((*item_index, d.code.clone())),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn two_withdrawals_in_one_batch_cannot_overdraw() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = bank(tmp.path());
    store.append(&acct(1), DEPOSIT, &json!({"amount": 100})).expect("deposit");
    let before = store.projection_snapshot("balance").expect("snapshot");
    let err = store.append_batch(vec![item(1, false, 60), item(1, false, 60)]).expect_err("overdraws");
    assert_eq!(denied_at(&err), Some((1, "OVERDRAFT".into())), "{err}");
    assert_eq!(balance(&store, 1), Some(100));
    assert_eq!(
        store.projection_snapshot("balance").expect("snapshot"),
        before,
        "state restored byte for byte"
    );
    assert_eq!(store.stream("account:1").len(), 1, "nothing of the batch is stored");
    // The projection folds on as if the batch never happened.
    store.append(&acct(1), WITHDRAW, &json!({"amount": 60})).expect("one withdrawal fits");
    assert_eq!(balance(&store, 1), Some(40));
}

#[test]
fn a_deposit_earlier_in_the_batch_pays_for_a_later_withdrawal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = bank(tmp.path());
    store.append(&acct(1), DEPOSIT, &json!({"amount": 100})).expect("deposit");
    let receipts =
        store.append_batch(vec![item(1, true, 50), item(1, false, 120)]).expect("100 + 50 covers 120");
    assert_eq!(receipts.len(), 2);
    assert_eq!(balance(&store, 1), Some(30));
}

#[test]
fn a_denied_batch_leaves_every_state_byte_identical_across_accounts_and_reopen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = bank(tmp.path());
    store.append(&acct(1), DEPOSIT, &json!({"amount": 100})).expect("deposit");
    store.append(&acct(2), DEPOSIT, &json!({"amount": 100})).expect("deposit");
    let before = store.projection_snapshot("balance").expect("snapshot");
    let status_before = store.projection_status("balance").expect("status").0;
    // Items 0..2 pass and are folded tentatively; item 3 overdraws account 1.
    let batch = vec![item(1, false, 60), item(2, false, 60), item(3, true, 5), item(1, false, 60)];
    let err = store.append_batch(batch).expect_err("account 1 would go to -20");
    assert_eq!(denied_at(&err), Some((3, "OVERDRAFT".into())), "{err}");
    assert_eq!(store.projection_snapshot("balance").expect("snapshot"), before);
    assert_eq!(store.projection_status("balance").expect("status").0, status_before);
    assert_eq!(balance(&store, 3), None, "the tentative deposit to account 3 is gone");
    store.close().expect("close");
    let store = bank(tmp.path());
    assert_eq!(store.projection_snapshot("balance").expect("snapshot"), before, "the persisted state too");
}

#[test]
fn a_rejected_cas_after_tentative_folds_undoes_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = bank(tmp.path());
    store.append(&acct(1), DEPOSIT, &json!({"amount": 100})).expect("deposit");
    let before = store.projection_snapshot("balance").expect("snapshot");
    let stale = BatchAppendItem::new(
        acct(2),
        DEPOSIT,
        &json!({"amount": 1}),
        AppendOptions::new().with_cas(7),
        CausationRef::None,
    )
    .expect("item");
    let err = store.append_batch(vec![item(1, true, 10), stale]).expect_err("cas fails");
    assert!(matches!(err, StoreError::BatchFailed { item_index: 1, .. }), "{err}");
    assert_eq!(store.projection_snapshot("balance").expect("snapshot"), before);
}

#[test]
fn eight_threads_mixing_singles_and_batches_never_overdraw() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(bank(tmp.path()));
    for n in 0..2 {
        store.append(&acct(n), DEPOSIT, &json!({"amount": 600})).expect("seed");
    }
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut denied = 0u32;
                for i in 0..30u32 {
                    let n = (t + i) % 2;
                    let amount = i64::from(15 + (t * 7 + i) % 30);
                    let result = if i % 3 == 0 {
                        store.append(&acct(n), WITHDRAW, &json!({"amount": amount})).map(|_| ())
                    } else {
                        let batch =
                            vec![item(n, false, amount), item(1 - n, true, 3), item(n, false, amount)];
                        store.append_batch(batch).map(|_| ())
                    };
                    match result {
                        Ok(()) => {}
                        Err(StoreError::Denied(d)) => {
                            assert_eq!(d.code, "OVERDRAFT");
                            denied += 1;
                        }
                        Err(e) => {
                            assert!(denied_at(&e).is_some_and(|(_, c)| c == "OVERDRAFT"), "{e}");
                            denied += 1;
                        }
                    }
                }
                denied
            })
        })
        .collect();
    let denied: u32 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert!(denied > 0, "withdrawals exceed deposits: some must be denied");
    for n in 0..2 {
        let running = common::replayed_balance(&store, &format!("account:{n}"), DEPOSIT);
        assert_eq!(balance(&store, n), Some(running));
    }
}

/// One operation: (account, deposit?, amount).
type Op = (u32, bool, i64);

/// The sequential model: a unit (single or batch) applies whole if every
/// withdrawal fits the balance left by the items before it; else it is
/// denied at the first item that does not fit and changes nothing.
fn model_unit(balances: &mut BTreeMap<u32, i64>, unit: &[Op]) -> Result<(), usize> {
    let mut next = balances.clone();
    for (i, &(n, deposit, amount)) in unit.iter().enumerate() {
        let b = next.entry(n).or_insert(0);
        if deposit {
            *b += amount;
        } else if amount > *b {
            return Err(i);
        } else {
            *b -= amount;
        }
    }
    *balances = next;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn batched_or_not_the_store_agrees_with_the_sequential_model(
        units in prop::collection::vec(prop::collection::vec((0u32..3, any::<bool>(), 1i64..200), 1..6), 1..25)
    ) {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = bank(tmp.path());
        let mut model = BTreeMap::new();
        for unit in &units {
            let expected = model_unit(&mut model, unit);
            let got = if unit.len() == 1 {
                let (n, deposit, amount) = unit[0];
                let kind = if deposit { DEPOSIT } else { WITHDRAW };
                match store.append(&acct(n), kind, &json!({"amount": amount})) {
                    Ok(_) => Ok(()),
                    Err(StoreError::Denied(d)) => { prop_assert_eq!(d.code, "OVERDRAFT"); Err(0) }
                    Err(e) => panic!("unexpected {e}"),
                }
            } else {
                let items = unit.iter().map(|&(n, d, a)| item(n, d, a)).collect();
                match store.append_batch(items) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(denied_at(&e).map(|(i, _)| i).unwrap_or_else(|| panic!("unexpected {e}"))),
                }
            };
            prop_assert_eq!(got, expected, "verdict for unit {:?}", unit);
            for n in 0..3 {
                prop_assert_eq!(balance(&store, n).unwrap_or(0), model.get(&n).copied().unwrap_or(0));
            }
        }
    }
}
