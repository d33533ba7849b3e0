//! Native projections: EventSourced folding, caches, freshness, watchers, reactors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use batpak::projection::{NativeCache, ProjectionCache};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

const INC: EventKind = EventKind::custom(1, 1);
const DEC: EventKind = EventKind::custom(1, 2);
const NOTE: EventKind = EventKind::custom(1, 3);

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Counter {
    value: i64,
    applied: u32,
}

impl EventSourced<serde_json::Value> for Counter {
    fn from_events(events: &[Event<serde_json::Value>]) -> Option<Self> {
        let mut c = Counter::default();
        for e in events {
            c.apply_event(e);
        }
        Some(c)
    }
    fn apply_event(&mut self, e: &Event<serde_json::Value>) {
        let by = e.payload["by"].as_i64().unwrap_or(1);
        match e.event_kind() {
            k if k == INC => self.value += by,
            k if k == DEC => self.value -= by,
            _ => {}
        }
        self.applied += 1;
    }
    fn relevant_event_kinds() -> &'static [EventKind] {
        &[INC, DEC]
    }
    fn supports_incremental_apply() -> bool {
        true
    }
}

fn c(e: &str) -> Coordinate {
    Coordinate::new(e, "counters").expect("coord")
}

#[test]
fn project_folds_only_relevant_events_and_is_none_without_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    assert_eq!(store.project::<Counter>("k", &Freshness::Consistent).expect("project"), None);
    store.append(&c("k"), NOTE, &json!({})).expect("note");
    assert_eq!(store.project::<Counter>("k", &Freshness::Consistent).expect("project"), None);
    store.append(&c("k"), INC, &json!({"by": 5})).expect("inc");
    store.append(&c("k"), DEC, &json!({"by": 2})).expect("dec");
    store.append(&c("k2"), INC, &json!({"by": 100})).expect("other entity");
    let got = store.project::<Counter>("k", &Freshness::Consistent).expect("project");
    assert_eq!(got, Some(Counter { value: 3, applied: 2 }));
}

#[test]
fn native_cache_serves_fresh_states_and_advances_incrementally() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache_dir = tmp.path().join("cache");
    let cfg = StoreConfig::new(tmp.path().join("data")).with_incremental_projection(true);
    let store = Store::open_with_native_cache(cfg, &cache_dir).expect("open");
    for _ in 0..10 {
        store.append(&c("k"), INC, &json!({"by": 1})).expect("inc");
    }
    let first = store.project::<Counter>("k", &Freshness::Consistent).expect("project").expect("some");
    assert_eq!(first.value, 10);
    let cache = NativeCache::open(&cache_dir).expect("cache");
    let files = std::fs::read_dir(&cache_dir).expect("ls").count();
    assert_eq!(files, 1, "one shard directory");
    // A stale-tolerant read returns the cached state without the new event.
    store.append(&c("k"), INC, &json!({"by": 1})).expect("inc");
    let stale = store.project::<Counter>("k", &Freshness::MaybeStale { max_stale_ms: 60_000 }).expect("p");
    assert_eq!(stale.map(|s| s.value), Some(10));
    // Consistent advances the cached state by the one new event only.
    let fresh = store.project::<Counter>("k", &Freshness::Consistent).expect("p").expect("some");
    assert_eq!(fresh, Counter { value: 11, applied: 11 });
    assert_eq!(cache.delete_prefix(b"k").expect("delete"), 1);
    let rebuilt = store.project::<Counter>("k", &Freshness::Consistent).expect("p").expect("some");
    assert_eq!(rebuilt, fresh, "a full replay equals the incremental state");
}

#[test]
fn a_damaged_cache_file_is_a_miss_not_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache_dir = tmp.path().join("cache");
    let store =
        Store::open_with_native_cache(StoreConfig::new(tmp.path().join("d")), &cache_dir).expect("open");
    store.append(&c("k"), INC, &json!({"by": 4})).expect("inc");
    store.project::<Counter>("k", &Freshness::Consistent).expect("project");
    for shard in std::fs::read_dir(&cache_dir).expect("ls") {
        for f in std::fs::read_dir(shard.expect("shard").path()).expect("ls") {
            std::fs::write(f.expect("file").path(), b"garbage!").expect("damage");
        }
    }
    let got = store.project::<Counter>("k", &Freshness::Consistent).expect("project");
    assert_eq!(got.map(|s| s.value), Some(4));
}

#[test]
fn a_watcher_wakes_on_its_entity_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(StoreConfig::new(tmp.path())).expect("open"));
    let mut watcher = store.watch_projection::<Counter>("k1", Freshness::Consistent);
    store.append(&c("k10"), INC, &json!({"by": 7})).expect("prefix sibling");
    store.append(&c("k1"), INC, &json!({"by": 2})).expect("inc");
    let seen = watcher.recv().expect("recv").expect("some");
    assert_eq!(seen.value, 2, "k10 shares the prefix but is not k1");
}

struct Echo;

impl Reactive<serde_json::Value> for Echo {
    fn react(&self, e: &Event<serde_json::Value>) -> Vec<(Coordinate, EventKind, serde_json::Value)> {
        if e.event_kind() == INC {
            vec![(c("audit"), NOTE, json!({"saw": e.payload["by"]}))]
        } else {
            Vec::new()
        }
    }
}

