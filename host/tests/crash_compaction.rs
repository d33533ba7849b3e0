//! The SIGKILL loop over a child process that appends and compacts.
//!
//! It has a test binary of its own: spawning a child forks this process,
//! and for a moment the child holds copies of every descriptor open in it,
//! including other tests' store locks (`flock` follows the open file, not
//! the process). A test elsewhere that closes and at once reopens a store
//! could then see its own lock still held. Here nothing else runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;
use common::leftovers;

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "scope").expect("valid coordinate")
}

const CHILD_ENV: &str = "BATPAK_COMPACT_CHILD_DIR";
const ROUNDS: u64 = 10;
/// How long after the child announces a compaction the parent kills it.
const KILL_DELAYS_US: [u64; 5] = [0, 300, 1_000, 3_000, 10_000];

/// Runs only as the child of `sigkill_during_compaction_leaves_old_or_new_state`:
/// appends and compacts forever, printing each acknowledged event.
#[test]
fn compact_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let store = Store::open(StoreConfig::new(&dir).with_segment_max_bytes(2048)).expect("child open");
    let start: u64 = std::env::var("BATPAK_COMPACT_START").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for i in start.. {
        let r =
            store.append(&coord(&format!("k{}", i % 4)), EventKind::DATA, &json!({"i": i})).expect("append");
        std::io::Write::write_fmt(&mut out, format_args!("{} {}\n", r.event_id, i)).expect("print");
        std::io::Write::flush(&mut out).expect("flush");
        if i % 40 == 39 {
            let strategy = if i % 80 == 39 {
                CompactionStrategy::Merge
            } else {
                let keep = |e: &StoredEvent<Value>| e.event.payload["i"].as_u64().is_none_or(|i| i % 5 != 0);
                CompactionStrategy::Tombstone(Box::new(keep))
            };
            std::io::Write::write_all(&mut out, b"compacting\n").expect("print");
            std::io::Write::flush(&mut out).expect("flush");
            store.compact(&CompactionConfig { strategy, min_segments: 2 }).expect("child compaction");
        }
    }
}

#[test]
fn sigkill_during_compaction_leaves_old_or_new_state() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exe = std::env::current_exe().expect("test binary");
    let mut acked: HashMap<u128, u64> = HashMap::new();
    let mut caught_mid_compaction = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "compact_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, tmp.path())
            .env("BATPAK_COMPACT_START", (round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped");
        let want = 150 + round * 53;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            if line == "compacting" && seen >= want {
                break;
            }
            let mut parts = line.split(' ');
            let (Some(id), Some(i)) = (parts.next(), parts.next()) else { continue };
            let (Ok(id), Ok(i)) = (id.parse::<u128>(), i.parse::<u64>()) else { continue };
            acked.insert(id, i);
            seen += 1;
        }
        // The child has just begun a compaction: kill it somewhere inside.
        // This pause is the kill's offset into the compaction, not a wait for
        // a condition; whatever it lands on, the assertions below must hold.
        std::thread::sleep(std::time::Duration::from_micros(
            KILL_DELAYS_US[round as usize % KILL_DELAYS_US.len()],
        ));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        if !leftovers(tmp.path()).is_empty() {
            caught_mid_compaction += 1;
        }
        let store = Store::open(StoreConfig::new(tmp.path()).with_segment_max_bytes(2048))
            .expect("reopen after kill");
        assert!(leftovers(tmp.path()).is_empty(), "round {round}: {:?}", leftovers(tmp.path()));
        for (id, i) in &acked {
            let ev = store.get(*id).unwrap_or_else(|e| panic!("round {round}: acknowledged {i} lost: {e}"));
            if ev.event.header.event_kind == EventKind::TOMBSTONE {
                assert_eq!(i % 5, 0, "round {round}: only multiples of five become tombstones");
            } else {
                assert_eq!(ev.event.payload, json!({"i": i}), "round {round}");
            }
        }
        for k in 0..4 {
            let clocks: Vec<u32> = store.stream(&format!("k{k}")).iter().map(|e| e.clock).collect();
            assert!(
                clocks.iter().enumerate().all(|(i, c)| *c == i as u32),
                "round {round}: clocks contiguous"
            );
        }
        assert!(store.verify().is_ok(), "round {round}: {:?}", store.verify().issues);
        store.close().expect("close");
    }
    eprintln!(
        "killed inside a compaction (outputs or plan on disk) in {caught_mid_compaction} of {ROUNDS} rounds"
    );
}
