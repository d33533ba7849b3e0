//! Hostile guests against the default limits: each attack fails closed
//! within its bound, the next append succeeds, and nothing acknowledged is
//! lost across close and reopen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::plugin::{PluginError, PluginLimits, ProjectionPlugin};
use batpak::prelude::*;
use batpak_test_artifacts as art;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Generous slack over a limit on a shared, noisy machine; still far below
/// the seconds to hours the attacks took before they were bounded.
const SLACK: Duration = Duration::from_millis(1500);
/// Default limits but a 1 s deadline, for tests that expect another limit
/// (fuel, memory) to bind: the default 50 ms could fire first on a loaded
/// machine.
const PATIENT: PluginLimits = PluginLimits { deadline_ms: 1_000, ..PluginLimits::DEFAULT };

fn coord(e: &str) -> Coordinate {
    Coordinate::new(e, "s").expect("coord")
}

/// Appends `payload` through the installed gates, expecting a GATE_DEFECT
/// with `cause` within `bound`; then checks the store goes on and keeps
/// what it acknowledged.
fn assert_contained(store: Store, dir: &std::path::Path, payload: Value, cause: &str, bound: Duration) {
    let ok = store.append(&coord("before"), EventKind::custom(2, 1), &json!({"n": 1})).ok();
    let start = Instant::now();
    let err = store.append(&coord("attack"), EventKind::DATA, &payload).expect_err("the attack is denied");
    let took = start.elapsed();
    let StoreError::Denied(d) = err else { panic!("expected a denial, got {err}") };
    assert_eq!(d.code, "GATE_DEFECT", "{d:?}");
    assert_eq!(d.context_value("cause"), Some(cause), "{d:?}");
    assert!(took < bound, "the attack held the writer {took:?} (bound {bound:?})");
    let names = store.gates();
    for name in &names {
        store.remove_gate(name).expect("remove");
    }
    let after =
        store.append(&coord("after"), EventKind::DATA, &json!({"n": 2})).expect("the next append works");
    store.close().expect("close");
    let store = Store::open(StoreConfig::new(dir)).expect("reopen");
    for id in ok.iter().map(|r| r.event_id).chain([after.event_id]) {
        store.get(id).expect("acknowledged and kept");
    }
    assert_eq!(store.stream("attack").len(), 0, "nothing of the attack was written");
}

fn with_gate(dir: &std::path::Path, gate: GatePlugin) -> Store {
    Store::open(StoreConfig::new(dir).with_gate(gate)).expect("open")
}

#[test]
fn host_calls_in_a_loop_run_out_of_the_callers_fuel() {
    let tmp = tempfile::tempdir().unwrap();
    let store =
        with_gate(tmp.path(), GatePlugin::from_file(art::HOSTILE_STATE_LOOP).unwrap().with_limits(PATIENT));
    // 8 KiB keys for a projection that does not exist: ~9 000 fuel a call.
    let bound = Duration::from_millis(PluginLimits::default().deadline_ms) + SLACK;
    assert_contained(store, tmp.path(), json!({"key_bytes": 8192}), "out of fuel", bound);
}

#[test]
fn an_oversized_key_is_refused_and_fails_the_gate_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = with_gate(tmp.path(), GatePlugin::from_file(art::HOSTILE_STATE_LOOP).unwrap());
    let bound = Duration::from_millis(PluginLimits::default().deadline_ms) + SLACK;
    assert_contained(store, tmp.path(), json!({"key_bytes": 1 << 20}), "host call refused", bound);
}

#[test]
fn the_fuel_a_projection_burns_answering_is_charged_to_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    store
        .install_projection("slow", ProjectionPlugin::from_file(art::SLOW_READ).unwrap().with_limits(PATIENT))
        .unwrap();
    store.install_gate(GatePlugin::from_file(art::HOSTILE_STATE_LOOP).unwrap().with_limits(PATIENT)).unwrap();
    // Each read burns millions of the projection's fuel: the gate's 10 M
    // lasts a few calls, where before it lasted until the wall clock.
    let bound = Duration::from_millis(2 * PluginLimits::default().deadline_ms) + SLACK;
    assert_contained(store, tmp.path(), json!({"key_bytes": 8, "projection": "slow"}), "out of fuel", bound);
}

#[test]
fn a_gate_with_fuel_to_spare_is_stopped_by_its_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = PluginLimits { fuel_per_call: u64::MAX / 4, deadline_ms: 20, ..PluginLimits::default() };
    let store = with_gate(tmp.path(), GatePlugin::from_file(art::HOSTILE_LOOP).unwrap().with_limits(limits));
    assert_contained(
        store,
        tmp.path(),
        json!({"n": 0}),
        "deadline exceeded",
        Duration::from_millis(20) + SLACK,
    );
}

