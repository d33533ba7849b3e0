//! Index entries moved to the scratch file read back exactly: a store
//! whose index keeps only 2 048 entries in memory (and caches 64 KiB of
//! the rest) answers every read API exactly as an all-in-memory index over
//! the same directory, live, after a compaction, after reopening through
//! the checkpoint and through the frame scan, and after a torn tail; and
//! so do position lists long enough that their old pages go to that file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

mod common;

use batpak::prelude::*;
use common::Rng;
use serde_json::json;
use std::path::Path;

const ENTITIES: u64 = 40;
const SCOPES: u64 = 3;
const KINDS: u16 = 4;

fn entity(n: u64) -> String {
    if n.is_multiple_of(4) {
        format!("zz-{n}")
    } else {
        format!("acct-{n}")
    }
}

fn coord(rng: &mut Rng) -> Coordinate {
    let n = rng.below(ENTITIES as usize) as u64;
    Coordinate::new(entity(n), format!("scope-{}", n % SCOPES)).expect("coord")
}

fn kind(rng: &mut Rng) -> EventKind {
    EventKind::custom(1, 1 + rng.below(usize::from(KINDS)) as u16)
}

fn spilling(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir)
        .with_resident_events(2048)
        .with_index_cache_bytes(64 * 1024)
        .with_segment_max_bytes(256 * 1024)
}

fn in_memory(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir).with_resident_events(u64::MAX).with_segment_max_bytes(256 * 1024)
}

/// `n` appends: singles, batches of 1–20, idempotent appends whose keys
/// repeat (and so are answered from the index), and CAS appends.
fn work(store: &Store, rng: &mut Rng, n: usize) {
    let mut done = 0;
    while done < n {
        let payload = json!({"i": done, "pad": "x".repeat(60 + rng.below(40))});
        match rng.below(10) {
            0..=3 => {
                let c = coord(rng);
                let k = kind(rng);
                store.append(&c, k, &payload).expect("append");
                done += 1;
            }
            4 | 5 => {
                // Causation and correlation ids live beside the slots, and
                // go to the scratch file with them.
                let mut opts =
                    AppendOptions::new().with_causation(0xCA05E << 64 | rng.below(1 << 30) as u128);
                if rng.below(2) == 0 {
                    opts = opts.with_correlation(0xC0EE << 64 | rng.below(1 << 30) as u128);
                }
                store.append_with_options(&coord(rng), kind(rng), &payload, opts).expect("append");
                done += 1;
            }
            6 => {
                let key = 0x1000 + rng.below(500) as u128;
                let c = Coordinate::new(format!("idem-{}", key % 4), "scope-0").expect("coord");
                let opts = AppendOptions::new().with_idempotency(key);
                store
                    .append_with_options(&c, EventKind::custom(1, 1), &json!({"key": key as u64}), opts)
                    .expect("idem");
                done += 1;
            }
            7 => {
                let c = coord(rng);
                let len = store.stream(c.entity()).len() as u32;
                let opts = if len == 0 {
                    AppendOptions::new().with_cas_empty()
                } else {
                    AppendOptions::new().with_cas(len - 1)
                };
                let k = kind(rng);
                store.append_with_options(&c, k, &payload, opts).expect("cas with the right expectation");
                done += 1;
            }
            _ => {
                let size = 1 + rng.below(20);
                let items = (0..size)
                    .map(|j| {
                        let c = coord(rng);
                        let k = kind(rng);
                        BatchAppendItem::new(
                            c,
                            k,
                            &json!({"b": done + j}),
                            AppendOptions::new(),
                            CausationRef::None,
                        )
                        .expect("item")
                    })
                    .collect();
                store.append_batch(items).expect("batch");
                done += size;
            }
        }
    }
}

