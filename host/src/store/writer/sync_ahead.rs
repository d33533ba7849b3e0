//! The periodic fsync of single appends, started ahead of time on a helper
//! thread so that no append's reply waits for the disk in the common case.
//!
//! The contract (docs/design.md, "Durability contract") is that at most
//! `sync.every_n_events − 1` acknowledged single appends are not yet on
//! stable storage. The writer keeps it like this:
//! - once three quarters of that many are unsynced, it hands an fsync of
//!   the active segment to the helper and goes on appending;
//! - an append that would leave `every_n_events` unsynced first waits for
//!   the fsync in flight (which covers the older three quarters), and
//!   fsyncs itself if that is still not enough.
//!
//! So the bound is the same as with an fsync on the N-th append, but the
//! disk's latency overlaps with the next appends instead of adding to one
//! caller's. An fsync in flight covers the appends that were unsynced
//! when it started; appends written while it runs may or may not reach the
//! disk with it, and are not counted as covered.
//!
//! A failed fsync poisons the writer when its result is collected: the
//! kernel may already have dropped the dirty pages, and a later fsync of
//! the same file could succeed without them. Every path that promises
//! durability of what came before (a batch, `sync()`, a seal, shutdown)
//! collects the result first, so no such promise rests on a failed fsync.

use crate::store::config::SyncMode;
use crate::store::durability::SyncHandle;

/// The smallest `sync.every_n_events` that syncs ahead. Below it the
/// fsync would start one append or two before the bound, and a hand-off
/// per fsync costs more than it hides.
pub(super) const MIN_EVERY_N: u32 = 4;

/// How many unsynced appends start an fsync ahead, for a bound of
/// `every_n` (at least `MIN_EVERY_N`): three quarters of it. Each fsync has
/// a fixed cost (about 200 µs of CPU on the machine we measure on), so the
/// later it starts the fewer there are; the last quarter is the time it
/// has to finish before an append must wait for it (250 appends, about
/// 400 µs, at the default bound of 1 000).
pub(super) fn start_at(every_n: u32) -> u32 {
    every_n - every_n / 4
}

/// The helper thread, started on the first fsync handed to it.
#[derive(Default)]
pub(super) struct SyncAhead {
    helper: Option<Helper>,
    /// Unsynced appends the fsync in flight covers, if one is in flight.
    in_flight: Option<u32>,
}

struct Helper {
    jobs: Option<flume::Sender<(SyncHandle, SyncMode)>>,
    done: flume::Receiver<std::io::Result<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Helper {
    fn spawn() -> std::io::Result<Self> {
        let (jobs, job_rx) = flume::bounded::<(SyncHandle, SyncMode)>(1);
        let (done_tx, done) = flume::bounded(1);
        let thread = std::thread::Builder::new().name("batpak-sync-ahead".into()).spawn(move || {
            for (target, mode) in job_rx.iter() {
                if done_tx.send(target.sync(mode)).is_err() {
                    return;
                }
            }
        })?;
        Ok(Self { jobs: Some(jobs), done, thread: Some(thread) })
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the job channel ends the thread after its current fsync.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What collecting the fsync in flight found.
pub(super) enum Collected {
    /// None was in flight, or it has not finished (when not waiting).
    Nothing,
    /// It finished: this many unsynced appends are now on stable storage.
    Synced(u32),
    /// It failed: durability of everything unsynced is unknown.
    Failed(std::io::Error),
}

impl SyncAhead {
    /// Whether an fsync is in flight.
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Hands an fsync of `target` to the helper, covering `unsynced`
    /// appends. Returns false (and the caller keeps the fsync for later)
    /// if one is already in flight or the helper cannot run.
    pub(super) fn start(&mut self, target: SyncHandle, mode: SyncMode, unsynced: u32) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        if self.helper.is_none() {
            match Helper::spawn() {
                Ok(h) => self.helper = Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "no fsync helper thread; fsyncs stay on the writer");
                    return false;
                }
            }
        }
        let sent = self
            .helper
            .as_ref()
            .and_then(|h| h.jobs.as_ref())
            .is_some_and(|jobs| jobs.send((target, mode)).is_ok());
        if sent {
            self.in_flight = Some(unsynced);
        }
        sent
    }

    /// Everything unsynced was fsynced by the writer itself: the fsync in
    /// flight, when it finishes, covers nothing more.
    pub(super) fn overtaken(&mut self) {
        if let Some(covered) = self.in_flight.as_mut() {
            *covered = 0;
        }
    }

    /// Collects the fsync in flight: waits for it with `wait`, else only
    /// if it has already finished.
    pub(super) fn collect(&mut self, wait: bool) -> Collected {
        let (Some(covered), Some(helper)) = (self.in_flight, self.helper.as_ref()) else {
            return Collected::Nothing;
        };
        let outcome = if wait {
            helper.done.recv().ok()
        } else {
            match helper.done.try_recv() {
                Ok(outcome) => Some(outcome),
                Err(flume::TryRecvError::Empty) => return Collected::Nothing,
                Err(flume::TryRecvError::Disconnected) => None,
            }
        };
        self.in_flight = None;
        match outcome {
            Some(Ok(())) => Collected::Synced(covered),
            Some(Err(e)) => Collected::Failed(e),
            None => Collected::Failed(std::io::Error::other("the fsync helper thread stopped")),
        }
    }
}
