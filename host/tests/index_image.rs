//! The index image (`index.image`) and its slot file: a clean close
//! writes them, the next open reads them instead of the footers, and any
//! image that does not describe the store as it is, or whose slot file was
//! changed, is refused or caught, never trusted into a wrong answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Small chunks, so a few thousand events put most of the index in the slot file.
fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir)
        .with_resident_events(2048)
        .with_index_cache_bytes(64 * 1024)
        .with_segment_max_bytes(128 * 1024)
}

fn fill(store: &Store, from: u64, n: u64) {
    for i in from..from + n {
        let c = Coordinate::new(format!("acct-{}", i % 23), format!("scope-{}", i % 3)).expect("coord");
        let opts = if i % 5 == 0 {
            AppendOptions::new().with_causation(u128::from(i) << 8 | 1)
        } else {
            AppendOptions::new()
        };
        store
            .append_with_options(&c, EventKind::custom(1, 1 + (i % 4) as u16), &json!({"i": i}), opts)
            .expect("append");
    }
}

/// Every entry, every stream and a get of every event.
fn observe(store: &Store) -> Vec<String> {
    let all = store.query(&Region::all());
    let mut out = vec![format!("{all:?}")];
    for n in 0..23 {
        out.push(format!("{:?}", store.stream(&format!("acct-{n}"))));
    }
    for e in &all {
        let got = store.get(e.event_id).expect("get");
        out.push(format!("{:?} {}", got.event.header, got.event.payload));
    }
    out
}

fn slot_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slots"))
        .collect();
    found.sort();
    found
}

/// A store of 6 000 events, closed; returns what it answered.
fn closed_store(dir: &Path) -> Vec<String> {
    let store = Store::open(config(dir)).expect("open");
    fill(&store, 0, 6_000);
    let seen = observe(&store);
    store.close().expect("close");
    seen
}

fn reopen(dir: &Path) -> (Store, batpak::store::RecoveryReport) {
    let store = Store::open(config(dir)).expect("open");
    let report = store.diagnostics().recovery;
    (store, report)
}

#[test]
fn a_clean_close_leaves_an_image_that_the_next_open_reads_instead_of_the_footers() {
    let tmp = tempfile::tempdir().unwrap();
    let seen = closed_store(tmp.path());
    assert!(tmp.path().join("index.image").exists());
    assert_eq!(slot_files(tmp.path()).len(), 1, "one slot file, named by the image");
    let (store, report) = reopen(tmp.path());
    assert!(report.from_image && report.from_footers == 0 && report.scanned == 0, "{report:?}");
    assert!(store.diagnostics().index_entries_on_disk >= 4_000, "the slot file serves the old entries");
    assert_eq!(observe(&store), seen);
    // Appends continue the chains the image holds.
    fill(&store, 6_000, 3_000);
    let more = observe(&store);
    store.close().expect("close");
    let (store, report) = reopen(tmp.path());
    assert!(report.from_image, "{report:?}");
    assert_eq!(observe(&store), more);
    assert!(store.verify().is_ok());
    store.close().expect("close");
    // Without the image the same store loads from the footers, alike.
    std::fs::remove_file(tmp.path().join("index.image")).unwrap();
    let (store, report) = reopen(tmp.path());
    assert!(!report.from_image && report.from_footers > 0 && report.image_rejected.is_none(), "{report:?}");
    assert_eq!(observe(&store), more);
}

#[test]
fn an_image_from_an_earlier_close_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    closed_store(tmp.path());
    let old_image = std::fs::read(tmp.path().join("index.image")).unwrap();
    let (store, _) = reopen(tmp.path());
    fill(&store, 6_000, 500);
    let now = observe(&store);
    store.close().expect("close");
    std::fs::write(tmp.path().join("index.image"), &old_image).unwrap();
    let (store, report) = reopen(tmp.path());
    assert!(!report.from_image, "{report:?}");
    assert!(report.image_rejected.as_deref().is_some_and(|w| w.contains("other segments")), "{report:?}");
    assert_eq!(observe(&store), now, "the footers give every event");
}

