//! The read replica: a thread follows the stream with a pull consumer,
//! checks every event's sequence and chain link, and stores the events in
//! a local read-only store, one local batch per shipped batch.

use super::wire::Shipped;
use super::{connect, runtime, JetStreamConfig, Progress, Ready, ReplicationError, Worker, GROUP_END};
use crate::store::{AppendOptions, BatchAppendItem, CausationRef, Store, StoreConfig};
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the follower waits for more messages before it stores what
/// it holds.
const SETTLE: Duration = Duration::from_millis(1);
/// The shortest time between two local stores (each is one trip through
/// the local writer), and the longest an event is held while messages
/// keep coming.
const MIN_GAP: Duration = Duration::from_millis(1);
const MAX_HOLD: Duration = Duration::from_millis(20);
// A replica's imports are not fsynced one by one, nor on a timer: the
// stream holds every event durably, and a replica that loses its unsynced
// tail in a crash (recovery cuts it at the first torn frame) fetches it
// again on reopen. It fsyncs when the stream goes quiet and when it stops,
// so an fsync never holds up events that are arriving.
/// How long an idle follower waits before it checks whether to stop.
const IDLE: Duration = Duration::from_millis(100);
/// Consecutive consumer errors (a server restart, lost heartbeats) the
/// follower rides out before it gives up.
const MAX_CONSUMER_ERRORS: u32 = 100;

/// A local, read-only copy of a store, following its JetStream stream.
///
/// [`Replica::store`] serves the normal read API: gets, queries, cursors,
/// subscriptions, native and WASM projections. Appends on it fail; events
/// arrive only from the stream. Reopening the same directory resumes where
/// the local copy ends.
pub struct Replica {
    store: Arc<Store>,
    worker: Worker,
    cfg: JetStreamConfig,
}

/// How far a replica has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Events stored locally (global sequences below this are applied).
    pub applied: u64,
    /// The highest stream sequence received.
    pub received: u64,
    /// Why the replica stopped following, if it stopped on an error
    /// (e.g. a broken hash chain: nothing past it is stored).
    pub error: Option<String>,
    /// Whether the follower thread still runs.
    pub running: bool,
}

impl Replica {
    /// Opens (or creates) a replica store in `dir` with the default store
    /// config and starts following the stream.
    pub fn open(dir: impl AsRef<Path>, cfg: JetStreamConfig) -> Result<Self, ReplicationError> {
        Self::open_with(StoreConfig::new(dir.as_ref()).with_sync_every_n_events(u32::MAX), cfg)
    }

    /// [`Replica::open`] with a store config of your own (its batch limits
    /// should be at least the writer's). [`Replica::open`] turns the sync
    /// policy's event count off (`u32::MAX`): the follower fsyncs when the
    /// stream goes quiet and when it stops instead, since the stream
    /// already holds every event durably. Returns once connected to the
    /// server; the stream may be created later by the writer's shipper.
    pub fn open_with(store_config: StoreConfig, cfg: JetStreamConfig) -> Result<Self, ReplicationError> {
        cfg.validate()?;
        let store = Arc::new(Store::open(store_config)?);
        store.set_read_only();
        let (following, follow_cfg) = (Arc::clone(&store), cfg.clone());
        let worker =
            Worker::start("replica", Progress::new(store.next_sequence()), move |progress, stop, ready| {
                follow(&following, &follow_cfg, progress, stop, ready)
            })?;
        Ok(Self { store, worker, cfg })
    }

    /// The local store, for reads (appends on it fail).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Applied and received counts, and the error that stopped it, if any.
    pub fn status(&self) -> ReplicaStatus {
        let p = self.worker.progress.snapshot();
        ReplicaStatus { applied: p.done, received: p.stream_last, error: p.error, running: !p.finished }
    }

    /// Waits until every global sequence below `upto` is stored here
    /// (read-your-writes after the writer's shipper reports it shipped);
    /// `false` if `timeout` passed first or the follower stopped.
    pub fn wait_for(&self, upto: u64, timeout: Duration) -> bool {
        self.worker.progress.wait_done(upto, timeout)
    }

