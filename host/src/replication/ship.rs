//! The shipper (`local` ack mode): a thread that tails the store's
//! committed log and publishes it to the stream in order, one JetStream
//! atomic batch per run of events committed together.

use super::publish::{open_stream, resume_point, Publisher, RETRY_MAX, RETRY_MIN};
use super::wire::Shipped;
use super::{connect, runtime, JetStreamConfig, Progress, Ready, ReplicationError, Worker, MAX_ATOMIC_BATCH};
use crate::coordinate::Region;
use crate::store::Store;
use async_nats::jetstream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long an idle shipper sleeps before it looks for new events.
const IDLE_POLL: Duration = Duration::from_millis(1);
/// How long one batch is tried (each unknown outcome settled by reading
/// the stream back) before the shipper pauses and starts over.
const PATIENCE: Duration = Duration::from_secs(10);

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
        let publisher =
            Publisher { client, stream, prefix: cfg.subject_prefix.clone(), msg_ids: cfg.msg_ids, next };
        Session { out: publisher }.run(store, progress, stop).await
    })
}

/// A connected shipper.
struct Session {
    out: Publisher,
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
            let entries = store.cursor_from(&Region::all(), self.out.next).poll_batch(MAX_ATOMIC_BATCH);
            if entries.is_empty() {
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            let events = store.shipped_many(&entries)?;
            if let Some((i, e)) =
                events.iter().enumerate().find(|(i, e)| e.global_sequence != self.out.next + *i as u64)
            {
                return Err(ReplicationError::Diverged {
                    sequence: self.out.next + i as u64,
                    detail: format!(
                        "the log skips to {} (compacted before it was shipped?)",
                        e.global_sequence
                    ),
                });
            }
            let group: Vec<&Shipped> = events[..commit_group(&events)].iter().collect();
            match self.out.publish(&group, PATIENCE).await {
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
            let next = self.out.next;
            progress.update(|p| {
                p.done = next;
                p.stream_last = next;
            });
        }
        Ok(())
    }
}

/// How many of `events` (all visible, in order) to publish as one batch:
/// all of them, unless the poll was full, when the last run of one
/// timestamp (a batch that may go on past the poll) waits for the next
/// poll. A run longer than an atomic batch is split (see docs).
pub(super) fn commit_group(events: &[Shipped]) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64, ts: i64) -> Shipped {
        crate::replication::wire::sample(seq, ts)
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
}
