//! Scale-out through NATS JetStream: a writer's shipper and read replicas,
//! against real nats-server processes on 127.0.0.1 (batpak-test-artifacts' `nats` module).

#![cfg(feature = "replication")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::prelude::*;
use batpak::replication::{JetStreamConfig, Replica, ReplicationError, Shipper};
use batpak_test_artifacts::nats;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// Entity names NATS would read as subject syntax, and plain ones.
const ENTITIES: [&str; 4] = ["acct:1", "acct:2", "a.b c*>%", "émile"];

fn open(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(Store::open(StoreConfig::new(dir)).expect("open store"))
}

/// Appends `n` rounds of one single and one 3-item batch, causally linked.
fn write_mix(store: &Store, from: u64, n: u64) {
    for i in from..from + n {
        let entity = ENTITIES[(i % 4) as usize];
        let c = Coordinate::new(entity, "bank").unwrap();
        let r = store.append(&c, EventKind::custom(1, 1), &json!({"i": i, "amount": i * 10})).unwrap();
        let items = (0..3)
            .map(|j| {
                let c = Coordinate::new(ENTITIES[((i + j) % 4) as usize], "bank").unwrap();
                let options = AppendOptions::new().with_correlation(r.event_id).with_causation(r.event_id);
                BatchAppendItem::new(
                    c,
                    EventKind::custom(1, 2),
                    &json!({"i": i, "j": j}),
                    options,
                    CausationRef::None,
                )
                .unwrap()
            })
            .collect();
        store.append_batch(items).unwrap();
    }
}

/// Both stores hold the same events: ids, sequences, clocks, hashes,
/// coordinates, kinds, causal links, times and payload bytes.
fn assert_same_log(writer: &Store, replica: &Store) {
    let (a, b) = (writer.query(&Region::all()), replica.query(&Region::all()));
    assert_eq!(a.len(), b.len(), "event counts differ");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.event_id, x.global_sequence, x.clock, x.hash_chain, &x.coord, x.kind),
            (y.event_id, y.global_sequence, y.clock, y.hash_chain, &y.coord, y.kind)
        );
        assert_eq!(
            (x.correlation_id, x.causation_id, x.wall_ms),
            (y.correlation_id, y.causation_id, y.wall_ms)
        );
        assert_eq!(writer.payload_bytes(x.event_id).unwrap(), replica.payload_bytes(y.event_id).unwrap());
        let (hx, hy) =
            (writer.get(x.event_id).unwrap().event.header, replica.get(y.event_id).unwrap().event.header);
        assert_eq!(hx.timestamp_us, hy.timestamp_us);
    }
    let (va, vb) = (writer.verify(), replica.verify());
    assert!(va.is_ok() && vb.is_ok(), "verify: writer {:?}, replica {:?}", va.issues, vb.issues);
    assert_eq!(va.events, vb.events);
}

fn committed(store: &Store) -> u64 {
    store.stats().global_sequence
}

/// A writer in a fresh directory with `rounds` of [`write_mix`] shipped to
/// `stream` on `server` (the shipper stopped again), a directory for a
/// replica, and the config.
fn shipped_writer(
    server: &nats::NatsServer,
    stream: &str,
    rounds: u64,
) -> (JetStreamConfig, tempfile::TempDir, tempfile::TempDir, Arc<Store>) {
    let cfg = JetStreamConfig::new(server.url(), stream).with_subject_prefix(format!("bp.{stream}"));
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = open(wdir.path());
    write_mix(&writer, 0, rounds);
    let shipper = Shipper::start(Arc::clone(&writer), cfg.clone()).unwrap();
    assert!(shipper.wait_shipped(4 * rounds, WAIT), "{:?}", shipper.status());
    drop(shipper);
    (cfg, wdir, rdir, writer)
}