/// Everything the read API says about the store, as text.
fn observe(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    let stats = store.stats();
    out.push(format!("{stats:?} entities {}", store.diagnostics().entity_count));
    let all = store.query(&Region::all());
    out.push(format!("all {all:?}"));
    for n in 0..ENTITIES {
        out.push(format!("stream {n} {:?}", store.stream(&entity(n))));
    }
    // The scope and kind lists are compressed; each must equal a plain
    // filter of the whole log, not only the other index setting.
    for s in 0..SCOPES {
        let scope = format!("scope-{s}");
        let listed = store.by_scope(&scope);
        let filtered: Vec<_> = all.iter().filter(|e| e.coord.scope() == scope).cloned().collect();
        assert_eq!(listed, filtered, "by_scope({scope}) is the log filtered by scope");
        out.push(format!("scope {s} {listed:?}"));
    }
    for k in 1..=KINDS {
        let kind = EventKind::custom(1, k);
        let listed = store.by_fact(kind);
        let filtered: Vec<_> = all.iter().filter(|e| e.kind == kind).cloned().collect();
        assert_eq!(listed, filtered, "by_fact({kind:?}) is the log filtered by kind");
        out.push(format!("kind {k} {listed:?}"));
    }
    out.push(format!("prefix {:?}", store.query(&Region::entity("zz-"))));
    for e in &all {
        let got = store.get(e.event_id).expect("every listed id is found");
        let header = &got.event.header;
        assert_eq!(
            (e.correlation_id, e.causation_id),
            (header.correlation_id, header.causation_id),
            "the index's causal ids are the frame's"
        );
        out.push(format!("get {:?} {}", got.event.header, got.event.payload));
    }
    for key in 0x1000u128..0x1000 + 500 {
        out.push(format!("key {key} {:?}", store.get(key).ok().map(|e| e.event.header.event_id)));
    }
    assert!(matches!(store.get(7), Err(StoreError::NotFound(_))));
    let mut cursor = store.cursor_guaranteed(&Region::all());
    let mut drained = Vec::new();
    loop {
        let batch = cursor.poll_batch(97);
        if batch.is_empty() {
            break;
        }
        drained.extend(batch.into_iter().map(|e| e.global_sequence));
    }
    out.push(format!("cursor {drained:?}"));
    if let Some(last) = all.last() {
        out.push(format!("ancestors {:?}", store.walk_ancestors(last.event_id, 50).len()));
    }
    assert_eq!(all.len(), stats.event_count, "every counted event is listed");
    out
}

/// The newest segment file in `dir`.
fn newest_segment(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "fbat"))
        .max()
        .expect("a segment")
}

fn assert_same(what: &str, expected: &[String], got: &[String]) {
    assert_eq!(expected.len(), got.len(), "{what}: different shapes");
    for (e, g) in expected.iter().zip(got) {
        assert!(
            e == g,
            "{what}: differs\n expected {}\n      got {}",
            &e[..e.len().min(400)],
            &g[..g.len().min(400)]
        );
    }
}

/// Opens `dir` with each index setting and recovery path, comparing each
/// to `expected`; returns what the all-in-memory open saw.
fn reopen_every_way(dir: &Path, expected: Option<&[String]>) -> Vec<String> {
    let memory = Store::open(in_memory(dir)).expect("in-memory open");

    let seen = observe(&memory);
    assert_eq!(memory.diagnostics().index_entries_on_disk, 0);
    memory.close().expect("close");
    if let Some(expected) = expected {
        assert_same("all in memory", expected, &seen);
    }
    // The first open with the checkpoint may read the footers (when the
    // last close kept the index in memory); its close writes the index
    // image, which the second reads; the last reads every footer.
    for (checkpoint, image) in [(true, None), (true, Some(true)), (false, Some(false))] {
        let store = Store::open(spilling(dir).with_enable_checkpoint(checkpoint)).expect("open");
        let report = store.diagnostics().recovery;
        if let Some(image) = image {
            assert_eq!(report.from_image, image, "{report:?}");
        }
        let on_disk = store.diagnostics().index_entries_on_disk;
        let next = store.stats().global_sequence;
        assert!(
            on_disk > 0 && on_disk + 2048 >= next,
            "the open moved all but the newest two chunks to the scratch file ({on_disk} of {next})"
        );
        assert_same(&format!("spilled, checkpoint {checkpoint}, image {image:?}"), &seen, &observe(&store));
        store.close().expect("close");
    }
    seen
}

