//! The guest SDK carries its own copy of the WIT contract so it can be
//! published on its own; it must never drift from the host's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use std::path::Path;

#[test]
fn the_sdk_copy_of_the_wit_is_the_hosts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let host = std::fs::read(root.join("wit/batpak.wit")).expect("wit/batpak.wit");
    let sdk = std::fs::read(root.join("guest/sdk/wit/batpak.wit")).expect("guest/sdk/wit/batpak.wit");
    assert!(
        host == sdk,
        "guest/sdk/wit/batpak.wit differs from wit/batpak.wit: copy it over (cp wit/batpak.wit guest/sdk/wit/)"
    );
    let extra: Vec<_> = std::fs::read_dir(root.join("guest/sdk/wit"))
        .expect("list guest/sdk/wit")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "batpak.wit")
        .collect();
    assert!(extra.is_empty(), "guest/sdk/wit holds files the host does not: {extra:?}");
}

#[test]
fn the_committed_c_bindings_come_from_the_hosts_wit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let host = std::fs::read(root.join("wit/batpak.wit")).expect("wit/batpak.wit");
    let used = std::fs::read(root.join("guest/foreign/c/bindings/batpak.wit")).expect("the bindings' WIT");
    assert!(
        host == used,
        "wit/batpak.wit changed since the C bindings were generated: run guest/foreign/c/regen-bindings"
    );
}
