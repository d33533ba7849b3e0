//! Scale-out through NATS JetStream (feature `replication`).
//!
//! A batpak store keeps its single writer; a JetStream stream becomes the
//! replicated copy of its committed log, and read replicas on other
//! machines follow that stream into local stores of their own.
//!
//! - [`Shipper`] tails a store's committed log and publishes every event,
//!   in order, to the stream (the `local` ack mode: appends are
//!   acknowledged after the local commit, as without replication, and the
//!   shipper's lag is reported). It resumes from the stream's last
//!   sequence after a restart.
//! - [`open_quorum`] opens a store in the `quorum` ack mode: the writer
//!   puts each group commit on the stream as atomic batches and answers
//!   its callers only after the PubAck, so nothing acknowledged is lost
//!   with the writer's machine.
//! - [`Replica`] follows the stream into a local, read-only store, checking
//!   that sequences are contiguous and that every entity's hash chain
//!   holds before it stores an event. It serves the whole read API,
//!   cursors, subscriptions and WASM projections, and resumes after a
//!   restart. [`Replica::promote`] makes it the writer (failover).
//!
//! **Invariant: the stream's sequence is the store's global sequence plus
//! one.** Every publish carries `Nats-Expected-Last-Sequence`, so the
//! stream only ever grows by exactly the next event: a second writer, or
//! a writer that was failed over, is refused by the server rather than
//! interleaved. Consecutive events committed together go out as one
//! JetStream atomic batch, so a replica never sees part of a batch. A
//! writer lease in a JetStream KV bucket says which node should write.
//! The message body layout and the correctness arguments are in
//! docs/design.md ("Scaling out").
//!
//! What this module is not: a replication protocol of its own (JetStream's
//! Raft replicates), a way to write one stream from two live writers
//! (the second is fenced), or a guard against a stream edited by hand
//! (a replica detects it and stops).
//!
//! The async NATS client runs on a private thread per shipper or replica,
//! each with its own single-threaded runtime; this API stays synchronous.

mod follow;
mod lease;
mod publish;
mod quorum;
mod ship;
pub(crate) mod wire;

pub use follow::{Replica, ReplicaStatus};
pub use quorum::open_quorum;
pub use ship::{Shipper, ShipperStatus};

use std::fmt;
use std::time::Duration;

/// Most events in one JetStream atomic batch (the server's limit).
pub const MAX_ATOMIC_BATCH: usize = 1000;

/// Header on the last message of each shipped batch: a replica stores
/// what it received up to such a message as one local batch, so readers
/// of a replica never see part of a batch either.
const GROUP_END: &str = "Batpak-Group-End";

/// Where and how a store's log is replicated.
#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    /// NATS server URL, e.g. `nats://127.0.0.1:4222`, or several separated
    /// by commas (the nodes of a cluster: any one that answers will do).
    pub url: String,
    /// Stream name (one stream per store).
    pub stream: String,
    /// Subject prefix; each entity publishes on `prefix.<entity>`.
    pub subject_prefix: String,
    /// Stream replicas when the shipper creates the stream (1, 3 or 5).
    pub replicas: usize,
    /// How long to wait for the server at start.
    pub connect_timeout: Duration,
    /// Whether each message carries `Nats-Msg-Id` = its event id (on by
    /// default). The expected-sequence check already keeps duplicates off
    /// the stream; the server's duplicate tracking on top costs it about a
    /// third of its throughput here (docs/performance.md).
    pub msg_ids: bool,
    /// Quorum acks: how long the writer keeps trying to get a group
    /// confirmed (riding out a leader election or a reconnect) before it
    /// fails the group's appends with `QuorumUnavailable`. Also bounds each
    /// wait while a new writer catches up.
    pub quorum_timeout: Duration,
    /// This node's name in the writer lease. `None`: the host name and the
    /// store's directory, so a writer restarting on the same machine and
    /// directory is the same node.
    pub node_id: Option<String>,
}

