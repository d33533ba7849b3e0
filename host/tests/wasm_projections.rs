//! WASM projections: incremental = replay, snapshots, rebuilds, containment,
//! and a stateful overdraft gate under concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

mod common;

use batpak::plugin::ProjectionPlugin;
use batpak::prelude::*;
use batpak::store::ProjectionStatus;
use batpak_test_artifacts as art;
use proptest::prelude::*;
use serde_json::json;
use std::sync::Arc;

const DEPOSIT: EventKind = EventKind::custom(1, 1);
const WITHDRAW: EventKind = EventKind::custom(1, 2);

fn acct(n: u32) -> Coordinate {
    Coordinate::new(format!("account:{n}"), "bank").expect("coord")
}

fn balance(store: &Store, n: u32) -> Option<i64> {
    let bytes = store.projection_state("balance", &format!("account:{n}")).expect("state")?;
    String::from_utf8(bytes).ok()?.parse().ok()
}

fn apply_ops(store: &Store, ops: &[(u32, bool, i64)]) {
    for (i, (account, deposit, amount)) in ops.iter().enumerate() {
        let kind = if *deposit { DEPOSIT } else { WITHDRAW };
        if i % 4 == 3 {
            let item = BatchAppendItem::new(
                acct(*account),
                kind,
                &json!({"amount": amount}),
                AppendOptions::new(),
                CausationRef::None,
            )
            .expect("item");
            store.append_batch(vec![item]).expect("batch");
        } else {
            store.append(&acct(*account), kind, &json!({"amount": amount})).expect("append");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    #[test]
    fn incremental_state_equals_full_replay(ops in prop::collection::vec((0u32..4, any::<bool>(), 1i64..500), 1..40)) {
        let a = tempfile::tempdir().expect("tmp");
        let incremental = Store::open(StoreConfig::new(a.path())).expect("open");
        incremental.install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).expect("read")).expect("install");
        apply_ops(&incremental, &ops);
        let b = tempfile::tempdir().expect("tmp");
        let replayed = Store::open(StoreConfig::new(b.path())).expect("open");
        apply_ops(&replayed, &ops);
        replayed.install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).expect("read")).expect("install");
        prop_assert_eq!(incremental.projection_snapshot("balance").expect("a"), replayed.projection_snapshot("balance").expect("b"));
    }
}

#[test]
fn balances_follow_appends_and_batches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    store
        .install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).expect("read"))
        .expect("install");
    store.append(&acct(1), DEPOSIT, &json!({"amount": 100})).expect("deposit");
    store.append(&acct(1), EventKind::DATA, &json!({"amount": 999})).expect("ignored kind");
    let items = vec![
        BatchAppendItem::new(
            acct(1),
            WITHDRAW,
            &json!({"amount": 30}),
            AppendOptions::new(),
            CausationRef::None,
        )
        .expect("i"),
        BatchAppendItem::new(
            acct(2),
            DEPOSIT,
            &json!({"amount": 30}),
            AppendOptions::new(),
            CausationRef::None,
        )
        .expect("i"),
    ];
    store.append_batch(items).expect("transfer");
    assert_eq!(balance(&store, 1), Some(70));
    assert_eq!(balance(&store, 2), Some(30));
    assert_eq!(balance(&store, 3), None);
    let (status, info) = store.projection_status("balance").expect("installed");
    assert_eq!(status, ProjectionStatus::Ready { applied_through: Some(3) });
    assert_eq!(info.name, "balance");
    assert!(matches!(
        store.projection_state("nope", "x"),
        Err(StoreError::Plugin(PluginError::UnknownProjection(_)))
    ));
}

