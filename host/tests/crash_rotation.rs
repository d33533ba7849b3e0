//! Crashes while a segment is being created: the store always reopens,
//! with every acknowledged event. A test binary of its own, because it
//! forks children (see crash_storage.rs for why that matters).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code
#![cfg(feature = "dangerous-test-hooks")]

use batpak::prelude::*;
use batpak::store::fault::{FaultInjector, InjectionPoint};
use batpak::store::segment::segment_filename;
use serde_json::json;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "BATPAK_ROTATION_CHILD_DIR";
const CHILD_ABORT_AT: &str = "BATPAK_ROTATION_ABORT_AT";
const SEGMENT_BYTES: u64 = 4096;

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "scope").expect("valid coordinate")
}

/// Aborts the process (a crash, not an error) when segment `at` has been
/// staged but not yet linked under its own name.
struct AbortWhenStaged(u64);

impl FaultInjector for AbortWhenStaged {
    fn check(&self, point: InjectionPoint) -> Option<StoreError> {
        if point == (InjectionPoint::SegmentStaged { segment: self.0 }) {
            std::process::abort();
        }
        None
    }
}

/// Runs only as a child: appends singles and 3-item batches with tiny
/// segments, printing each acknowledged id, until killed or aborted.
#[test]
fn rotation_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let mut cfg = StoreConfig::new(&dir).with_segment_max_bytes(SEGMENT_BYTES);
    if let Some(at) = std::env::var(CHILD_ABORT_AT).ok().and_then(|s| s.parse().ok()) {
        cfg.fault_injector = Some(Arc::new(AbortWhenStaged(at)));
    }
    let store = Store::open(cfg).expect("child open");
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let ids: Vec<u128> = if i % 2 == 0 {
            let items = (0..3)
                .map(|j| {
                    BatchAppendItem::new(
                        coord(&format!("k{}", (i + j) % 5)),
                        EventKind::DATA,
                        &json!({"i": i, "pad": "x".repeat(40)}),
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                    .expect("item")
                })
                .collect();
            store.append_batch(items).expect("batch").iter().map(|r| r.event_id).collect()
        } else {
            vec![
                store
                    .append(&coord(&format!("k{}", i % 5)), EventKind::DATA, &json!({"i": i}))
                    .expect("append")
                    .event_id,
            ]
        };
        for id in ids {
            std::io::Write::write_fmt(&mut out, format_args!("{id}\n")).expect("print");
        }
        std::io::Write::flush(&mut out).expect("flush");
    }
}

/// Starts a child on `dir`; returns it and a thread collecting its acks.
fn spawn_child(
    dir: &std::path::Path,
    abort_at: Option<u64>,
) -> (std::process::Child, std::sync::mpsc::Receiver<u128>) {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "rotation_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(at) = abort_at {
        cmd.env(CHILD_ABORT_AT, at.to_string());
    }
    let mut child = cmd.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Ok(id) = line.trim().parse::<u128>() {
                if tx.send(id).is_err() {
                    return;
                }
            }
        }
    });
    (child, rx)
}

/// Reopens `dir` and checks every acknowledged event is there, the chains
/// verify and appends go on.
fn reopen_and_check(dir: &std::path::Path, acked: &HashSet<u128>, context: &str) {
    let store = Store::open(StoreConfig::new(dir).with_segment_max_bytes(SEGMENT_BYTES))
        .unwrap_or_else(|e| panic!("{context}: the store must reopen: {e}"));
    for id in acked {
        store.get(*id).unwrap_or_else(|e| panic!("{context}: acknowledged {id:032x} lost: {e}"));
    }
    assert!(store.verify().is_ok(), "{context}: {:?}", store.verify().issues);
    store.append(&coord("after"), EventKind::DATA, &json!({"ok": true})).expect("append after reopen");
    store.close().expect("close");
}

#[test]
fn a_crash_between_staging_and_linking_a_segment_reopens_whole() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut acked = HashSet::new();
    // Segment 1 is created at the first append; 3 is the second rotation.
    let (mut child, acks) = spawn_child(tmp.path(), Some(3));
    let status = child.wait().expect("the child aborts itself");
    assert!(!status.success(), "the injected abort must end the child");
    acked.extend(acks.try_iter());
    assert!(!acked.is_empty(), "events were acknowledged before the crash");
    let staged = tmp.path().join(format!("{}.tmp", segment_filename(3)));
    assert!(staged.exists(), "the crash left the staged segment behind");
    assert!(!tmp.path().join(segment_filename(3)).exists(), "segment 3 was never linked");
    reopen_and_check(tmp.path(), &acked, "after the staged crash");
    assert!(!staged.exists(), "open removed the staged leftover");
}

#[test]
fn a_newest_segment_without_a_whole_header_is_removed_at_open() {
    for (what, bytes) in [("empty", vec![]), ("short", vec![7u8; 10]), ("zeroed", vec![0u8; 4096])] {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(StoreConfig::new(tmp.path())).expect("open");
        let ids: Vec<u128> = (0..5)
            .map(|i| store.append(&coord("k"), EventKind::DATA, &json!({"i": i})).expect("append").event_id)
            .collect();
        store.close().expect("close");
        // What an older version, or a file system that lost the header,
        // leaves after a crash in the middle of a rotation.
        std::fs::write(tmp.path().join(segment_filename(99)), &bytes).expect("write artifact");
        let store = Store::open(StoreConfig::new(tmp.path())).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(store.diagnostics().recovery.removed_unborn_segment, Some(99), "{what}");
        assert!(!tmp.path().join(segment_filename(99)).exists(), "{what}: removed");
        for id in &ids {
            store.get(*id).expect("kept");
        }
        store.append(&coord("k"), EventKind::DATA, &json!({"i": 5})).expect("append goes on");
        store.close().expect("close");
    }
}

#[test]
fn sigkill_at_random_moments_with_constant_rotation_always_reopens() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut acked = HashSet::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for cycle in 0..24 {
        let (mut child, acks) = spawn_child(tmp.path(), None);
        // Wait for the first acknowledgement, then kill after 0-30 ms.
        let first = acks.recv_timeout(Duration::from_secs(60)).expect("the child appends");
        acked.insert(first);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let until = Instant::now() + Duration::from_micros(rng % 30_000);
        while Instant::now() < until {
            if let Ok(id) = acks.recv_timeout(Duration::from_millis(1)) {
                acked.insert(id);
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        acked.extend(acks.try_iter());
        reopen_and_check(tmp.path(), &acked, &format!("cycle {cycle}"));
    }
    let segments = std::fs::read_dir(tmp.path()).expect("list").filter_map(Result::ok).count();
    assert!(segments > 24, "the runs rotated segments many times ({segments} files)");
}
