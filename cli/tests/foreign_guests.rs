//! The example guests written in Python, JavaScript and C (guest/foreign)
//! pass the same cases as their Rust originals, and run in a real store
//! with the default limits.
//!
//! `guest/foreign/build` makes them (tools: `guest/foreign/install-tools`).
//! Without them these tests say so loudly and pass; CI builds them and sets
//! `BATPAK_REQUIRE_FOREIGN=1`, which turns a missing component into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use batpak_test_artifacts as art;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const LANGUAGES: [&str; 3] = ["py", "js", "c"];
const PROJECTION_LANGUAGES: [&str; 2] = ["py", "js"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built component `name` (e.g. `amount-limit.py.wasm`), or `None`
/// with a loud message when it is missing and not required.
fn component(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BATPAK_FOREIGN_GUESTS")
        .map_or_else(|| root().join("target/foreign-guests"), PathBuf::from);
    let path = dir.join(name);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("BATPAK_REQUIRE_FOREIGN").is_some() {
        panic!("{} is missing and BATPAK_REQUIRE_FOREIGN is set: run guest/foreign/build", path.display());
    }
    eprintln!(
        "SKIPPED: {} not built (run guest/foreign/install-tools, then guest/foreign/build)",
        path.display()
    );
    None
}

/// One compile cache for the CLI runs and the stores of these tests, so
/// each component compiles once (an 18 MB Python guest takes a while).
fn compile_cache() -> PathBuf {
    root().join("target/foreign-guests/compile-cache")
}

fn guest_test(wasm: &Path, cases: &str) {
    let cache = compile_cache();
    let out = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .args(["guest", "test"])
        .arg(wasm)
        .arg(root().join("guest/foreign/cases").join(cases))
        .env("BATPAK_CACHE_DIR", &cache)
        .output()
        .expect("run batpak");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} on {cases}:\n{stdout}{stderr}", wasm.display());
    assert!(stdout.contains("all cases pass"), "{stdout}");
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
}

#[test]
fn every_amount_limit_gate_passes_the_same_cases() {
    guest_test(Path::new(art::AMOUNT_LIMIT), "amount-limit.jsonl");
    for lang in LANGUAGES {
        if let Some(wasm) = component(&format!("amount-limit.{lang}.wasm")) {
            guest_test(&wasm, "amount-limit.jsonl");
        }
    }
}

#[test]
fn every_counter_projection_passes_the_same_cases() {
    guest_test(Path::new(art::COUNTER), "counter.jsonl");
    for lang in PROJECTION_LANGUAGES {
        if let Some(wasm) = component(&format!("counter.{lang}.wasm")) {
            guest_test(&wasm, "counter.jsonl");
        }
    }
}

fn acct(n: u32) -> Coordinate {
    Coordinate::new(format!("acct:{n}"), "bank").expect("coordinate")
}

/// One store per language: its gate decides every append inside the writer
/// (singles and a batch) and its projection counts what was committed,
/// then a reopen restores the projection from its snapshot.
#[test]
fn foreign_guests_run_in_a_store_with_default_limits() {
    for lang in LANGUAGES {
        let Some(gate) = component(&format!("amount-limit.{lang}.wasm")) else { continue };
        let projection = PROJECTION_LANGUAGES
            .contains(&lang)
            .then(|| component(&format!("counter.{lang}.wasm")))
            .flatten();
        let tmp = tempfile::tempdir().expect("tmp");
        let open = || {
            let cfg = StoreConfig::new(tmp.path()).with_gate(
                GatePlugin::from_file(&gate).expect("read gate").with_compile_cache(compile_cache()),
            );
            let store = Store::open(cfg).unwrap_or_else(|e| panic!("{lang}: open with the gate: {e}"));
            if let Some(p) = &projection {
                let plugin = ProjectionPlugin::from_file(p)
                    .expect("read projection")
                    .with_compile_cache(compile_cache());
                store
                    .install_projection("counter", plugin)
                    .unwrap_or_else(|e| panic!("{lang}: install: {e}"));
            }
            store
        };
        let store = open();
        for i in 0..20u32 {
            store.append(&acct(i % 3), EventKind::DATA, &json!({"amount": i * 100})).expect("allowed");
        }
        let err = store.append(&acct(0), EventKind::DATA, &json!({"amount": 10_001})).expect_err("denied");
        let StoreError::Denied(d) = err else { panic!("{lang}: expected a denial, got {err:?}") };
        assert_eq!(d.gate, "amount-limit", "{lang}");
        assert_eq!(d.code, "AMOUNT_LIMIT", "{lang}");
        assert_eq!(d.context_value("limit"), Some("10000"), "{lang}");

        let batch = |amounts: &[i64]| {
            let items: Vec<_> = amounts
                .iter()
                .map(|a| {
                    BatchAppendItem::new(
                        acct(1),
                        EventKind::DATA,
                        &json!({"amount": a}),
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                    .expect("item")
                })
                .collect();
            store.append_batch(items)
        };
        let err = batch(&[1, 2, -3]).expect_err("one bad item rejects the batch");
        let StoreError::BatchFailed { item_index, source, .. } = &err else { panic!("{lang}: {err:?}") };
        assert_eq!(*item_index, 2, "{lang}");
        assert!(matches!(&**source, StoreError::Denied(d) if d.code == "NEGATIVE_AMOUNT"), "{lang}: {err:?}");
        batch(&[1, 2, 3]).expect("a good batch");
        assert_eq!(store.stats().event_count, 23, "{lang}: denials write nothing");

        if projection.is_some() {
            let count = |store: &Store, n: u32| {
                store
                    .projection_state("counter", &format!("acct:{n}"))
                    .expect("read")
                    .map(|b| String::from_utf8(b).expect("utf8"))
            };
            assert_eq!(count(&store, 0).as_deref(), Some("7"), "{lang}");
            assert_eq!(count(&store, 1).as_deref(), Some("10"), "{lang}");
            assert_eq!(count(&store, 9), None, "{lang}");
            store.close().expect("close");
            let store = open();
            assert_eq!(count(&store, 1).as_deref(), Some("10"), "{lang}: after a reopen");
            store.append(&acct(1), EventKind::DATA, &json!({"amount": 1})).expect("allowed");
            assert_eq!(count(&store, 1).as_deref(), Some("11"), "{lang}");
        }
    }
}
