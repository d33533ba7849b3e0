//! Workloads against this batpak.

use crate::util::{median, payload, Line};
use crate::Plan;
use batpak::prelude::*;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tempfile::TempDir;

fn coord(i: usize) -> Coordinate {
    Coordinate::new(format!("entity:{}", i % 64), "bench").unwrap_or_else(|e| panic!("{e}"))
}

fn tmp() -> TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

pub fn single_append(n: usize) -> f64 {
    let dir = tmp();
    let store = Store::open(StoreConfig::new(dir.path())).expect("open");
    let payloads: Vec<_> = (0..n).map(payload).collect();
    let start = Instant::now();
    for (i, p) in payloads.iter().enumerate() {
        store.append(&coord(i), EventKind::DATA, p).expect("append");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    store.close().expect("close");
    rate
}

/// The latency of each of `n` single appends (default config, one
/// caller): p50, p99, p99.9 and the maximum, in µs. Under the default
/// periodic fsync, one append in `every_n_events` used to carry it.
pub fn single_append_latency(n: usize) -> [f64; 4] {
    let dir = tmp();
    let store = Store::open(StoreConfig::new(dir.path())).expect("open");
    let payloads: Vec<_> = (0..n).map(payload).collect();
    let mut took = Vec::with_capacity(n);
    for (i, p) in payloads.iter().enumerate() {
        let start = Instant::now();
        store.append(&coord(i), EventKind::DATA, p).expect("append");
        took.push(start.elapsed().as_secs_f64() * 1e6);
    }
    store.close().expect("close");
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    [at(0.5), at(0.99), at(0.999), took[took.len() - 1]]
}

pub fn durable_append(callers: usize, per_caller: usize) -> f64 {
    callers_append(callers, per_caller, 1)
}

/// Single appends from `callers` threads with the default sync policy.
pub fn buffered_append(callers: usize, per_caller: usize) -> f64 {
    callers_append(callers, per_caller, StoreConfig::new("unused").sync.every_n_events)
}

fn callers_append(callers: usize, per_caller: usize, sync_every: u32) -> f64 {
    let dir = tmp();
    let cfg = StoreConfig::new(dir.path()).with_sync_every_n_events(sync_every);
    let store = Arc::new(Store::open(cfg).expect("open"));
    let start = Instant::now();
    let handles: Vec<_> = (0..callers)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..per_caller {
                    store.append(&coord(t), EventKind::DATA, &payload(i)).expect("append");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("join");
    }
    (callers * per_caller) as f64 / start.elapsed().as_secs_f64()
}

pub fn batch_append(size: usize, batches: usize) -> f64 {
    let dir = tmp();
    let cfg = StoreConfig::new(dir.path()).with_batch_max_size(size as u32).with_batch_max_bytes(16 << 20);
    let store = Store::open(cfg).expect("open");
    let all: Vec<Vec<BatchAppendItem>> = (0..batches)
        .map(|b| {
            (0..size)
                .map(|i| {
                    BatchAppendItem::new(
                        coord(b * size + i),
                        EventKind::DATA,
                        &payload(i),
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                    .expect("item")
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    for items in all {
        store.append_batch(items).expect("batch");
    }
    (size * batches) as f64 / start.elapsed().as_secs_f64()
}

pub fn populate(n: usize) -> anyhow::Result<TempDir> {
    populate_with(n, |_| AppendOptions::new())
}

/// A random 128-bit key from `x` (the SplitMix64 step, twice).
pub fn random_key(x: u64) -> u128 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    u128::from(mix(x.wrapping_add(0x9e37_79b9_7f4a_7c15))) << 64 | u128::from(mix(!x))
}

/// [`populate`] where every event carries a random idempotency key (as a
/// store with group commit does), so its ids do not rise.
pub fn populate_keyed(n: usize) -> anyhow::Result<TempDir> {
    populate_with(n, |i| AppendOptions::new().with_idempotency(random_key(i as u64)))
}

fn populate_with(n: usize, options: impl Fn(usize) -> AppendOptions) -> anyhow::Result<TempDir> {
    let dir = tmp();
    let store =
        Store::open(StoreConfig::new(dir.path()).with_batch_max_size(1000).with_batch_max_bytes(16 << 20))?;
    let chunk = 1000;
    for start in (0..n).step_by(chunk) {
        let items = (start..(start + chunk).min(n))
            .map(|i| {
                BatchAppendItem::new(coord(i), EventKind::DATA, &payload(i), options(i), CausationRef::None)
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.append_batch(items)?;
    }
    store.close()?;
    Ok(dir)
}

/// Opens a copy of `dir` (checkpoint, or no checkpoint and no footers) and
/// returns the open time in ms.
pub fn cold_open(dir: &Path, checkpoint: bool) -> f64 {
    let copy = crate::reference::copy_store(dir, !checkpoint);
    let start = Instant::now();
    let store = Store::open(StoreConfig::new(copy.path()).with_enable_checkpoint(checkpoint)).expect("open");
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    drop(store);
    ms
}

pub fn get_latency(dir: &Path, gets: usize) -> f64 {
    let store = Store::open(StoreConfig::new(dir)).expect("open");
    let ids: Vec<u128> = store.query(&Region::all()).iter().map(|e| e.event_id).collect();
    let mut x = 12345usize;
    let start = Instant::now();
    for _ in 0..gets {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::hint::black_box(store.get(ids[(x >> 17) % ids.len()]).expect("get"));
    }
    start.elapsed().as_secs_f64() * 1e6 / gets as f64
}

pub fn cursor_drain(dir: &Path) -> f64 {
    let store = Store::open(StoreConfig::new(dir)).expect("open");
    let start = Instant::now();
    let mut cursor = store.cursor_guaranteed(&Region::all());
    let mut n = 0usize;
    loop {
        let got = cursor.poll_batch(100);
        if got.is_empty() {
            break;
        }
        n += got.len();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Gate overhead: throughput with 0, 1 and 4 gates; per-gate latency;
/// re-instantiation after a trap. Ours only (batpak 0.3.0 has no WASM gates).
pub fn gate_workloads(plan: &Plan) -> anyhow::Result<()> {
    let n = if plan.quick { 5_000 } else { 20_000 };
    let allow = batpak_test_artifacts::ALLOW_ALL;
    let mut rates = Vec::new();
    for gates in [0usize, 1, 4] {
        let rate = median(plan.runs(), || {
            let dir = tmp();
            let mut cfg = StoreConfig::new(dir.path());
            for g in 0..gates {
                cfg = cfg
                    .with_gate(GatePlugin::from_file(allow).expect("read").with_name(format!("allow-{g}")));
            }
            let store = Store::open(cfg).expect("open");
            let payloads: Vec<_> = (0..n).map(payload).collect();
            let start = Instant::now();
            for (i, p) in payloads.iter().enumerate() {
                store.append(&coord(i), EventKind::DATA, p).expect("append");
            }
            n as f64 / start.elapsed().as_secs_f64()
        });
        rates.push(rate);
        println!("gates_{gates}_append_100B: ours {rate:.0} ev/s");
    }
    println!("gates_1_vs_0_throughput: ratio {:.3}", rates[1] / rates[0]);
    println!(
        "gate_added_cost_per_append: 1 gate {:.2} us, 4 gates {:.2} us/gate",
        (1.0 / rates[1] - 1.0 / rates[0]) * 1e6,
        (1.0 / rates[2] - 1.0 / rates[0]) * 1e6 / 4.0
    );
    for (label, size) in [("100B", 100usize), ("4KiB", 4096)] {
        let (med, p99) = gate_call_latency(allow, size, if plan.quick { 20_000 } else { 100_000 })?;
        println!("gate_call_latency_{label}: median {med:.2} us, p99 {p99:.2} us");
    }
    // A stateful gate: the overdraft gate's one `projection-state` read
    // (charged to its fuel), as the difference between appends with the
    // balance projection alone and with the gate reading it.
    let n_state = if plan.quick { 5_000 } else { 20_000 };
    let with = |gate: bool| {
        median(plan.runs(), || {
            let dir = tmp();
            let store = Store::open(StoreConfig::new(dir.path())).expect("open");
            let p =
                batpak::plugin::ProjectionPlugin::from_file(batpak_test_artifacts::BALANCE).expect("read");
            store.install_projection("balance", p).expect("install");
            if gate {
                let g = GatePlugin::from_file(batpak_test_artifacts::OVERDRAFT).expect("read");
                store.install_gate(g).expect("gate");
            }
            let acct = |i: usize| Coordinate::new(format!("account:{}", i % 64), "bank").expect("coord");
            for i in 0..64 {
                store
                    .append(&acct(i), EventKind::custom(1, 1), &serde_json::json!({"amount": 1_000_000}))
                    .expect("seed");
            }
            let start = Instant::now();
            for i in 0..n_state {
                store
                    .append(&acct(i), EventKind::custom(1, 2), &serde_json::json!({"amount": 1}))
                    .expect("withdraw");
            }
            start.elapsed().as_secs_f64() * 1e6 / n_state as f64
        })
    };
    let (alone, gated) = (with(false), with(true));
    println!(
        "overdraft_gate_per_append: projection only {alone:.2} us, with the overdraft gate {gated:.2} us, \
         gate with one projection-state read {:.2} us",
        gated - alone
    );
    let flaky = batpak_test_artifacts::FLAKY_PANIC;
    let dir = tmp();
    let store = Store::open(StoreConfig::new(dir.path()).with_gate(GatePlugin::from_file(flaky)?))?;
    let c = coord(0);
    let rounds = if plan.quick { 200 } else { 1000 };
    let mut costs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let _ = store.append(&c, EventKind::DATA, &serde_json::json!({"explode": true}));
        let start = Instant::now();
        store.append(&c, EventKind::DATA, &serde_json::json!({"explode": false}))?;
        costs.push(start.elapsed().as_secs_f64() * 1e6);
    }
    costs.sort_by(f64::total_cmp);
    println!("append_after_trap (re-instantiation included): median {:.1} us", costs[costs.len() / 2]);
    let _ = Line::higher;
    Ok(())
}

/// Latency of one gate evaluation exactly as the writer runs it (through
/// the test harness, so no store work is mixed in): median and p99 in µs.
fn gate_call_latency(component: &str, size: usize, n: usize) -> anyhow::Result<(f64, f64)> {
    use batpak::testing::{GuestHarness, TestProposal};
    let mut gate = GuestHarness::load(component)?;
    let proposal =
        TestProposal::json("entity:1", serde_json::json!({"pad": "x".repeat(size.saturating_sub(10))}));
    for _ in 0..1000 {
        let _ = gate.evaluate(&proposal);
    }
    let mut xs = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let verdict = gate.evaluate(&proposal);
        xs.push(start.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(verdict.is_ok(), "allow-all denied");
    }
    xs.sort_by(f64::total_cmp);
    let q = |p: f64| xs[((xs.len() as f64 - 1.0) * p) as usize];
    Ok((q(0.5), q(0.99)))
}

/// Milliseconds to Merge-compact a store of `segments` sealed segments of
/// about 100 events each; also returns how many segments the store had.
pub fn compact_merge(segments: usize) -> (f64, usize) {
    let dir = tmp();
    let cfg = StoreConfig::new(dir.path()).with_segment_max_bytes(14_500);
    let store = Store::open(cfg).expect("open");
    for i in 0..segments * 100 {
        store.append(&coord(i), EventKind::DATA, &payload(i)).expect("append");
    }
    let files = crate::util::count_files(dir.path(), "fbat");
    let start = Instant::now();
    store.compact(&CompactionConfig::default()).expect("compact");
    let ms = start.elapsed().as_secs_f64() * 1e3;
    store.close().expect("close");
    (ms, files)
}

/// Side by side, in alternating rounds on one disk: a plain file's rate of
/// (150-byte write + fsync), the store's durable single-append rate, and
/// its event rate in batches of 10. Returns the three medians.
pub fn batch10_vs_fsync(rounds: usize, per_round: usize) -> (f64, f64, f64) {
    use std::io::Write;
    let dir = tmp();
    let store =
        Store::open(StoreConfig::new(dir.path().join("store")).with_sync_every_n_events(1)).expect("open");
    let mut raw = std::fs::File::create(dir.path().join("raw")).expect("raw file");
    let (mut fsyncs, mut singles, mut batches) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round {
            raw.write_all(&[7u8; 150]).expect("write");
            raw.sync_all().expect("fsync");
        }
        fsyncs.push(per_round as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        for i in 0..per_round {
            store.append(&coord(i), EventKind::DATA, &payload(i)).expect("append");
        }
        singles.push(per_round as f64 / start.elapsed().as_secs_f64());
        let all: Vec<Vec<BatchAppendItem>> = (0..per_round)
            .map(|b| {
                (0..10)
                    .map(|i| {
                        let n = round * per_round * 10 + b * 10 + i;
                        BatchAppendItem::new(
                            coord(n),
                            EventKind::DATA,
                            &payload(n),
                            AppendOptions::new(),
                            CausationRef::None,
                        )
                        .expect("item")
                    })
                    .collect()
            })
            .collect();
        let start = Instant::now();
        for items in all {
            store.append_batch(items).expect("batch");
        }
        batches.push((per_round * 10) as f64 / start.elapsed().as_secs_f64());
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (med(fsyncs), med(singles), med(batches))
}

/// Batches of 1000 deposits and withdrawals over 64 accounts, in three
/// setups side by side: no plugin; the balance projection only; and the
/// projection with the overdraft gate reading it (each item after the first
/// is then gated against the earlier items folded tentatively, with one
/// snapshot of the projection per batch). Returns ev/s for each.
pub fn stateful_batch(batches: usize) -> [f64; 3] {
    use batpak::plugin::ProjectionPlugin;
    let deposit = EventKind::custom(1, 1);
    let withdraw = EventKind::custom(1, 2);
    let make = |b: usize| -> Vec<BatchAppendItem> {
        (0..1000)
            .map(|i| {
                let account = Coordinate::new(format!("account:{}", i % 64), "bank").expect("coord");
                // Each account gets 8 deposits of 100, then withdrawals of 10: never overdrawn.
                let kind = if i < 512 || b == 0 { deposit } else { withdraw };
                let amount = if kind == deposit { 100 } else { 10 };
                BatchAppendItem::new(
                    account,
                    kind,
                    &serde_json::json!({"amount": amount}),
                    AppendOptions::new(),
                    CausationRef::None,
                )
                .expect("item")
            })
            .collect()
    };
    let run = |projection: bool, gate: bool| -> f64 {
        let dir = tmp();
        let store = Store::open(StoreConfig::new(dir.path()).with_batch_max_size(1000)).expect("open");
        if projection {
            let p = ProjectionPlugin::from_file(batpak_test_artifacts::BALANCE).expect("read");
            store.install_projection("balance", p).expect("install");
        }
        if gate {
            let g = GatePlugin::from_file(batpak_test_artifacts::OVERDRAFT).expect("read");
            store.install_gate(g).expect("gate");
        }
        let all: Vec<_> = (0..batches).map(make).collect();
        let start = Instant::now();
        for items in all {
            store.append_batch(items).expect("batch");
        }
        (batches * 1000) as f64 / start.elapsed().as_secs_f64()
    };
    [run(false, false), run(true, false), run(true, true)]
}