#[test]
fn reopen_with_a_snapshot_equals_reopen_without() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ops: Vec<(u32, bool, i64)> = (0..200).map(|i| (i % 5, i % 3 != 0, i64::from(i % 50 + 1))).collect();
    let expected = {
        let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
        let plugin = ProjectionPlugin::from_file(art::BALANCE).expect("read").with_snapshot_every(64);
        store.install_projection("balance", plugin).expect("install");
        apply_ops(&store, &ops);
        let bytes = store.projection_snapshot("balance").expect("snapshot");
        store.close().expect("close");
        bytes
    };
    assert!(tmp.path().join("proj-balance.snap").exists(), "persisted at close");
    let with_snapshot = {
        let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
        let mut progress = Vec::new();
        store
            .install_projection_with_progress(
                "balance",
                ProjectionPlugin::from_file(art::BALANCE).expect("read"),
                |d, t| progress.push((d, t)),
            )
            .expect("install");
        assert_eq!(progress.last(), Some(&(0, 0)), "restored from the snapshot: nothing to replay");
        store.projection_snapshot("balance").expect("snapshot")
    };
    std::fs::remove_file(tmp.path().join("proj-balance.snap")).expect("remove snapshot");
    let rebuilt = {
        let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
        let mut total = 0;
        store
            .install_projection_with_progress(
                "balance",
                ProjectionPlugin::from_file(art::BALANCE).expect("read"),
                |_, t| total = t,
            )
            .expect("install");
        assert_eq!(total, 200, "rebuilt from the whole log");
        store.projection_snapshot("balance").expect("snapshot")
    };
    assert_eq!(with_snapshot, expected);
    assert_eq!(rebuilt, expected);
}

#[test]
fn a_changed_component_is_rebuilt_from_the_log() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    store
        .install_projection("counter", ProjectionPlugin::from_file(art::COUNTER).expect("read"))
        .expect("v1");
    for i in 0..5u32 {
        let c = Coordinate::new(format!("e{}", i % 2), if i < 3 { "red" } else { "blue" }).expect("c");
        store.append(&c, EventKind::DATA, &json!({"i": i})).expect("append");
    }
    assert_eq!(store.projection_state("counter", "e0").expect("state"), Some(b"3".to_vec()));
    store.close().expect("close");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
    store
        .install_projection("counter", ProjectionPlugin::from_file(art::COUNTER_V2).expect("read"))
        .expect("v2");
    let (_, info) = store.projection_status("counter").expect("installed");
    assert_eq!(info.schema_version, 2);
    assert_eq!(
        store.projection_state("counter", "red").expect("state"),
        Some(b"3".to_vec()),
        "rebuilt, not restored"
    );
    assert_eq!(store.projection_state("counter", "e0").expect("state"), None);
}

#[test]
fn a_trapping_projection_is_contained() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    store
        .install_projection("fragile", ProjectionPlugin::from_file(art::POISON_PROJECTION).expect("read"))
        .expect("install");
    store
        .install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).expect("read"))
        .expect("install");
    store.append(&acct(1), DEPOSIT, &json!({"amount": 5})).expect("fine");
    let poison = store
        .append(&acct(1), DEPOSIT, &json!({"amount": 5, "poison": true}))
        .expect("appends never wait on projections");
    store.append(&acct(1), DEPOSIT, &json!({"amount": 5})).expect("still appending");
    match store.projection_status("fragile").expect("installed").0 {
        ProjectionStatus::Failed { sequence, error } => {
            assert_eq!(sequence, poison.sequence);
            assert!(!error.is_empty());
        }
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(matches!(
        store.projection_state("fragile", "x"),
        Err(StoreError::Plugin(PluginError::ProjectionFailed { .. }))
    ));
    assert_eq!(balance(&store, 1), Some(15), "other projections go on");
    // Replacing the failed projection with a working one recovers it.
    store
        .install_projection("fragile", ProjectionPlugin::from_file(art::COUNTER).expect("read"))
        .expect("replace");
    assert!(matches!(store.projection_status("fragile").expect("x").0, ProjectionStatus::Ready { .. }));
}

/// Appends `good` ordinary deposits to account 1, then one poisoned one
/// (returned), then `good` more.
fn with_poison_in_the_middle(store: &Store, good: u32) -> AppendReceipt {
    for _ in 0..good {
        store.append(&acct(1), DEPOSIT, &json!({"amount": 1})).expect("append");
    }
    let poison = store.append(&acct(1), DEPOSIT, &json!({"amount": 1, "poison": true})).expect("poison");
    for _ in 0..good {
        store.append(&acct(1), DEPOSIT, &json!({"amount": 1})).expect("append");
    }
    poison
}

fn failed_at(store: &Store, name: &str) -> u64 {
    match store.projection_status(name).expect("installed").0 {
        ProjectionStatus::Failed { sequence, error } => {
            assert!(!error.is_empty());
            sequence
        }
        other => panic!("expected failed, got {other:?}"),
    }
}

