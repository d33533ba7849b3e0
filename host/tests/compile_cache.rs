//! Compiled components kept on disk: the next process loads instead of
//! compiling, and a damaged or foreign entry is recompiled, never loaded.
//! A binary of its own: it reads the process-wide compile counter and
//! clears the process-wide memory cache.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::plugin::{clear_compile_cache, compilations, ProjectionPlugin};
use batpak::prelude::*;
use batpak_test_artifacts as art;
use serde_json::json;
use std::path::{Path, PathBuf};

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "bpcc"));
    v
}

/// Installs the allow-all gate through the disk cache in a fresh store and
/// returns how many compiles that took.
fn install_counting(cache: &Path) -> u64 {
    clear_compile_cache();
    let tmp = tempfile::tempdir().unwrap();
    let before = compilations();
    let gate = GatePlugin::from_file(art::ALLOW_ALL).unwrap().with_compile_cache(cache);
    let store = Store::open(StoreConfig::new(tmp.path()).with_gate(gate)).unwrap();
    store
        .append(&Coordinate::new("e", "s").unwrap(), EventKind::DATA, &json!({"n": 1}))
        .expect("the gate allows");
    store.close().unwrap();
    compilations() - before
}

#[test]
fn the_disk_cache_loads_sound_entries_and_recompiles_damaged_ones() {
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(install_counting(cache.path()), 1, "a cold cache compiles");
    let files = entries(cache.path());
    assert_eq!(files.len(), 1, "one entry written");
    assert_eq!(install_counting(cache.path()), 0, "a warm cache loads");

    let entry = &files[0];
    let sound = std::fs::read(entry).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("a flipped byte", {
            let mut b = sound.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x55;
            b
        }),
        ("a torn write", sound[..sound.len() / 3].to_vec()),
        ("a foreign file", b"\0asm\x0d\0\x01\0 not a compiled component".to_vec()),
        ("an empty file", Vec::new()),
    ];
    for (what, bytes) in damages {
        // Damage found at rest: no process has the entry mapped (it may be
        // deleted under a running process, never rewritten in place).
        clear_compile_cache();
        std::fs::write(entry, &bytes).unwrap();
        assert_eq!(install_counting(cache.path()), 1, "{what}: detected and recompiled");
        assert_eq!(std::fs::read(entry).unwrap(), sound, "{what}: the entry was rewritten");
        assert_eq!(install_counting(cache.path()), 0, "{what}: then loaded");
    }
    // A crash between writing the artifact and its sum leaves no sum.
    let sum = entry.with_extension("bpcc.sum");
    assert!(sum.is_file(), "each entry has a sum beside it");
    std::fs::remove_file(&sum).unwrap();
    assert_eq!(install_counting(cache.path()), 1, "no sum: recompiled");
    assert!(sum.is_file(), "and the sum written again");
    std::fs::write(&sum, b"BPCC0002 but not a sum").unwrap();
    assert_eq!(install_counting(cache.path()), 1, "a damaged sum: recompiled");
    assert_eq!(install_counting(cache.path()), 0, "then loaded");
    // Deleting entries under a process that has them loaded is safe.
    std::fs::remove_file(entry).unwrap();
    std::fs::remove_file(&sum).unwrap();
    assert_eq!(install_counting(cache.path()), 1, "deleted: recompiled");
    // Projections use the same cache.
    clear_compile_cache();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(tmp.path())).unwrap();
    let before = compilations();
    let p = || ProjectionPlugin::from_file(art::COUNTER).unwrap().with_compile_cache(cache.path());
    store.install_projection("count", p()).unwrap();
    assert_eq!(compilations() - before, 1);
    clear_compile_cache();
    store.install_projection("count2", p()).unwrap();
    assert_eq!(compilations() - before, 1, "the projection was loaded from disk");
    assert_eq!(entries(cache.path()).len(), 2);
}