#[test]
fn a_damaged_image_or_a_missing_slot_file_means_a_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let seen = closed_store(tmp.path());
    let image = tmp.path().join("index.image");
    let mut bytes = std::fs::read(&image).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&image, &bytes).unwrap();
    let (store, report) = reopen(tmp.path());
    assert!(report.image_rejected.as_deref().is_some_and(|w| w.contains("CRC")), "{report:?}");
    assert_eq!(observe(&store), seen);
    store.close().expect("close: writes a good image again");
    assert!(reopen(tmp.path()).1.from_image);

    // An empty image (read, not mapped) and one cut short (mapped) are
    // refused like any other damage.
    for keep in [0, std::fs::read(&image).unwrap().len() - 9] {
        let whole = std::fs::read(&image).unwrap();
        std::fs::write(&image, &whole[..keep]).unwrap();
        let (store, report) = reopen(tmp.path());
        assert!(report.image_rejected.is_some() && !report.from_image, "{keep} bytes: {report:?}");
        assert_eq!(observe(&store), seen, "{keep} bytes");
        store.close().expect("close");
        assert!(reopen(tmp.path()).1.from_image, "the close after {keep} bytes wrote a good image");
    }

    for slot in slot_files(tmp.path()) {
        std::fs::remove_file(slot).unwrap();
    }
    let (store, report) = reopen(tmp.path());
    assert!(report.image_rejected.as_deref().is_some_and(|w| w.contains("slot file")), "{report:?}");
    assert_eq!(observe(&store), seen);
}

#[test]
fn a_changed_slot_file_block_is_caught_by_its_crc_and_the_next_open_rebuilds() {
    let tmp = tempfile::tempdir().unwrap();
    let seen = closed_store(tmp.path());
    let slots = slot_files(tmp.path());
    let mut bytes = std::fs::read(&slots[0]).unwrap();
    // The first chunk's first block starts after the 64-byte header; flip
    // a bit of the first event's hash.
    bytes[64 + 20] ^= 0x01;
    std::fs::write(&slots[0], &bytes).unwrap();
    let (store, report) = reopen(tmp.path());
    assert!(report.from_image, "the image itself is intact: {report:?}");
    let all = store.query(&Region::all());
    assert!(all.len() < 6_000, "the damaged block's entries are not answered");
    let err =
        store.append(&Coordinate::new("acct-1", "scope-1").unwrap(), EventKind::custom(1, 1), &json!({}));
    assert!(matches!(err, Err(StoreError::Poisoned(ref why)) if why.contains("checksum")), "{err:?}");
    drop(store);
    assert!(!tmp.path().join("index.image").exists(), "the damaged file's image was removed");
    let (store, report) = reopen(tmp.path());
    assert!(!report.from_image && report.from_footers > 0, "{report:?}");
    assert_eq!(observe(&store), seen, "rebuilt from the footers, nothing lost");
    assert!(store.verify().is_ok());
}

#[test]
fn slot_files_nothing_names_are_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let seen = closed_store(tmp.path());
    let stray = tmp.path().join(format!("index-{:032x}.slots", 0xABCDu128));
    std::fs::write(&stray, b"left by a crashed run").unwrap();
    let other = tmp.path().join("index-notours.slots");
    std::fs::write(&other, b"not a name the store makes").unwrap();
    let (store, report) = reopen(tmp.path());
    assert!(report.from_image);
    let named = slot_files(tmp.path()).into_iter().find(|p| *p != other).expect("the image's slot file");
    assert!(!stray.exists(), "a stray slot file is removed");
    assert!(other.exists(), "a file the store could not have made is left alone");
    assert_eq!(slot_files(tmp.path()).len(), 2);
    assert_eq!(observe(&store), seen);
    drop(store);
    // Without the checkpoint the image cannot be trusted: every slot file goes.
    std::fs::remove_file(tmp.path().join("index.ckpt")).unwrap();
    let (store, report) = reopen(tmp.path());
    assert!(!report.from_image && report.image_rejected.is_none(), "{report:?}");
    assert_eq!(observe(&store), seen);
    let now = slot_files(tmp.path());
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(
        now.contains(&other) && !now.contains(&named),
        "the untrusted image's slot file was replaced: {now:?}"
    );
}

#[test]
fn a_compaction_after_an_image_open_never_lets_the_old_image_answer() {
    let tmp = tempfile::tempdir().unwrap();
    closed_store(tmp.path());
    let (store, report) = reopen(tmp.path());
    assert!(report.from_image);
    let keep = |e: &StoredEvent<serde_json::Value>| e.event.payload["i"].as_u64().is_some_and(|i| i % 2 == 0);
    store
        .compact(&CompactionConfig {
            strategy: CompactionStrategy::Retention(Box::new(keep)),
            min_segments: 2,
        })
        .expect("compact");
    let after = observe(&store);
    assert!(!tmp.path().join("index.ckpt").exists(), "the compaction removed the checkpoint");
    store.close().expect("close");
    let (store, report) = reopen(tmp.path());
    assert!(report.from_image, "the close wrote a new image: {report:?}");
    assert_eq!(observe(&store), after);
    assert_eq!(slot_files(tmp.path()).len(), 1, "the old generation's slot file is gone");
}