#[test]
fn react_loop_appends_correlated_reactions_for_every_trigger() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(StoreConfig::new(tmp.path())).expect("open"));
    let audit = store.subscribe_lossy(&Region::entity("audit"));
    let handle = store.react_loop(&Region::entity("k"), Echo).expect("spawn");
    let triggers: Vec<AppendReceipt> =
        (0..20).map(|i| store.append(&c("k"), INC, &json!({"by": i})).expect("inc")).collect();
    for _ in 0..20 {
        audit.recv().expect("a reaction");
    }
    let reactions = store.stream("audit");
    assert_eq!(reactions.len(), 20);
    for (r, t) in reactions.iter().zip(&triggers) {
        assert_eq!(r.causation_id, Some(t.event_id), "in order, caused by its trigger");
        assert_eq!(r.correlation_id, t.event_id);
    }
    drop(audit);
    drop(store);
    handle.join().expect("the reactor ends with the store");
}

#[test]
fn long_streams_across_segments_project_exactly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path()).with_segment_max_bytes(16 * 1024)).expect("open");
    let mut expected = 0i64;
    for i in 0..3000i64 {
        let kind = if i % 7 == 0 { DEC } else { INC };
        store
            .append(&c(if i % 3 == 0 { "other" } else { "long" }), kind, &json!({"by": i % 11}))
            .expect("append");
        if i % 3 != 0 {
            expected += if kind == DEC { -(i % 11) } else { i % 11 };
        }
    }
    assert!(
        store.diagnostics().recovery.scanned == 0 && std::fs::read_dir(tmp.path()).expect("ls").count() > 5
    );
    let got = store.project::<Counter>("long", &Freshness::Consistent).expect("project").expect("some");
    assert_eq!(got, Counter { value: expected, applied: 2000 });
}

/// Every payload folded, in order: replays compare payload by payload.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Payloads(Vec<serde_json::Value>);

impl EventSourced<serde_json::Value> for Payloads {
    fn from_events(events: &[Event<serde_json::Value>]) -> Option<Self> {
        Some(Payloads(events.iter().map(|e| e.payload.clone()).collect()))
    }
    fn apply_event(&mut self, e: &Event<serde_json::Value>) {
        self.0.push(e.payload.clone());
    }
    fn relevant_event_kinds() -> &'static [EventKind] {
        &[]
    }
}

/// The `i`th payload of entity `shape`: shapes differ in keys, nesting and
/// value types, and some payloads of a shape drop a key or change a type.
fn shaped(shape: &str, i: u64) -> serde_json::Value {
    match shape {
        "flat" => json!({"amount": i % 100, "memo": format!("m{i}")}),
        "mixed" => match i % 5 {
            0 => json!({"amount": -(i as i64), "tags": ["a", "b", i], "nested": {"x": i, "y": [1.5, null]}}),
            1 => json!({"amount": i, "tags": []}),
            2 => json!({"amount": "text with \"quotes\" and \u{e9}", "extra": true}),
            3 => json!([i, {"amount": i}, "s"]),
            _ => json!(i as f64 / 7.0),
        },
        _ => json!({"n": i}),
    }
}

/// `value` as serde_json reads it back from its text (floats may move by
/// an ulp without serde_json's `float_roundtrip`).
fn stored(value: &serde_json::Value) -> serde_json::Value {
    serde_json::from_slice(&serde_json::to_vec(value).expect("serialise")).expect("parse")
}

#[test]
fn repeated_replays_of_different_entities_read_exactly_what_was_stored() {
    for scratch in [16_384, 0] {
        let tmp = tempfile::tempdir().expect("tmp");
        let cfg = StoreConfig::new(tmp.path()).with_replay_scratch_events(scratch);
        let store = Store::open(cfg).expect("open");
        let sizes = [("flat", 5000u64), ("mixed", 3000), ("small", 10)];
        for (shape, n) in sizes {
            for i in 0..n {
                store.append(&c(shape), NOTE, &shaped(shape, i)).expect("append");
            }
        }
        for shape in ["flat", "mixed", "flat", "small", "mixed", "small", "flat"] {
            let n = sizes.iter().find(|(s, _)| *s == shape).map_or(0, |(_, n)| *n);
            let got =
                store.project::<Payloads>(shape, &Freshness::Consistent).expect("project").expect("some");
            assert_eq!(got.0.len() as u64, n, "{shape} with scratch {scratch}");
            for (i, payload) in got.0.iter().enumerate() {
                assert_eq!(payload, &stored(&shaped(shape, i as u64)), "{shape} #{i} with scratch {scratch}");
            }
        }
    }
}

#[test]
fn a_kept_replay_vector_sees_later_appends() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
    for i in 0..3000 {
        store.append(&c("grow"), NOTE, &shaped("flat", i)).expect("append");
    }
    let first = store.project::<Payloads>("grow", &Freshness::Consistent).expect("p").expect("some");
    assert_eq!(first.0.len(), 3000);
    for i in 3000..3500 {
        store.append(&c("grow"), NOTE, &shaped("flat", i)).expect("append");
    }
    let second = store.project::<Payloads>("grow", &Freshness::Consistent).expect("p").expect("some");
    assert_eq!(second, Payloads((0..3500).map(|i| stored(&shaped("flat", i))).collect()));
}