#[test]
fn entries_on_disk_read_back_exactly_through_every_path() {
    for seed in [0x9E37_79B9_u64, 0xDEAD_BEEF] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut rng = Rng(seed);
        let store = Store::open(spilling(dir)).expect("open");
        work(&store, &mut rng, 4_000);
        let keep = |e: &StoredEvent<serde_json::Value>| {
            e.event.payload.get("i").and_then(|i| i.as_u64()).is_none_or(|i| i % 3 != 0)
        };
        store
            .compact(&CompactionConfig {
                strategy: CompactionStrategy::Retention(Box::new(keep)),
                min_segments: 2,
            })
            .expect("compact");
        work(&store, &mut rng, 2_500);
        let live = observe(&store);
        store.close().expect("close");
        reopen_every_way(dir, Some(&live));

        // A torn tail: the newest segment loses its footer, its zeroed
        // room and three quarters of its frames, cut inside a frame.
        let newest = newest_segment(dir);
        let file = std::fs::OpenOptions::new().write(true).open(&newest).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len / 4 + 7).unwrap();
        drop(file);
        let cut = reopen_every_way(dir, None);
        assert!(
            cut.len() < live.len() && cut[0] != live[0],
            "the torn tail lost events: {} vs {}",
            cut[0],
            live[0]
        );
    }
}

/// `n` events in batches of 250 over every entity, scope and kind, in
/// an irregular mix, so that each list's positions interleave.
fn bulk(store: &Store, rng: &mut Rng, n: usize) {
    for from in (0..n).step_by(250) {
        let items = (from..(from + 250).min(n))
            .map(|i| {
                let (c, k) = (coord(rng), kind(rng));
                BatchAppendItem::new(c, k, &json!({"i": i}), AppendOptions::new(), CausationRef::None)
                    .expect("item")
            })
            .collect();
        store.append_batch(items).expect("batch");
    }
}

/// Opens `dir` from the footers, then with the checkpoint (whose close
/// writes an image), then from that image, running `check` on each open
/// with a description of it.
fn open_each_recovery_path(dir: &Path, mut check: impl FnMut(&Store, &str)) {
    for (checkpoint, image) in [(false, Some(false)), (true, None), (true, Some(true))] {
        let store = Store::open(spilling(dir).with_enable_checkpoint(checkpoint)).expect("open");
        if let Some(image) = image {
            assert_eq!(store.diagnostics().recovery.from_image, image);
        }
        check(&store, &format!("checkpoint {checkpoint}, image {image:?}"));
        store.close().expect("close");
    }
}

/// Cuts the newest segment to a third of its length and 5 bytes, inside a
/// frame: a torn tail.
fn tear_tail(dir: &Path) {
    let file = std::fs::OpenOptions::new().write(true).open(newest_segment(dir)).unwrap();
    file.set_len(file.metadata().unwrap().len() / 3 + 5).unwrap();
}

/// Position lists long enough to page out (the id list and each scope and
/// kind list here pass 8 192 values, where a list's oldest blocks go to
/// the slot file) answer the same as in memory: live, after a compaction
/// rebuilt them, from the index image and from the footers, and after a
/// torn tail.
#[test]
fn position_lists_paged_to_the_slot_file_answer_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = Rng(0x5EED_0F9A);
    let store = Store::open(spilling(dir)).expect("open");
    bulk(&store, &mut rng, 36_000);
    work(&store, &mut rng, 600);
    let paged = store.diagnostics().index_list_values_on_disk;
    assert!(paged >= 36_000, "the id list and the scope and kind lists paged out ({paged} values)");
    let keep = |e: &StoredEvent<serde_json::Value>| {
        e.event.payload.get("i").and_then(|i| i.as_u64()).is_none_or(|i| i % 5 != 0)
    };
    let plan = CompactionConfig { strategy: CompactionStrategy::Retention(Box::new(keep)), min_segments: 2 };
    store.compact(&plan).expect("compact");
    assert!(
        store.diagnostics().index_list_values_on_disk > 0,
        "the compacted generation pages its lists too"
    );
    // No CAS appends from here: the compaction left gaps in the clocks.
    bulk(&store, &mut rng, 3_000);
    let live = observe(&store);
    store.close().expect("close");
    reopen_every_way(dir, Some(&live));
    open_each_recovery_path(dir, |store, how| {
        let paged = store.diagnostics().index_list_values_on_disk;
        assert!(paged >= 20_000, "{how}: {paged} values paged");
    });
    // A torn tail: the rebuilt lists, paged again, answer as in memory.
    tear_tail(dir);
    let cut = reopen_every_way(dir, None);
    assert!(cut.len() < live.len() && cut[0] != live[0], "the torn tail lost events");
}

