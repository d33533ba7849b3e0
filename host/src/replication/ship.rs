//! The shipper (`local` ack mode): a thread that tails the store's
//! committed log and publishes it to the stream in order, one JetStream
//! atomic batch per run of events committed together.

use super::wire::{self, Shipped};
use super::{
    connect, msg_id, runtime, JetStreamConfig, Progress, Ready, ReplicationError, Worker, MAX_ATOMIC_BATCH,
};
use crate::coordinate::Region;
use crate::store::Store;
use async_nats::header::{
    HeaderMap, NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL, NATS_BATCH_ID, NATS_BATCH_SEQUENCE,
    NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID,
};
use async_nats::jetstream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long an idle shipper sleeps before it looks for new events.
const IDLE_POLL: Duration = Duration::from_millis(1);
/// How often a batch whose outcome is unknown is tried again.
const PUBLISH_ATTEMPTS: u32 = 3;
/// How long to wait for a batch's PubAck.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait before shipping again after the server failed.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Ships a store's committed log to a JetStream stream. Dropping it (or
/// [`Shipper::stop`]) stops the thread; a new shipper resumes where the
/// stream ends.
pub struct Shipper {
    store: Arc<Store>,
    worker: Worker,
}

/// What a shipper has done so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShipperStatus {
    /// Events on the stream (global sequences below this are shipped).
    pub shipped: u64,
    /// Events committed locally (the store's next global sequence).
    pub committed: u64,
    /// Committed events not yet on the stream.
    pub lag: u64,
    /// Why the shipper stopped, if it stopped on an error.
    pub error: Option<String>,
    /// Whether its thread still runs.
    pub running: bool,
}

impl Shipper {
    /// Connects, creates the stream if it does not exist (atomic batches
    /// allowed), checks that the stream is a prefix of this store's log,
    /// and starts shipping from where the stream ends. Fails if the server
    /// cannot be reached within the config's timeout, or if the stream
    /// holds events this store does not (`Diverged`).
    pub fn start(store: Arc<Store>, cfg: JetStreamConfig) -> Result<Self, ReplicationError> {
        cfg.validate()?;
        let shipping = Arc::clone(&store);
        let worker = Worker::start("shipper", Progress::new(0), move |progress, stop, ready| {
            ship(&shipping, &cfg, progress, stop, ready)
        })?;
        Ok(Self { store, worker })
    }

    /// Shipped, committed and lag, and the error that stopped it, if any.
    pub fn status(&self) -> ShipperStatus {
        let p = self.worker.progress.snapshot();
        let committed = self.store.next_sequence();
        ShipperStatus {
            shipped: p.done,
            committed,
            lag: committed.saturating_sub(p.done),
            error: p.error,
            running: !p.finished,
        }
    }

    /// Waits until every global sequence below `upto` is on the stream;
    /// `false` if `timeout` passed first or the shipper stopped.
    pub fn wait_shipped(&self, upto: u64, timeout: Duration) -> bool {
        self.worker.progress.wait_done(upto, timeout)
    }

    /// Stops shipping (after the batch in flight) and returns the final
    /// status, or the error that had stopped the shipper.
    pub fn stop(mut self) -> Result<ShipperStatus, ReplicationError> {
        self.worker.halt();
        let status = self.status();
        match &status.error {
            Some(e) => Err(ReplicationError::Stopped(e.clone())),
            None => Ok(status),
        }
    }
}

/// The shipper thread: set up, report ready, then ship until stopped.
fn ship(
    store: &Store,
    cfg: &JetStreamConfig,
    progress: &Progress,
    stop: &AtomicBool,
    ready: &Ready,
) -> Result<(), ReplicationError> {
    runtime()?.block_on(async {
        let client = connect(cfg).await?;
        let js = jetstream::new(client.clone());
        let mut stream = open_stream(&js, cfg).await?;
        let next = resume_point(&mut stream, store).await?;
        progress.update(|p| {
            p.done = next;
            p.stream_last = next;
        });
        let _ = ready.send(Ok(()));
        let mut session =
            Session { client, stream, prefix: cfg.subject_prefix.clone(), msg_ids: cfg.msg_ids, next };
        session.run(store, progress, stop).await
    })
}

/// Creates the stream if it does not exist; checks it allows atomic batches.
async fn open_stream(
    js: &jetstream::Context,
    cfg: &JetStreamConfig,
) -> Result<jetstream::stream::Stream, ReplicationError> {
    let config = jetstream::stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.>", cfg.subject_prefix)],
        allow_atomic_publish: true,
        allow_direct: true,
        num_replicas: cfg.replicas,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    let mut stream = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| ReplicationError::Nats(format!("stream {}: {e}", cfg.stream)))?;
    let info = stream.info().await.map_err(|e| ReplicationError::Nats(format!("stream info: {e}")))?;
    if !info.config.allow_atomic_publish {
        return Err(ReplicationError::Config(format!(
            "stream {} exists without allow_atomic (needs nats-server >= 2.12 and the flag)",
            cfg.stream
        )));
    }
    Ok(stream)
}