    /// Makes this replica the stream's writer (failover), with quorum
    /// acks, and returns its store, now taking appends:
    /// 1. stops following;
    /// 2. takes the writer lease from whoever holds it (compare-and-set;
    ///    the epoch goes up);
    /// 3. stores every event the stream holds that it has not stored yet;
    /// 4. from then on publishes each group commit with the expected last
    ///    sequence, so an old writer still running is refused by the server
    ///    ([`crate::store::StoreError::Fenced`] on its side) and cannot
    ///    interleave with this one.
    ///
    /// Refuses a replica whose follower stopped on a divergence.
    pub fn promote(mut self) -> Result<Arc<Store>, ReplicationError> {
        self.worker.halt();
        let status = self.status();
        if let Some(error) = status.error.filter(|e| e.contains("diverge")) {
            return Err(ReplicationError::Stopped(format!("this replica stopped on: {error}")));
        }
        super::quorum::take_writer(&self.store, &self.cfg, true)?;
        Ok(Arc::clone(&self.store))
    }

    /// Stops following and closes the local store; returns the final
    /// status. If other handles to the store are alive, it closes when
    /// the last one drops.
    pub fn close(mut self) -> Result<ReplicaStatus, ReplicationError> {
        self.worker.halt();
        let status = self.status();
        let store = Arc::clone(&self.store);
        drop(self);
        if let Ok(store) = Arc::try_unwrap(store) {
            store.close()?;
        }
        Ok(status)
    }
}

/// The follower thread: connect, report ready, wait for the stream, then
/// apply its messages until stopped.
fn follow(
    store: &Store,
    cfg: &JetStreamConfig,
    progress: &Progress,
    stop: &AtomicBool,
    ready: &Ready,
) -> Result<(), ReplicationError> {
    runtime()?.block_on(async {
        let client = connect(cfg).await?;
        let _ = ready.send(Ok(()));
        let js = jetstream::new(client);
        let Some(stream) = wait_for_stream(&js, cfg, stop).await? else { return Ok(()) };
        let mut applier = Applier::new(store);
        let mut following = consume_from(&stream, applier.next, super::publish::STREAM_WAIT).await?;
        let mut pending = Pending::default();
        let mut errors = 0u32;
        let mut gap_at = None;
        let mut last_store = tokio::time::Instant::now();
        while !stop.load(Ordering::Acquire) {
            // With events held: wait for more until the stream pauses, but
            // store at least every MAX_HOLD, and no sooner than MIN_GAP
            // after the last store (each store is one trip through the
            // local writer). With a store in flight and nothing held, wait
            // only briefly, so its progress is reported soon.
            let wait = if !pending.events.is_empty() {
                let held = last_store.elapsed();
                if held >= MAX_HOLD {
                    Duration::ZERO
                } else {
                    SETTLE.max(MIN_GAP.saturating_sub(held))
                }
            } else if applier.in_flight.is_some() {
                SETTLE
            } else {
                IDLE
            };
            match tokio::time::timeout(wait, following.messages.next()).await {
                // A short pause with a store in flight: confirm it. A
                // longer quiet (IDLE with nothing in flight): fsync.
                Err(_) if pending.events.is_empty() && applier.in_flight.is_some() => applier.settle(progress)?,
                Err(_) if pending.events.is_empty() => applier.sync_if_dirty()?,
                Err(_) => {
                    applier.apply(pending.take_complete(), progress)?;
                    last_store = tokio::time::Instant::now();
                }
                Ok(None) => return Err(ReplicationError::Nats("the consumer ended".into())),
                Ok(Some(Err(e))) => {
                    errors += 1;
                    tracing::warn!(error = %e, errors, "replica consumer error; consuming again from where it is");
                    if errors >= MAX_CONSUMER_ERRORS {
                        return Err(ReplicationError::Nats(format!("consumer keeps failing: {e}")));
                    }
                    let from = applier.next + pending.events.len() as u64;
                    following = consume_again(&stream, following, from, super::publish::STREAM_WAIT).await?;
                }
                Ok(Some(Ok(msg))) => {
                    match accept(&msg, &mut applier, &mut pending, progress)? {
                        Accepted::Event(seq) => {
                            errors = 0;
                            gap_at = None;
                            progress.saw_stream_last(seq);
                        }
                        Accepted::Repeat => {}
                        Accepted::Gap => {
                            // A message did not arrive (the server dropped
                            // it, or a leader changed): consume again from
                            // the first one missing, once.
                            let from = applier.next + pending.events.len() as u64;
                            gap_at = missing_again(gap_at, from)?;
                            following =
                                consume_again(&stream, following, from, super::publish::STREAM_WAIT).await?;
                        }
                    }
                    applier.settle_if_answered(progress)?;
                    // A whole shipped batch is here: store it now, unless
                    // the last store was under MIN_GAP ago (then the wait
                    // above stores it soon, with whatever follows).
                    if pending.complete > 0 && last_store.elapsed() >= MIN_GAP {
                        applier.apply(pending.take_complete(), progress)?;
                        last_store = tokio::time::Instant::now();
                    }
                }
            }
        }
        release(&stream, following).await;
        applier.apply(pending.take_complete(), progress)?;
        applier.settle(progress)?;
        applier.sync_if_dirty()
    })
}