/// A random idempotency key (a u128 of 64 random bits in each half, so
/// most keys fall below the newest id and go to the other-id table).
fn random_key(rng: &mut Rng) -> u128 {
    u128::from(rng.next()) << 64 | u128::from(rng.next())
}

/// `n` events in batches of 250, each with a random idempotency key;
/// returns the keys with their sequences.
fn bulk_keyed(store: &Store, rng: &mut Rng, n: usize) -> Vec<(u128, u64)> {
    let mut keyed = Vec::with_capacity(n);
    for from in (0..n).step_by(250) {
        let keys: Vec<u128> = (from..(from + 250).min(n)).map(|_| random_key(rng)).collect();
        let items = keys
            .iter()
            .zip(from..)
            .map(|(key, i)| {
                let (c, k) = (coord(rng), kind(rng));
                let opts = AppendOptions::new().with_idempotency(*key);
                BatchAppendItem::new(c, k, &json!({"i": i}), opts, CausationRef::None).expect("item")
            })
            .collect();
        let receipts = store.append_batch(items).expect("batch");
        keyed.extend(keys.iter().zip(&receipts).map(|(key, r)| (*key, r.sequence)));
    }
    keyed
}

/// Every key in `keyed` finds its event, and keys never used find none.
fn keys_answer(store: &Store, keyed: &[(u128, u64)], rng: &mut Rng) {
    let listed: std::collections::HashMap<u128, u64> =
        store.query(&Region::all()).iter().map(|e| (e.event_id, e.global_sequence)).collect();
    for (key, seq) in keyed {
        let got = store.get(*key).expect("a keyed event is found by its key");
        assert_eq!((got.event.header.event_id, listed.get(key)), (*key, Some(seq)));
    }
    for _ in 0..2_000 {
        assert!(
            matches!(store.get(random_key(rng)), Err(StoreError::NotFound(_))),
            "an unused key finds nothing"
        );
    }
}

/// Ids that did not rise, enough of them to go to the slot file in sorted
/// runs and merge there, answer as in memory: live, after idempotent
/// retries and a conflicting reuse, after a compaction rebuilt them, from
/// the index image and from the footers, and after a torn tail.
#[test]
fn ids_in_runs_in_the_slot_file_answer_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = Rng(0x1D50_FA11);
    let store = Store::open(spilling(dir)).expect("open");
    let mut keyed = bulk_keyed(&store, &mut rng, 30_000);
    let on_disk = store.diagnostics().index_ids_on_disk;
    assert!(on_disk >= 20_000, "the other ids went to runs in the slot file ({on_disk})");
    keys_answer(&store, &keyed, &mut rng);
    // A retry of a stored event answers with it, appending nothing; the
    // same key on a different event is refused.
    let next = store.stats().global_sequence;
    for (key, seq) in keyed.iter().step_by(1_000) {
        let stored = store.get(*key).expect("stored");
        let (c, k) = (stored.coordinate.clone(), stored.event.header.event_kind);
        let retry = AppendOptions::new().with_idempotency(*key);
        let receipt = store.append_with_options(&c, k, &stored.event.payload, retry).expect("retry");
        assert_eq!((receipt.event_id, receipt.sequence), (*key, *seq));
        let other = AppendOptions::new().with_idempotency(*key);
        let err = store.append_with_options(&c, k, &json!({"other": 1}), other).expect_err("conflict");
        assert!(matches!(err, StoreError::IdempotencyConflict { .. }), "{err}");
    }
    assert_eq!(store.stats().global_sequence, next, "retries appended nothing");
    let keep = |e: &StoredEvent<serde_json::Value>| {
        e.event.payload.get("i").and_then(|i| i.as_u64()).is_none_or(|i| i % 5 != 0)
    };
    let plan = CompactionConfig { strategy: CompactionStrategy::Retention(Box::new(keep)), min_segments: 2 };
    store.compact(&plan).expect("compact");
    keyed.retain(|(key, _)| store.get(*key).is_ok());
    assert!(keyed.len() > 20_000 && keyed.len() < 26_000, "the compaction removed a fifth ({})", keyed.len());
    assert!(store.diagnostics().index_ids_on_disk > 0, "the compacted generation keeps runs too");
    keyed.extend(bulk_keyed(&store, &mut rng, 6_000));
    keys_answer(&store, &keyed, &mut rng);
    let live = observe(&store);
    store.close().expect("close");
    reopen_every_way(dir, Some(&live));
    open_each_recovery_path(dir, |store, how| {
        let on_disk = store.diagnostics().index_ids_on_disk;
        assert!(on_disk >= 20_000, "{how}: {on_disk} ids in runs");
        keys_answer(store, &keyed, &mut rng);
    });
    tear_tail(dir);
    let cut = reopen_every_way(dir, None);
    assert!(cut.len() < live.len() && cut[0] != live[0], "the torn tail lost events");
}

