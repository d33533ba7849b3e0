//! Installing gates one at a time costs one compile per install, however
//! many are installed. A binary of its own: it reads the process-wide
//! compile counter, which other tests running in parallel would move.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use batpak_test_artifacts as art;
use serde_json::json;

/// `component` with a custom section appended: a valid, distinct component.
fn variant(component: &[u8], n: usize) -> Vec<u8> {
    let name = format!("variant-{n}");
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section
    out.push(body.len() as u8); // fits one LEB128 byte
    out.extend_from_slice(&body);
    out
}

#[test]
fn the_kth_install_compiles_only_the_kth_gate() {
    // A tiny component, so that 70 compiles stay quick in a debug build.
    let base = std::fs::read(art::STACK_DEPTH).expect("read");
    let limits = batpak::plugin::PluginLimits { stack_bytes: 1 << 20, ..Default::default() };
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    let gates = 70; // past the process-wide compile cache (64 entries)
    for k in 0..gates {
        let before = batpak::plugin::compilations();
        let plugin =
            GatePlugin::from_bytes(variant(&base, k)).with_name(format!("allow-{k}")).with_limits(limits);
        store.install_gate(plugin).expect("install");
        assert_eq!(batpak::plugin::compilations() - before, 1, "install {k} compiled more than its own gate");
    }
    assert_eq!(store.gates().len(), gates);
    store
        .append(&Coordinate::new("e", "s").expect("coord"), EventKind::DATA, &json!({"n": 1}))
        .expect("all allow");
    let before = batpak::plugin::compilations();
    store.remove_gate("allow-0").expect("remove");
    assert_eq!(batpak::plugin::compilations(), before, "removing a gate compiles nothing");
}
