//! Quorum acks: the writer puts each group commit on the stream as one
//! JetStream atomic batch and answers its callers only after the PubAck,
//! so nothing acknowledged is lost with the writer's machine. Also the
//! way a node becomes the stream's writer: [`open_quorum`] (a writer
//! starting or restarting) and [`super::Replica::promote`] (failover).

use super::follow::catch_up;
use super::lease::{self, Lease};
use super::publish::{check_same, open_stream, stream_last, Publisher};
use super::ship::commit_group;
use super::wire::Shipped;
use super::{connect, JetStreamConfig, ReplicationError, MAX_ATOMIC_BATCH};
use crate::coordinate::Region;
use crate::store::writer::{GroupReplicator, QuorumFailure};
use crate::store::{Store, StoreConfig};
use async_nats::jetstream;
use std::time::Duration;

/// How long a clean close waits to release the lease.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Opens the store in `store_config` as the writer of the stream in `cfg`,
/// with quorum acks: every append returns only once the stream holds it
/// (with `replicas: 3`, on a majority of the cluster).
///
/// Before the store takes appends, it:
/// 1. takes the writer lease (free, or already this node's; otherwise
///    [`ReplicationError::LeaseHeld`]);
/// 2. settles its log against the stream: events the stream holds beyond
///    the local log are stored here (checked like a replica checks them);
///    local events beyond the stream, which no caller was told about (a
///    writer that stopped before their PubAck), are published; any other
///    difference is [`ReplicationError::Diverged`].
///
/// If another writer extends the stream later, appends fail with
/// [`crate::store::StoreError::Fenced`] and none is acknowledged.
pub fn open_quorum(store_config: StoreConfig, cfg: JetStreamConfig) -> Result<Store, ReplicationError> {
    cfg.validate()?;
    let store = Store::open(store_config)?;
    store.set_read_only();
    take_writer(&store, &cfg, false)?;
    Ok(store)
}

/// Makes `store` (read-only until now) the stream's writer with quorum
/// acks; `takeover` takes the lease from whoever holds it. Returns the
/// lease epoch.
pub(super) fn take_writer(
    store: &Store,
    cfg: &JetStreamConfig,
    takeover: bool,
) -> Result<u64, ReplicationError> {
    // One worker thread keeps the connection served between groups; the
    // writer thread blocks on each group's publish.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("batpak-quorum")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| ReplicationError::Stopped(format!("cannot start a runtime: {e}")))?;
    let holder = cfg.node_id.clone().unwrap_or_else(|| default_node_id(store));
    let (publisher, lease) = rt.block_on(async {
        let client = connect(cfg).await?;
        let js = jetstream::new(client.clone());
        let stream = open_stream(&js, cfg).await?;
        let lease = lease::acquire(&js, cfg, &holder, takeover).await?;
        let mut publisher =
            Publisher { client, stream, prefix: cfg.subject_prefix.clone(), msg_ids: cfg.msg_ids, next: 0 };
        settle(&mut publisher, store, cfg.quorum_timeout).await?;
        Ok::<_, ReplicationError>((publisher, lease))
    })?;
    let epoch = lease.epoch();
    tracing::info!(holder = %holder, epoch, next = publisher.next, "writing the stream with quorum acks");
    let replicator = QuorumReplicator { rt, publisher, lease, patience: cfg.quorum_timeout };
    store.install_quorum(Box::new(replicator))?;
    store.set_writable();
    Ok(epoch)
}

/// The host name and the store's directory.
fn default_node_id(store: &Store) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let dir = store.data_dir();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("{host}:{}", dir.display())
}

/// The store's event at `seq`, or `Diverged` if it is not visible.
fn mine(store: &Store, seq: u64) -> Result<Shipped, ReplicationError> {
    store.shipped_at(seq)?.ok_or_else(|| ReplicationError::Diverged {
        sequence: seq,
        detail: "this store no longer holds the event (compacted?)".into(),
    })
}