/// Readers racing the writer while its other ids go to runs and merge:
/// every key a reader saw acknowledged is found, with its sequence.
#[test]
fn readers_racing_the_id_runs_find_every_acknowledged_key() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(spilling(tmp.path())).expect("open"));
    let acked = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<(u128, u64)>::new()));
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, acked, done) =
            (std::sync::Arc::clone(&store), std::sync::Arc::clone(&acked), std::sync::Arc::clone(&done));
        std::thread::spawn(move || {
            let mut checked = 0usize;
            let mut rng = Rng(0xFEED);
            while !done.load(Ordering::Acquire) || checked == 0 {
                let sample: Vec<(u128, u64)> = {
                    let acked = acked.lock();
                    (0..64).filter_map(|_| acked.get(rng.below(acked.len())).copied()).collect()
                };
                for (key, _) in sample {
                    let got = store.get(key).expect("an acknowledged key is found");
                    assert_eq!(got.event.header.event_id, key);
                    checked += 1;
                }
            }
            checked
        })
    };
    let mut rng = Rng(0xB0B);
    for _ in 0..40 {
        let keyed = bulk_keyed(&store, &mut rng, 1_000);
        acked.lock().extend(keyed);
    }
    done.store(true, Ordering::Release);
    let checked = reader.join().expect("the reader's checks held");
    let on_disk = store.diagnostics().index_ids_on_disk;
    assert!(checked > 0 && on_disk >= 30_000, "{checked} lookups, {on_disk} ids in runs");
}

/// Readers racing the writer and the spilling thread: while batches go in
/// and the lists page out, each `by_scope` answer is in order, in scope,
/// and extends the answer before it, and every id a reader saw is found.
#[test]
fn readers_racing_the_writer_and_the_paging_see_consistent_lists() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(spilling(tmp.path())).expect("open"));
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (std::sync::Arc::clone(&store), std::sync::Arc::clone(&done));
        std::thread::spawn(move || {
            let mut before: Vec<u64> = Vec::new();
            let mut rounds = 0;
            while !done.load(Ordering::Acquire) || rounds == 0 {
                rounds += 1;
                let listed = store.by_scope("scope-1");
                let seqs: Vec<u64> = listed.iter().map(|e| e.global_sequence).collect();
                assert!(seqs.windows(2).all(|w| w[0] < w[1]), "round {rounds}: in order");
                assert!(listed.iter().all(|e| e.coord.scope() == "scope-1"), "round {rounds}: in scope");
                assert!(seqs.starts_with(&before), "round {rounds}: extends the answer before");
                for e in listed.iter().step_by(97) {
                    assert_eq!(store.get(e.event_id).expect("found").event.header.event_id, e.event_id);
                }
                before = seqs;
            }
            (rounds, before.len())
        })
    };
    let mut rng = Rng(0xACE5);
    bulk(&store, &mut rng, 30_000);
    done.store(true, Ordering::Release);
    let (rounds, seen) = reader.join().expect("the reader's checks held");
    let paged = store.diagnostics().index_list_values_on_disk;
    assert!(paged > 0 && rounds > 1 && seen > 0, "{rounds} rounds, {seen} listed, {paged} paged");
    assert_eq!(
        store.by_scope("scope-1").len(),
        store.query(&Region::all()).iter().filter(|e| e.coord.scope() == "scope-1").count()
    );
}

