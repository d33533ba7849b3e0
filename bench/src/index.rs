//! The index's memory and read costs with old entries in the scratch file
//! (the default) against every entry in memory (`resident_events =
//! u64::MAX`), side by side over one store: RSS after open and after 20 k
//! gets (each in a fresh process), peak RSS, cold open, `get` uncached and
//! cached, and `stream` of one entity.

use batpak::prelude::*;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The two index settings compared.
const MODES: [&str; 2] = ["scratch", "memory"];

fn config(mode: &str, dir: &Path) -> StoreConfig {
    let cfg = StoreConfig::new(dir);
    if mode == "memory" {
        cfg.with_resident_events(u64::MAX)
    } else {
        cfg
    }
}

/// Percentiles 50 and 99 of per-call times in µs.
fn p50_p99(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs.get(((xs.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(f64::NAN);
    (at(0.5), at(0.99))
}

fn timed_gets(store: &Store, ids: &[u128], n: usize, seed: usize) -> Vec<f64> {
    if ids.is_empty() {
        return Vec::new();
    }
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let id = ids[(x >> 17) % ids.len()];
            let start = Instant::now();
            std::hint::black_box(store.get(id).expect("get"));
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// In a fresh process (`--index-child MODE DIR`): prints RSS growth after
/// open, after 20 k random gets, and the peak during open, in MiB, and the
/// open in ms. The peak is read right after open: the id list the gets
/// then need (16 bytes per event) is the bench's, not the store's.
pub fn child(args: &[String]) -> anyhow::Result<()> {
    let (mode, dir) = (args[0].as_str(), Path::new(&args[1]));
    let before = crate::util::rss_mib();
    let start = Instant::now();
    let store = Store::open(config(mode, dir))?;
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let after_open = crate::util::rss_mib() - before;
    let peak = crate::util::status_mib("VmHWM:") - before;
    if std::env::var_os("BATPAK_BENCH_RSS_DETAIL").is_some() {
        let detail =
            ["RssAnon:", "RssFile:", "VmRSS:"].map(|f| format!("{f} {:.1}", crate::util::status_mib(f)));
        eprintln!("{mode} after open: {}", detail.join(" "));
    }
    let ids = ids_of(&store);
    drop(timed_gets(&store, &ids, 20_000, 7));
    // The bench's own id list is not the store's.
    let after_gets = crate::util::rss_mib() - before - (ids.capacity() * 16) as f64 / (1 << 20) as f64;
    println!("{after_open} {after_gets} {peak} {open_ms}");
    drop(store);
    Ok(())
}

/// Every id, read through a cursor (so no list of full entries is built).
fn ids_of(store: &Store) -> Vec<u128> {
    let mut ids = Vec::with_capacity(store.stats().event_count);
    let mut cursor = store.cursor_guaranteed(&Region::all());
    loop {
        let batch = cursor.poll_batch(4096);
        if batch.is_empty() {
            return ids;
        }
        ids.extend(batch.iter().map(|e| e.event_id));
    }
}

fn in_child(mode: &str, dir: &Path) -> anyhow::Result<[f64; 4]> {
    let out = Command::new(std::env::current_exe()?).arg("--index-child").arg(mode).arg(dir).output()?;
    anyhow::ensure!(out.status.success(), "index child failed: {}", String::from_utf8_lossy(&out.stderr));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    let xs: Vec<f64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    anyhow::ensure!(xs.len() == 4, "index child printed {text:?}");
    Ok([xs[0], xs[1], xs[2], xs[3]])
}

fn line(name: &str, scratch: f64, memory: f64, unit: &str) {
    println!(
        "{name}: scratch {scratch:.2} {unit}, in-memory {memory:.2} {unit}, ratio {:.3}",
        scratch / memory
    );
}

/// Appends per second into a fresh store: `n` singles from one caller, or
/// `n` events in batches of 1000 (`batched`).
fn append_rate(mode: &str, n: usize, batched: bool) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store =
        Store::open(config(mode, dir.path()).with_batch_max_size(1000).with_batch_max_bytes(16 << 20))?;
    let payload = serde_json::json!({"pad": "x".repeat(80)});
    let coord = |i: usize| Coordinate::new(format!("entity:{}", i % 64), "bench");
    let start = Instant::now();
    if batched {
        for from in (0..n).step_by(1000) {
            let items = (from..(from + 1000).min(n))
                .map(|i| {
                    BatchAppendItem::new(
                        coord(i)?,
                        EventKind::DATA,
                        &payload,
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            store.append_batch(items)?;
        }
    } else {
        for i in 0..n {
            store.append(&coord(i)?, EventKind::DATA, &payload)?;
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    store.close()?;
    Ok(rate)
}

/// Appends with the scratch file against all in memory, alternating runs
/// (3 each, medians): singles past the resident window, and batches.
pub fn appends(singles: usize, batched: usize) -> anyhow::Result<()> {
    for (name, n, is_batch) in
        [("index_single_append", singles, false), ("index_batch_append_1000", batched, true)]
    {
        let mut rates = [Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (i, mode) in MODES.iter().enumerate() {
                rates[i].push(append_rate(mode, n, is_batch)?);
            }
        }
        let med = |xs: &mut Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            xs[xs.len() / 2]
        };
        let (a, b) = (med(&mut rates[0]), med(&mut rates[1]));
        line(&format!("{name}_{n}"), a, b, "ev/s");
    }
    Ok(())
}

/// Uncached random gets over a fresh store of `n` events with the default
/// settings, 200 000 of them: p50 and p99 in µs.
pub fn random_gets(n: usize) -> anyhow::Result<(f64, f64)> {
    random_gets_in(&crate::ours::populate(n)?)
}

/// [`random_gets`] over the store in `dir`.
pub fn random_gets_in(dir: &tempfile::TempDir) -> anyhow::Result<(f64, f64)> {
    let store = Store::open(config("scratch", dir.path()))?;
    let ids = ids_of(&store);
    let got = p50_p99(timed_gets(&store, &ids, 200_000, 11));
    store.close()?;
    Ok(got)
}

/// Runs the comparison over a store of `n` events (`label` names it).
pub fn run(n: usize, label: &str) -> anyhow::Result<()> {
    run_on(&crate::ours::populate(n)?, n, label)
}

/// The comparison over a store of `n` events that each carry a random
/// idempotency key (`index_keyed_*` lines), then single appends with
/// random keys into it, alternating the two settings (3 runs each,
/// medians): each such append looks its key up among every id before.
pub fn run_keyed(n: usize, singles: usize, label: &str) -> anyhow::Result<()> {
    let dir = crate::ours::populate_keyed(n)?;
    run_on(&dir, n, &format!("keyed_{label}"))?;
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..3u64 {
        for (i, mode) in MODES.iter().enumerate() {
            let copy = crate::reference::copy_store(dir.path(), false);
            let base = (round * 2 + i as u64 + 1) << 40;
            rates[i].push(keyed_appends_with(mode, &copy, singles, base)?);
        }
    }
    for xs in &mut rates {
        xs.sort_by(f64::total_cmp);
    }
    line(&format!("index_keyed_single_append_{label}"), rates[0][1], rates[1][1], "ev/s");
    Ok(())
}

/// Single appends per second with random keys (from `base` on) into the
/// store in `dir` with the default settings.
pub fn keyed_appends(dir: &tempfile::TempDir, n: usize, base: u64) -> anyhow::Result<f64> {
    keyed_appends_with("scratch", dir, n, base)
}

fn keyed_appends_with(mode: &str, dir: &tempfile::TempDir, n: usize, base: u64) -> anyhow::Result<f64> {
    let store = Store::open(config(mode, dir.path()))?;
    let payload = serde_json::json!({"pad": "x".repeat(80)});
    let coord = Coordinate::new("keyed", "bench")?;
    let start = Instant::now();
    for k in 0..n as u64 {
        let opts = AppendOptions::new().with_idempotency(crate::ours::random_key(base + k));
        store.append_with_options(&coord, EventKind::DATA, &payload, opts)?;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    store.close()?;
    Ok(rate)
}

fn run_on(dir: &tempfile::TempDir, n: usize, label: &str) -> anyhow::Result<()> {
    let empty = crate::ours::populate(0)?;
    let per_million = 1_000_000.0 / n as f64;
    let mut rows = Vec::new();
    for mode in MODES {
        let base = in_child(mode, empty.path())?;
        let got = in_child(mode, dir.path())?;
        rows.push([
            (got[0] - base[0]) * per_million,
            (got[1] - base[1]) * per_million,
            (got[2] - base[2]) * per_million,
            got[3],
        ]);
    }
    line(&format!("index_rss_after_open_per_1M_{label}"), rows[0][0], rows[1][0], "MiB");
    line(&format!("index_rss_after_20k_gets_per_1M_{label}"), rows[0][1], rows[1][1], "MiB");
    line(&format!("index_peak_rss_per_1M_{label}"), rows[0][2], rows[1][2], "MiB");
    line(&format!("index_cold_open_{label}"), rows[0][3], rows[1][3], "ms");
    let mut stats = Vec::new();
    for mode in MODES {
        let store = Store::open(config(mode, dir.path()))?;
        let ids = ids_of(&store);
        let uncached = p50_p99(timed_gets(&store, &ids, 20_000, 11));
        let hot = &ids[..1000];
        drop(timed_gets(&store, hot, 5_000, 13));
        let cached = p50_p99(timed_gets(&store, hot, 20_000, 17));
        let streams: Vec<f64> = (0..21)
            .map(|_| {
                let start = Instant::now();
                let got = store.stream("entity:0").len();
                std::hint::black_box(got);
                start.elapsed().as_secs_f64() * 1e6 / got.max(1) as f64 * 1000.0
            })
            .collect();
        stats.push((uncached, cached, p50_p99(streams).0));
        store.close()?;
    }
    line(&format!("index_get_random_p50_{label}"), stats[0].0 .0, stats[1].0 .0, "us");
    line(&format!("index_get_random_p99_{label}"), stats[0].0 .1, stats[1].0 .1, "us");
    line(&format!("index_get_hot_p50_{label}"), stats[0].1 .0, stats[1].1 .0, "us");
    line(&format!("index_stream_per_1000_{label}"), stats[0].2, stats[1].2, "us");
    Ok(())
}
