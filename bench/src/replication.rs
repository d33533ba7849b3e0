//! Replication through NATS JetStream (feature `replication`), against a
//! nats-server started on loopback: what shipping costs the writer, how
//! fast a shipper and a replica move events, and a replica's lag under a
//! steady load.

use crate::util::{median, payload};
use batpak::prelude::*;
use batpak::replication::{JetStreamConfig, Replica, Shipper};
use batpak_test_artifacts::nats;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(300);

fn coord(i: usize) -> Coordinate {
    Coordinate::new(format!("entity:{}", i % 64), "bench").unwrap_or_else(|e| panic!("{e}"))
}

/// Single appends (1 caller, 100 B) per second, with a shipper running
/// on the store when `ship` names a stream.
fn single_appends(n: usize, ship: Option<JetStreamConfig>) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(StoreConfig::new(dir.path())).expect("open"));
    let shipper = ship.map(|cfg| Shipper::start(Arc::clone(&store), cfg).expect("shipper"));
    let payloads: Vec<_> = (0..n).map(payload).collect();
    let start = Instant::now();
    for (i, p) in payloads.iter().enumerate() {
        store.append(&coord(i), EventKind::DATA, p).expect("append");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    if let Some(s) = shipper {
        assert!(s.wait_shipped(n as u64, WAIT), "shipper stalled: {:?}", s.status());
    }
    rate
}

/// Runs every replication workload and prints one line each; with
/// `part`, only those whose line starts with it.
pub fn run(quick: bool, runs: usize, part: Option<&str>) {
    let wants = |line: &str| part.is_none_or(|p| line.starts_with(p));
    let Some(server) = nats::start() else {
        println!("replication: skipped, no nats-server (run .ci/install-nats-server)");
        return;
    };
    let mut stream_no = 0;
    let mut next_cfg = || {
        stream_no += 1;
        JetStreamConfig::new(server.url(), format!("BENCH{stream_no}"))
    };
    // 1. The writer's cost of shipping: alternating runs, medians.
    let n = if quick { 20_000 } else { 100_000 };
    let (mut plain, mut shipped) = (Vec::new(), Vec::new());
    for _ in 0..if wants("replication_local_mode") { runs } else { 0 } {
        plain.push(single_appends(n, None));
        shipped.push(single_appends(n, Some(next_cfg())));
    }
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    if wants("replication_local_mode") {
        let (p, s) = (mid(&mut plain), mid(&mut shipped));
        println!("replication_local_mode_single_append: no shipper {p:.0} ev/s, shipper running {s:.0} ev/s, ratio {:.3}", s / p);
    }

    // 2 and 3. Shipping a backlog, then a fresh replica applying it.
    let total = if quick { 50_000 } else { 200_000 };
    if wants("replication_shipper") {
        let ship_rate = median(runs.min(3), || ship_and_replicate(total, next_cfg(), false).0);
        let ship_plain =
            median(runs.min(3), || ship_and_replicate(total, next_cfg().with_msg_ids(false), false).0);
        println!(
            "replication_shipper_backlog_{total}: {ship_rate:.0} ev/s with Nats-Msg-Id, {ship_plain:.0} ev/s without \
             (batches of 250 appended first)"
        );
    }
    if wants("replication_replica_apply") {
        let apply_rate = median(runs.min(3), || ship_and_replicate(total, next_cfg(), true).1);
        println!(
            "replication_replica_apply_{total}: {apply_rate:.0} ev/s (stream to a fresh replica, checked and stored)"
        );
    }

    // 4. Replica lag under a steady 10 k ev/s, measured on its own: a
    // fresh server, after the page cache has written back what the
    // phases above left dirty (about a gigabyte of streams and stores),
    // so their write-back does not stall this phase's disk writes.
    drop(server);
    if wants("replication_replica_lag") {
        let _ = std::process::Command::new("sync").status();
        let Some(server) = nats::start() else { return };
        let cfg = JetStreamConfig::new(server.url(), "LAG");
        let secs = if quick { 2 } else { 5 };
        let (p50, p99, max) = lag_at_rate(10_000, secs, cfg);
        println!("replication_replica_lag_at_10k_ev_s: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms (append ack to replica notification, {secs} s)");
    }
    if !wants("replication_quorum") {
        return;
    }

    // 5. Quorum acks against a 3-node R3 cluster that fsyncs every write,
    // next to local durable appends (fsync per group), alternating runs.
    let Some(cluster) = nats::start_cluster() else { return };
    let per = if quick { 300 } else { 1_000 };
    for callers in [1usize, 16] {
        let per_caller = if callers == 1 { per } else { per / 4 };
        let (mut local, mut quorum, mut bare) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            local.push(concurrent_appends(callers, per_caller, None));
            stream_no += 1;
            let cfg = JetStreamConfig::new(cluster.urls(), format!("QBENCH{stream_no}")).with_replicas(3);
            quorum.push(concurrent_appends(callers, per_caller, Some(cfg.clone())));
            // The same without Nats-Msg-Id: the expected-sequence header
            // already rules out duplicates, and the server's duplicate
            // window is a large part of its work per message.
            stream_no += 1;
            let cfg = JetStreamConfig::new(cluster.urls(), format!("QBENCH{stream_no}"))
                .with_replicas(3)
                .with_msg_ids(false);
            bare.push(concurrent_appends(callers, per_caller, Some(cfg)));
        }
        let (l, q, b) = (mid(&mut local), mid(&mut quorum), mid(&mut bare));
        println!(
            "replication_quorum_{callers}_callers: quorum acks (R3, sync always) {q:.0} ev/s, \
             without msg ids {b:.0} ev/s, local durable {l:.0} ev/s, ratios {:.3} / {:.3}",
            q / l,
            b / l
        );
    }
}