#[test]
fn resident_events_below_two_small_chunks_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Store::open(StoreConfig::new(tmp.path()).with_resident_events(2047)).err().expect("refused");
    assert!(matches!(err, StoreError::Configuration(ref m) if m.contains("resident_events")), "{err}");
    let err =
        Store::open(StoreConfig::new(tmp.path()).with_index_cache_bytes(2 << 30)).err().expect("refused");
    assert!(matches!(err, StoreError::Configuration(ref m) if m.contains("cache_bytes")), "{err}");
}

/// Open drops a segment's mapped pages in 4 MiB steps as it finishes with
/// them, in the footer's two passes and in a frame scan. Segments here are
/// ~40 MiB, so both paths release many times; every event must still read
/// back exactly.
#[test]
fn large_segments_load_the_same_while_open_releases_their_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = |d: &Path| StoreConfig::new(d).with_batch_max_size(1000).with_batch_max_bytes(16 << 20);
    let store = Store::open(config(dir)).expect("open");
    let pad = "p".repeat(300);
    for b in 0..120u64 {
        let items = (0..1000u64)
            .map(|i| {
                let n = b * 1000 + i;
                let c = Coordinate::new(format!("big-{}", n % 50), "scope-0").expect("coord");
                let opts = if n % 3 == 0 {
                    AppendOptions::new().with_causation(u128::from(n) + 1)
                } else {
                    AppendOptions::new()
                };
                BatchAppendItem::new(
                    c,
                    EventKind::custom(1, 1),
                    &json!({"n": n, "pad": pad}),
                    opts,
                    CausationRef::None,
                )
                .expect("item")
            })
            .collect();
        store.append_batch(items).expect("batch");
    }
    let all = store.query(&Region::all());
    assert_eq!(all.len(), 120_000);
    store.close().expect("close");
    let check = |store: &Store, want: &[IndexEntry], what: &str| {
        let got = store.query(&Region::all());
        assert_eq!(got.len(), want.len(), "{what}: count");
        assert!(got == want, "{what}: entries differ");
        for e in want.iter().step_by(97) {
            let ev = store.get(e.event_id).expect("get");
            assert_eq!(ev.event.payload["n"], json!(e.global_sequence), "{what}: payload");
            assert_eq!(ev.event.header.causation_id, e.causation_id, "{what}: causation");
        }
    };
    let store = Store::open(config(dir).with_enable_checkpoint(false)).expect("footer open");
    assert!(store.diagnostics().index_entries_on_disk > 0);
    check(&store, &all, "from footers");
    store.close().expect("close");

    // Strip the newest segment's footer and cut it inside its last frames:
    // the open scans its frames (a torn tail).
    let newest = newest_segment(dir);
    let file = std::fs::OpenOptions::new().write(true).open(&newest).unwrap();
    let len = file.metadata().unwrap().len();
    assert!(len > 16 << 20, "the newest segment spans several release steps ({len} bytes)");
    file.set_len(len * 3 / 4 + 5).unwrap();
    drop(file);
    let store = Store::open(config(dir)).expect("scan open");
    assert!(store.diagnostics().recovery.scanned >= 1, "{:?}", store.diagnostics().recovery);
    let kept = store.stats().event_count;
    assert!(kept > 60_000 && kept < 120_000, "the cut lost only the tail: {kept}");
    check(&store, &all[..kept], "scanned");
    store.close().expect("close");
}
