//! A store of millions of events opens and serves reads inside a hard
//! memory cap that an all-in-memory index does not fit in.
//!
//! The cap is a memory cgroup (v2, or v1's memory controller) made for the
//! child process; where none can be made, `RLIMIT_AS` through the shell's
//! `ulimit -v`, which bounds address space rather than memory and so is
//! looser (mappings and thread stacks count whole). The child is this test
//! binary again, told by an environment variable what to open.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const EVENTS: u64 = 2_000_000;
const ENTITIES: u64 = 64;
/// The cgroup cap. An all-in-memory index of 2 M events alone takes about
/// 240 MiB; with old entries in the scratch file the whole child process
/// stays well under this.
const CGROUP_CAP_MIB: u64 = 160;
/// The address-space cap, where no cgroup can be made: the debug test
/// binary, its mappings and its threads' reservations take a few hundred
/// MiB of address space before the store holds anything. Measured here:
/// the child peaks at 529 MiB with the scratch file, 671 MiB with every
/// entry in memory.
const ADDRESS_SPACE_CAP_MIB: u64 = 640;
const CHILD: &str = "BATPAK_MEMORY_CAP_CHILD";
const NAME: &str = "millions_of_events_open_and_serve_reads_within_a_hard_memory_cap";

fn config(dir: &Path, in_memory: bool) -> StoreConfig {
    let cfg = StoreConfig::new(dir);
    if in_memory {
        cfg.with_resident_events(u64::MAX)
    } else {
        cfg
    }
}

/// Every eighth event carries an idempotency key scattered over the whole
/// id space, so from the first one on almost no id rises: the index keeps
/// them all as ids that did not rise (in runs in the slot file).
fn options(n: u64) -> AppendOptions {
    if n % 8 != 1 {
        AppendOptions::new()
    } else {
        let key = u128::from(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) << 64 | u128::from(n);
        AppendOptions::new().with_idempotency(key)
    }
}

fn fill(dir: &Path) {
    let store =
        Store::open(StoreConfig::new(dir).with_batch_max_size(4096).with_batch_max_bytes(16 << 20)).unwrap();
    let mut i = 0u64;
    while i < EVENTS {
        let items = (i..(i + 4096).min(EVENTS))
            .map(|n| {
                let c = Coordinate::new(format!("entity:{}", n % ENTITIES), "cap").unwrap();
                BatchAppendItem::new(c, EventKind::DATA, &json!({"n": n}), options(n), CausationRef::None)
                    .unwrap()
            })
            .collect::<Vec<_>>();
        i += items.len() as u64;
        store.append_batch(items).unwrap();
    }
    store.close().unwrap();
}

/// In the capped child: open, count, read every 97th event by id, and
/// stream two entities.
fn child(dir: &Path, in_memory: bool) {
    let store = Store::open(config(dir, in_memory)).unwrap();
    let from_image = store.diagnostics().recovery.from_image;
    assert_eq!(store.stats().event_count as u64, EVENTS);
    let in_runs = store.diagnostics().index_ids_on_disk;
    assert!(in_memory || in_runs > EVENTS * 9 / 10, "{in_runs} ids in runs in the slot file");
    let mut cursor = store.cursor_guaranteed(&Region::all());
    let mut read = 0u64;
    let mut seen = 0u64;
    loop {
        let batch = cursor.poll_batch(4096);
        if batch.is_empty() {
            break;
        }
        for e in batch {
            if seen.is_multiple_of(97) {
                let got = store.get(e.event_id).unwrap();
                assert_eq!(got.event.payload["n"].as_u64(), Some(e.global_sequence));
                read += 1;
            }
            seen += 1;
        }
    }
    assert_eq!(seen, EVENTS);
    for n in [0, ENTITIES - 1] {
        assert_eq!(store.stream(&format!("entity:{n}")).len() as u64, EVENTS / ENTITIES);
    }
    store.close().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or("?")
            .split_whitespace()
            .nth(1)
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "capped child: {read} gets, VmHWM {} kB, VmPeak {} kB, from the index image: {from_image}",
        field("VmHWM:"),
        field("VmPeak:")
    );
}

