//! WebAssembly gates run on every append, fail closed, and never harm the store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::plugin::PluginLimits;
use batpak::prelude::*;
use batpak_test_artifacts as art;
use serde_json::json;

fn open_with(dir: &std::path::Path, gates: &[&str]) -> Store {
    let mut cfg = StoreConfig::new(dir);
    for path in gates {
        cfg = cfg.with_gate(GatePlugin::from_file(path).expect("read component"));
    }
    Store::open(cfg).expect("open store with gates")
}

fn coord(e: &str) -> Coordinate {
    Coordinate::new(e, "bank").expect("valid coordinate")
}

#[test]
fn allowed_appends_pass_and_denials_write_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = open_with(tmp.path(), &[art::AMOUNT_LIMIT]);
    let ok = store.append(&coord("acct:1"), EventKind::DATA, &json!({"amount": 50})).expect("allowed");
    assert_eq!(ok.sequence, 0);

    let err = store
        .append(&coord("acct:1"), EventKind::DATA, &json!({"amount": 50_000}))
        .expect_err("over the limit");
    let StoreError::Denied(denial) = err else { panic!("expected a denial, got {err:?}") };
    assert_eq!(denial.gate, "amount-limit");
    assert_eq!(denial.code, "AMOUNT_LIMIT");
    assert_eq!(denial.context_value("amount"), Some("50000"));

    // Nothing written, no sequence burned.
    assert_eq!(store.stats().event_count, 1);
    let next = store.append(&coord("acct:1"), EventKind::DATA, &json!({"amount": 1})).expect("allowed");
    assert_eq!(next.sequence, 1, "a denial must not burn a sequence");
    assert_eq!(store.stream("acct:1").len(), 2);
}

#[test]
fn gates_run_in_order_and_fail_fast() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = open_with(tmp.path(), &[art::REQUIRED_FIELDS, art::AMOUNT_LIMIT]);
    assert_eq!(store.gates(), vec!["required-fields".to_string(), "amount-limit".to_string()]);
    let err = store.append(&coord("a"), EventKind::DATA, &json!({"amount": 99_999})).expect_err("denied");
    match err {
        StoreError::Denied(d) => assert_eq!(d.code, "MISSING_FIELD", "the first gate decides"),
        other => panic!("unexpected {other:?}"),
    }
    store.append(&coord("a"), EventKind::DATA, &json!({"actor": "ann", "amount": 5})).expect("both allow");
}

