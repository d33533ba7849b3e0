//! The build script's wasm-target check, driven with fake `rustc` and
//! `rustup` scripts so every branch runs without touching the real toolchain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

#[path = "../wasm_target.rs"]
mod wasm_target;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use wasm_target::{ensure_wasm_target, TargetStatus, WASM_TARGET};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A fake toolchain at `<root>/toolchains/fake-tc` whose rustc prints that sysroot.
fn fake_toolchain(root: &Path) -> (PathBuf, PathBuf) {
    let sysroot = root.join("toolchains/fake-tc");
    fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
    let rustc = script(root, "rustc", &format!("echo {}", sysroot.display()));
    (rustc, sysroot.join("lib/rustlib").join(WASM_TARGET).join("lib"))
}

/// A fake rustup that logs its arguments to `rustup.log` and "installs"
/// the target by creating a core library in `libdir`.
fn installing_rustup(dir: &Path, libdir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("rustup.log");
    let body = format!(
        "echo \"$@\" > {}\nmkdir -p {}\ntouch {}/libcore-abcd.rlib",
        log.display(),
        libdir.display(),
        libdir.display()
    );
    (script(dir, "rustup", &body), log)
}

#[test]
fn present_target_needs_no_rustup() {
    let dir = tempfile::tempdir().unwrap();
    let (rustc, libdir) = fake_toolchain(dir.path());
    fs::create_dir_all(&libdir).unwrap();
    fs::write(libdir.join("libcore-0123.rlib"), b"").unwrap();
    let status = ensure_wasm_target(&rustc, Path::new("/nonexistent/rustup"), None).unwrap();
    assert_eq!(status, TargetStatus::Present);
}

#[test]
fn missing_target_is_installed_for_the_owning_toolchain() {
    let dir = tempfile::tempdir().unwrap();
    let (rustc, libdir) = fake_toolchain(dir.path());
    let (rustup, log) = installing_rustup(dir.path(), &libdir);
    let status = ensure_wasm_target(&rustc, &rustup, None).unwrap();
    assert_eq!(status, TargetStatus::Installed { toolchain: "fake-tc".into() });
    let args = fs::read_to_string(&log).unwrap();
    assert_eq!(args.trim(), format!("target add {WASM_TARGET} --toolchain fake-tc"));
}

#[test]
fn rustup_toolchain_variable_wins_over_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (rustc, libdir) = fake_toolchain(dir.path());
    let log = dir.path().join("rustup.log");
    let rustup = script(
        dir.path(),
        "rustup",
        &format!(
            "echo \"$@\" > {}\nmkdir -p {}\ntouch {}/libcore-x.rlib",
            log.display(),
            libdir.display(),
            libdir.display()
        ),
    );
    let status = ensure_wasm_target(&rustc, &rustup, Some("stable-x86_64-unknown-linux-gnu")).unwrap();
    assert_eq!(status, TargetStatus::Installed { toolchain: "stable-x86_64-unknown-linux-gnu".into() });
    assert!(fs::read_to_string(&log).unwrap().contains("--toolchain stable-x86_64-unknown-linux-gnu"));
}

#[test]
fn absent_rustup_gives_instructions() {
    let dir = tempfile::tempdir().unwrap();
    let (rustc, _) = fake_toolchain(dir.path());
    let err = ensure_wasm_target(&rustc, Path::new("/nonexistent/rustup"), None).unwrap_err();
    assert!(err.contains(&format!("rustup target add {WASM_TARGET}")), "{err}");
    assert!(err.contains("running `/nonexistent/rustup` failed"), "{err}");
}

#[test]
fn failing_rustup_shows_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let (rustc, _) = fake_toolchain(dir.path());
    let rustup = script(dir.path(), "rustup", "echo 'error: could not download: no network' >&2\nexit 1");
    let err = ensure_wasm_target(&rustc, &rustup, None).unwrap_err();
    assert!(err.contains("no network"), "{err}");
}

#[test]
fn compiler_outside_rustup_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let sysroot = dir.path().join("usr");
    fs::create_dir_all(&sysroot).unwrap();
    let rustc = script(dir.path(), "rustc", &format!("echo {}", sysroot.display()));
    let err = ensure_wasm_target(&rustc, Path::new("rustup"), None).unwrap_err();
    assert!(err.contains("not managed by rustup"), "{err}");
}

#[test]
fn the_compiler_that_built_this_crate_has_the_target() {
    // The build script ran before this test: it must have left the target in place.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = ensure_wasm_target(Path::new(&rustc), Path::new("/nonexistent/rustup"), None).unwrap();
    assert_eq!(status, TargetStatus::Present);
}