/// A memory cgroup for the child, removed on drop.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    fn new(cap: u64) -> Option<Self> {
        let name = format!("batpak-memory-cap-{}", std::process::id());
        let v2 = PathBuf::from("/sys/fs/cgroup/cgroup.controllers");
        let (dir, files): (PathBuf, &[&str]) = if v2.exists() {
            (PathBuf::from("/sys/fs/cgroup").join(&name), &["memory.max", "memory.swap.max"])
        } else {
            (
                PathBuf::from("/sys/fs/cgroup/memory").join(&name),
                &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
            )
        };
        std::fs::create_dir(&dir).ok()?;
        let group = Self { dir };
        std::fs::write(group.dir.join(files[0]), cap.to_string()).ok()?;
        // No swap in the group: without this a child over the cap would
        // page instead of failing. Absent where swap accounting is off.
        let _ =
            std::fs::write(group.dir.join(files[1]), if v2.exists() { "0".into() } else { cap.to_string() });
        Some(group)
    }

    fn run(&self, dir: &Path, in_memory: bool) -> std::process::Output {
        let script = format!("echo $$ > '{}' && exec \"$0\" \"$@\"", self.dir.join("cgroup.procs").display());
        child_command("sh", &["-c", &script], dir, in_memory).output().unwrap()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn child_command(program: &str, pre: &[&str], dir: &Path, in_memory: bool) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(program);
    cmd.args(pre)
        .arg(exe)
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir)
        .env("BATPAK_MEMORY_CAP_IN_MEMORY", if in_memory { "1" } else { "0" });
    cmd
}

fn address_space_run(dir: &Path, in_memory: bool) -> std::process::Output {
    let script = format!("ulimit -v {} && exec \"$0\" \"$@\"", ADDRESS_SPACE_CAP_MIB * 1024);
    child_command("sh", &["-c", &script], dir, in_memory).output().unwrap()
}

#[test]
fn millions_of_events_open_and_serve_reads_within_a_hard_memory_cap() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let in_memory = std::env::var("BATPAK_MEMORY_CAP_IN_MEMORY").is_ok_and(|v| v == "1");
        child(Path::new(&dir), in_memory);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    fill(tmp.path());
    println!("filled in {:?}", started.elapsed());
    // The capped child runs twice: from the index image the fill's close
    // wrote, then with the image removed, rebuilding the index from the
    // footers (its close writes the image again). Last, all in memory.
    fn no_image(dir: &Path) -> &Path {
        std::fs::remove_file(dir.join("index.image")).unwrap();
        dir
    }
    let (what, capped, rebuilt, uncapped_index) = match Cgroup::new(CGROUP_CAP_MIB << 20) {
        Some(group) => (
            format!("memory cgroup of {CGROUP_CAP_MIB} MiB"),
            group.run(tmp.path(), false),
            group.run(no_image(tmp.path()), false),
            group.run(tmp.path(), true),
        ),
        None => (
            format!("RLIMIT_AS of {ADDRESS_SPACE_CAP_MIB} MiB (no memory cgroup could be made)"),
            address_space_run(tmp.path(), false),
            address_space_run(no_image(tmp.path()), false),
            address_space_run(tmp.path(), true),
        ),
    };
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    println!("cap: {what}");
    for (run, image) in [(&capped, true), (&rebuilt, false)] {
        assert!(run.status.success(), "under a {what} the store failed:\n{}", text(run));
        let line = text(run).lines().find(|l| l.contains("capped child:")).unwrap_or("").to_string();
        assert!(line.ends_with(&format!("from the index image: {image}")), "{}", text(run));
        println!("{line}");
    }
    println!(
        "all in memory: {}",
        text(&uncapped_index).lines().find(|l| l.contains("capped child:")).unwrap_or("failed")
    );
    if what.starts_with("memory cgroup") {
        // The cap binds (asserted only for the cgroup: how much address
        // space a process reserves depends on the machine).
        // The same reads with every entry in memory do not fit.
        assert!(
            !uncapped_index.status.success(),
            "the all-in-memory index fit under the cap too:\n{}",
            text(&uncapped_index)
        );
    }
}
