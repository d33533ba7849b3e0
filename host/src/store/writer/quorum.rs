//! Quorum acks inside the writer (feature `replication`).
//!
//! With a replicator installed, each unit the writer stages also leaves its
//! events, in shipped form, in an outbox. At the group's end, after the
//! local fsync policy and before anything is published, the whole group
//! goes to the replicated log (`GroupReplicator::replicate`). Callers are
//! answered only after that returns:
//!
//! `… → frame → write → index insert → fsync policy → replicate → publish → notify`
//!
//! Units the replicated log confirmed are published and acknowledged. If it
//! refuses or does not answer, the units it did not confirm get the error,
//! stay invisible, and the writer is poisoned: the local log then holds a
//! tail nobody was told about, which only a reopen (which settles it
//! against the stream) may decide on. In-writer projections have folded
//! that tail, so they are marked failed until then.

use super::single::Planned;
use super::{Waiting, Writer};
use crate::replication::wire::Shipped;
use crate::store::index::IndexEntry;
use crate::store::StoreError;

/// Why the replicated log did not confirm a unit.
pub(crate) enum QuorumFailure {
    /// Another writer extended the log: this store is fenced for good.
    Fenced(String),
    /// No confirmation within the quorum timeout: the outcome is unknown.
    Unavailable(String),
}

impl QuorumFailure {
    fn error(&self) -> StoreError {
        match self {
            Self::Fenced(why) => StoreError::Fenced(why.clone()),
            Self::Unavailable(why) => StoreError::QuorumUnavailable(why.clone()),
        }
    }

    fn reason(&self) -> &str {
        match self {
            Self::Fenced(why) | Self::Unavailable(why) => why,
        }
    }
}

/// Puts committed units on the replicated log, in order.
pub(crate) trait GroupReplicator: Send {
    /// Most events one unit may hold (one unit must fit one atomic publish).
    fn max_unit(&self) -> usize;

    /// Puts `units` (each one unit's events, in sequence order, the first
    /// continuing the log exactly) on the replicated log. On failure,
    /// returns how many leading units are confirmed and why the rest are not.
    fn replicate(&mut self, units: &[&[Shipped]]) -> Result<(), (usize, QuorumFailure)>;
}

/// How long a quorum group waits for more callers before it goes out,
/// while it holds fewer units than the group before it. Each group costs
/// a round trip to a majority of the cluster (milliseconds), so callers
/// that come back a few microseconds apart should share one.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);

/// The installed replicator and the events staged since the group began.
pub(super) struct QuorumLink {
    replicator: Box<dyn GroupReplicator>,
    outbox: Vec<Shipped>,
    /// Units in recent groups (a slowly decaying maximum): how many
    /// callers are likely to come back.
    last_units: usize,
    /// Another writer took the log over: every later append is refused as fenced.
    fenced: bool,
}

impl QuorumLink {
    pub(super) fn new(replicator: Box<dyn GroupReplicator>) -> Self {
        Self { replicator, outbox: Vec::new(), last_units: 0, fenced: false }
    }
}

/// The shipped form of a planned event once it is framed and indexed.
fn shipped(p: &Planned<'_>, e: &IndexEntry) -> Shipped {
    Shipped {
        kind: p.kind.as_raw(),
        flags: p.flags,
        clock: p.clock,
        wall_ms: p.wall_ms,
        timestamp_us: p.timestamp_us,
        global_sequence: p.seq,
        event_id: p.event_id,
        correlation_id: p.correlation_id,
        causation_id: p.causation_id,
        prev_hash: e.hash_chain.prev_hash,
        event_hash: e.hash_chain.event_hash,
        entity: p.coord.entity().to_string(),
        scope: p.coord.scope().to_string(),
        payload: p.payload.to_vec(),
    }
}

impl Writer {
    /// Installs the replicator: from the next group on, appends are
    /// acknowledged only once the replicated log holds them.
    pub(super) fn install_quorum(&mut self, replicator: Box<dyn GroupReplicator>) -> Result<(), StoreError> {
        self.check_poisoned()?;
        self.quorum = Some(QuorumLink::new(replicator));
        Ok(())
    }

