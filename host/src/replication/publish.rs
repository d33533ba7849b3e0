//! Putting events on the stream: creating it, checking where it ends, and
//! publishing atomic batches that must continue it exactly. Shared by the
//! shipper (`local` acks) and the quorum writer.

use super::wire::{self, Shipped};
use super::{msg_id, JetStreamConfig, ReplicationError};
use async_nats::header::{
    HeaderMap, NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL, NATS_BATCH_ID, NATS_BATCH_SEQUENCE,
    NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID,
};
use async_nats::jetstream;
use std::time::Duration;

/// How long to wait for a batch's PubAck.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait before trying a batch again.
pub(super) const RETRY_MIN: Duration = Duration::from_millis(50);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long creating or opening the stream may take while a cluster
/// elects its leaders.
pub(super) const STREAM_WAIT: Duration = Duration::from_secs(20);

/// Whether a JetStream API error is one a cluster gives while it elects
/// a leader or recovers a node, so that asking again later may succeed.
pub(super) fn transient(why: &str) -> bool {
    ["timed out", "unavailable", "no responders"].iter().any(|t| why.contains(t))
}

/// Creates the stream if it does not exist; checks it allows atomic batches.
pub(super) async fn open_stream(
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
    // A cluster that has just formed (or lost a node) answers "timed out"
    // or "unavailable" for a while (an election): ride that out.
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout.max(STREAM_WAIT);
    let mut backoff = RETRY_MIN;
    let mut stream = loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => break stream,
            Err(e) => {
                let why = e.to_string();
                if !transient(&why) || tokio::time::Instant::now() + backoff > deadline {
                    return Err(ReplicationError::Nats(format!("stream {}: {why}", cfg.stream)));
                }
                tracing::debug!(error = %why, "stream not available yet; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    };
    let info = stream.info().await.map_err(|e| ReplicationError::Nats(format!("stream info: {e}")))?;
    if !info.config.allow_atomic_publish {
        return Err(ReplicationError::Config(format!(
            "stream {} exists without allow_atomic (needs nats-server >= 2.12 and the flag)",
            cfg.stream
        )));
    }
    Ok(stream)
}

/// The stream's last sequence (= the number of events it holds).
pub(super) async fn stream_last(stream: &mut jetstream::stream::Stream) -> Result<u64, ReplicationError> {
    let info = stream.info().await.map_err(|e| ReplicationError::Nats(format!("stream info: {e}")))?;
    Ok(info.state.last_sequence)
}

/// The event stored at stream sequence `seq`.
pub(super) async fn event_on_stream(
    stream: &jetstream::stream::Stream,
    seq: u64,
) -> Result<Shipped, ReplicationError> {
    let msg = stream
        .get_raw_message(seq)
        .await
        .map_err(|e| ReplicationError::Nats(format!("read stream message {seq}: {e}")))?;
    Shipped::decode(&msg.payload).map_err(|e| ReplicationError::Diverged {
        sequence: seq - 1,
        detail: format!("stream message {seq} is not a batpak event: {e}"),
    })
}

/// Checks that the stream's event at global sequence `seq` is `mine`.
pub(super) async fn check_same(
    stream: &jetstream::stream::Stream,
    seq: u64,
    mine: &Shipped,
) -> Result<(), ReplicationError> {
    let theirs = event_on_stream(stream, seq + 1).await?;
    if theirs.event_id != mine.event_id || theirs.event_hash != mine.event_hash {
        return Err(ReplicationError::Diverged {
            sequence: seq,
            detail: format!(
                "the stream's event is {} and this store's is {}",
                msg_id(theirs.event_id),
                msg_id(mine.event_id)
            ),
        });
    }
    Ok(())
}

/// Where appending resumes: the stream's length, once its last event is
/// checked to be this store's event at that sequence. Fails with
/// `Diverged` if the stream holds more than this store, or a different
/// event at its end.
pub(super) async fn resume_point(
    stream: &mut jetstream::stream::Stream,
    store: &crate::store::Store,
) -> Result<u64, ReplicationError> {
    let last = stream_last(stream).await?;
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
    let mine = store.shipped_at(last - 1)?.ok_or_else(|| ReplicationError::Diverged {
        sequence: last - 1,
        detail: "the stream's last event is no longer visible here (compacted?)".into(),
    })?;
    check_same(stream, last - 1, &mine).await?;
    Ok(last)
}

/// A connection that appends to the stream at `next`.
pub(super) struct Publisher {
    pub client: async_nats::Client,
    pub stream: jetstream::stream::Stream,
    pub prefix: String,
    pub msg_ids: bool,
    /// The next global sequence to publish (= the stream's last sequence).
    pub next: u64,
}

impl Publisher {
    /// Publishes `events` (global sequences `next..`) as one atomic batch
    /// that must extend the stream exactly, and moves `next` past them.
    ///
    /// A lost PubAck, a refused batch or a reconnect leaves the outcome
    /// unknown: the stream is read back to settle it. If the stream still
    /// ends at `next`, the batch is sent again (after a back-off) until
    /// `patience` runs out; if it ends with these events, they are stored;
    /// if it ends anywhere else, another writer has extended it
    /// (`Diverged`), which no retry can fix.
    pub(super) async fn publish(
        &mut self,
        events: &[&Shipped],
        patience: Duration,
    ) -> Result<(), ReplicationError> {
        let Some(last_event) = events.last() else { return Ok(()) };
        let expected = self.next;
        let end = expected + events.len() as u64;
        let deadline = tokio::time::Instant::now() + patience;
        let mut backoff = RETRY_MIN;
        let mut attempt = 0u32;
        loop {
            let wait = ACK_TIMEOUT.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let why = match self.send_batch(events, expected, attempt, wait).await {
                Ok(()) => {
                    self.next = end;
                    return Ok(());
                }
                Err(why) => why,
            };
            attempt += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait = ACK_TIMEOUT.min(left.max(RETRY_MIN));
            let read_back = tokio::time::timeout(wait, stream_last(&mut self.stream))
                .await
                .unwrap_or_else(|_| Err(ReplicationError::Nats(format!("no stream info within {wait:?}"))));
            let why = match read_back {
                Ok(last) if last == expected => why,
                // Stored (perhaps with another writer's events after it):
                // the stream's event at the batch's end must be ours.
                Ok(last) if last >= end => match check_same(&self.stream, end - 1, last_event).await {
                    Ok(()) => {
                        self.next = end;
                        return Ok(());
                    }
                    Err(ReplicationError::Diverged { .. }) => {
                        return Err(ReplicationError::Diverged {
                            sequence: expected,
                            detail: format!(
                                "the stream moved to {last} under this writer (another writer?) after: {why}"
                            ),
                        })
                    }
                    Err(e) => format!("{why}; reading the stream back: {e}"),
                },
                Ok(last) => {
                    return Err(ReplicationError::Diverged {
                        sequence: expected,
                        detail: format!(
                            "the stream moved to {last} under this writer (another writer?) after: {why}"
                        ),
                    })
                }
                Err(e) => format!("{why}; reading the stream back: {e}"),
            };
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(ReplicationError::Nats(format!(
                    "batch at {expected} not confirmed within {patience:?} ({attempt} tries): {why}"
                )));
            }
            tracing::debug!(error = %why, attempt, "batch not confirmed; trying again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// Sends one atomic batch and checks its PubAck.
    async fn send_batch(
        &self,
        events: &[&Shipped],
        expected: u64,
        attempt: u32,
        wait: Duration,
    ) -> Result<(), String> {
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
            let reply = tokio::time::timeout(wait, request)
                .await
                .map_err(|_| format!("no PubAck within {wait:?}"))?
                .map_err(|e| e.to_string())?;
            return check_ack(&reply.payload, expected + events.len() as u64);
        }
        Ok(())
    }
}

/// Checks a batch's PubAck: stored, and ending at stream sequence `end`.
pub(super) fn check_ack(payload: &[u8], end: u64) -> Result<(), String> {
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
