//! The SIGKILL loop over a child process appending singles and batches,
//! each round opening from the index image the last clean close wrote;
//! then one over single appends copied into the active segment's mapped
//! window (default config, several windows per round).
//!
//! It has a test binary of its own: spawning a child forks this process,
//! and for a moment the child holds copies of every descriptor open in it,
//! including other tests' store locks (`flock` follows the open file, not
//! the process). A test elsewhere that closes and at once reopens a store
//! could then see its own lock still held. Here nothing else runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "scope").expect("valid coordinate")
}

const CHILD_ENV: &str = "BATPAK_CRASH_CHILD_DIR";
const MODE_ENV: &str = "BATPAK_CRASH_MODE";

/// Small segments, and an index that keeps only 2 048 entries in memory,
/// so kills land during rotations and while index chunks go to the slot
/// file, and each round's child opens from the index image the parent's
/// clean close left.
fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir).with_segment_max_bytes(8192).with_resident_events(2048)
}

/// The child's batch for `i`: every tenth batch is large (written and
/// fsynced on the writer's helper thread), the rest have three items.
fn crash_batch_size(i: u64) -> u64 {
    if i.is_multiple_of(30) {
        80
    } else {
        3
    }
}

/// Runs only as the child of `sigkill_mid_append_loses_no_acknowledged_event`:
/// appends singles and batches forever, printing each acknowledgement.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    // `window`: single appends only, default config, so each lands in the
    // active segment's mapped window of zeros (1 MiB at a time).
    let window = std::env::var(MODE_ENV).is_ok_and(|m| m == "window");
    let cfg = if window { StoreConfig::new(&dir) } else { config(Path::new(&dir)) };
    let store = Store::open(cfg).expect("child open");
    let start: u64 = std::env::var("BATPAK_CRASH_START").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for i in start.. {
        if !window && i % 3 == 0 {
            let items: Vec<_> = (0..crash_batch_size(i))
                .map(|j| {
                    BatchAppendItem::new(
                        coord(&format!("k{}", (i + j) % 4)),
                        EventKind::DATA,
                        &json!({"i": i}),
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                    .expect("item")
                })
                .collect();
            for r in store.append_batch(items).expect("batch") {
                std::io::Write::write_fmt(&mut out, format_args!("{} {}\n", r.event_id, i)).expect("print");
            }
        } else {
            let r = store
                .append(&coord(&format!("k{}", i % 4)), EventKind::DATA, &json!({"i": i}))
                .expect("append");
            std::io::Write::write_fmt(&mut out, format_args!("{} {}\n", r.event_id, i)).expect("print");
        }
        std::io::Write::flush(&mut out).expect("flush");
    }
}

/// Starts `crash_child` on `dir` in `mode` ("mixed" or "window"), its
/// payload counter starting where round `round`'s may not collide.
fn spawn_child(
    exe: &Path,
    dir: &Path,
    round: u64,
    mode: &str,
) -> (std::process::Child, std::process::ChildStdout) {
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(MODE_ENV, mode)
        .env("BATPAK_CRASH_START", (round * 3_000_000).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped");
    (child, stdout)
}

#[test]
fn sigkill_mid_append_loses_no_acknowledged_event() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exe = std::env::current_exe().expect("test binary");
    let mut acked: HashMap<u128, u64> = HashMap::new();
    for round in 0..4u64 {
        let (mut child, stdout) = spawn_child(&exe, tmp.path(), round, "mixed");
        // Enough that from the second round on, the index has chunks in the slot file.
        let want = 1_500 + round * 1_037;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            let mut parts = line.split(' ');
            let (Some(id), Some(i)) = (parts.next(), parts.next()) else { continue };
            let (Ok(id), Ok(i)) = (id.parse::<u128>(), i.parse::<u64>()) else { continue };
            acked.insert(id, i);
            seen += 1;
            if seen >= want {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let store = Store::open(config(tmp.path())).expect("reopen after kill");
        let report = store.diagnostics().recovery;
        assert!(!report.from_image, "round {round}: a crashed run's store is rebuilt: {report:?}");
        for id in acked.keys() {
            store.get(*id).unwrap_or_else(|e| panic!("round {round}: acknowledged {id} lost: {e}"));
        }
        // Batches whole: every batch's items share an `i` and are all present.
        let mut per_i: HashMap<i64, usize> = HashMap::new();
        for e in store.query(&Region::all()) {
            let i = store.get(e.event_id).expect("get").event.payload["i"].as_i64().expect("i");
            *per_i.entry(i).or_default() += 1;
        }
        for (i, n) in per_i {
            let want = if i % 3 == 0 { crash_batch_size(i as u64) as usize } else { 1 };
            assert_eq!(n, want, "round {round}: batch {i} partially visible");
        }
        for k in 0..4 {
            let clocks: Vec<u32> = store.stream(&format!("k{k}")).iter().map(|e| e.clock).collect();
            assert!(clocks.iter().enumerate().all(|(i, c)| *c == i as u32), "clocks contiguous");
        }
        assert!(store.verify().is_ok(), "round {round}");
        // The clean close writes an image; the next open reads it and
        // answers alike.
        let all = store.query(&Region::all());
        store.close().expect("close");
        let store = Store::open(config(tmp.path())).expect("reopen from the image");
        assert!(store.diagnostics().recovery.from_image, "round {round}");
        if round > 0 {
            assert!(store.diagnostics().index_entries_on_disk > 0, "round {round}: the slot file is in use");
        }
        assert!(store.query(&Region::all()) == all, "round {round}: the image answers as the rebuild did");
        store.close().expect("close");
    }
    // In this same test, not one beside it: a child forked by another test
    // could hold a copy of this one's store lock for a moment.
    sigkill_while_copying_into_the_mapped_window(&exe);
}

/// Kills a child doing nothing but single appends under the default
/// config, which copies them into the mapped window of zeros ahead of the
/// active segment's end, after a different number of acknowledgements
/// each round, each more than a window holds. Every acknowledged event
/// must be there after the reopen, chained and verified.
fn sigkill_while_copying_into_the_mapped_window(exe: &Path) {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut acked: Vec<u128> = Vec::new();
    for round in 0..3u64 {
        let (mut child, stdout) = spawn_child(exe, tmp.path(), round, "window");
        let want = 12_000 + round * 7_919;
        for line in BufReader::new(stdout).lines().take(want as usize) {
            let line = line.expect("line");
            if let Some(Ok(id)) = line.split(' ').next().map(str::parse::<u128>) {
                acked.push(id);
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let store = Store::open(StoreConfig::new(tmp.path())).expect("reopen after kill");
        for id in &acked {
            store.get(*id).unwrap_or_else(|e| panic!("round {round}: acknowledged {id} lost: {e}"));
        }
        assert!(store.query(&Region::all()).len() >= acked.len(), "round {round}");
        assert!(store.verify().is_ok(), "round {round}");
        store.close().expect("close");
    }
    assert!(acked.len() >= 12_000 * 3, "the children acknowledged {} appends", acked.len());
}
