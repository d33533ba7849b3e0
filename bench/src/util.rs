//! Timing, medians, output lines, disk and RSS measurement.

use std::path::Path;
use std::process::Command;

/// Median of `runs` measurements.
pub fn median(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    let mut xs: Vec<f64> = (0..runs).map(|_| f()).collect();
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// One output line.
pub struct Line {
    name: String,
    ours: f64,
    theirs: f64,
    unit: &'static str,
}

impl Line {
    /// A workload where higher is better.
    pub fn higher(name: &str, ours: f64, theirs: f64, unit: &'static str) -> Self {
        Self { name: name.into(), ours, theirs, unit }
    }
    /// A workload where lower is better.
    pub fn lower(name: &str, ours: f64, theirs: f64, unit: &'static str) -> Self {
        Self { name: name.into(), ours, theirs, unit }
    }
    /// Prints the line.
    pub fn print(&self) {
        let ratio = if self.theirs > 0.0 { self.ours / self.theirs } else { f64::NAN };
        println!(
            "{}: ours {} {u}, batpak-0.3.0 {} {u}, ratio {ratio:.3}",
            self.name,
            fmt(self.ours),
            fmt(self.theirs),
            u = self.unit
        );
    }
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Total size of the files in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| it.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

pub(crate) fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// A `/proc/self/status` figure given in kB, in MiB (0 if absent).
pub(crate) fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// In a child process: open the store in `args[1]` with `args[0]` ("ours" |
/// "ref") and print the RSS growth in MiB.
pub fn rss_child(args: &[String]) -> anyhow::Result<()> {
    let (which, dir) = (args[0].as_str(), Path::new(&args[1]));
    if let Some(n) = args.get(2) {
        println!("{}", peak_after_gets(which, dir, n.parse()?)?);
        return Ok(());
    }
    let before = rss_mib();
    let grown = match which {
        "ours" => {
            let s = batpak::store::Store::open(batpak::store::StoreConfig::new(dir))?;
            let r = rss_mib() - before;
            drop(s);
            r
        }
        _ => {
            let s = batpak_ref::store::Store::open(batpak_ref::store::StoreConfig::new(dir))?;
            let r = rss_mib() - before;
            drop(s);
            r
        }
    };
    println!("{grown}");
    Ok(())
}

/// Random point reads served after an open, for the peak-RSS comparison.
const PEAK_GETS: usize = 20_000;

/// In this (fresh) process: opens `which` store in `dir` (`n` events),
/// serves `PEAK_GETS` random point reads and returns the peak RSS (VmHWM)
/// in MiB. Ours samples its ids from 64 entity streams first (transient
/// vectors that count against it).
fn peak_after_gets(which: &str, dir: &Path, n: usize) -> anyhow::Result<f64> {
    if which != "ours" {
        #[cfg(batpak_peers)]
        return Ok(crate::peers::open_and_get(which, dir, n, PEAK_GETS));
        #[cfg(not(batpak_peers))]
        anyhow::bail!("{which} needs --cfg batpak_peers ({n} events)");
    }
    let store = batpak::store::Store::open(batpak::store::StoreConfig::new(dir))?;
    let mut ids = Vec::with_capacity(PEAK_GETS);
    let mut x = 17u64;
    for e in 0..64 {
        let stream = store.stream(&format!("entity:{e}"));
        for _ in 0..PEAK_GETS / 64 + 1 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if let Some(entry) = stream.get((x >> 17) as usize % stream.len().max(1)) {
                ids.push(entry.event_id);
            }
        }
    }
    for i in 0..PEAK_GETS {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let id = ids[((x >> 17) as usize + i) % ids.len()];
        anyhow::ensure!(store.get(id).is_ok(), "event {id:032x} not found");
    }
    Ok(status_mib("VmHWM:"))
}

/// Peak RSS (MiB) of a fresh process that opens `which` store in `dir`
/// (`n` events) and serves 20 000 random point reads.
pub fn peak_of_open_and_gets(which: &str, dir: &Path, n: usize) -> anyhow::Result<f64> {
    let out = Command::new(std::env::current_exe()?)
        .arg("--rss-child")
        .arg(which)
        .arg(dir)
        .arg(n.to_string())
        .output()?;
    anyhow::ensure!(out.status.success(), "peak child failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// RSS growth of opening the store in `dir`, measured in a fresh process.
pub fn rss_of_open(which: &str, dir: &Path) -> anyhow::Result<f64> {
    let out = Command::new(std::env::current_exe()?).arg("--rss-child").arg(which).arg(dir).output()?;
    anyhow::ensure!(out.status.success(), "rss child failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// A 100-byte JSON payload (serialised length) for event `i`.
pub fn payload(i: usize) -> serde_json::Value {
    let base = serde_json::json!({"i": i, "pad": ""});
    let len = serde_json::to_vec(&base).map(|v| v.len()).unwrap_or(20);
    serde_json::json!({"i": i, "pad": "x".repeat(100usize.saturating_sub(len))})
}

/// Number of files in `dir` with extension `ext`.
pub fn count_files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == ext)).count()
        })
        .unwrap_or(0)
}
