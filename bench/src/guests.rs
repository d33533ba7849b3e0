//! The same gate and projection in Rust, Python, JavaScript and C, side by
//! side: a gate call, an append with the gate next to none, a cold load
//! (compile) next to a cached one, the largest payload each handles with
//! the default limits, and a projection fold of 100 k events.
//!
//! The Python, JavaScript and C builds come from `guest/foreign/build`
//! (into target/foreign-guests); a language not built is reported and skipped.

use crate::Plan;
use batpak::plugin::{clear_compile_cache, GatePlugin, ProjectionPlugin};
use batpak::prelude::*;
use batpak::testing::{GuestHarness, TestProposal};
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Language {
    name: &'static str,
    gate: PathBuf,
    projection: Option<PathBuf>,
}

fn languages() -> Vec<Language> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/foreign-guests");
    let foreign = |lang: &'static str, projection: bool| Language {
        name: lang,
        gate: built.join(format!("amount-limit.{lang}.wasm")),
        projection: projection.then(|| built.join(format!("counter.{lang}.wasm"))),
    };
    vec![
        Language {
            name: "rust",
            gate: batpak_test_artifacts::AMOUNT_LIMIT.into(),
            projection: Some(batpak_test_artifacts::COUNTER.into()),
        },
        foreign("py", true),
        foreign("js", true),
        foreign("c", false),
    ]
}

/// Median and 99th percentile of `xs`.
fn median_p99(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn proposal(memo_bytes: usize) -> TestProposal {
    TestProposal::json("acct:1", serde_json::json!({"amount": 250, "memo": "x".repeat(memo_bytes)}))
}

/// Milliseconds to load the gate: compiling it (`cold`), or from the disk
/// cache in `cache` (the process's memory cache is emptied first).
fn load_ms(gate: &Path, cache: &Path) -> anyhow::Result<(f64, GuestHarness)> {
    clear_compile_cache();
    let start = Instant::now();
    let harness = GuestHarness::from_plugin(GatePlugin::from_file(gate)?.with_compile_cache(cache))?;
    Ok((start.elapsed().as_secs_f64() * 1000.0, harness))
}

/// Per-append latencies in µs of `n` single appends (default config,
/// one caller, ~100-byte payloads), with `gate` installed or none.
fn append_us(gate: Option<&Path>, n: usize) -> anyhow::Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let mut cfg = StoreConfig::new(dir.path());
    if let Some(g) = gate {
        cfg = cfg.with_gate(GatePlugin::from_file(g)?);
    }
    let store = Store::open(cfg)?;
    let coord = Coordinate::new("acct:1", "bank")?;
    // About 100 bytes, with an amount for the gate to check.
    let payload = serde_json::json!({"amount": 250, "memo": "x".repeat(76)});
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        store.append(&coord, EventKind::DATA, &payload)?;
        out.push(start.elapsed().as_secs_f64() * 1e6);
    }
    store.close()?;
    Ok(out)
}

/// The largest of a ladder of payload sizes the gate still decides with the
/// default limits, and why the next one failed.
fn payload_ceiling(harness: &mut GuestHarness) -> String {
    let mut last_ok = 0;
    for kib in [1usize, 16, 64, 256, 1024, 4096] {
        match harness.evaluate(&proposal(kib * 1024)) {
            Ok(()) => last_ok = kib,
            Err(d) => {
                let cause = d.context_value("cause").unwrap_or(&d.code).to_string();
                return format!("{last_ok} KiB ok, {kib} KiB fails ({cause})");
            }
        }
    }
    format!("{last_ok} KiB ok")
}

/// Fuel (and time) one call takes at 100 B, 16 KiB and 1 MiB of payload,
/// measured under limits roomy enough for all three.
fn fuel_curve(gate: &Path) -> anyhow::Result<String> {
    let roomy = batpak::plugin::PluginLimits {
        fuel_per_call: 1 << 40,
        memory_bytes: 512 << 20,
        deadline_ms: 60_000,
        ..batpak::plugin::PluginLimits::DEFAULT
    };
    let mut harness = GuestHarness::from_plugin(GatePlugin::from_file(gate)?.with_limits(roomy))?;
    let mut out = Vec::new();
    for (label, bytes) in [("100 B", 60), ("16 KiB", 16 << 10), ("1 MiB", 1 << 20)] {
        let p = proposal(bytes);
        let start = Instant::now();
        harness.evaluate(&p).map_err(|d| anyhow::anyhow!("{d}"))?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        out.push(format!("{label} {} ({ms:.2} ms)", harness.last_fuel()));
    }
    Ok(out.join(", "))
}

/// Events per second of a projection rebuilt over a store of `n` events.
fn fold_rate(dir: &Path, component: &Path, n: usize) -> anyhow::Result<f64> {
    let store = Store::open(StoreConfig::new(dir))?;
    let plugin = ProjectionPlugin::from_file(component)?;
    let start = Instant::now();
    store.install_projection("bench", plugin)?;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    store.remove_projection("bench")?;
    Ok(rate)
}

pub fn run(plan: &Plan) -> anyhow::Result<()> {
    let calls = if plan.quick { 500 } else { 2_000 };
    let appends = if plan.quick { 1_000 } else { 5_000 };
    let fold_events = 100_000;
    let store_dir = crate::projections::populate(fold_events)?;
    let plain = median_p99(append_us(None, appends)?);
    for lang in languages() {
        if !lang.gate.is_file() {
            println!(
                "guest_{}: not built (guest/foreign/install-tools, then guest/foreign/build)",
                lang.name
            );
            continue;
        }
        let cache = tempfile::tempdir()?;
        let (cold, _) = load_ms(&lang.gate, cache.path())?;
        let loads = if plan.quick { 10 } else { 20 };
        let (cached, cached_p99) = median_p99(
            (0..loads).map(|_| load_ms(&lang.gate, cache.path()).map_or(f64::NAN, |(ms, _)| ms)).collect(),
        );
        let (_, mut harness) = load_ms(&lang.gate, cache.path())?;
        let p = proposal(60);
        let mut times = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            harness.evaluate(&p).map_err(|d| anyhow::anyhow!("{}: {d}", lang.name))?;
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
        let (call_p50, call_p99) = median_p99(times);
        let fuel = fuel_curve(&lang.gate)?;
        let (gated_p50, gated_p99) = median_p99(append_us(Some(&lang.gate), appends)?);
        println!(
            "guest_gate_{}: {} KB; call p50 {call_p50:.1} us p99 {call_p99:.1} us; append with gate p50 {gated_p50:.1} us \
             p99 {gated_p99:.1} us, no gate p50 {:.1} us p99 {:.1} us; load cold {cold:.0} ms (one), cached p50 {cached:.1} ms p99 {cached_p99:.1} ms; \
             fuel per call: {fuel}; default limits: {}",
            lang.name,
            std::fs::metadata(&lang.gate)?.len() / 1000,
            plain.0,
            plain.1,
            payload_ceiling(&mut harness),
        );
        if let Some(proj) = lang.projection.as_ref().filter(|p| p.is_file()) {
            fold_rate(store_dir.path(), proj, fold_events)?; // compile outside the timing
            let rates: Vec<f64> = (0..plan.runs())
                .map(|_| fold_rate(store_dir.path(), proj, fold_events).unwrap_or(f64::NAN))
                .collect();
            let (p50, _) = median_p99(rates.clone());
            let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "guest_projection_{}: fold of {fold_events} events median {p50:.0} ev/s ({:.1} ms), slowest run {slowest:.0} ev/s",
                lang.name,
                fold_events as f64 / p50 * 1000.0
            );
        }
    }
    Ok(())
}