/// Single appends from `callers` threads, `per_caller` each: durable
/// locally (fsync per group commit), or with quorum acks on `quorum`.
fn concurrent_appends(callers: usize, per_caller: usize, quorum: Option<JetStreamConfig>) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_cfg = StoreConfig::new(dir.path()).with_sync_every_n_events(1);
    let store = match quorum {
        Some(cfg) => batpak::replication::open_quorum(store_cfg, cfg).expect("quorum writer"),
        None => Store::open(store_cfg).expect("open"),
    };
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..callers {
            let store = &store;
            s.spawn(move || {
                for i in 0..per_caller {
                    let k = t * per_caller + i;
                    store.append(&coord(k), EventKind::DATA, &payload(k)).expect("append");
                }
            });
        }
    });
    let rate = (callers * per_caller) as f64 / start.elapsed().as_secs_f64();
    store.close().expect("close");
    rate
}

/// Appends `total` events in batches of 250, ships them (timed), then
/// optionally opens a fresh replica and times it applying them all.
fn ship_and_replicate(total: usize, cfg: JetStreamConfig, replicate: bool) -> (f64, f64) {
    let (wdir, rdir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let store = Arc::new(Store::open(StoreConfig::new(wdir.path())).expect("open"));
    for b in 0..total / 250 {
        let items = (0..250)
            .map(|i| {
                let k = b * 250 + i;
                BatchAppendItem::new(
                    coord(k),
                    EventKind::DATA,
                    &payload(k),
                    AppendOptions::new(),
                    CausationRef::None,
                )
                .expect("item")
            })
            .collect();
        store.append_batch(items).expect("batch");
    }
    let start = Instant::now();
    let shipper = Shipper::start(Arc::clone(&store), cfg.clone()).expect("shipper");
    assert!(shipper.wait_shipped(total as u64, WAIT), "{:?}", shipper.status());
    let ship_rate = total as f64 / start.elapsed().as_secs_f64();
    if !replicate {
        return (ship_rate, 0.0);
    }
    let start = Instant::now();
    let replica = Replica::open(rdir.path(), cfg).expect("replica");
    assert!(replica.wait_for(total as u64, WAIT), "{:?}", replica.status());
    let apply_rate = total as f64 / start.elapsed().as_secs_f64();
    (ship_rate, apply_rate)
}

/// Appends at `rate` ev/s for `secs` with a shipper and a replica running;
/// returns the p50, p99 and max delay (ms) from each append's ack to the
/// replica's notification of that event.
fn lag_at_rate(rate: usize, secs: usize, cfg: JetStreamConfig) -> (f64, f64, f64) {
    let (wdir, rdir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let store = Arc::new(Store::open(StoreConfig::new(wdir.path())).expect("open"));
    let shipper = Shipper::start(Arc::clone(&store), cfg.clone()).expect("shipper");
    let replica = Replica::open(rdir.path(), cfg).expect("replica");
    let sub = replica.store().subscribe_lossy(&Region::all());
    let n = rate * secs;
    let receiver = std::thread::spawn(move || {
        let mut seen = vec![None; n];
        let mut got = 0;
        while got < n {
            match sub.receiver().recv_timeout(Duration::from_secs(30)) {
                Ok(note) => {
                    if let Some(slot) = seen.get_mut(note.sequence as usize) {
                        *slot = Some(Instant::now());
                        got += 1;
                    }
                }
                Err(_) => break,
            }
        }
        seen
    });
    let mut acked = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        store.append(&coord(i), EventKind::DATA, &payload(i)).expect("append");
        acked.push(Instant::now());
    }
    let seen = receiver.join().expect("receiver");
    drop(shipper);
    let mut lags: Vec<f64> = acked
        .iter()
        .zip(&seen)
        .map(|(a, s)| s.map_or(f64::INFINITY, |s| s.saturating_duration_since(*a).as_secs_f64() * 1000.0))
        .collect();
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99), at(1.0))
}
