//! Side-by-side benchmarks of this batpak and batpak 0.3.0, in one run.
//!
//! `cargo run --release -p batpak-bench -- [--quick] [--only PREFIX]`
//!
//! Prints one line per workload:
//! `<workload>: ours <x> <unit>, batpak-0.3.0 <y> <unit>, ratio <x/y>`
//! (for times and sizes, lower is better and the ratio is still ours/theirs).
//! Each figure is the median of several runs on fresh stores.

// A benchmark stops at its first failure, with the message of what failed.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod guests;
mod index;
mod ours;
#[cfg(batpak_peers)]
mod peers;
mod projections;
mod reference;
#[cfg(feature = "replication")]
mod replication;
mod util;

use util::{median, Line};

struct Plan {
    quick: bool,
    only: Option<String>,
}

impl Plan {
    fn runs(&self) -> usize {
        if self.quick {
            3
        } else {
            5
        }
    }
    fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|p| name.starts_with(p))
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--rss-child") {
        return util::rss_child(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("--index-child") {
        return index::child(&args[2..]);
    }
    // Only our single appends, for a profiler: `--profile-single N`.
    if args.get(1).map(String::as_str) == Some("--profile-single") {
        let n = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
        println!("single_append_100B: ours {:.0} ev/s", ours::single_append(n));
        return Ok(());
    }
    // The latency of each of N single appends: `--single-latency N`.
    if args.get(1).map(String::as_str) == Some("--single-latency") {
        let n = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
        let [p50, p99, p999, max] = ours::single_append_latency(n);
        println!("single_append_latency: ours p50 {p50:.2} us, p99 {p99:.2} us, p99.9 {p999:.2} us, max {max:.0} us");
        return Ok(());
    }
    // Only our uncached random gets over `N` events, for a profiler: `--profile-get N`.
    if args.get(1).map(String::as_str) == Some("--profile-get") {
        let n = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
        let (p50, p99) = index::random_gets(n)?;
        println!("index_get_random: ours p50 {p50:.2} us, p99 {p99:.2} us");
        return Ok(());
    }
    // The same over a store whose every event has a random idempotency
    // key: `--profile-get-keyed N`.
    if args.get(1).map(String::as_str) == Some("--profile-get-keyed") {
        let n = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
        let (p50, p99) = index::random_gets_in(&ours::populate_keyed(n)?)?;
        println!("index_get_random_keyed: ours p50 {p50:.2} us, p99 {p99:.2} us");
        return Ok(());
    }
    // A keyed store of `N` events that stays on disk, for timing opens of
    // one store with `--index-child scratch DIR`: `--populate-keyed N`
    // prints its directory.
    if args.get(1).map(String::as_str) == Some("--populate-keyed") {
        let n = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
        println!("{}", ours::populate_keyed(n)?.keep().display());
        return Ok(());
    }
    // Single appends with random keys into a keyed store of `N` events,
    // for a profiler: `--profile-keyed-append N`.
    if args.get(1).map(String::as_str) == Some("--profile-keyed-append") {
        let n = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
        let rate = index::keyed_appends(&ours::populate_keyed(n)?, 200_000, 1 << 40)?;
        println!("index_keyed_single_append: ours {rate:.0} ev/s");
        return Ok(());
    }
    let plan = Plan {
        quick: args.iter().any(|a| a == "--quick"),
        only: args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1).cloned()),
    };
    let n_single = if plan.quick { 5_000 } else { 20_000 };
    let n_open = if plan.quick { 100_000 } else { 1_000_000 };
    let n_drain = 100_000;

    if plan.wants("single_append") {
        let o = median(plan.runs(), || ours::single_append(n_single));
        let r = median(plan.runs(), || reference::single_append(n_single));
        Line::higher("single_append_100B", o, r, "ev/s").print();
        peer_line("single_append_100B", PeerWorkload::Single(n_single), &plan);
    }
    for callers in [1usize, 16] {
        let name = format!("durable_append_{callers}_callers");
        if plan.wants(&name) {
            let per = if plan.quick { 200 } else { 500 };
            let o = median(plan.runs(), || ours::durable_append(callers, per));
            let r = median(plan.runs(), || reference::durable_append(callers, per));
            Line::higher(&name, o, r, "ev/s").print();
            peer_line(&name, PeerWorkload::Durable { callers, per }, &plan);
        }
    }
    if plan.wants("buffered_append_16_callers") {
        let per = if plan.quick { 1_000 } else { 5_000 };
        let o = median(plan.runs(), || ours::buffered_append(16, per));
        let r = median(plan.runs(), || reference::buffered_append(16, per));
        Line::higher("buffered_append_16_callers", o, r, "ev/s").print();
    }
    let ours_only = args.iter().any(|a| a == "--ours-only");
    for size in [10usize, 100, 1000] {
        let name = format!("append_batch_{size}");
        if plan.wants(&name) {
            let total = if plan.quick { 20_000 } else { 50_000 };
            let o = median(plan.runs(), || ours::batch_append(size, total / size));
            let r = if ours_only {
                0.0
            } else {
                median(plan.runs(), || reference::batch_append(size, total / size))
            };
            Line::higher(&name, o, r, "ev/s").print();
            if size == 1000 {
                peer_line(&name, PeerWorkload::Batch { size, batches: total / size }, &plan);
            }
        }
    }
    if plan.wants("append_batch_10_vs_fsync") {
        let (rounds, per) = if plan.quick { (5, 100) } else { (9, 200) };
        let (fsync, single, batch) = ours::batch10_vs_fsync(rounds, per);
        println!(
            "append_batch_10_vs_fsync: batches of 10 {batch:.0} ev/s; plain write+fsync {fsync:.0}/s \
             (x10 = {:.0}), durable single append {single:.0} ev/s (x10 = {:.0}); \
             ratio to fsync x10 {:.3}, to durable single x10 {:.3}",
            fsync * 10.0,
            single * 10.0,
            batch / (fsync * 10.0),
            batch / (single * 10.0)
        );
    }
    if plan.wants("cold_open") || plan.wants("rss") || plan.wants("bytes_per_event") || plan.wants("peak_rss")
    {
        let ours_dir = ours::populate(n_open)?;
        let ref_dir = reference::populate(n_open)?;
        let label = if plan.quick { "100k" } else { "1M" };
        if plan.wants("bytes_per_event") {
            let o = util::dir_bytes(ours_dir.path()) as f64 / n_open as f64;
            let r = util::dir_bytes(ref_dir.path()) as f64 / n_open as f64;
            Line::lower("bytes_per_event_100B", o, r, "B").print();
        }
        if plan.wants("cold_open") {
            let o = median(plan.runs(), || ours::cold_open(ours_dir.path(), true));
            let r = median(plan.runs(), || reference::cold_open(ref_dir.path(), true));
            Line::lower(&format!("cold_open_{label}_checkpoint"), o, r, "ms").print();
            let o = median(plan.runs(), || ours::cold_open(ours_dir.path(), false));
            let r = median(plan.runs(), || reference::cold_open(ref_dir.path(), false));
            Line::lower(&format!("cold_open_{label}_scan"), o, r, "ms").print();
        }
        if plan.wants("rss") {
            // Growth per event over an empty store's, scaled to 1M events.
            let per_million = 1_000_000.0 / n_open as f64;
            let ours_empty = ours::populate(0)?;
            let ref_empty = reference::populate(0)?;
            let o = (util::rss_of_open("ours", ours_dir.path())?
                - util::rss_of_open("ours", ours_empty.path())?)
                * per_million;
            let r = (util::rss_of_open("ref", ref_dir.path())? - util::rss_of_open("ref", ref_empty.path())?)
                * per_million;
            Line::lower("rss_per_1M_events", o, r, "MiB").print();
        }
        if plan.wants("peak_rss") {
            peak_rss_line(ours_dir.path(), n_open, label)?;
        }
    }
    // `--only index_keyed` runs the keyed-store part alone.
    let keyed_only = plan.only.as_deref().is_some_and(|o| o.starts_with("index_keyed"));
    if plan.wants("index_") && !keyed_only {
        index::run(n_open, if plan.quick { "100k" } else { "1M" })?;
        if plan.quick {
            index::appends(100_000, 200_000)?;
        } else {
            index::appends(300_000, 1_000_000)?;
        }
    }
    if plan.wants("index_") || keyed_only {
        if plan.quick {
            index::run_keyed(100_000, 20_000, "100k")?;
        } else {
            index::run_keyed(n_open, 100_000, "1M")?;
        }
        if args.iter().any(|a| a == "--ten-million") {
            if !keyed_only {
                index::run(10_000_000, "10M")?;
            }
            index::run_keyed(10_000_000, 100_000, "10M")?;
        }
    }
    if plan.wants("get") || plan.wants("cursor") {
        let ours_dir = ours::populate(n_drain)?;
        let ref_dir = reference::populate(n_drain)?;
        if plan.wants("get") {
            let o = median(plan.runs(), || ours::get_latency(ours_dir.path(), 10_000));
            let r = median(plan.runs(), || reference::get_latency(ref_dir.path(), 10_000));
            Line::lower("get_latency", o, r, "us").print();
        }
        if plan.wants("cursor") {
            // batpak 0.3.0's cursor re-runs its query on every poll (O(N²) to
            // drain), so one run each keeps the bench bounded.
            let o = ours::cursor_drain(ours_dir.path());
            let r = reference::cursor_drain(ref_dir.path());
            Line::higher("cursor_drain_100k_poll_batch_100", o, r, "ev/s").print();
        }
    }
    for segments in [10usize, 50, 100] {
        let name = format!("compaction_merge_{segments}_segments");
        if plan.wants(&name) {
            let (mut o_files, mut r_files) = (0, 0);
            let o = median(plan.runs(), || {
                let (ms, files) = ours::compact_merge(segments);
                o_files = files;
                ms
            });
            let r = median(plan.runs(), || {
                let (ms, files) = reference::compact_merge(segments);
                r_files = files;
                ms
            });
            Line::lower(&name, o, r, "ms").print();
            println!("  (segment files before: ours {o_files}, batpak-0.3.0 {r_files})");
        }
    }
    if plan.wants("stateful_batch") {
        let batches = if plan.quick { 10 } else { 40 };
        let runs: Vec<[f64; 3]> = (0..plan.runs()).map(|_| ours::stateful_batch(batches)).collect();
        let col = |k: usize| {
            let mut v: Vec<f64> = runs.iter().map(|r| r[k]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (none, proj, gated) = (col(0), col(1), col(2));
        println!(
            "stateful_batch_1000: no plugin {none:.0} ev/s, balance projection {proj:.0} ev/s, \
             projection + overdraft gate {gated:.0} ev/s; gated/none {:.3}, gated/projection {:.3}",
            gated / none,
            gated / proj
        );
    }
    if plan.wants("gates") {
        ours::gate_workloads(&plan)?;
    }
    // `--only replication_<part>` runs one part of it (the line's prefix).
    let part = plan.only.as_deref().filter(|o| o.starts_with("replication_"));
    if plan.wants("replication") || part.is_some() {
        #[cfg(feature = "replication")]
        replication::run(plan.quick, plan.runs(), part);
        #[cfg(not(feature = "replication"))]
        println!("replication: build the bench with --features replication");
    }
    if plan.wants("guest") {
        guests::run(&plan)?;
    }
    if plan.wants("projections") {
        projections::run(&plan)?;
    } else if plan.wants("native_project") {
        projections::native_project(&plan)?;
    }
    Ok(())
}

/// A workload the peers run too.
#[cfg_attr(not(batpak_peers), allow(dead_code))]
enum PeerWorkload {
    Single(usize),
    Durable { callers: usize, per: usize },
    Batch { size: usize, batches: usize },
}

/// With `--cfg batpak_peers`: `<workload>: ours X, fjall Y, sqlite Z`, the
/// medians over the plan's runs. Each round runs ours and then the peers,
/// so the three are measured side by side: a slow stretch of the shared
/// machine lands on all of them, not on whichever ran in it alone.
#[cfg(batpak_peers)]
fn peer_line(name: &str, workload: PeerWorkload, plan: &Plan) {
    let rounds: Vec<(f64, f64, f64)> = (0..plan.runs())
        .map(|_| {
            let (ours, (fjall, sqlite)) = match workload {
                PeerWorkload::Single(n) => (ours::single_append(n), peers::single_append(n)),
                PeerWorkload::Durable { callers, per } => {
                    (ours::durable_append(callers, per), peers::durable_append(callers, per))
                }
                PeerWorkload::Batch { size, batches } => {
                    (ours::batch_append(size, batches), peers::batch_append(size, batches))
                }
            };
            (ours, fjall, sqlite)
        })
        .collect();
    let mid = |pick: fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ours = mid(|r| r.0);
    let (fjall, sqlite) = (mid(|r| r.1), mid(|r| r.2));
    println!(
        "{name}: ours {ours:.0}, fjall {fjall:.0}, sqlite {sqlite:.0} ev/s; ours/fjall {:.2}, ours/sqlite {:.2}",
        ours / fjall,
        ours / sqlite
    );
    if let PeerWorkload::Single(n) = workload {
        // Our single append is in the OS on `Ok` (it survives a process
        // crash); fjall's buffered journal is not until it is flushed.
        let mut v: Vec<f64> = (0..plan.runs()).map(|_| peers::single_append_to_os(n)).collect();
        v.sort_by(f64::total_cmp);
        let flushed = v[v.len() / 2];
        println!(
            "{name}_in_os_on_return: ours {ours:.0}, fjall flushed to the OS per append {flushed:.0} ev/s; ours/fjall {:.2}",
            ours / flushed
        );
        paired_single_line(name, n, plan.runs() * 3);
    }
}

/// Ours and fjall (journal buffered) in alternating rounds, so that a
/// slow minute of the shared machine hits both: the medians of each, and
/// the median, lowest and highest of the per-round ratios.
#[cfg(batpak_peers)]
fn paired_single_line(name: &str, n: usize, rounds: usize) {
    let mut pairs: Vec<(f64, f64)> =
        (0..rounds).map(|_| (ours::single_append(n), peers::fjall_single_append(n))).collect();
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (ours, _, _) = mid(pairs.iter().map(|p| p.0).collect());
    let (fjall, _, _) = mid(pairs.iter().map(|p| p.1).collect());
    pairs.retain(|p| p.1 > 0.0);
    let (ratio, low, high) = mid(pairs.iter().map(|p| p.0 / p.1).collect());
    println!(
        "{name}_paired: ours {ours:.0}, fjall {fjall:.0} ev/s over {rounds} alternating rounds; \
         ours/fjall per round: median {ratio:.2}, lowest {low:.2}, highest {high:.2}"
    );
}

/// Whole-process peak RSS after opening `n` events and serving 20 000
/// random point reads, each store in a fresh process: ours and batpak 0.3.0,
/// and with `--cfg batpak_peers` fjall and SQLite too.
fn peak_rss_line(ours_dir: &std::path::Path, n: usize, label: &str) -> anyhow::Result<()> {
    let ours = util::peak_of_open_and_gets("ours", ours_dir, n)?;
    #[cfg(batpak_peers)]
    {
        let (fjall_dir, sqlite_dir) = peers::populate(n);
        let fjall = util::peak_of_open_and_gets("fjall", fjall_dir.path(), n)?;
        let sqlite = util::peak_of_open_and_gets("sqlite", sqlite_dir.path(), n)?;
        println!(
            "peak_rss_open_20k_gets_{label}: ours {ours:.1}, fjall {fjall:.1}, sqlite {sqlite:.1} MiB; \
             ours/fjall {:.2}, ours/sqlite {:.2}",
            ours / fjall,
            ours / sqlite
        );
    }
    #[cfg(not(batpak_peers))]
    println!("peak_rss_open_20k_gets_{label}: ours {ours:.1} MiB (fjall and SQLite need --cfg batpak_peers)");
    Ok(())
}

/// Without `--cfg batpak_peers` there is nothing to compare with.
#[cfg(not(batpak_peers))]
fn peer_line(_: &str, _: PeerWorkload, _: &Plan) {}