#[test]
fn a_replica_follows_the_writer_with_identical_ids_sequences_and_hashes() {
    let Some(server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "ORDERS");
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = open(wdir.path());
    write_mix(&writer, 0, 50);
    let replica = Replica::open(rdir.path(), cfg.clone()).unwrap();
    let shipper = Shipper::start(Arc::clone(&writer), cfg).unwrap();
    let sub = replica.store().subscribe_lossy(&Region::entity("acct:1"));
    write_mix(&writer, 50, 50); // while both run
    let n = committed(&writer);
    assert_eq!(n, 400);
    assert!(shipper.wait_shipped(n, WAIT), "shipper: {:?}", shipper.status());
    assert!(replica.wait_for(n, WAIT), "replica: {:?}", replica.status());
    assert_same_log(&writer, replica.store());
    // Subscriptions and cursors on the replica see what arrives.
    assert!(sub.receiver().recv_timeout(WAIT).is_ok(), "no notification on the replica");
    assert_eq!(replica.store().cursor_from(&Region::all(), 0).poll_batch(1000).len(), 400);
    let status = shipper.stop().unwrap();
    assert_eq!((status.shipped, status.lag, status.error), (400, 0, None));
    // The replica refuses appends: events arrive only from the stream.
    let refused =
        replica.store().append(&Coordinate::new("acct:1", "bank").unwrap(), EventKind::custom(1, 1), &1);
    assert!(matches!(refused, Err(StoreError::Configuration(m)) if m.contains("read replica")));
    let status = replica.close().unwrap();
    assert_eq!((status.applied, status.error), (400, None));
}

#[test]
fn shipper_and_replica_resume_after_restarts_without_gaps_or_duplicates() {
    let Some(server) = nats::start() else { return };
    let (cfg, wdir, rdir, writer) = shipped_writer(&server, "RESUME", 10);
    write_mix(&writer, 10, 10); // committed while no shipper runs
    let replica = Replica::open(rdir.path(), cfg.clone()).unwrap();
    assert!(replica.wait_for(40, WAIT));
    assert_eq!(replica.close().unwrap().applied, 40);
    let shipper = Shipper::start(Arc::clone(&writer), cfg.clone()).unwrap();
    assert_eq!(shipper.status().lag, 40, "resumes where the stream ends");
    assert!(shipper.wait_shipped(80, WAIT));
    drop(shipper);
    // The writer restarts too: a reopened store ships nothing twice.
    drop(writer);
    let writer = open(wdir.path());
    let shipper = Shipper::start(Arc::clone(&writer), cfg.clone()).unwrap();
    let status = shipper.status();
    assert_eq!((status.shipped, status.lag), (80, 0), "the stream holds each event once");
    let replica = Replica::open(rdir.path(), cfg).unwrap();
    assert_eq!(replica.status().applied, 40, "the replica reopens where it stopped");
    assert!(replica.wait_for(80, WAIT), "{:?}", replica.status());
    assert_same_log(&writer, replica.store());
    drop(shipper);
}

#[test]
fn a_store_that_is_not_the_streams_writer_is_refused() {
    let Some(server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "FENCE");
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = open(a.path());
    write_mix(&writer, 0, 5);
    let shipper = Shipper::start(Arc::clone(&writer), cfg.clone()).unwrap();
    assert!(shipper.wait_shipped(20, WAIT));
    // Another store with as many events, but other ones.
    let other = open(b.path());
    write_mix(&other, 0, 5);
    match Shipper::start(Arc::clone(&other), cfg.clone()) {
        Err(ReplicationError::Diverged { sequence: 19, detail }) => {
            assert!(detail.contains("stream's event"), "{detail}")
        }
        other => panic!("expected Diverged at 19, got {:?}", other.map(|s| s.status())),
    }
    // A store with fewer events than the stream.
    let short = open(c.path());
    write_mix(&short, 0, 1);
    match Shipper::start(Arc::clone(&short), cfg) {
        Err(ReplicationError::Diverged { detail, .. }) => {
            assert!(detail.contains("not the stream's writer"), "{detail}")
        }
        other => panic!("expected Diverged, got {:?}", other.map(|s| s.status())),
    }
    // The real writer is unaffected and goes on shipping.
    write_mix(&writer, 5, 1);
    assert!(shipper.wait_shipped(24, WAIT), "{:?}", shipper.status());
}

