//! `inspect`, `tail`, `verify`.

use anyhow::{bail, Context, Result};
use batpak::prelude::*;
use batpak::store::LogReader;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

fn require_store_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        bail!("{} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    LogReader::open(dir)?;
    Ok(())
}

pub fn inspect(dir: &Path) -> Result<ExitCode> {
    require_store_dir(dir)?;
    let reader = LogReader::open(dir)?;
    let segments = reader.segments().context("reading segments")?;
    println!("data directory {}", dir.display());
    println!("\nsegments:");
    for s in &segments {
        println!(
            "  {:06}.fbat  {:>12} bytes  {:>9} events  {}",
            s.id,
            s.bytes,
            s.events,
            if s.sealed { "sealed" } else { "open (no footer)" }
        );
    }
    let events = reader.events_from(0)?;
    let mut entities: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *entities.entry(e.entry.coord.entity().to_string()).or_default() += 1;
        *kinds.entry(e.entry.kind.to_string()).or_default() += 1;
    }
    println!("\nevents: {}   entities: {}", events.len(), entities.len());
    let mut top: Vec<_> = entities.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (name, n) in top.iter().take(10) {
        println!("  {name:<32} {n:>9}");
    }
    if top.len() > 10 {
        println!("  … and {} more", top.len() - 10);
    }
    println!("\nkinds:");
    for (k, n) in &kinds {
        println!("  {k}  {n:>9}");
    }
    println!("\ngate-set history:");
    let sets = reader.gate_sets()?;
    if sets.is_empty() {
        println!("  (no event was admitted by a gate)");
    }
    for set in sets {
        let admitted = events.iter().filter(|e| e.entry.gate_set() == Some(set.id)).count();
        let names: Vec<String> =
            set.gates.iter().map(|g| format!("{}@{} ({}…)", g.name, g.version, &g.digest[..12])).collect();
        println!("  set {:>3}: {} — admitted {admitted}", set.id, names.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_kind(s: &str) -> Result<EventKind> {
    let raw = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse::<u16>(),
    }
    .with_context(|| format!("--kind {s:?} is not a 16-bit number"))?;
    Ok(EventKind::from_raw(raw))
}

pub fn tail(
    dir: &Path,
    entity: Option<String>,
    kind: Option<String>,
    follow: bool,
    count: Option<usize>,
) -> Result<ExitCode> {
    require_store_dir(dir)?;
    let kind = kind.as_deref().map(parse_kind).transpose()?;
    let reader = LogReader::open(dir)?;
    let mut next = 0u64;
    let mut printed = 0usize;
    loop {
        for e in reader.events_from(next)? {
            next = e.entry.global_sequence + 1;
            if entity.as_deref().is_some_and(|p| !e.entry.coord.entity().starts_with(p)) {
                continue;
            }
            if kind.is_some_and(|k| k != e.entry.kind) {
                continue;
            }
            println!(
                "{:>8}  {}  {}  clock {:<5} {}",
                e.entry.global_sequence,
                e.entry.coord,
                e.entry.kind,
                e.entry.clock,
                String::from_utf8_lossy(&e.payload)
            );
            printed += 1;
            if count.is_some_and(|c| printed >= c) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        // The writer is another process: there is no signal to wait on, so
        // the follower polls the files (each poll rereads only unsealed segments).
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn verify(dir: &Path) -> Result<ExitCode> {
    require_store_dir(dir)?;
    let store = Store::open(StoreConfig::new(dir)).with_context(|| format!("opening {}", dir.display()))?;
    let bar = indicatif::ProgressBar::new(store.stats().event_count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("verifying {bar:40} {pos}/{len} events")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = store.verify_with_progress(|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    if report.is_ok() {
        println!(
            "OK: {} events in {} entities; every CRC and hash chain checks out",
            report.events, report.entities
        );
        return Ok(ExitCode::SUCCESS);
    }
    for issue in &report.issues {
        println!(
            "FAIL segment {:06}.fbat offset {} (sequence {}): {}",
            issue.segment_id, issue.offset, issue.sequence, issue.detail
        );
    }
    println!("{} problem(s) in {} events", report.issues.len(), report.events);
    Ok(ExitCode::from(2))
}

pub fn replay(dir: &Path, projection: &Path, key: Option<&str>) -> Result<ExitCode> {
    require_store_dir(dir)?;
    let plugin = batpak::plugin::ProjectionPlugin::from_file(projection)?;
    let store = Store::open(StoreConfig::new(dir)).with_context(|| format!("opening {}", dir.display()))?;
    const NAME: &str = "cli-replay";
    let bar = indicatif::ProgressBar::new(store.stats().event_count as u64);
    store
        .install_projection_with_progress(NAME, plugin, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .with_context(|| format!("loading {}", projection.display()))?;
    bar.finish_and_clear();
    let (status, info) = store.projection_status(NAME).context("projection vanished")?;
    let result = match (&status, key) {
        (batpak::store::ProjectionStatus::Failed { error, sequence }, _) => {
            println!("projection {} FAILED at sequence {sequence}: {error}", info.name);
            Ok(ExitCode::from(2))
        }
        (_, Some(key)) => {
            match store.projection_state(NAME, key)? {
                Some(bytes) => println!("{}", String::from_utf8_lossy(&bytes)),
                None => println!("(no state for {key:?})"),
            }
            Ok(ExitCode::SUCCESS)
        }
        (_, None) => {
            println!("{}", String::from_utf8_lossy(&store.projection_snapshot(NAME)?));
            Ok(ExitCode::SUCCESS)
        }
    };
    store.remove_projection(NAME)?;
    store.close()?;
    result
}