#[test]
fn a_trap_inside_a_packed_rebuild_names_its_event() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    let poison = with_poison_in_the_middle(&store, 150);
    store
        .install_projection("fragile", ProjectionPlugin::from_file(art::POISON_PROJECTION).expect("read"))
        .expect("a failing rebuild still installs");
    assert_eq!(failed_at(&store, "fragile"), poison.sequence, "the event, not its batch");
    // Background catch-up packs too.
    store.remove_projection("fragile").expect("remove");
    let plugin = ProjectionPlugin::from_file(art::POISON_PROJECTION).expect("read").in_background();
    store.install_projection("fragile", plugin).expect("install");
    assert_eq!(failed_at(&store, "fragile"), poison.sequence);
}

#[test]
fn a_trap_after_a_restored_snapshot_names_its_event() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
        let plugin =
            ProjectionPlugin::from_file(art::POISON_PROJECTION).expect("read").with_snapshot_every(50);
        store.install_projection("fragile", plugin).expect("install");
        for _ in 0..120 {
            store.append(&acct(1), DEPOSIT, &json!({"amount": 1})).expect("append");
        }
        store.close().expect("close persists the snapshot");
    }
    let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
    let poison = with_poison_in_the_middle(&store, 100);
    store
        .install_projection("fragile", ProjectionPlugin::from_file(art::POISON_PROJECTION).expect("read"))
        .expect("install");
    assert_eq!(failed_at(&store, "fragile"), poison.sequence);
}

#[test]
fn eight_threads_never_overdraw_through_the_overdraft_gate() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(StoreConfig::new(tmp.path())).expect("open"));
    store
        .install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).expect("read"))
        .expect("install");
    store.install_gate(GatePlugin::from_file(art::OVERDRAFT).expect("read")).expect("gate");
    for n in 0..2 {
        store.append(&acct(n), DEPOSIT, &json!({"amount": 1000})).expect("seed");
    }
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut denied = 0;
                for i in 0..40 {
                    let amount = 20 + (t * 7 + i) % 40;
                    match store.append(&acct(t % 2), WITHDRAW, &json!({"amount": amount})) {
                        Ok(_) => {}
                        Err(StoreError::Denied(d)) => {
                            assert_eq!(d.gate, "overdraft");
                            assert_eq!(d.code, "OVERDRAFT");
                            denied += 1;
                        }
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                denied
            })
        })
        .collect();
    let denied: u32 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert!(denied > 0, "the withdrawals exceed the deposits, so some must be denied");
    for n in 0..2 {
        let running = common::replayed_balance(&store, &format!("account:{n}"), DEPOSIT);
        assert_eq!(balance(&store, n), Some(running));
    }
}

#[test]
fn the_projection_harness_folds_and_reads_like_the_store() {
    use batpak::testing::ProjectionHarness;
    let mut h = ProjectionHarness::load(art::BALANCE).expect("load");
    assert_eq!(h.info().name, "balance");
    h.apply(&acct(1), DEPOSIT, &json!({"amount": 40})).expect("apply");
    h.apply(&acct(1), WITHDRAW, &json!({"amount": 15})).expect("apply");
    h.apply(&acct(1), EventKind::DATA, &json!({"amount": 1000})).expect("skipped kind");
    assert_eq!(h.read("account:1").expect("read"), Some(b"25".to_vec()));
    let mut fragile = ProjectionHarness::load(art::POISON_PROJECTION).expect("load");
    assert!(
        fragile.apply(&acct(1), DEPOSIT, &json!({"poison": true})).is_err(),
        "a trap surfaces as an error"
    );
}

#[test]
fn a_background_projection_catches_up_off_the_append_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    let last = {
        let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
        store
            .install_projection(
                "counter",
                ProjectionPlugin::from_file(art::COUNTER).expect("read").in_background(),
            )
            .expect("install");
        let mut last = 0;
        for i in 0..50u32 {
            last = store.append(&acct(i % 2), DEPOSIT, &json!({"amount": 1})).expect("append").sequence;
        }
        let waited =
            store.wait_for_projection("counter", last, std::time::Duration::from_secs(30)).expect("wait");
        assert!(waited, "the projector caught up");
        assert_eq!(store.projection_state("counter", "account:0").expect("state"), Some(b"25".to_vec()));
        store.close().expect("close (joins the projector, persists its snapshot)");
        last
    };
    let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
    store
        .install_projection(
            "counter",
            ProjectionPlugin::from_file(art::COUNTER).expect("read").in_background(),
        )
        .expect("install");
    assert!(store.wait_for_projection("counter", last, std::time::Duration::from_secs(30)).expect("wait"));
    assert_eq!(store.projection_state("counter", "account:1").expect("state"), Some(b"25".to_vec()));
}

