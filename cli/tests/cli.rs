//! The `batpak` binary on real stores and real components, including bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use batpak_test_artifacts as art;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};

fn batpak(args: &[&str]) -> Output {
    // Compiled components go to a cache under target/, not the user's
    // (one directory for every run: entries are keyed by content, and a
    // directory per run would be left behind in the temp dir each time).
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cli-tests/compile-cache");
    Command::new(env!("CARGO_BIN_EXE_batpak"))
        .args(args)
        .env("BATPAK_CACHE_DIR", cache)
        .output()
        .expect("run batpak")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn make_store(dir: &Path) -> Vec<AppendReceipt> {
    let gate = GatePlugin::from_file(art::AMOUNT_LIMIT).expect("read");
    let store = Store::open(StoreConfig::new(dir).with_gate(gate).with_segment_max_bytes(512)).expect("open");
    let mut out = Vec::new();
    for i in 0..12 {
        let c = Coordinate::new(format!("acct:{}", i % 3), "bank").expect("coord");
        out.push(
            store
                .append(&c, EventKind::custom(1, 1 + (i % 2) as u16), &json!({"amount": i}))
                .expect("append"),
        );
    }
    store.close().expect("close");
    out
}

#[test]
fn inspect_lists_segments_counts_entities_and_gate_sets() {
    let tmp = tempfile::tempdir().expect("tmp");
    make_store(tmp.path());
    let o = batpak(&["inspect", tmp.path().to_str().expect("utf8")]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("000001.fbat"), "{out}");
    assert!(out.contains("events: 12   entities: 3"), "{out}");
    assert!(out.contains("amount-limit@0.1.0"), "{out}");
    assert!(out.contains("admitted 12"), "{out}");
}

#[test]
fn tail_filters_by_entity_and_kind_and_follows() {
    let tmp = tempfile::tempdir().expect("tmp");
    make_store(tmp.path());
    let dir = tmp.path().to_str().expect("utf8");
    let (out, _) = text(&batpak(&["tail", dir, "--entity", "acct:1"]));
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.lines().all(|l| l.contains("acct:1@bank")));
    let (out, _) = text(&batpak(&["tail", dir, "--kind", "0x1002"]));
    assert_eq!(out.lines().count(), 6, "{out}");
    // Follow: a tail started first sees events appended afterwards by a live store.
    let child = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .args(["tail", dir, "--follow", "--count", "14"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tail");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open live");
    let c = Coordinate::new("late", "bank").expect("coord");
    store.append(&c, EventKind::DATA, &json!({"late": 1})).expect("append");
    store.append(&c, EventKind::DATA, &json!({"late": 2})).expect("append");
    let out = child.wait_with_output().expect("tail exits after --count");
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.lines().count(), 14, "{out}");
    assert!(out.contains(r#"{"late":2}"#), "{out}");
    drop(store);
}

#[test]
fn verify_passes_and_names_segment_and_offset_on_corruption() {
    let tmp = tempfile::tempdir().expect("tmp");
    let receipts = make_store(tmp.path());
    let dir = tmp.path().to_str().expect("utf8");
    let o = batpak(&["verify", dir]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.starts_with("OK: 12 events"));
    // Corrupt one payload byte in a sealed segment: open reports the frame.
    let victim = receipts[5].disk_pos;
    let path = tmp.path().join(format!("{:06}.fbat", victim.segment_id));
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[(victim.offset + u64::from(victim.length)) as usize - 2] ^= 0x55;
    std::fs::write(&path, &bytes).expect("corrupt");
    std::fs::remove_file(tmp.path().join("index.ckpt")).expect("drop checkpoint");
    let o = batpak(&["verify", dir]);
    let (out, err) = text(&o);
    assert!(!o.status.success());
    let seg = format!("{:06}.fbat", victim.segment_id);
    let offset = victim.offset.to_string();
    let both = format!("{out}{err}");
    assert!(
        (both.contains(&seg) || both.contains(&format!("segment {}", victim.segment_id)))
            && both.contains(&offset),
        "must name segment {seg} and offset {offset}: {both}"
    );
}

#[test]
fn bad_directories_get_one_clear_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("missing");
    let o = batpak(&["inspect", missing.to_str().expect("utf8")]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does not exist"));
    let o = batpak(&["verify", tmp.path().to_str().expect("utf8")]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("not a batpak data directory"), "{err}");
}

#[test]
fn guest_info_describes_components_and_refuses_others() {
    let (out, err) = text(&batpak(&["guest", "info", art::AMOUNT_LIMIT]));
    assert!(out.contains("gate \"amount-limit\""), "{out}{err}");
    assert!(out.contains("blake3"));
    let o = batpak(&["guest", "info", art::SNEAKY_IMPORT]);
    let (out, err) = text(&o);
    assert!(out.contains("read-secret"), "imports are listed: {out}");
    assert!(out.contains("neither as a batpak gate nor as a projection"), "{out}");
    assert!(err.contains("as a gate (batpak:plugin/gate-plugin)"), "{err}");
    assert!(err.contains("as a projection (batpak:plugin/projection-plugin)"), "{err}");
    assert_eq!(o.status.code(), Some(1), "a component that cannot load exits non-zero");
    let (out, _) = text(&batpak(&["guest", "info", art::BALANCE]));
    assert!(out.contains("projection \"balance\""), "{out}");
    let o = batpak(&["guest", "info", art::CORE_MODULE]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("core WebAssembly module"));
}

#[test]
fn guest_test_runs_cases_and_reports_mismatches_and_bad_lines() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cases = tmp.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        concat!(
            "{\"payload\": {\"amount\": 5}, \"expect\": \"allow\"}\n",
            "# comments and blank lines are skipped\n\n",
            "{\"payload\": {\"amount\": 50000}, \"expect\": \"deny\", \"code\": \"AMOUNT_LIMIT\"}\n",
            "{\"payload\": {\"amount\": -1}, \"expect\": \"deny\", \"code\": \"NEGATIVE_AMOUNT\"}\n",
        ),
    )
    .expect("write");
    let c = cases.to_str().expect("utf8");
    let o = batpak(&["guest", "test", art::AMOUNT_LIMIT, c]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("all cases pass"), "{out}");

    std::fs::write(&cases, "{\"payload\": {\"amount\": 50000}, \"expect\": \"allow\"}\n").expect("write");
    let o = batpak(&["guest", "test", art::AMOUNT_LIMIT, c]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).0.contains("MISMATCH"));

    std::fs::write(&cases, "{\"payload\": {}, \"expect\": \"allow\"}\n{not json\n").expect("write");
    let o = batpak(&["guest", "test", art::AMOUNT_LIMIT, c]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("cases.jsonl:2"), "line number in the error: {err}");

    for bad in [art::CORE_MODULE, art::WRONG_WORLD] {
        std::fs::write(&cases, "{\"payload\": {}, \"expect\": \"allow\"}\n").expect("write");
        let o = batpak(&["guest", "test", bad, c]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert_eq!(text(&o).1.lines().count(), 1, "one line: {:?}", text(&o).1);
    }
}