impl JetStreamConfig {
    /// A config for `stream` on the server at `url`, with the subject
    /// prefix `batpak.<stream>` and one replica.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        let stream = stream.into();
        Self {
            url: url.into(),
            subject_prefix: format!("batpak.{stream}"),
            stream,
            replicas: 1,
            connect_timeout: Duration::from_secs(5),
            msg_ids: true,
            quorum_timeout: Duration::from_secs(30),
            node_id: None,
        }
    }

    /// Sets how long a quorum writer waits for a group's confirmation.
    pub fn with_quorum_timeout(mut self, timeout: Duration) -> Self {
        self.quorum_timeout = timeout;
        self
    }

    /// Sets this node's name in the writer lease.
    pub fn with_node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Turns `Nats-Msg-Id` on messages on or off.
    pub fn with_msg_ids(mut self, on: bool) -> Self {
        self.msg_ids = on;
        self
    }

    /// Sets the subject prefix.
    pub fn with_subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Sets the number of stream replicas used when the stream is created.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Checks the names before anything connects.
    fn validate(&self) -> Result<(), ReplicationError> {
        let bad_stream = self.stream.is_empty()
            || self.stream.bytes().any(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        if bad_stream {
            return Err(ReplicationError::Config(format!(
                "stream name {:?} must be non-empty [A-Za-z0-9_-]",
                self.stream
            )));
        }
        let bad_prefix = self.subject_prefix.is_empty()
            || self.subject_prefix.split('.').any(|t| {
                t.is_empty() || t.bytes().any(|b| b.is_ascii_whitespace() || b == b'*' || b == b'>')
            });
        if bad_prefix {
            return Err(ReplicationError::Config(format!(
                "subject prefix {:?} must be dot-separated tokens without wildcards",
                self.subject_prefix
            )));
        }
        if self.quorum_timeout.is_zero() {
            return Err(ReplicationError::Config("quorum_timeout must be above zero".into()));
        }
        if ![1, 3, 5].contains(&self.replicas) {
            return Err(ReplicationError::Config(format!(
                "replicas must be 1, 3 or 5, not {}",
                self.replicas
            )));
        }
        Ok(())
    }
}

/// Why replication failed or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplicationError {
    /// The configuration is invalid.
    Config(String),
    /// The NATS server could not be reached or refused a request.
    Nats(String),
    /// The stream and the local log disagree; nothing more is shipped or
    /// applied until an operator looks. `sequence` is the store's global
    /// sequence where they part.
    Diverged {
        /// Global sequence of the first disagreement.
        sequence: u64,
        /// What differs.
        detail: String,
    },
    /// Another node holds the stream's writer lease; take it over with
    /// [`Replica::promote`] if that node is gone.
    LeaseHeld {
        /// The node holding it.
        holder: String,
        /// Its epoch.
        epoch: u64,
    },
    /// The local store failed.
    Store(crate::store::StoreError),
    /// The replication thread stopped unexpectedly.
    Stopped(String),
}

impl fmt::Display for ReplicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(m) => write!(f, "replication config: {m}"),
            Self::Nats(m) => write!(f, "NATS: {m}"),
            Self::Diverged { sequence, detail } => {
                write!(f, "stream and store diverge at global sequence {sequence}: {detail}")
            }
            Self::LeaseHeld { holder, epoch } => {
                write!(f, "the writer lease is held by {holder} (epoch {epoch})")
            }
            Self::Store(e) => write!(f, "local store: {e}"),
            Self::Stopped(m) => write!(f, "replication stopped: {m}"),
        }
    }
}

impl std::error::Error for ReplicationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::store::StoreError> for ReplicationError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(e)
    }
}

/// A single-threaded runtime for one replication thread.
fn runtime() -> Result<tokio::runtime::Runtime, ReplicationError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| ReplicationError::Stopped(format!("cannot start a runtime: {e}")))
}