/// Where shipping resumes: the stream's length, once its last event is
/// checked to be this store's event at that sequence.
async fn resume_point(
    stream: &mut jetstream::stream::Stream,
    store: &Store,
) -> Result<u64, ReplicationError> {
    let info = stream.info().await.map_err(|e| ReplicationError::Nats(format!("stream info: {e}")))?;
    let last = info.state.last_sequence;
    if last == 0 {
        return Ok(0);
    }
    let local = store.next_sequence();
    if last > local {
        return Err(ReplicationError::Diverged {
            sequence: local,
            detail: format!(
                "the stream holds {last} events and this store {local}: it is not the stream's writer"
            ),
        });
    }
    let theirs = last_on_stream(stream, last).await?;
    let mine = store.shipped_at(last - 1)?.ok_or_else(|| ReplicationError::Diverged {
        sequence: last - 1,
        detail: "the stream's last event is no longer visible here (compacted?)".into(),
    })?;
    if theirs.event_id != mine.event_id || theirs.event_hash != mine.event_hash {
        return Err(ReplicationError::Diverged {
            sequence: last - 1,
            detail: format!(
                "the stream's last event is {} and this store's is {}",
                msg_id(theirs.event_id),
                msg_id(mine.event_id)
            ),
        });
    }
    Ok(last)
}

/// The event stored at stream sequence `seq`.
async fn last_on_stream(stream: &jetstream::stream::Stream, seq: u64) -> Result<Shipped, ReplicationError> {
    let msg = stream
        .get_raw_message(seq)
        .await
        .map_err(|e| ReplicationError::Nats(format!("read stream message {seq}: {e}")))?;
    Shipped::decode(&msg.payload).map_err(|e| ReplicationError::Diverged {
        sequence: seq - 1,
        detail: format!("stream message {seq} is not a batpak event: {e}"),
    })
}

/// A connected shipper.
struct Session {
    client: async_nats::Client,
    stream: jetstream::stream::Stream,
    prefix: String,
    msg_ids: bool,
    /// The next global sequence to ship (= the stream's last sequence).
    next: u64,
}