/// Where the follower last consumed again because a message was missing;
/// an error if it is missing again at the same place, since then the
/// stream no longer holds it (removed by hand or by a limit) and nothing
/// after it can be stored here.
fn missing_again(last: Option<u64>, from: u64) -> Result<Option<u64>, ReplicationError> {
    if last == Some(from) {
        return Err(ReplicationError::Diverged {
            sequence: from,
            detail: format!(
                "stream message {} (global sequence {from}) is missing from the stream; \
                 nothing after it can be stored",
                from + 1
            ),
        });
    }
    Ok(Some(from))
}

/// Messages asked of the server per pull request. The client asks again
/// when half are delivered, so a backlog streams without pauses.
const PULL_BATCH: usize = 4096;
/// How long one pull request stays open on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How often an idle server says it is alive; two missed in a row are an
/// error, and the follower consumes again (a lost node, a lost consumer).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The stream's messages from the one carrying global sequence `next`
/// on, through an ephemeral pull consumer without acks (the follower
/// checks every sequence itself and consumes again on a gap). A cluster
/// that is electing a leader (a node was just lost) answers "timed out"
/// for a while: that is ridden out, with back-off, for up to `patience`.
async fn consume_from(
    stream: &jetstream::stream::Stream,
    next: u64,
    patience: Duration,
) -> Result<Following, ReplicationError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut backoff = super::publish::RETRY_MIN;
    loop {
        let config = consumer::pull::Config {
            deliver_policy: match next {
                0 => consumer::DeliverPolicy::All,
                next => consumer::DeliverPolicy::ByStartSequence { start_sequence: next + 1 },
            },
            ack_policy: consumer::AckPolicy::None,
            // The server removes a consumer nobody pulls from after this.
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        };
        let why = match stream.create_consumer(config).await {
            Ok(consumer) => match consumer
                .stream()
                .max_messages_per_batch(PULL_BATCH)
                .expires(PULL_EXPIRES)
                .heartbeat(HEARTBEAT)
                .messages()
                .await
            {
                Ok(messages) => return Ok(Following { messages, name: consumer.cached_info().name.clone() }),
                Err(e) => format!("consume: {e}"),
            },
            Err(e) => format!("consumer: {e}"),
        };
        if !super::publish::transient(&why) || tokio::time::Instant::now() + backoff > deadline {
            return Err(ReplicationError::Nats(why));
        }
        tracing::debug!(error = %why, "consumer not available yet; trying again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(super::publish::RETRY_MAX);
    }
}

/// A pull consumer the follower reads from, and its name on the server.
struct Following {
    messages: consumer::pull::Stream,
    name: String,
}