#[test]
fn replay_rebuilds_a_projection_over_the_log() {
    let tmp = tempfile::tempdir().expect("tmp");
    make_store(tmp.path());
    let dir = tmp.path().to_str().expect("utf8");
    let o = batpak(&["replay", dir, "--projection", art::COUNTER, "--key", "acct:1"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.trim(), "4", "acct:1 has 4 events");
    let (out, _) = text(&batpak(&["replay", dir, "--projection", art::COUNTER]));
    assert!(out.contains("\"acct:0\":4"), "{out}");
    assert!(!tmp.path().join("proj-cli-replay.snap").exists(), "replay leaves no snapshot behind");
    let o = batpak(&["replay", dir, "--projection", art::AMOUNT_LIMIT]);
    assert_eq!(o.status.code(), Some(1), "a gate is not a projection");
    let err = text(&o).1;
    assert_eq!(err.lines().count(), 1);
    let parts: Vec<&str> = err.trim().split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(p), "the cause is printed once: {err}");
    }
}

#[test]
fn guest_new_makes_a_component_from_a_core_module_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("allow-all.wasm");
    let o = batpak(&["guest", "new", art::CORE_MODULE, "-o", out.to_str().expect("utf8")]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("gate-plugin"), "{stdout}");
    let o = batpak(&["guest", "info", out.to_str().expect("utf8")]);
    assert!(o.status.success(), "the written component loads: {}", text(&o).1);

    // Not a core module: one line, nothing written.
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").expect("write");
    let none = tmp.path().join("none.wasm");
    let o = batpak(&["guest", "new", junk.to_str().expect("utf8"), "-o", none.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o).1.lines().count(), 1, "{}", text(&o).1);
    assert!(!none.exists(), "nothing written");

    // A world that batpak does not have.
    let o =
        batpak(&["guest", "new", art::CORE_MODULE, "--world", "other", "-o", none.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("gate-plugin and projection-plugin"), "{}", text(&o).1);
    assert!(!none.exists(), "nothing written");
}
