//! Projection workloads: WASM fold throughput, open with a snapshot vs a
//! rebuild, and the native `project` against batpak 0.3.0.

use crate::util::{median, Line};
use crate::Plan;
use std::time::Instant;

const DEPOSIT: u16 = 0x1001;

/// A store of `n` deposits over 64 accounts, closed.
pub fn populate(n: usize) -> anyhow::Result<tempfile::TempDir> {
    use batpak::prelude::*;
    let dir = tempfile::tempdir()?;
    let store =
        Store::open(StoreConfig::new(dir.path()).with_batch_max_size(1000).with_batch_max_bytes(16 << 20))?;
    for start in (0..n).step_by(1000) {
        let items = (start..(start + 1000).min(n))
            .map(|i| {
                let c = Coordinate::new(format!("account:{}", i % 64), "bank")?;
                Ok(BatchAppendItem::new(
                    c,
                    EventKind::from_raw(DEPOSIT),
                    &serde_json::json!({"amount": i % 100}),
                    AppendOptions::new(),
                    CausationRef::None,
                )?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.append_batch(items)?;
    }
    store.close()?;
    Ok(dir)
}

fn install_seconds(dir: &std::path::Path, component: &str) -> anyhow::Result<f64> {
    use batpak::prelude::*;
    let store = Store::open(StoreConfig::new(dir))?;
    let plugin = batpak::plugin::ProjectionPlugin::from_file(component)?;
    let start = Instant::now();
    store.install_projection("bench", plugin)?;
    let secs = start.elapsed().as_secs_f64();
    store.remove_projection("bench")?;
    Ok(secs)
}

pub fn run(plan: &Plan) -> anyhow::Result<()> {
    let n = if plan.quick { 100_000 } else { 1_000_000 };
    let dir = populate(n)?;
    for (label, component) in
        [("counter", batpak_test_artifacts::COUNTER), ("balance", batpak_test_artifacts::BALANCE)]
    {
        install_seconds(dir.path(), component)?; // compile once, outside the timing
        let rate =
            median(plan.runs(), || install_seconds(dir.path(), component).map_or(0.0, |s| n as f64 / s));
        println!("wasm_fold_{label}: ours {rate:.0} ev/s (rebuild of {n} events from the log)");
    }
    // Open with a saved snapshot vs a full rebuild of the same projection.
    {
        use batpak::prelude::*;
        let store = Store::open(StoreConfig::new(dir.path()))?;
        store.install_projection(
            "balance",
            batpak::plugin::ProjectionPlugin::from_file(batpak_test_artifacts::BALANCE)?,
        )?;
        store.close()?;
    }
    let timed_install = |keep_snapshot: bool| -> f64 {
        use batpak::prelude::*;
        let snap = dir.path().join("proj-balance.snap");
        let saved = std::fs::read(&snap).ok();
        if !keep_snapshot {
            let _ = std::fs::remove_file(&snap);
        }
        let start = Instant::now();
        let ms = Store::open(StoreConfig::new(dir.path()))
            .and_then(|s| {
                s.install_projection(
                    "balance",
                    batpak::plugin::ProjectionPlugin::from_file(batpak_test_artifacts::BALANCE)
                        .map_err(StoreError::Plugin)?,
                )?;
                Ok(start.elapsed().as_secs_f64() * 1000.0)
            })
            .unwrap_or(f64::NAN);
        if let Some(bytes) = saved {
            let _ = std::fs::write(&snap, bytes);
        }
        ms
    };
    let with = median(plan.runs(), || timed_install(true));
    let without = median(plan.runs(), || timed_install(false));
    println!(
        "open_plus_projection_{}: with snapshot {with:.1} ms, full rebuild {without:.1} ms, ratio {:.3}",
        if plan.quick { "100k" } else { "1M" },
        with / without
    );
    native_project(plan)
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Total {
    sum: i64,
}

impl batpak::event::EventSourced<serde_json::Value> for Total {
    fn from_events(events: &[batpak::event::Event<serde_json::Value>]) -> Option<Self> {
        Some(Total { sum: events.iter().map(|e| e.payload["amount"].as_i64().unwrap_or(0)).sum() })
    }
    fn apply_event(&mut self, e: &batpak::event::Event<serde_json::Value>) {
        self.sum += e.payload["amount"].as_i64().unwrap_or(0);
    }
    fn relevant_event_kinds() -> &'static [batpak::event::EventKind] {
        &[]
    }
}

impl batpak_ref::event::EventSourced<serde_json::Value> for Total {
    fn from_events(events: &[batpak_ref::event::Event<serde_json::Value>]) -> Option<Self> {
        Some(Total { sum: events.iter().map(|e| e.payload["amount"].as_i64().unwrap_or(0)).sum() })
    }
    fn apply_event(&mut self, e: &batpak_ref::event::Event<serde_json::Value>) {
        self.sum += e.payload["amount"].as_i64().unwrap_or(0);
    }
    fn relevant_event_kinds() -> &'static [batpak_ref::event::EventKind] {
        &[]
    }
}

/// Runs of each `project` measurement: each takes milliseconds, so many
/// runs make the median steady on a noisy machine.
const NATIVE_RUNS: usize = 31;
const NATIVE_RUNS_QUICK: usize = 11;

/// `project` over one entity with 10k events, no cache.
pub fn native_project(plan: &Plan) -> anyhow::Result<()> {
    let n = 10_000;
    let runs = if plan.quick { NATIVE_RUNS_QUICK } else { NATIVE_RUNS };
    let ours_dir = tempfile::tempdir()?;
    let ref_dir = tempfile::tempdir()?;
    {
        use batpak::prelude::*;
        let s = Store::open(StoreConfig::new(ours_dir.path()))?;
        let c = Coordinate::new("account:1", "bank")?;
        for i in 0..n {
            s.append(&c, EventKind::DATA, &serde_json::json!({"amount": i % 100}))?;
        }
        s.close()?;
    }
    {
        use batpak_ref::prelude::*;
        let s = Store::open(StoreConfig::new(ref_dir.path()))?;
        let c = Coordinate::new("account:1", "bank")?;
        for i in 0..n {
            s.append(&c, EventKind::DATA, &serde_json::json!({"amount": i % 100}))?;
        }
        s.close()?;
    }
    let ours_with = |scratch: usize| -> anyhow::Result<f64> {
        let cfg = batpak::store::StoreConfig::new(ours_dir.path()).with_replay_scratch_events(scratch);
        let s = batpak::store::Store::open(cfg)?;
        let ms = median(runs, || {
            let start = Instant::now();
            let t = s.project::<Total>("account:1", &batpak::projection::Freshness::Consistent);
            assert!(t.is_ok_and(|t| t.is_some()));
            start.elapsed().as_secs_f64() * 1000.0
        });
        s.close()?;
        Ok(ms)
    };
    let ours = ours_with(batpak::store::StoreConfig::new(ours_dir.path()).index.replay_scratch_events)?;
    // The same without the kept event vector: every call parses into fresh
    // values and frees them (how fast depends on the allocator's state).
    let ours_unkept = ours_with(0)?;
    let theirs = {
        let s = batpak_ref::store::Store::open(batpak_ref::store::StoreConfig::new(ref_dir.path()))?;
        median(runs, || {
            let start = Instant::now();
            let t = s.project::<Total>("account:1", &batpak_ref::store::Freshness::Consistent);
            assert!(t.is_ok_and(|t| t.is_some()));
            start.elapsed().as_secs_f64() * 1000.0
        })
    };
    Line::lower("native_project_10k", ours, theirs, "ms").print();
    Line::lower("native_project_10k_no_kept_vector", ours_unkept, theirs, "ms").print();
    Ok(())
}