#[test]
fn a_message_altered_on_the_stream_is_refused_by_the_replica() {
    let Some(server) = nats::start() else { return };
    let (cfg, _wdir, rdir, writer) = shipped_writer(&server, "TAMPER", 3);
    // The writer's next event, forged on its way: same hashes, other payload.
    let c = Coordinate::new("acct:1", "bank").unwrap();
    let r = writer.append(&c, EventKind::custom(1, 1), &json!({"amount": 10})).unwrap();
    let forged = body(&writer, r.sequence, br#"{"amount":1000000}"#);
    raw_publish(server.port, "bp.TAMPER.acct:1", 12, &forged);
    let replica = Replica::open(rdir.path(), cfg).unwrap();
    // Waiting for the forged event returns false once the follower stops.
    assert!(!replica.wait_for(13, WAIT), "the forged event was stored");
    let status = replica.status();
    assert!(!status.running, "the replica should stop at the forged event");
    let error = status.error.expect("an error");
    assert!(error.contains("does not hash to its recorded hash"), "{error}");
    assert_eq!(status.applied, 12, "everything before the forgery is stored, nothing after");
    assert_eq!(replica.store().query(&Region::all()).len(), 12);
    assert!(replica.store().verify().is_ok());
}

#[test]
fn an_unreachable_server_is_a_clear_error_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = JetStreamConfig::new(format!("nats://127.0.0.1:{port}"), "NOWHERE");
    cfg.connect_timeout = Duration::from_millis(500);
    let dir = tempfile::tempdir().unwrap();
    match Shipper::start(open(dir.path()), cfg.clone()) {
        Err(ReplicationError::Nats(m)) => assert!(m.contains("127.0.0.1"), "{m}"),
        other => panic!("expected a NATS error, got {:?}", other.map(|s| s.status())),
    }
    assert!(matches!(
        Shipper::start(open(tempfile::tempdir().unwrap().path()), cfg.with_replicas(2)),
        Err(ReplicationError::Config(_))
    ));
}

/// The shipped body of the writer's event at `seq` (layout in
/// docs/design.md, "Scaling out"), with `payload` in place of its own.
fn body(store: &Store, seq: u64, payload: &[u8]) -> Vec<u8> {
    let e = store.cursor_from(&Region::all(), seq).poll().unwrap();
    let h = store.get(e.event_id).unwrap().event.header;
    let mut b = vec![1u8];
    b.extend_from_slice(&e.kind.as_raw().to_le_bytes());
    b.push(h.flags);
    b.extend_from_slice(&e.clock.to_le_bytes());
    b.extend_from_slice(&e.wall_ms.to_le_bytes());
    b.extend_from_slice(&h.timestamp_us.to_le_bytes());
    b.extend_from_slice(&e.global_sequence.to_le_bytes());
    b.extend_from_slice(&e.event_id.to_le_bytes());
    b.extend_from_slice(&e.correlation_id.to_le_bytes());
    match e.causation_id {
        Some(c) => {
            b.push(1);
            b.extend_from_slice(&c.to_le_bytes());
        }
        None => b.push(0),
    }
    b.extend_from_slice(&e.hash_chain.prev_hash);
    b.extend_from_slice(&e.hash_chain.event_hash);
    for name in [e.coord.entity(), e.coord.scope()] {
        b.extend_from_slice(&(name.len() as u32).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
    }
    b.extend_from_slice(payload);
    b
}

/// A plain TCP connection to the server on `port`, past its `INFO` line,
/// and a reader on it (10 s read timeout).
fn raw_connect(port: u16) -> (std::net::TcpStream, BufReader<std::net::TcpStream>) {
    let conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    (conn, reader)
}

/// Publishes one message with the NATS text protocol, as any client on the
/// network could, expecting the stream's last sequence to be `last`.
fn raw_publish(port: u16, subject: &str, last: u64, payload: &[u8]) {
    let (mut conn, mut reader) = raw_connect(port);
    let mut line = String::new();
    let headers = format!("NATS/1.0\r\nNats-Expected-Last-Sequence: {last}\r\n\r\n");
    let mut msg = format!(
        "CONNECT {{\"verbose\":false,\"headers\":true}}\r\nHPUB {subject} {} {}\r\n{headers}",
        headers.len(),
        headers.len() + payload.len()
    )
    .into_bytes();
    msg.extend_from_slice(payload);
    msg.extend_from_slice(b"\r\nPING\r\n");
    conn.write_all(&msg).unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.starts_with("-ERR"), "{line}");
        if line.starts_with("PONG") {
            return;
        }
    }
}