/// Releases `old` (below), then consumes from `next` on.
async fn consume_again(
    stream: &jetstream::stream::Stream,
    old: Following,
    next: u64,
    patience: Duration,
) -> Result<Following, ReplicationError> {
    release(stream, old).await;
    consume_from(stream, next, patience).await
}

/// Stops reading from a consumer (its pull requests stop) and deletes it
/// on the server, where it would otherwise linger until its inactivity
/// limit. A consumer the server lost is already gone: that is logged only.
async fn release(stream: &jetstream::stream::Stream, old: Following) {
    let Following { messages, name } = old;
    drop(messages);
    if let Err(e) = stream.delete_consumer(&name).await {
        tracing::debug!(consumer = %name, error = %e, "the old consumer was not deleted");
    }
}

/// What became of one message.
enum Accepted {
    /// Checked and held; its stream sequence.
    Event(u64),
    /// One already held or stored (a redelivery): skipped.
    Repeat,
    /// It comes after a message that did not arrive: nothing was taken,
    /// and the caller consumes again from the first one missing.
    Gap,
}

/// Decodes and checks the next message and adds it to `pending`, storing
/// what is held when the local batch limits are reached.
fn accept(
    msg: &jetstream::Message,
    applier: &mut Applier<'_>,
    pending: &mut Pending,
    progress: &Progress,
) -> Result<Accepted, ReplicationError> {
    let seq = match stream_sequence(msg) {
        Some(seq) => seq,
        None => msg.info().map_err(|e| ReplicationError::Nats(e.to_string()))?.stream_sequence,
    };
    debug_assert_eq!(Some(seq), msg.info().ok().map(|i| i.stream_sequence), "the short parse agrees");
    let expected = applier.next + pending.events.len() as u64;
    if seq <= expected {
        return Ok(Accepted::Repeat);
    }
    if seq > expected + 1 {
        tracing::debug!(expected = expected + 1, got = seq, "stream messages missing; consuming again");
        return Ok(Accepted::Gap);
    }
    let event = Shipped::decode(&msg.payload).map_err(|e| ReplicationError::Diverged {
        sequence: expected,
        detail: format!("stream message {seq} is not a batpak event: {e}"),
    })?;
    if event.global_sequence != expected {
        return Err(ReplicationError::Diverged {
            sequence: expected,
            detail: format!(
                "expected global sequence {expected}, the stream gave message {seq} carrying {}",
                event.global_sequence
            ),
        });
    }
    if let Err(e) = applier.check(&event) {
        // Keep every whole batch before the bad event.
        applier.apply(pending.take_complete(), progress)?;
        applier.settle(progress)?;
        return Err(e);
    }
    let ends_group = msg.headers.as_ref().is_some_and(|h| h.get(GROUP_END).is_some());
    if pending.push(event, ends_group, applier.limits) {
        applier.apply(pending.take_complete_or_all(), progress)?;
    }
    Ok(Accepted::Event(seq))
}

/// A delivered message's stream sequence, read from its reply subject
/// alone: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.…` (9
/// tokens), or with a domain and an account hash after `ACK` (11 or 12
/// tokens). `None` for any other shape; the caller then asks the client
/// to parse all of it.
fn stream_sequence(msg: &jetstream::Message) -> Option<u64> {
    sequence_in_reply(msg.reply.as_ref()?.as_str())
}

/// The stream sequence in a JetStream ack subject (see [`stream_sequence`]).
fn sequence_in_reply(reply: &str) -> Option<u64> {
    let mut tokens = [""; 12];
    let mut n = 0;
    for t in reply.split('.') {
        *tokens.get_mut(n)? = t;
        n += 1;
    }
    if tokens[..2] != ["$JS", "ACK"] {
        return None;
    }
    let at = match n {
        9 => 5,
        11 | 12 => 7,
        _ => return None,
    };
    tokens[at].parse().ok()
}