#[test]
fn instantiation_is_stopped_by_its_own_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    // Fuel to spare: only a wall-clock budget can end the start function.
    // The per-call deadline is a minute; the instantiation budget is 20 ms.
    let limits = PluginLimits {
        fuel_per_call: u64::MAX / 4,
        deadline_ms: 60_000,
        instantiate_ms: 20,
        ..PluginLimits::default()
    };
    let started = Instant::now();
    let err = store
        .install_gate(GatePlugin::from_file(art::LOOP_AT_INSTANTIATION).unwrap().with_limits(limits))
        .expect_err("a start function that never returns");
    // Half the call deadline: far above 20 ms on any machine, and far
    // below what using the call deadline here would take.
    assert!(started.elapsed() < Duration::from_secs(30), "instantiation ran {:?}", started.elapsed());
    let StoreError::Plugin(PluginError::Instantiation(why)) = &err else { panic!("{err:?}") };
    assert!(why.contains("interrupt"), "{why}");
    assert!(store.gates().is_empty());
    store.append(&coord("x"), EventKind::DATA, &json!({"n": 0})).expect("the store goes on");
}

#[test]
fn memory_is_limited_across_all_of_a_guests_memories() {
    let tmp = tempfile::tempdir().unwrap();
    // Three grows of 6.25 MiB in three memories: 18.75 MiB > 16 MiB in all.
    let store = with_gate(tmp.path(), GatePlugin::from_file(art::MULTI_MEMORY).unwrap().with_limits(PATIENT));
    let bound = Duration::from_millis(PluginLimits::default().deadline_ms) + SLACK;
    assert_contained(store, tmp.path(), json!({"n": 0}), "out of memory", bound);
    // With room for all three, the same gate allows: the total is what binds.
    let tmp = tempfile::tempdir().unwrap();
    let roomy = PluginLimits { memory_bytes: 24 << 20, ..PATIENT };
    let store = with_gate(tmp.path(), GatePlugin::from_file(art::MULTI_MEMORY).unwrap().with_limits(roomy));
    store.append(&coord("x"), EventKind::DATA, &json!({"n": 0})).expect("fits in 24 MiB");
}

#[test]
fn a_writer_stack_too_small_for_nested_guests_is_refused_never_overflowed() {
    let tmp = tempfile::tempdir().unwrap();
    let small = StoreConfig::new(tmp.path()).with_writer_stack_size(Some(1 << 20));
    let store = Store::open(small).expect("1 MiB holds one default gate stack");
    store.install_gate(GatePlugin::from_file(art::OVERDRAFT).unwrap()).expect("gate alone fits");
    let err = store
        .install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).unwrap())
        .expect_err("gate + projection stacks do not fit in 1 MiB");
    assert!(matches!(err, StoreError::Plugin(PluginError::InvalidLimits(_))), "{err}");
    store.append(&coord("x"), EventKind::DATA, &json!({"amount": 1})).expect("appends go on");
    store.close().expect("close");
    let deep = PluginLimits { stack_bytes: 1 << 20, ..PluginLimits::default() };
    let cfg = StoreConfig::new(tmp.path())
        .with_writer_stack_size(Some(1 << 20))
        .with_gate(GatePlugin::from_file(art::OVERDRAFT).unwrap().with_limits(deep));
    assert!(matches!(Store::open(cfg), Err(StoreError::Configuration(_))), "refused at open");
}

#[test]
fn limits_out_of_range_are_refused_at_install() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    for limits in [
        PluginLimits { deadline_ms: 0, ..PluginLimits::default() },
        PluginLimits { instantiate_ms: 0, ..PluginLimits::default() },
        PluginLimits { instantiate_ms: 60_001, ..PluginLimits::default() },
        PluginLimits { stack_bytes: 8 << 20, ..PluginLimits::default() },
    ] {
        let err = store.install_gate(GatePlugin::from_file(art::ALLOW_ALL).unwrap().with_limits(limits));
        assert!(matches!(err, Err(StoreError::Plugin(PluginError::InvalidLimits(_)))), "{limits:?}");
    }
    assert!(store.gates().is_empty());
}

#[test]
fn close_snapshots_every_projection_it_can_and_closes_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    // Closing walks projections in name order: the failing one comes first.
    store.install_projection("a-broken", ProjectionPlugin::from_file(art::SNAPSHOT_TRAP).unwrap()).unwrap();
    store.install_projection("counter", ProjectionPlugin::from_file(art::COUNTER).unwrap()).unwrap();
    let ids: Vec<u128> = (0..5)
        .map(|n| store.append(&coord("c"), EventKind::DATA, &json!({"n": n})).unwrap().event_id)
        .collect();
    store.close().expect("one projection's failed snapshot does not fail the close");
    assert!(tmp.path().join("proj-counter.snap").exists(), "the later projection was snapshotted");
    assert!(!tmp.path().join("proj-a-broken.snap").exists());
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    for id in ids {
        store.get(id).expect("kept");
    }
    assert!(store.diagnostics().recovery.checkpoint_rejected.is_none(), "the log was closed cleanly");
    assert_eq!(store.diagnostics().recovery.scanned, 0, "a clean close leaves nothing to scan");
}

#[test]
fn a_component_of_the_wrong_world_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    let err = store
        .install_gate(GatePlugin::from_file(art::BALANCE).unwrap())
        .expect_err("a projection is no gate");
    assert!(err.to_string().contains("not a gate-plugin"), "{err}");
    let err = store
        .install_projection("p", ProjectionPlugin::from_file(art::AMOUNT_LIMIT).unwrap())
        .expect_err("a gate is no projection");
    assert!(err.to_string().contains("not a projection-plugin"), "{err}");
    assert!(!err.to_string().contains("gate world"), "{err}");
    store.append(&coord("x"), EventKind::DATA, &json!({"n": 1})).expect("appends go on");
}