/// Brings the local log and the stream to the same length (see
/// [`open_quorum`]) and sets `out.next` to it.
async fn settle(out: &mut Publisher, store: &Store, patience: Duration) -> Result<(), ReplicationError> {
    let last = stream_last(&mut out.stream).await?;
    let local = store.next_sequence();
    let common = last.min(local);
    if common > 0 {
        check_same(&out.stream, common - 1, &mine(store, common - 1)?).await?;
    }
    if last > local {
        catch_up(&out.stream, store, last, patience).await?;
        out.next = store.next_sequence();
        return Ok(());
    }
    out.next = last;
    while out.next < local {
        let entries = store.cursor_from(&Region::all(), out.next).poll_batch(MAX_ATOMIC_BATCH);
        let events = store.shipped_many(&entries)?;
        let group: Vec<&Shipped> = events[..commit_group(&events)].iter().collect();
        if group.first().is_none_or(|e| e.global_sequence != out.next) {
            return Err(ReplicationError::Diverged {
                sequence: out.next,
                detail: "the local log skips events the stream lacks (compacted before they were shipped?)"
                    .into(),
            });
        }
        tracing::info!(from = out.next, events = group.len(), "publishing events no caller was told about");
        out.publish(&group, patience).await?;
    }
    Ok(())
}

/// The writer's side of quorum acks (runs on the writer thread).
struct QuorumReplicator {
    rt: tokio::runtime::Runtime,
    publisher: Publisher,
    lease: Lease,
    patience: Duration,
}

impl GroupReplicator for QuorumReplicator {
    fn max_unit(&self) -> usize {
        MAX_ATOMIC_BATCH
    }

    fn replicate(&mut self, units: &[&[Shipped]]) -> Result<(), (usize, QuorumFailure)> {
        let mut done = 0;
        while done < units.len() {
            let (end, events) = next_batch(units, done);
            match self.rt.block_on(self.publisher.publish(&events, self.patience)) {
                Ok(()) => done = end,
                Err(ReplicationError::Diverged { sequence, detail }) => {
                    let holder = self.rt.block_on(self.lease.current());
                    let why =
                        format!("{detail} (at sequence {sequence}); the writer lease is held by {holder}");
                    return Err((done, QuorumFailure::Fenced(why)));
                }
                Err(e) => return Err((done, QuorumFailure::Unavailable(e.to_string()))),
            }
        }
        Ok(())
    }
}

/// The units from `start` that fit one atomic batch (at least one), and
/// their events.
fn next_batch<'a>(units: &[&'a [Shipped]], start: usize) -> (usize, Vec<&'a Shipped>) {
    let mut events: Vec<&Shipped> = Vec::new();
    let mut end = start;
    while let Some(unit) = units.get(end) {
        if !events.is_empty() && events.len() + unit.len() > MAX_ATOMIC_BATCH {
            break;
        }
        events.extend(unit.iter());
        end += 1;
    }
    (end, events)
}

impl Drop for QuorumReplicator {
    fn drop(&mut self) {
        let _ = self.rt.block_on(async { tokio::time::timeout(RELEASE_WAIT, self.lease.release()).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Shipped {
        crate::replication::wire::sample(seq, 0)
    }

    #[test]
    fn units_are_packed_whole_into_atomic_batches() {
        let a: Vec<_> = (0..600).map(event).collect();
        let b: Vec<_> = (600..1000).map(event).collect();
        let c: Vec<_> = (1000..1001).map(event).collect();
        let d: Vec<_> = (1001..2001).map(event).collect();
        let units = [&a[..], &b[..], &c[..], &d[..]];
        let (end, events) = next_batch(&units, 0);
        assert_eq!((end, events.len()), (2, 1000), "a and b fill one batch exactly");
        let (end, events) = next_batch(&units, 2);
        assert_eq!((end, events.len()), (3, 1), "d does not fit next to c");
        let (end, events) = next_batch(&units, 3);
        assert_eq!((end, events.len()), (4, 1000));
        assert_eq!(events.first().map(|e| e.global_sequence), Some(1001));
    }
}