/// Stores the stream's events up to stream sequence `until`, checked as
/// the follower checks them: a writer taking over (or reopening behind
/// the stream) first holds everything the stream holds. Each message must
/// arrive within `patience`.
pub(super) async fn catch_up(
    stream: &jetstream::stream::Stream,
    store: &Store,
    until: u64,
    patience: Duration,
) -> Result<(), ReplicationError> {
    let mut applier = Applier::new(store);
    if applier.next >= until {
        return Ok(());
    }
    let patience = patience.max(super::publish::STREAM_WAIT);
    let mut following = consume_from(stream, applier.next, patience).await?;
    let progress = Progress::new(applier.next);
    let mut pending = Pending::default();
    let mut gap_at = None;
    while applier.next + (pending.events.len() as u64) < until {
        let msg = match tokio::time::timeout(patience, following.messages.next()).await {
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => return Err(ReplicationError::Nats(format!("catching up: {e}"))),
            Ok(None) => return Err(ReplicationError::Nats("the consumer ended while catching up".into())),
            Err(_) => {
                return Err(ReplicationError::Nats(format!(
                    "no message within {patience:?} while catching up to {until}"
                )))
            }
        };
        match accept(&msg, &mut applier, &mut pending, &progress)? {
            Accepted::Event(_) => gap_at = None,
            Accepted::Repeat => {}
            Accepted::Gap => {
                let from = applier.next + pending.events.len() as u64;
                gap_at = missing_again(gap_at, from)?;
                following = consume_again(stream, following, from, patience).await?;
            }
        }
    }
    release(stream, following).await;
    // The stream ends here: what is held is whole.
    pending.complete = pending.events.len();
    applier.apply(pending.take_complete(), &progress)?;
    applier.settle(&progress)
}

/// Waits until the stream exists; `None` if asked to stop first.
async fn wait_for_stream(
    js: &jetstream::Context,
    cfg: &JetStreamConfig,
    stop: &AtomicBool,
) -> Result<Option<jetstream::stream::Stream>, ReplicationError> {
    loop {
        match js.get_stream(&cfg.stream).await {
            Ok(stream) => return Ok(Some(stream)),
            Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(_)) => {
                tracing::debug!(stream = %cfg.stream, "waiting for the stream to be created");
            }
            // A cluster electing a leader: ask again.
            Err(e) if super::publish::transient(&e.to_string()) => {
                tracing::debug!(stream = %cfg.stream, error = %e, "stream not available yet");
            }
            Err(e) => return Err(ReplicationError::Nats(format!("stream {}: {e}", cfg.stream))),
        }
        if stop.load(Ordering::Acquire) {
            return Ok(None);
        }
        tokio::time::sleep(IDLE).await;
    }
}

/// Events received and not yet stored, and how many of them end at a
/// shipped batch's last message.
#[derive(Default)]
struct Pending {
    events: Vec<Shipped>,
    bytes: usize,
    complete: usize,
}

impl Pending {
    /// Adds an event; `true` when the store's batch limits are reached and
    /// what is held must be stored now.
    fn push(&mut self, event: Shipped, ends_group: bool, (max_items, max_bytes): (usize, usize)) -> bool {
        self.bytes += event.payload.len();
        self.events.push(event);
        if ends_group {
            self.complete = self.events.len();
        }
        self.events.len() >= max_items || self.bytes >= max_bytes / 2
    }

    /// The events up to the last complete shipped batch.
    fn take_complete(&mut self) -> Vec<Shipped> {
        let rest = self.events.split_off(self.complete);
        let out = std::mem::replace(&mut self.events, rest);
        self.bytes = self.events.iter().map(|e| e.payload.len()).sum();
        self.complete = 0;
        out
    }

    /// The complete batches; when one shipped batch alone exceeds the
    /// local limits, everything before its last run of one timestamp (a
    /// store batch shares one timestamp, so no store batch is split
    /// unless it alone exceeds the limits; logged).
    fn take_complete_or_all(&mut self) -> Vec<Shipped> {
        if self.complete == 0 {
            let last = self.events.last().map(|e| e.timestamp_us);
            let run_start =
                self.events.iter().rposition(|e| Some(e.timestamp_us) != last).map_or(0, |i| i + 1);
            self.complete = if run_start > 0 { run_start } else { self.events.len() };
            if run_start == 0 {
                tracing::warn!(
                    events = self.events.len(),
                    "a batch exceeds the replica's batch limits; storing it in parts"
                );
            }
        }
        self.take_complete()
    }
}