#[test]
fn a_denied_batch_item_rejects_the_whole_batch() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = open_with(tmp.path(), &[art::AMOUNT_LIMIT]);
    let items = vec![
        BatchAppendItem::new(
            coord("a"),
            EventKind::DATA,
            &json!({"amount": 10}),
            AppendOptions::new(),
            CausationRef::None,
        )
        .expect("item"),
        BatchAppendItem::new(
            coord("b"),
            EventKind::DATA,
            &json!({"amount": 20_000}),
            AppendOptions::new(),
            CausationRef::None,
        )
        .expect("item"),
    ];
    let err = store.append_batch(items).expect_err("second item denied");
    match err {
        StoreError::BatchFailed { item_index, stage, source } => {
            assert_eq!(item_index, 1);
            assert_eq!(stage, BatchStage::Gating);
            assert!(matches!(*source, StoreError::Denied(ref d) if d.code == "AMOUNT_LIMIT"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(store.stats().event_count, 0);
    assert_eq!(store.stats().global_sequence, 0);
}

fn assert_defect(err: StoreError, cause: &str) {
    match err {
        StoreError::Denied(d) => {
            assert_eq!(d.code, "GATE_DEFECT", "{d:?}");
            assert_eq!(d.context_value("cause"), Some(cause), "{d:?}");
        }
        other => panic!("expected a GATE_DEFECT denial, got {other:?}"),
    }
}

#[test]
fn hostile_guests_fail_closed_and_the_next_append_works() {
    let cases = [
        (art::HOSTILE_LOOP, "out of fuel"),
        (art::HOSTILE_ALLOC, "out of memory"),
        // Rust guests keep their frames on a shadow stack in linear memory:
        // unbounded recursion runs off its bottom, an out-of-bounds trap.
        (art::HOSTILE_RECURSION, "trap"),
        (art::HOSTILE_PANIC, "trap"),
    ];
    // The default 50 ms deadline could fire first on a loaded machine; these
    // cases are about the other limits (the deadline has its own tests).
    let limits = PluginLimits { deadline_ms: 1_000, ..PluginLimits::default() };
    for (path, cause) in cases {
        let tmp = tempfile::tempdir().expect("tmp");
        let gate = GatePlugin::from_file(path).expect("read component").with_limits(limits);
        let store = Store::open(StoreConfig::new(tmp.path()).with_gate(gate)).expect("open");
        for _ in 0..2 {
            let err = store.append(&coord("x"), EventKind::DATA, &json!({"n": 1})).expect_err("fails closed");
            assert_defect(err, cause);
        }
        assert_eq!(store.stats().event_count, 0, "{path}: nothing written");
        // Removing the hostile gate restores service on the live store.
        let name = store.gates()[0].clone();
        store.remove_gate(&name).expect("remove");
        store.append(&coord("x"), EventKind::DATA, &json!({"n": 2})).expect("works after removal");
    }
}

#[test]
fn a_trap_is_followed_by_a_fresh_instance() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = open_with(tmp.path(), &[art::FLAKY_PANIC]);
    assert_defect(
        store.append(&coord("x"), EventKind::DATA, &json!({"explode": true})).expect_err("traps"),
        "trap",
    );
    store.append(&coord("x"), EventKind::DATA, &json!({"explode": false})).expect("re-instantiated");
    assert_eq!(store.stats().event_count, 1);
}

#[test]
fn giant_denials_are_bounded() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Building the giant denial takes time: a deadline far from the default
    // keeps a loaded machine from turning this into a deadline defect.
    let limits = PluginLimits { fuel_per_call: 2_000_000_000, deadline_ms: 5_000, ..PluginLimits::default() };
    let gate = GatePlugin::from_file(art::HOSTILE_GIANT_DENIAL).expect("read").with_limits(limits);
    let store = Store::open(StoreConfig::new(tmp.path()).with_gate(gate)).expect("open");
    match store.append(&coord("x"), EventKind::DATA, &json!({})).expect_err("denied") {
        StoreError::Denied(d) => {
            assert_eq!(d.code, "GIANT");
            assert!(d.message.len() <= 4100, "message cut to the limit, got {}", d.message.len());
            assert!(d.context.len() <= 33, "context pairs capped, got {}", d.context.len());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_components_are_refused_at_install() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    let refuse = |plugin: GatePlugin| match store.install_gate(plugin) {
        Err(StoreError::Plugin(e)) => e,
        other => panic!("expected a plugin error, got {other:?}"),
    };
    let e = refuse(GatePlugin::from_bytes(b"definitely not wasm".to_vec()));
    assert!(matches!(e, PluginError::NotAComponent(_)), "{e}");
    let core = std::fs::read(art::CORE_MODULE).expect("read core module");
    let e = refuse(GatePlugin::from_bytes(core));
    assert!(e.to_string().contains("core WebAssembly module"), "{e}");
    let e = refuse(GatePlugin::from_file(art::WRONG_WORLD).expect("read"));
    assert!(matches!(e, PluginError::WrongWorld(_)), "{e}");
    let e = refuse(GatePlugin::from_file(art::SNEAKY_IMPORT).expect("read"));
    assert!(matches!(e, PluginError::WrongWorld(_)), "imports are refused: {e}");
    let e = refuse(GatePlugin::from_file(art::TRAP_IN_DESCRIBE).expect("read"));
    assert!(matches!(e, PluginError::Instantiation(_)), "{e}");
    let e = refuse(GatePlugin::from_file(art::TRAP_AT_INSTANTIATION).expect("read"));
    assert!(matches!(e, PluginError::Instantiation(ref why) if !why.contains("describe")), "{e}");
    assert!(store.gates().is_empty(), "a refused install changes nothing");
    store.append(&coord("x"), EventKind::DATA, &json!({"ok": true})).expect("store unharmed");
}

#[test]
fn provenance_names_the_admitting_gate_set_and_survives_reopen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let first;
    {
        let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
        store.append(&coord("a"), EventKind::DATA, &json!({"before": 1})).expect("no gates yet");
        store.install_gate(GatePlugin::from_file(art::SIZE_LIMIT).expect("read")).expect("install");
        first = store.append(&coord("a"), EventKind::DATA, &json!({"after": 1})).expect("gated");
        store.install_gate(GatePlugin::from_file(art::KIND_DENYLIST).expect("read")).expect("install");
        store.append(&coord("a"), EventKind::DATA, &json!({"after": 2})).expect("gated twice");
        store.close().expect("close");
    }
    for use_checkpoint in [true, false] {
        let store =
            Store::open(StoreConfig::new(tmp.path()).with_enable_checkpoint(use_checkpoint)).expect("reopen");
        let sets = store.gate_sets();
        assert_eq!(sets.len(), 2, "{sets:?}");
        assert_eq!(sets[0].gates.len(), 1);
        assert_eq!(sets[0].gates[0].name, "size-limit");
        assert_eq!(sets[1].gates.len(), 2);
        let admitted = store.events_admitted_by(sets[0].id);
        assert_eq!(admitted.len(), 1);
        assert_eq!(admitted[0].event_id, first.event_id);
        let all = store.query(&Region::all());
        assert_eq!(all[0].gate_set(), None, "appended before any gate");
        drop(store);
    }
}

#[test]
fn hot_swap_while_four_threads_append() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = std::sync::Arc::new(Store::open(StoreConfig::new(tmp.path())).expect("open"));
    let appenders: Vec<_> = (0..4)
        .map(|t| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                let mut ok = 0u32;
                for i in 0..200 {
                    let payload = json!({"actor": "t", "amount": (i % 3) * 9_000});
                    if store.append(&coord(&format!("t{t}")), EventKind::DATA, &payload).is_ok() {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    for _ in 0..5 {
        store.install_gate(GatePlugin::from_file(art::AMOUNT_LIMIT).expect("read")).expect("install");
        store.remove_gate("amount-limit").expect("remove");
    }
    store.install_gate(GatePlugin::from_file(art::AMOUNT_LIMIT).expect("read")).expect("install");
    let ok: u32 = appenders.into_iter().map(|h| h.join().expect("appender")).sum();
    assert_eq!(store.stats().event_count as u32, ok, "every acknowledged append is visible");
    // Every event admitted under a gate set containing amount-limit obeys it.
    for set in store.gate_sets() {
        for e in store.events_admitted_by(set.id) {
            let amount = store.get(e.event_id).expect("get").event.payload["amount"].as_i64().unwrap_or(0);
            assert!(amount <= 10_000, "gate set {} admitted {amount}", set.id);
        }
    }
    assert_eq!(store.verify().issues, vec![]);
}

/// (component, allowed proposal, denied proposal with its code)
type Case = (&'static str, (EventKind, serde_json::Value), (EventKind, serde_json::Value, &'static str));

fn example_cases() -> Vec<Case> {
    vec![
        (
            art::SIZE_LIMIT,
            (EventKind::DATA, json!({"note": "small"})),
            (EventKind::DATA, json!({"note": "x".repeat(5000)}), "PAYLOAD_TOO_LARGE"),
        ),
        (
            art::REQUIRED_FIELDS,
            (EventKind::DATA, json!({"actor": "ann"})),
            (EventKind::DATA, json!({"who": "ann"}), "MISSING_FIELD"),
        ),
        (
            art::KIND_DENYLIST,
            (EventKind::custom(2, 7), json!({})),
            (EventKind::custom(0xE, 1), json!({}), "KIND_DENIED"),
        ),
        (
            art::AMOUNT_LIMIT,
            (EventKind::DATA, json!({"amount": 10_000})),
            (EventKind::DATA, json!({"amount": 10_001}), "AMOUNT_LIMIT"),
        ),
    ]
}

fn segment_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "fbat"))
        .map(|e| e.metadata().expect("stat").len())
        .sum()
}

