//! The same workloads against batpak 0.3.0 (crates.io), used as a library.

use crate::util::payload;
use batpak_ref::prelude::*;
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
    let dir = tmp();
    let store =
        Store::open(StoreConfig::new(dir.path()).with_batch_max_size(1000).with_batch_max_bytes(16 << 20))?;
    let chunk = 1000;
    for start in (0..n).step_by(chunk) {
        let items = (start..(start + chunk).min(n))
            .map(|i| {
                BatchAppendItem::new(
                    coord(i),
                    EventKind::DATA,
                    &payload(i),
                    AppendOptions::new(),
                    CausationRef::None,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.append_batch(items)?;
    }
    store.close()?;
    Ok(dir)
}

/// A copy of a store directory; with `strip`, without checkpoint and with
/// every segment footer cut off (forcing a frame scan). Same trailer layout
/// for both implementations: `[u64 LE footer start][u32 LE count]["SIDX"]`.
pub fn copy_store(dir: &Path, strip: bool) -> TempDir {
    let copy = tmp();
    for entry in std::fs::read_dir(dir).expect("ls").flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "LOCK" || (strip && name == "index.ckpt") {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("read");
        if strip
            && path.extension().is_some_and(|x| x == "fbat")
            && bytes.len() >= 16
            && bytes.ends_with(b"SIDX")
        {
            let at = bytes.len() - 16;
            let start = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) as usize;
            bytes.truncate(start);
        }
        std::fs::write(copy.path().join(name), bytes).expect("write");
    }
    copy
}

pub fn cold_open(dir: &Path, checkpoint: bool) -> f64 {
    let copy = copy_store(dir, !checkpoint);
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

/// Milliseconds to Merge-compact a store of `segments` sealed segments of
/// about 100 events each; also returns how many segments the store had.
pub fn compact_merge(segments: usize) -> (f64, usize) {
    let dir = tmp();
    let cfg = StoreConfig::new(dir.path()).with_segment_max_bytes(56_000);
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