/// Sends one request with the NATS text protocol (any client on the
/// network could) and returns the reply's payload.
fn raw_request(port: u16, subject: &str, payload: &str) -> String {
    let (mut conn, mut reader) = raw_connect(port);
    let mut line = String::new();
    let msg = format!(
        "CONNECT {{\"verbose\":false}}\r\nSUB _TEST.reply 1\r\nPUB {subject} _TEST.reply {}\r\n{payload}\r\n",
        payload.len()
    );
    conn.write_all(msg.as_bytes()).unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.starts_with("-ERR"), "{line}");
        if line.starts_with("PING") {
            conn.write_all(b"PONG\r\n").unwrap();
        }
        if let Some(head) = line.strip_prefix("MSG ") {
            let len: usize = head.split_whitespace().last().unwrap().parse().unwrap();
            let mut body = vec![0u8; len + 2];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            body.truncate(len);
            return String::from_utf8(body).unwrap();
        }
    }
}

/// The names of the stream's consumers, from the JetStream API.
fn consumer_names(port: u16, stream: &str) -> Vec<String> {
    let reply = raw_request(port, &format!("$JS.API.CONSUMER.NAMES.{stream}"), "{}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    v["consumers"]
        .as_array()
        .map(|a| a.iter().map(|n| n.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The stream's one consumer, waiting (bounded) until exactly one is listed.
fn one_consumer(port: u16, stream: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut names = consumer_names(port, stream);
        if names.len() == 1 {
            return names.remove(0);
        }
        assert!(std::time::Instant::now() < deadline, "expected one consumer, the server lists {names:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_replica_whose_consumer_is_deleted_consumes_again_without_gaps_or_duplicates() {
    let Some(server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "LOSTCONS").with_subject_prefix("bp.lost");
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = open(wdir.path());
    let shipper = Shipper::start(Arc::clone(&writer), cfg.clone()).unwrap();
    let replica = Replica::open(rdir.path(), cfg).unwrap();
    write_mix(&writer, 0, 10);
    assert!(replica.wait_for(40, WAIT), "{:?}", replica.status());
    for round in 0..3u64 {
        // The replica has caught up, so it holds a consumer; it may be a
        // moment before the server lists a consumer created just now.
        let names = one_consumer(server.port, "LOSTCONS");
        let reply = raw_request(server.port, &format!("$JS.API.CONSUMER.DELETE.LOSTCONS.{names}"), "");
        assert!(reply.contains("\"success\":true"), "{reply}");
        write_mix(&writer, 10 + round * 10, 10);
        // Only a new consumer can deliver these.
        let so_far = 40 * (round + 2);
        assert!(replica.wait_for(so_far, Duration::from_secs(60)), "{:?}", replica.status());
    }
    let n = committed(&writer);
    assert_eq!(n, 160);
    assert!(shipper.wait_shipped(n, WAIT), "{:?}", shipper.status());
    assert!(replica.wait_for(n, Duration::from_secs(60)), "{:?}", replica.status());
    assert_eq!(replica.status().error, None);
    assert_same_log(&writer, replica.store());
    assert_eq!(replica.close().unwrap().error, None);
    assert_eq!(
        consumer_names(server.port, "LOSTCONS"),
        Vec::<String>::new(),
        "a closed replica leaves no consumer"
    );
}

#[test]
fn a_message_removed_from_the_stream_stops_the_replica_with_a_clear_error() {
    let Some(server) = nats::start() else { return };
    let (cfg, _wdir, rdir, _writer) = shipped_writer(&server, "HOLE", 5);
    // Stream message 11 carries global sequence 10.
    let reply = raw_request(server.port, "$JS.API.STREAM.MSG.DELETE.HOLE", r#"{"seq":11,"no_erase":true}"#);
    assert!(reply.contains("\"success\":true"), "{reply}");
    let replica = Replica::open(rdir.path(), cfg).unwrap();
    assert!(!replica.wait_for(11, WAIT), "an event the stream no longer holds was stored");
    let status = replica.status();
    assert!(!status.running, "the replica should stop at the hole");
    let error = status.error.clone().expect("an error");
    assert!(error.contains("global sequence 10") && error.contains("missing"), "{error}");
    // Whole shipped batches before the hole are stored; nothing after it.
    assert!(status.applied <= 10, "{status:?}");
    assert_eq!(replica.store().query(&Region::all()).len() as u64, status.applied);
    assert!(replica.store().verify().is_ok());
}

#[test]
fn appends_go_on_while_the_server_is_killed_and_everything_arrives_after_it_returns() {
    let Some(mut server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "KILL").with_subject_prefix("bp.kill").with_msg_ids(false);
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = open(wdir.path());
    let shipper = Shipper::start(Arc::clone(&writer), cfg.clone()).unwrap();
    let replica = Replica::open(rdir.path(), cfg).unwrap();
    write_mix(&writer, 0, 20);
    assert!(replica.wait_for(80, WAIT), "{:?}", replica.status());
    server.kill(); // SIGKILL
    write_mix(&writer, 20, 20); // `local` mode: acknowledged without the server
    assert!(shipper.status().lag > 0 || shipper.status().shipped == 160);
    server.kill_and_restart();
    write_mix(&writer, 40, 20);
    let n = committed(&writer);
    assert!(shipper.wait_shipped(n, Duration::from_secs(60)), "{:?}", shipper.status());
    assert!(replica.wait_for(n, Duration::from_secs(60)), "{:?}", replica.status());
    assert_same_log(&writer, replica.store());
    assert_eq!(shipper.status().error, None);
}

#[test]
fn a_replica_serves_wasm_projections_and_never_sees_what_a_gate_denied() {
    use batpak_test_artifacts as art;
    let Some(server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "BANK");
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = open(wdir.path());
    writer.install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).unwrap()).unwrap();
    writer.install_gate(GatePlugin::from_file(art::OVERDRAFT).unwrap()).unwrap();
    let (deposit, withdraw) = (EventKind::custom(1, 1), EventKind::custom(1, 2));
    let acct = |n: u32| Coordinate::new(format!("account:{n}"), "bank").unwrap();
    for n in 0..5 {
        writer.append(&acct(n), deposit, &json!({"amount": 100})).unwrap();
        writer.append(&acct(n), withdraw, &json!({"amount": 30 + n})).unwrap();
        // Denied by the overdraft gate on the writer: never committed, never shipped.
        assert!(writer.append(&acct(n), withdraw, &json!({"amount": 1000})).is_err());
    }
    let shipper = Shipper::start(Arc::clone(&writer), cfg.clone()).unwrap();
    let replica = Replica::open(rdir.path(), cfg).unwrap();
    replica
        .store()
        .install_projection("balance", ProjectionPlugin::from_file(art::BALANCE).unwrap())
        .unwrap();
    assert!(shipper.wait_shipped(10, WAIT));
    assert!(replica.wait_for(10, WAIT), "{:?}", replica.status());
    assert_eq!(replica.store().stats().global_sequence, 10, "denied appends burn no sequence");
    for n in 0..5 {
        let key = format!("account:{n}");
        assert!(replica.store().wait_for_projection("balance", 9, WAIT).unwrap());
        let theirs = replica.store().projection_state("balance", &key).unwrap();
        assert_eq!(theirs, writer.projection_state("balance", &key).unwrap());
        assert_eq!(theirs, Some((70 - n as i64).to_string().into_bytes()));
    }
    assert_same_log(&writer, replica.store());
}

// ---- Quorum acks and failover -------------------------------------------

fn quorum(dir: &std::path::Path, cfg: &JetStreamConfig, node: &str) -> Result<Arc<Store>, ReplicationError> {
    let store_cfg = StoreConfig::new(dir).with_batch_max_size(2000);
    batpak::replication::open_quorum(store_cfg, cfg.clone().with_node_id(node)).map(Arc::new)
}

/// A fresh replica of the whole stream, caught up to `n` events.
fn fresh_replica(cfg: &JetStreamConfig, n: u64) -> (tempfile::TempDir, Replica) {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(dir.path(), cfg.clone()).unwrap();
    assert!(replica.wait_for(n, WAIT), "replica: {:?}", replica.status());
    (dir, replica)
}

#[test]
fn quorum_acks_come_from_the_stream_and_a_replica_matches_the_writer() {
    let Some(server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "QUORUM").with_subject_prefix("bp.quorum");
    let wdir = tempfile::tempdir().unwrap();
    let writer = quorum(wdir.path(), &cfg, "a").unwrap();
    // Concurrent callers: group commits go out as atomic batches.
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let writer = &writer;
            s.spawn(move || write_mix(writer, t * 100, 15));
        }
    });
    let n = committed(&writer);
    assert_eq!(n, 240);
    let (_rdir, replica) = fresh_replica(&cfg, n);
    assert_same_log(&writer, replica.store());
    // One unit must fit one JetStream atomic batch.
    let c = Coordinate::new("acct:1", "bank").unwrap();
    let items: Vec<_> = (0..1001)
        .map(|i| {
            BatchAppendItem::new(
                c.clone(),
                EventKind::custom(1, 2),
                &i,
                AppendOptions::new(),
                CausationRef::None,
            )
            .unwrap()
        })
        .collect();
    let refused = writer.append_batch(items.clone());
    assert!(
        matches!(&refused, Err(StoreError::BatchFailed { source, .. }) if matches!(**source, StoreError::Configuration(ref m) if m.contains("atomic batch"))),
        "{refused:?}"
    );
    writer.append_batch(items[..1000].to_vec()).unwrap();
    assert_eq!(committed(&writer), 1240);
    assert!(replica.wait_for(1240, WAIT), "{:?}", replica.status());
    assert_same_log(&writer, replica.store());
}

#[test]
fn the_writer_lease_admits_one_node_and_a_restart_resumes() {
    let Some(server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "LEASE").with_subject_prefix("bp.lease");
    let (adir, bdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = quorum(adir.path(), &cfg, "node-a").unwrap();
    write_mix(&a, 0, 5);
    match quorum(bdir.path(), &cfg, "node-b") {
        Err(ReplicationError::LeaseHeld { holder, epoch: 1 }) => assert_eq!(holder, "node-a"),
        other => panic!("expected LeaseHeld by node-a, got {:?}", other.map(|_| ())),
    }
    // A clean close releases the lease; the same node reopens and resumes.
    Arc::try_unwrap(a).ok().unwrap().close().unwrap();
    let a = quorum(adir.path(), &cfg, "node-a").unwrap();
    assert_eq!(committed(&a), 20);
    write_mix(&a, 5, 5);
    Arc::try_unwrap(a).ok().unwrap().close().unwrap();
    // Another node may take a released lease: it first stores the whole stream.
    let b = quorum(bdir.path(), &cfg, "node-b").unwrap();
    assert_eq!(committed(&b), 40);
    write_mix(&b, 10, 1);
    let (_rdir, replica) = fresh_replica(&cfg, 44);
    assert_same_log(&b, replica.store());
    match quorum(adir.path(), &cfg, "node-a") {
        Err(ReplicationError::LeaseHeld { holder, epoch: 3 }) => assert_eq!(holder, "node-b"),
        other => panic!("expected LeaseHeld by node-b in epoch 3, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_promoted_replica_fences_the_old_writer_which_acknowledges_nothing_more() {
    let Some(server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "PROMOTE").with_subject_prefix("bp.promote");
    let (adir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = quorum(adir.path(), &cfg, "old").unwrap();
    write_mix(&old, 0, 10);
    let replica = Replica::open(rdir.path(), cfg.clone().with_node_id("new")).unwrap();
    assert!(replica.wait_for(20, WAIT), "{:?}", replica.status());
    write_mix(&old, 10, 5); // the replica may or may not have these yet
    let new = replica.promote().unwrap();
    assert_eq!(committed(&new), 60, "promote stores everything the stream holds first");
    write_mix(&new, 15, 5);
    // The old writer is still running, but every append of it is refused.
    let c = Coordinate::new("acct:1", "bank").unwrap();
    let first = old.append(&c, EventKind::custom(1, 1), &json!({"zombie": 1}));
    assert!(
        matches!(&first, Err(StoreError::Fenced(m)) if m.contains("new")),
        "the fence names the lease holder: {first:?}"
    );
    let again = old.append(&c, EventKind::custom(1, 1), &json!({"zombie": 2}));
    assert!(matches!(again, Err(StoreError::Fenced(_))), "{again:?}");
    assert_eq!(old.stats().event_count, 60, "the refused event never became visible on the old writer");
    assert!(old.query(&Region::all()).iter().all(|e| e.global_sequence < 60));
    // The stream holds exactly the new writer's log.
    let (_r2, check) = fresh_replica(&cfg, 80);
    assert_same_log(&new, check.store());
    assert_eq!(committed(check.store()), 80);
}

#[test]
fn quorum_appends_fail_unacknowledged_while_the_stream_is_gone_and_reopen_settles() {
    let Some(mut server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "AWAY")
        .with_subject_prefix("bp.away")
        .with_quorum_timeout(Duration::from_millis(500));
    let wdir = tempfile::tempdir().unwrap();
    let writer = quorum(wdir.path(), &cfg, "w").unwrap();
    write_mix(&writer, 0, 5);
    server.kill();
    let c = Coordinate::new("acct:1", "bank").unwrap();
    // Four callers retry one idempotent append at once: however they are
    // grouped, none may be told it is stored.
    let options = AppendOptions::new().with_idempotency(0xfeed);
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let (writer, c) = (&writer, &c);
                s.spawn(move || {
                    writer.append_with_options(
                        c,
                        EventKind::custom(1, 1),
                        &json!({"during": "outage"}),
                        options,
                    )
                })
            })
            .collect();
        calls.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        outcomes.iter().all(Result::is_err),
        "an append was acknowledged without the stream: {outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|o| matches!(o, Err(StoreError::QuorumUnavailable(_)))),
        "the first group fails as unavailable: {outcomes:?}"
    );
    let lost = writer.append(&c, EventKind::custom(1, 1), &json!({"during": "outage"}));
    assert!(matches!(lost, Err(StoreError::Poisoned(_))), "{lost:?}");
    assert_eq!(writer.stats().event_count, 20, "nothing unconfirmed is visible");
    assert_eq!(writer.query(&Region::all()).len(), 20);
    let closed = Arc::try_unwrap(writer).ok().unwrap().close();
    assert!(matches!(closed, Err(StoreError::Poisoned(_))), "close reports the poison: {closed:?}");
    server.kill_and_restart();
    // Reopening settles the unconfirmed tail against the stream, then goes on.
    let writer = quorum(wdir.path(), &cfg, "w").unwrap();
    let settled = committed(&writer);
    assert!(
        settled == 20 || settled == 21,
        "the unconfirmed append is settled once or not at all: {settled}"
    );
    write_mix(&writer, 5, 2);
    let (_rdir, replica) = fresh_replica(&cfg, settled + 8);
    assert_same_log(&writer, replica.store());
}

#[test]
fn killing_the_stream_leader_under_16_quorum_callers_loses_no_acknowledged_event() {
    let Some(mut cluster) = nats::start_cluster() else { return };
    let cfg = JetStreamConfig::new(cluster.urls(), "R3LEADER").with_subject_prefix("bp.r3").with_replicas(3);
    let wdir = tempfile::tempdir().unwrap();
    let writer = quorum(wdir.path(), &cfg, "w").unwrap();
    let acked = parking_lot::Mutex::new(Vec::<(u128, u64)>::new());
    let (halfway_tx, halfway_rx) = std::sync::mpsc::channel::<()>();
    let killed = std::sync::atomic::AtomicBool::new(false);
    let after_kill = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..16u64 {
            let (writer, acked, halfway_tx, killed, after_kill) =
                (&writer, &acked, halfway_tx.clone(), &killed, &after_kill);
            s.spawn(move || {
                let c = Coordinate::new(format!("caller:{t}"), "r3").unwrap();
                for i in 0..40u64 {
                    match writer.append(&c, EventKind::custom(1, 1), &json!({"t": t, "i": i})) {
                        Ok(r) => {
                            let mut list = acked.lock();
                            list.push((r.event_id, r.sequence));
                            if list.len() == 200 {
                                let _ = halfway_tx.send(());
                            }
                            if killed.load(std::sync::atomic::Ordering::Acquire) {
                                after_kill.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        Err(e) => panic!("caller {t}: append {i} failed: {e}"),
                    }
                }
            });
        }
        drop(halfway_tx);
        halfway_rx.recv().expect("200 acknowledged appends");
        let leader = cluster.stream_leader("R3LEADER").expect("the stream has a leader");
        cluster.kill(leader); // SIGKILL, mid-stream
        killed.store(true, std::sync::atomic::Ordering::Release);
    });
    let acked = acked.into_inner();
    assert_eq!(acked.len(), 640, "every append was acknowledged, riding out the election");
    assert!(after_kill.into_inner() > 0, "appends were acknowledged after the leader died");
    // Every acknowledged event is on the stream, once, where its receipt says.
    let (_rdir, replica) = fresh_replica(&cfg, 640);
    assert_eq!(committed(replica.store()), 640, "nothing unacknowledged and nothing twice");
    let on_replica: std::collections::HashMap<u128, u64> =
        replica.store().query(&Region::all()).iter().map(|e| (e.event_id, e.global_sequence)).collect();
    for (id, seq) in &acked {
        assert_eq!(on_replica.get(id), Some(seq), "acknowledged event {id:032x} where its receipt says");
    }
    assert_same_log(&writer, replica.store());
}

const QUORUM_CHILD: &str = "BATPAK_QUORUM_CHILD";

/// Not a test on its own: the writer process the kill test below starts
/// (with `BATPAK_QUORUM_CHILD=<dir>|<urls>`) and kills. It appends batches
/// of 50 with quorum acks and prints each batch's last sequence once acked.
#[test]
fn quorum_writer_child_process() {
    let Ok(spec) = std::env::var(QUORUM_CHILD) else { return };
    let (dir, urls) = spec.split_once('|').unwrap();
    let cfg = JetStreamConfig::new(urls, "R3KILL").with_subject_prefix("bp.kill3").with_replicas(3);
    let writer = quorum(std::path::Path::new(dir), &cfg, "doomed").unwrap();
    let mut out = std::io::stdout();
    for round in 0u64.. {
        let items = (0..50u64)
            .map(|j| {
                let c = Coordinate::new(format!("acct:{}", j % 7), "kill").unwrap();
                BatchAppendItem::new(
                    c,
                    EventKind::custom(1, 2),
                    &json!({"round": round, "j": j}),
                    AppendOptions::new(),
                    CausationRef::None,
                )
                .unwrap()
            })
            .collect();
        let receipts = writer.append_batch(items).unwrap();
        writeln!(out, "acked {}", receipts.last().unwrap().sequence).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_writer_killed_mid_batch_leaves_whole_batches_and_a_promoted_replica_continues() {
    let Some(cluster) = nats::start_cluster() else { return };
    let cfg = JetStreamConfig::new(cluster.urls(), "R3KILL").with_subject_prefix("bp.kill3").with_replicas(3);
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "quorum_writer_child_process", "--nocapture", "--test-threads=1"])
        .env(QUORUM_CHILD, format!("{}|{}", wdir.path().display(), cluster.urls()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last_acked = None;
    for line in lines {
        if let Some(seq) = line.unwrap().strip_prefix("acked ") {
            last_acked = Some(seq.parse::<u64>().unwrap());
            if last_acked >= Some(20 * 50 - 1) {
                break;
            }
        }
    }
    let last_acked = last_acked.expect("the child acknowledged batches");
    child.kill().unwrap(); // SIGKILL while it appends its next batches
    child.wait().unwrap();
    let replica = Replica::open(rdir.path(), cfg.clone().with_node_id("successor")).unwrap();
    let promoted = replica.promote().unwrap();
    let n = committed(&promoted);
    assert!(n > last_acked, "every acknowledged batch is kept ({n} events, last ack at {last_acked})");
    assert_eq!(n % 50, 0, "batches are on the stream whole or not at all ({n} events)");
    let report = promoted.verify();
    assert!(report.is_ok(), "{:?}", report.issues);
    // The new writer continues the log: no gap, no duplicate.
    let c = Coordinate::new("acct:0", "kill").unwrap();
    let next = promoted.append(&c, EventKind::custom(1, 1), &json!({"after": "failover"})).unwrap();
    assert_eq!(next.sequence, n);
    let (_check_dir, check) = fresh_replica(&cfg, n + 1);
    assert_same_log(&promoted, check.store());
}

#[test]
fn a_quorum_writer_publishes_the_local_events_the_stream_lacks_before_it_takes_appends() {
    let Some(server) = nats::start() else { return };
    let cfg = JetStreamConfig::new(server.url(), "SETTLE").with_subject_prefix("bp.settle");
    let wdir = tempfile::tempdir().unwrap();
    // A store that was written without replication (or whose quorum writer
    // stopped before the stream confirmed its tail).
    let plain = open(wdir.path());
    write_mix(&plain, 0, 10);
    Arc::try_unwrap(plain).ok().unwrap().close().unwrap();
    let writer = quorum(wdir.path(), &cfg, "w").unwrap();
    assert_eq!(committed(&writer), 40);
    write_mix(&writer, 10, 1);
    let (_rdir, replica) = fresh_replica(&cfg, 44);
    assert_same_log(&writer, replica.store());
    // A different store of the same length is refused: it is not a prefix.
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(other_dir.path());
    write_mix(&other, 0, 11);
    Arc::try_unwrap(other).ok().unwrap().close().unwrap();
    match quorum(other_dir.path(), &cfg, "w") {
        Err(ReplicationError::Diverged { sequence: 43, .. }) => {}
        other => panic!("expected Diverged at 43, got {:?}", other.map(|_| ())),
    }
}