impl Session {
    async fn run(
        &mut self,
        store: &Store,
        progress: &Progress,
        stop: &AtomicBool,
    ) -> Result<(), ReplicationError> {
        let mut backoff = RETRY_MIN;
        while !stop.load(Ordering::Acquire) {
            let entries = store.cursor_from(&Region::all(), self.next).poll_batch(MAX_ATOMIC_BATCH);
            if entries.is_empty() {
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            let events = store.shipped_many(&entries)?;
            if let Some((i, e)) =
                events.iter().enumerate().find(|(i, e)| e.global_sequence != self.next + *i as u64)
            {
                return Err(ReplicationError::Diverged {
                    sequence: self.next + i as u64,
                    detail: format!(
                        "the log skips to {} (compacted before it was shipped?)",
                        e.global_sequence
                    ),
                });
            }
            let group = &events[..commit_group(&events)];
            match self.publish(group).await {
                Ok(()) => backoff = RETRY_MIN,
                // The server is away or restarting: the local log keeps
                // the events, so wait and try again (the lag grows).
                Err(ReplicationError::Nats(why)) => {
                    tracing::warn!(error = %why, retry_in = ?backoff, "shipping paused");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
                Err(e) => return Err(e),
            }
            self.next += group.len() as u64;
            let next = self.next;
            progress.update(|p| {
                p.done = next;
                p.stream_last = next;
            });
        }
        Ok(())
    }

    /// Publishes `events` as one atomic batch that must extend the stream
    /// exactly; settles an unknown outcome by reading the stream back.
    async fn publish(&mut self, events: &[Shipped]) -> Result<(), ReplicationError> {
        let expected = self.next;
        let mut why = String::new();
        for attempt in 0..PUBLISH_ATTEMPTS {
            match self.send_batch(events, expected, attempt).await {
                Ok(()) => return Ok(()),
                Err(e) => why = e,
            }
            // Lost ack, a refused batch or a reconnect: what is on the stream?
            let info =
                self.stream.info().await.map_err(|e| ReplicationError::Nats(format!("stream info: {e}")))?;
            let last = info.state.last_sequence;
            let end = expected + events.len() as u64;
            if last == end {
                let stored = last_on_stream(&self.stream, last).await?;
                if events.last().is_some_and(|e| e.event_id == stored.event_id) {
                    return Ok(());
                }
            }
            if last != expected {
                return Err(ReplicationError::Diverged {
                    sequence: expected,
                    detail: format!(
                        "the stream moved to {last} under this shipper (another writer?) after: {why}"
                    ),
                });
            }
        }
        Err(ReplicationError::Nats(format!(
            "batch at {expected} not stored after {PUBLISH_ATTEMPTS} tries: {why}"
        )))
    }

    /// Sends one atomic batch and checks its PubAck.
    async fn send_batch(&self, events: &[Shipped], expected: u64, attempt: u32) -> Result<(), String> {
        let Some(first) = events.first() else { return Ok(()) };
        // A fresh id per attempt: the server may still hold the parts of
        // an abandoned attempt under the old one.
        let batch_id = format!("{}-{attempt}", msg_id(first.event_id));
        let last = events.len() - 1;
        for (i, e) in events.iter().enumerate() {
            let mut headers = HeaderMap::new();
            if self.msg_ids {
                headers.insert(NATS_MESSAGE_ID, msg_id(e.event_id).as_str());
            }
            headers.insert(NATS_BATCH_ID, batch_id.as_str());
            headers.insert(NATS_BATCH_SEQUENCE, (i + 1).to_string().as_str());
            if i == 0 {
                headers.insert(NATS_EXPECTED_LAST_SEQUENCE, expected.to_string().as_str());
            }
            let subject = wire::subject(&self.prefix, &e.entity);
            let body = e.encode().into();
            if i < last {
                self.client.publish_with_headers(subject, headers, body).await.map_err(|e| e.to_string())?;
                continue;
            }
            headers.insert(NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL);
            headers.insert(super::GROUP_END, "1");
            let request = self.client.request_with_headers(subject, headers, body);
            let reply = tokio::time::timeout(ACK_TIMEOUT, request)
                .await
                .map_err(|_| format!("no PubAck within {ACK_TIMEOUT:?}"))?
                .map_err(|e| e.to_string())?;
            return check_ack(&reply.payload, expected + events.len() as u64);
        }
        Ok(())
    }
}

/// How many of `events` (all visible, in order) to publish as one batch:
/// all of them, unless the poll was full, when the last run of one
/// timestamp (a batch that may go on past the poll) waits for the next
/// poll. A run longer than an atomic batch is split (see docs).
fn commit_group(events: &[Shipped]) -> usize {
    if events.len() < MAX_ATOMIC_BATCH {
        return events.len();
    }
    let Some(last) = events.last() else { return 0 };
    let run_start = events.iter().rposition(|e| e.timestamp_us != last.timestamp_us).map_or(0, |i| i + 1);
    if run_start == 0 {
        events.len()
    } else {
        run_start
    }
}

/// Checks a batch's PubAck: stored, and ending at stream sequence `end`.
fn check_ack(payload: &[u8], end: u64) -> Result<(), String> {
    let ack: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("PubAck is not JSON ({e})"))?;
    if let Some(err) = ack.get("error") {
        return Err(format!("server refused the batch: {err}"));
    }
    match ack.get("seq").and_then(serde_json::Value::as_u64) {
        Some(seq) if seq == end => Ok(()),
        Some(seq) => Err(format!("batch stored ending at {seq}, expected {end}")),
        None => Err(format!("PubAck without a sequence: {ack}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64, ts: i64) -> Shipped {
        Shipped {
            kind: 1,
            flags: 0,
            clock: 0,
            wall_ms: 0,
            timestamp_us: ts,
            global_sequence: seq,
            event_id: u128::from(seq),
            correlation_id: 0,
            causation_id: None,
            prev_hash: [0; 32],
            event_hash: [0; 32],
            entity: "e".into(),
            scope: "s".into(),
            payload: Vec::new(),
        }
    }

    #[test]
    fn a_full_poll_leaves_its_last_run_for_the_next_poll() {
        let short: Vec<_> = (0..10).map(|i| at(i, 7)).collect();
        assert_eq!(commit_group(&short), 10);
        let mut full: Vec<_> = (0..990).map(|i| at(i, i as i64)).collect();
        full.extend((990..1000).map(|i| at(i, 5000)));
        assert_eq!(commit_group(&full), 990);
        let one_run: Vec<_> = (0..1000).map(|i| at(i, 1)).collect();
        assert_eq!(commit_group(&one_run), 1000);
    }

    #[test]
    fn acks_are_checked() {
        assert_eq!(check_ack(br#"{"stream":"S","seq":12,"batch":"x","count":2}"#, 12), Ok(()));
        assert!(check_ack(br#"{"stream":"S","seq":11}"#, 12).is_err());
        assert!(check_ack(
            br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}"#,
            12
        )
        .is_err());
        assert!(check_ack(b"nope", 1).is_err());
    }
}