#[test]
fn every_example_gate_allows_and_denies_through_append_and_batch() {
    for (component, (ok_kind, ok_payload), (bad_kind, bad_payload, code)) in example_cases() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = open_with(tmp.path(), &[component]);
        store.append(&coord("a"), ok_kind, &ok_payload).unwrap_or_else(|e| panic!("{component}: {e}"));
        let before = (segment_bytes(tmp.path()), store.stats());
        match store.append(&coord("a"), bad_kind, &bad_payload) {
            Err(StoreError::Denied(d)) => assert_eq!(d.code, code, "{component}"),
            other => panic!("{component}: expected {code}, got {other:?}"),
        }
        assert_eq!(
            (segment_bytes(tmp.path()), store.stats()),
            before,
            "{component}: a denial writes nothing"
        );
        let item = |kind, payload: &serde_json::Value| {
            BatchAppendItem::new(coord("b"), kind, payload, AppendOptions::new(), CausationRef::None)
                .expect("item")
        };
        store
            .append_batch(vec![item(ok_kind, &ok_payload), item(ok_kind, &ok_payload)])
            .unwrap_or_else(|e| panic!("{component} batch: {e}"));
        let before = (segment_bytes(tmp.path()), store.stats());
        match store.append_batch(vec![item(ok_kind, &ok_payload), item(bad_kind, &bad_payload)]) {
            Err(StoreError::BatchFailed { item_index: 1, stage: BatchStage::Gating, source }) => {
                assert!(
                    matches!(*source, StoreError::Denied(ref d) if d.code == code),
                    "{component}: {source}"
                );
            }
            other => panic!("{component}: expected a gated batch failure, got {other:?}"),
        }
        assert_eq!(
            (segment_bytes(tmp.path()), store.stats()),
            before,
            "{component}: a denied batch writes nothing"
        );
        assert_eq!(store.stats().event_count, 3);
    }
}

#[test]
fn the_stack_limit_of_each_gate_is_the_one_it_was_given() {
    // The gate recurses 2000 native frames per payload byte ("1": 2000).
    let with_stack = |stack_bytes| {
        GatePlugin::from_file(art::STACK_DEPTH)
            .expect("read")
            .with_limits(PluginLimits { stack_bytes, ..PluginLimits::default() })
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path()).with_gate(with_stack(64 * 1024))).expect("open");
    let err = store.append(&coord("x"), EventKind::DATA, &json!(1)).expect_err("64 KiB is too shallow");
    assert_defect(err, "stack overflow");
    store.remove_gate("stack-depth").expect("remove");
    store.install_gate(with_stack(1024 * 1024)).expect("install");
    store.append(&coord("x"), EventKind::DATA, &json!(1)).expect("1 MiB holds 2000 frames");
    assert_eq!(store.stats().event_count, 1);
    // Limits outside the allowed range are refused at install, not later.
    let err = store.install_gate(with_stack(1024)).expect_err("1 KiB is refused");
    assert!(matches!(err, StoreError::Plugin(batpak::plugin::PluginError::InvalidLimits(_))), "{err}");
}
