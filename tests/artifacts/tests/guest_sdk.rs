//! The guest SDK lives in the guest workspace (it builds for wasm32), so
//! `cargo test --workspace` does not reach its own tests. This runs them
//! natively, in their own target directory, so the one test command of the
//! README covers the SDK too: the packed-event decoder's round trip and
//! damage tests, and the doc examples compiled.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use std::path::Path;
use std::process::Command;

#[test]
fn the_guest_sdk_passes_its_own_tests_natively() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root.join("guest"))
        .args(["test", "-p", "batpak-guest", "--target-dir"])
        .arg(root.join("target/guest-native"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .expect("run cargo test on the guest SDK");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the guest SDK's tests failed:\n{stdout}\n{stderr}");
    // The round trip and damage tests ran, not an empty suite.
    assert!(stdout.contains("packed_events_round_trip ... ok"), "{stdout}");
    assert!(stdout.contains("damaged_packed_events_decode_to_a_repackable_prefix ... ok"), "{stdout}");
    for result in stdout.lines().filter(|l| l.starts_with("test result:")) {
        assert!(result.contains(" 0 ignored"), "the SDK ignores a test: {result}");
    }
}