#[test]
fn a_gate_reading_a_failed_projection_fails_closed_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    // A projection that traps on a poisoned event, installed where the
    // overdraft gate looks for balances.
    store
        .install_projection("balance", ProjectionPlugin::from_file(art::POISON_PROJECTION).expect("read"))
        .expect("install");
    store.install_gate(GatePlugin::from_file(art::OVERDRAFT).expect("read")).expect("gate");
    store.append(&acct(1), DEPOSIT, &json!({"amount": 70, "poison": true})).expect("deposits pass the gate");
    assert!(matches!(store.projection_status("balance").expect("x").0, ProjectionStatus::Failed { .. }));
    let err = store.append(&acct(1), WITHDRAW, &json!({"amount": 10})).expect_err("no answer, no withdrawal");
    let StoreError::Denied(d) = err else { panic!("expected a denial, got {err}") };
    assert_eq!(d.code, "GATE_DEFECT", "not OVERDRAFT: the gate never saw a made-up `none`");
    let context: std::collections::HashMap<_, _> = d.context.iter().cloned().collect();
    assert_eq!(context.get("cause").map(String::as_str), Some("projection failed"));
    assert!(context.get("detail").is_some_and(|v| v.contains("`balance`")), "{context:?}");
    assert!(matches!(
        store.projection_state("balance", "account:1"),
        Err(StoreError::Plugin(batpak::plugin::PluginError::ProjectionFailed { .. }))
    ));
    // Deposits (which the gate does not check) still append.
    store.append(&acct(1), DEPOSIT, &json!({"amount": 5})).expect("append");
}

#[test]
fn a_projection_whose_read_traps_is_rebuilt_to_its_state_never_left_dead() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    let small = ProjectionPlugin::from_file(art::BALANCE).expect("read").with_memory_limit(2 << 20);
    store.install_projection("balance", small).expect("install");
    store.install_gate(GatePlugin::from_file(art::OVERDRAFT).expect("read")).expect("gate");
    store.append(&acct(1), DEPOSIT, &json!({"amount": 70})).expect("deposit");
    // A key larger than the guest's memory: copying it in traps the instance.
    let huge = "k".repeat(3 << 20);
    let err = store.projection_state("balance", &huge).expect_err("the read traps");
    assert!(matches!(err, StoreError::Plugin(batpak::plugin::PluginError::ProjectionFailed { .. })), "{err}");
    // The instance was rebuilt from the log: same state, still Ready, and
    // the gate sees the real balance (not `none`, not a made-up 0).
    assert!(matches!(store.projection_status("balance").expect("x").0, ProjectionStatus::Ready { .. }));
    assert_eq!(balance(&store, 1), Some(70));
    store.append(&acct(1), WITHDRAW, &json!({"amount": 10})).expect("10 of 70 is allowed");
    let err = store.append(&acct(1), WITHDRAW, &json!({"amount": 100})).expect_err("100 of 60 is not");
    let StoreError::Denied(d) = err else { panic!("expected a denial, got {err}") };
    assert_eq!(d.code, "OVERDRAFT");
    assert_eq!(balance(&store, 1), Some(60));
    store.close().expect("close");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
    assert_eq!(store.stream("account:1").len(), 2, "nothing acknowledged is lost");
}

#[test]
fn a_snapshot_that_no_longer_restores_is_rebuilt_from_the_log() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    store
        .install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).expect("read"))
        .expect("install");
    let items: Vec<_> = (0..2000u32)
        .map(|n| {
            BatchAppendItem::new(
                acct(n),
                DEPOSIT,
                &json!({"amount": n}),
                AppendOptions::new(),
                CausationRef::None,
            )
            .expect("item")
        })
        .collect();
    for chunk in items.chunks(200) {
        store.append_batch(chunk.to_vec()).expect("batch");
    }
    store.close().expect("close writes the snapshot");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen");
    // Too little fuel to parse 2000 saved balances in one constructor call,
    // plenty to fold the log event by event.
    let lean = ProjectionPlugin::from_file(art::BALANCE).expect("read").with_fuel(300_000);
    store.install_projection("balance", lean).expect("falls back to a rebuild instead of refusing");
    assert!(matches!(store.projection_status("balance").expect("x").0, ProjectionStatus::Ready { .. }));
    assert_eq!(balance(&store, 1999), Some(1999));
    assert_eq!(balance(&store, 7), Some(7));
}