    /// Refuses a unit too large for one atomic publish, before it is gated.
    pub(super) fn quorum_check_unit(&self, items: usize) -> Result<(), StoreError> {
        match &self.quorum {
            Some(q) if items > q.replicator.max_unit() => Err(StoreError::Configuration(format!(
                "with quorum acks a batch holds at most {} events (one JetStream atomic batch), not {items}",
                q.replicator.max_unit()
            ))),
            _ => Ok(()),
        }
    }

    /// Whether another writer has taken the replicated log over.
    pub(super) fn fenced(&self) -> bool {
        self.quorum.as_ref().is_some_and(|q| q.fenced)
    }

    /// With quorum acks, the next command if one arrives before the group
    /// has lingered `LINGER` (only while it has fewer units than the last
    /// group); otherwise `None` at once.
    pub(super) fn linger(
        &self,
        rx: &flume::Receiver<super::Command>,
        gathered: usize,
        started: std::time::Instant,
    ) -> Option<super::Command> {
        let q = self.quorum.as_ref()?;
        if gathered >= q.last_units {
            return None;
        }
        rx.recv_deadline(started + LINGER).ok()
    }

    /// Remembers how many units the group that is closing holds.
    pub(super) fn note_group_size(&mut self, units: usize) {
        if let Some(q) = self.quorum.as_mut() {
            // A group that closed early (a caller was slow) must not teach
            // the next one to expect fewer: decay by one unit per group.
            q.last_units = units.max(q.last_units.saturating_sub(1));
        }
    }

    /// Whether staged units must leave their events in the outbox.
    pub(super) fn quorum_on(&self) -> bool {
        self.quorum.is_some()
    }

    /// Leaves a staged unit's events in the outbox (after it is indexed).
    pub(super) fn quorum_capture<'p>(
        &mut self,
        events: impl Iterator<Item = (&'p Planned<'p>, &'p IndexEntry)>,
    ) {
        if let Some(q) = self.quorum.as_mut() {
            q.outbox.extend(events.map(|(p, e)| shipped(p, e)));
        }
    }

    /// Replicates the group's units. Returns `Some(bound)` when only the
    /// units below global sequence `bound` may be published (the rest
    /// failed and the writer is poisoned), `None` when all may be.
    pub(super) fn replicate_group(&mut self, waiting: &mut [Waiting]) -> Option<u64> {
        let poisoned = self.poisoned.is_some();
        let q = self.quorum.as_mut()?;
        let outbox = std::mem::take(&mut q.outbox);
        if outbox.is_empty() || poisoned {
            // Nothing new, or an fsync failure already failed every unit.
            return None;
        }
        // Each unit that wrote has one outbox event per receipt, in order.
        let mut units: Vec<&[Shipped]> = Vec::new();
        let mut at = 0usize;
        for w in waiting.iter() {
            let (Waiting::One(Ok(s), _) | Waiting::Many(Ok(s), _, _)) = w else { continue };
            if !s.wrote {
                continue;
            }
            let end = (at + s.receipts.len()).min(outbox.len());
            units.push(&outbox[at..end]);
            at = end;
        }
        debug_assert_eq!(at, outbox.len(), "every captured event belongs to a unit that wrote");
        let (confirmed, failure) = q.replicator.replicate(&units).err()?;
        q.fenced = matches!(failure, QuorumFailure::Fenced(_));
        let bound = units.get(confirmed).and_then(|u| u.first()).map_or(u64::MAX, |e| e.global_sequence);
        // Every unit holding an unconfirmed event fails: those that wrote
        // it, and idempotent retries in this group that were answered
        // with its receipt.
        for w in waiting.iter_mut() {
            let (Waiting::One(r, _) | Waiting::Many(r, _, _)) = w;
            if r.as_ref().is_ok_and(|s| s.receipts.iter().any(|x| x.sequence >= bound)) {
                *r = Err(failure.error());
            }
        }
        let why = format!("the replicated log did not confirm sequence {bound}: {}", failure.reason());
        self.poison(&why);
        self.projections.fail_in_writer(&why, bound);
        Some(bound)
    }
}