/// Checks events as they arrive and stores them in order, one local batch
/// in flight at a time: the next events are received and checked while
/// the local writer stores the last batch.
struct Applier<'s> {
    store: &'s Store,
    /// The next global sequence to hand to the store (everything below is
    /// stored or in flight).
    next: u64,
    /// The batch handed to the store and not yet confirmed.
    in_flight: Option<InFlight>,
    limits: (usize, usize),
    /// The chain tip of each entity whose latest checked event is not yet
    /// confirmed stored: (clock, hash, wall_ms, global sequence). Older
    /// tips are in the store's heads.
    tips: HashMap<String, Tip>,
    /// Whether it has stored anything since its last fsync.
    dirty: bool,
    /// Events checked so far (stored, in flight or pending).
    checked: u64,
}

/// An entity's chain tip: clock, hash, wall ms, global sequence.
type Tip = (u32, [u8; 32], u64, u64);

/// A local batch the writer has not answered yet, and the sequence and id
/// each of its events must be stored with.
struct InFlight {
    reply: crate::store::PendingImport,
    expect: Vec<(u64, u128)>,
}

impl<'s> Applier<'s> {
    fn new(store: &'s Store) -> Self {
        let next = store.next_sequence();
        Self {
            store,
            next,
            in_flight: None,
            limits: store.batch_limits(),
            tips: HashMap::new(),
            checked: next,
            dirty: false,
        }
    }

    /// Checks that `e` continues the log and its entity's chain: the next
    /// sequence, the next clock, the wall time the writer would give it,
    /// the previous hash, and its own hash recomputed from its contents.
    fn check(&mut self, e: &Shipped) -> Result<(), ReplicationError> {
        let seq = self.checked;
        let diverged = |detail: String| ReplicationError::Diverged { sequence: seq, detail };
        if e.global_sequence != seq {
            return Err(diverged(format!("event carries global sequence {}", e.global_sequence)));
        }
        let tip = self
            .tips
            .get(&e.entity)
            .map(|&(c, h, w, _)| (c, h, w))
            .or_else(|| self.store.entity_head(&e.entity).map(|h| (h.clock, h.hash, h.wall_ms)));
        let (clock, prev, wall_floor) = match tip {
            Some((c, h, w)) => (c.saturating_add(1), h, w),
            None => (0, [0u8; 32], 0),
        };
        if e.clock != clock {
            return Err(diverged(format!(
                "{} has clock {} here, the event says {}",
                e.entity, clock, e.clock
            )));
        }
        if e.prev_hash != prev {
            return Err(diverged(format!("the hash chain of {} breaks: previous hash differs", e.entity)));
        }
        let wall = crate::store::segment::frame::wall_base(e.timestamp_us).max(wall_floor);
        if e.wall_ms != wall {
            return Err(diverged(format!("wall time {} where {} follows", e.wall_ms, wall)));
        }
        let hash = crate::chain_hash::event_hash(&prev, &e.hashed_fields(), &e.payload);
        if hash != e.event_hash {
            return Err(diverged(format!(
                "event {:032x} of {} does not hash to its recorded hash (altered on the stream?)",
                e.event_id, e.entity
            )));
        }
        let tip = (clock, hash, wall, seq);
        match self.tips.get_mut(&e.entity) {
            Some(t) => *t = tip,
            None => {
                self.tips.insert(e.entity.clone(), tip);
            }
        }
        self.checked += 1;
        Ok(())
    }