/// Connects to the server, bounded by the config's timeout.
async fn connect(cfg: &JetStreamConfig) -> Result<async_nats::Client, ReplicationError> {
    // No retry on the first connect: a wrong URL is an error at start.
    // Once connected, the client reconnects on its own.
    let options = async_nats::ConnectOptions::new().connection_timeout(cfg.connect_timeout);
    let urls: Vec<&str> = cfg.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    match tokio::time::timeout(cfg.connect_timeout, options.connect(urls)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(ReplicationError::Nats(format!("connect to {}: {e}", cfg.url))),
        Err(_) => Err(ReplicationError::Nats(format!(
            "no NATS server answered at {} within {:?}",
            cfg.url, cfg.connect_timeout
        ))),
    }
}

/// Hex of an event id, as `Nats-Msg-Id`.
fn msg_id(event_id: u128) -> String {
    format!("{event_id:032x}")
}

/// A value shared between a replication thread and its handle, with a
/// condition to wait on.
struct Progress {
    state: parking_lot::Mutex<ProgressState>,
    changed: parking_lot::Condvar,
}

#[derive(Default, Clone)]
struct ProgressState {
    /// Global sequences below this are done (shipped or applied).
    done: u64,
    /// The stream's last sequence as last seen.
    stream_last: u64,
    /// Why the thread stopped, if it did.
    error: Option<String>,
    /// Whether the thread has finished.
    finished: bool,
}

impl Progress {
    fn new(done: u64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            state: parking_lot::Mutex::new(ProgressState { done, ..ProgressState::default() }),
            changed: parking_lot::Condvar::new(),
        })
    }

    fn update(&self, f: impl FnOnce(&mut ProgressState)) {
        f(&mut self.state.lock());
        self.changed.notify_all();
    }

    /// Records the stream's last sequence as seen. Nothing waits on it,
    /// so no waiter is woken: a follower calls this once per message.
    fn saw_stream_last(&self, seq: u64) {
        let mut state = self.state.lock();
        state.stream_last = state.stream_last.max(seq);
    }

    fn snapshot(&self) -> ProgressState {
        self.state.lock().clone()
    }

    /// Waits until `done >= upto`, the thread stops, or `timeout` passes.
    fn wait_done(&self, upto: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.state.lock();
        while state.done < upto && !state.finished {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.done >= upto
    }
}

/// Tells a worker thread it is set up (or why it could not be).
type Ready = flume::Sender<Result<(), ReplicationError>>;

/// A replication thread: its progress, its stop flag and its handle.
/// Dropping it stops the thread and waits for it.
struct Worker {
    progress: std::sync::Arc<Progress>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Spawns thread `name` running `body` and waits until the body reports
    /// ready, or returns the error that stopped it first. An error after
    /// that is kept in the progress state for `status()`.
    fn start(
        name: &str,
        progress: std::sync::Arc<Progress>,
        body: impl FnOnce(&Progress, &std::sync::atomic::AtomicBool, &Ready) -> Result<(), ReplicationError>
            + Send
            + 'static,
    ) -> Result<Self, ReplicationError> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = flume::bounded(1);
        let thread = {
            let (progress, stop, name_owned) =
                (std::sync::Arc::clone(&progress), std::sync::Arc::clone(&stop), name.to_string());
            std::thread::Builder::new()
                .name(format!("batpak-{name}"))
                .spawn(move || {
                    let result = body(&progress, &stop, &ready_tx);
                    let error = result.err().map(|e| {
                        tracing::error!(error = %e, worker = %name_owned, "replication thread stopped");
                        let text = e.to_string();
                        let _ = ready_tx.send(Err(e));
                        text
                    });
                    progress.update(|p| {
                        p.error = error;
                        p.finished = true;
                    });
                })
                .map_err(|e| ReplicationError::Stopped(format!("cannot spawn the {name} thread: {e}")))?
        };
        let mut worker = Self { progress, stop, thread: Some(thread) };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(e)) => {
                worker.halt();
                Err(e)
            }
            Err(_) => {
                worker.halt();
                Err(ReplicationError::Stopped(format!("the {name} thread ended during start")))
            }
        }
    }

    /// Asks the thread to stop and waits for it.
    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.halt();
    }
}
