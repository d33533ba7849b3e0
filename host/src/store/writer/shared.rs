//! Who runs the writer: its thread, or a lone caller when it is idle.
//!
//! The writer's state lives behind one mutex. The writer thread takes it
//! for each group of queued commands. A single append whose caller finds
//! the queue empty and the mutex free runs the same straight line on the
//! caller's own thread, as a group of one (flat combining): no hand-off to
//! another thread, no wake-up, no reply channel. With one caller, that
//! hand-off used to be most of an append's cost.
//!
//! Exactly one thread at a time holds the state, so everything the module
//! docs of `writer` say about the single writer still holds: one thread
//! writes segments and mutates the index at any moment, units are
//! serialised, and a group is published whole.
//!
//! A caller runs an append itself only when nothing needs the writer
//! thread's own properties (see [`Writer::may_run_in_caller`]):
//! - no gate and no in-writer projection is installed, because a guest
//!   needs the writer's large stack (a caller's thread may have a small
//!   one);
//! - no quorum link, whose groups wait on the replicated log;
//! - the sync policy is not "fsync every append", where many callers gain
//!   most from sharing one fsync in a group commit.

use super::{refuse, shutdown::RestartBudget, spin_recv, Command, Flow, Writer};
use crate::store::contracts::AppendReceipt;
use crate::store::projections::ProjectionSet;
use crate::store::writer::SingleRequest;
use crate::store::StoreError;
use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The writer's state and what decides who runs it.
pub(crate) struct SharedWriter {
    state: Mutex<Running>,
    /// Held (read) while a caller runs an append, so that no projection
    /// can be installed mid-append (see [`ProjectionSet::quiet`]).
    projections: Arc<ProjectionSet>,
    /// Single appends that ran on their caller's thread.
    in_caller: AtomicU64,
    /// Set while the writer thread waits for the state with a command in
    /// hand: callers then queue instead of taking the state before it.
    thread_waiting: AtomicBool,
}

/// The writer and its life cycle.
struct Running {
    writer: Writer,
    restarts: RestartBudget,
    /// The writer panicked past its restart budget: it serves nothing more.
    dead: bool,
    /// The writer served a shutdown: it serves nothing more.
    exited: bool,
}

impl Running {
    fn serving(&self) -> bool {
        !self.dead && !self.exited
    }

    /// After a panic on any thread: restart if the budget allows, else stop.
    fn after_panic(&mut self) {
        if !self.restarts.allow() {
            tracing::error!("writer panicked past its restart budget; appends now fail");
            self.dead = true;
            return;
        }
        tracing::error!("writer panicked; restarting");
        self.writer.recover_after_panic();
    }
}

impl SharedWriter {
    pub(crate) fn new(writer: Writer) -> Arc<Self> {
        let restarts = RestartBudget::new(writer.cfg.writer.restart_policy);
        let projections = Arc::clone(&writer.projections);
        let running = Running { writer, restarts, dead: false, exited: false };
        Arc::new(Self {
            state: Mutex::new(running),
            projections,
            in_caller: AtomicU64::new(0),
            thread_waiting: AtomicBool::new(false),
        })
    }

    /// How many single appends ran on their caller's thread.
    pub(crate) fn appends_in_caller(&self) -> u64 {
        self.in_caller.load(Ordering::Relaxed)
    }

    /// Takes `req` and runs it on this thread if the writer is idle and
    /// may run here. `None` leaves `req` in place, to be sent to the
    /// writer thread.
    pub(crate) fn try_in_caller(
        &self,
        req: &mut Option<SingleRequest>,
    ) -> Option<Result<AppendReceipt, StoreError>> {
        if self.thread_waiting.load(Ordering::Acquire) {
            return None;
        }
        let _quiet = self.projections.quiet()?;
        let mut running = self.state.try_lock()?;
        if !running.serving() || !running.writer.may_run_in_caller() {
            return None;
        }
        let req = req.take()?;
        self.in_caller.fetch_add(1, Ordering::Relaxed);
        match catch_unwind(AssertUnwindSafe(|| running.writer.serve_in_caller(req))) {
            Ok(result) => Some(result),
            Err(_) => {
                running.writer.in_caller = false;
                running.after_panic();
                Some(Err(StoreError::WriterCrashed))
            }
        }
    }

    /// The writer thread's loop: serve each group under the lock until a
    /// shutdown, a panic past the budget, or every sender is gone.
    pub(crate) fn serve(&self, rx: &flume::Receiver<Command>) {
        while let Ok(first) = spin_recv(rx) {
            let mut running = self.lock_for_thread();
            if !running.serving() {
                refuse(first);
                return;
            }
            match catch_unwind(AssertUnwindSafe(|| running.writer.serve_group(first, rx))) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Exit) => {
                    running.exited = true;
                    return;
                }
                Err(_) => running.after_panic(),
            }
        }
        // Every handle dropped without a shutdown: seal what we can.
        let mut running = self.state.lock();
        if running.serving() {
            running.exited = true;
            let _ = catch_unwind(AssertUnwindSafe(|| running.writer.shutdown()));
        }
    }

    /// The state for the writer thread, which goes before any caller that
    /// has not taken it yet: a command taken from the queue is never
    /// overtaken by a later append.
    fn lock_for_thread(&self) -> parking_lot::MutexGuard<'_, Running> {
        if let Some(running) = self.state.try_lock() {
            return running;
        }
        self.thread_waiting.store(true, Ordering::Release);
        let running = self.state.lock();
        self.thread_waiting.store(false, Ordering::Release);
        running
    }

    /// Whether the writer stopped for good after panics.
    pub(crate) fn is_dead(&self) -> bool {
        self.state.lock().dead
    }
}