    /// Fsyncs the local store if it stored something since the last time.
    fn sync_if_dirty(&mut self) -> Result<(), ReplicationError> {
        if self.dirty {
            self.store.sync()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Hands checked `events` to the store as one batch, after confirming
    /// the batch before it.
    fn apply(&mut self, events: Vec<Shipped>, progress: &Progress) -> Result<(), ReplicationError> {
        if events.is_empty() {
            return Ok(());
        }
        self.settle(progress)?;
        let timestamps = events.iter().map(|e| e.timestamp_us).collect();
        let expect = events.iter().map(|e| (e.global_sequence, e.event_id)).collect::<Vec<_>>();
        let items = events.into_iter().map(item).collect::<Result<Vec<_>, _>>()?;
        let reply = self.store.start_import(items, timestamps)?;
        self.next += expect.len() as u64;
        self.in_flight = Some(InFlight { reply, expect });
        Ok(())
    }

    /// [`Applier::settle`], only if the store has already answered.
    fn settle_if_answered(&mut self, progress: &Progress) -> Result<(), ReplicationError> {
        match &self.in_flight {
            Some(f) if f.reply.is_answered() => self.settle(progress),
            _ => Ok(()),
        }
    }

    /// Waits for the batch in flight, if any, and confirms that the store
    /// gave its events the writer's sequences and ids.
    fn settle(&mut self, progress: &Progress) -> Result<(), ReplicationError> {
        let Some(InFlight { reply, expect }) = self.in_flight.take() else { return Ok(()) };
        let receipts = reply.wait()?;
        if receipts.len() != expect.len() {
            return Err(ReplicationError::Diverged {
                sequence: expect.first().map_or(self.next, |e| e.0),
                detail: format!("{} events stored where {} were handed over", receipts.len(), expect.len()),
            });
        }
        for (&(sequence, id), r) in expect.iter().zip(&receipts) {
            if r.sequence != sequence || r.event_id != id {
                return Err(ReplicationError::Diverged {
                    sequence,
                    detail: format!("stored at {} as {:032x}", r.sequence, r.event_id),
                });
            }
        }
        self.dirty = true;
        // The store's heads now cover what it stored: keep only the tips
        // of events not yet stored, so the map stays as small as a batch.
        let stored = self.next;
        self.tips.retain(|_, t| t.3 >= stored);
        progress.update(|p| p.done = stored);
        Ok(())
    }
}

/// The batch item that stores `e` with its own id, correlation,
/// causation and flags.
fn item(e: Shipped) -> Result<BatchAppendItem, ReplicationError> {
    let coord = crate::coordinate::Coordinate::new(e.entity.as_str(), e.scope.as_str())
        .map_err(|err| ReplicationError::Diverged { sequence: e.global_sequence, detail: err.to_string() })?;
    let mut options = AppendOptions::new();
    options.idempotency_key = Some(e.event_id);
    options.correlation_id = Some(e.correlation_id);
    options.causation_id = e.causation_id;
    options.flags = e.flags;
    Ok(BatchAppendItem {
        coord,
        kind: crate::EventKind::from_raw(e.kind),
        payload_bytes: e.payload,
        options,
        causation: CausationRef::None,
    })
}

#[cfg(test)]
mod tests {
    use super::sequence_in_reply;

    #[test]
    fn the_stream_sequence_is_read_from_either_ack_subject_form() {
        assert_eq!(sequence_in_reply("$JS.ACK.BENCH1.kRJo06Eb.1.7.9.1795960540333474403.49993"), Some(7));
        assert_eq!(sequence_in_reply("$JS.ACK.hub.ACCHASH.S.C.1.42.40.1795960540333474403.0.tok"), Some(42));
        assert_eq!(sequence_in_reply("$JS.ACK.hub.ACCHASH.S.C.1.42.40.1795960540333474403.0"), Some(42));
        for other in [
            "",
            "$JS.ACK.S.C.1",
            "_INBOX.x.y.z.a.b.c.d.e",
            "$JS.ACK.S.C.1.x.9.1.0",
            "a.b.c.d.e.f.g.h.i.j.k.l.m",
        ] {
            assert_eq!(sequence_in_reply(other), None, "{other}");
        }
    }
}
