//! The demo and the examples run end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use std::process::Command;

#[test]
fn the_demo_runs_and_verifies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_demo")).arg(&dir).output().expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("DENIED   deposit 50000 to bob"), "{stdout}");
    assert!(stdout.contains("overdraft OVERDRAFT"), "stateful gate: {stdout}");
    assert!(stdout.contains("GATE_DEFECT"), "hostile gate contained: {stdout}");
    assert!(stdout.contains("account:alice       390"), "{stdout}");
    assert!(stdout.contains("— OK"), "verification: {stdout}");
}

/// The examples cargo built next to this test binary (`target/<profile>/examples`).
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    profile_dir.join("examples").join(name)
}

#[test]
fn every_example_runs_to_completion() {
    for name in [
        "quickstart",
        "batch_append",
        "event_sourced_counter",
        "chat_room",
        "policy_gates",
        "dungeon_typestate",
    ] {
        let path = example(name);
        assert!(path.exists(), "{name} was not built at {}", path.display());
        let out = Command::new(&path).output().expect("run example");
        assert!(
            out.status.success(),
            "{name} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
