//! The demo and the examples run end to end.

use std::process::Command;

#[test]
fn the_demo_runs_and_verifies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_demo")).arg(&dir).output().expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("DENIED   deposit 50000 to bob"), "{stdout}");
    assert!(stdout.contains("GATE_DEFECT"), "hostile gate contained: {stdout}");
    assert!(stdout.contains("account:alice       390"), "{stdout}");
    assert!(stdout.contains("— OK"), "verification: {stdout}");
}
