//! A helper thread that writes and fsyncs a large unit's frames while the
//! writer keeps computing. A batch's chain hashes are not stored in its
//! frames, so the writer hands the framed bytes here and chains the hashes
//! during the disk work instead of after it. The writer still waits for the
//! fsync before it commits, indexes or publishes anything: the order of the
//! commit path is unchanged, only the hashing moved under the disk wait.
//!
//! At most one job is in flight: [`PendingIo`] borrows the helper mutably
//! and waits for its own result when dropped, so a result can never be
//! taken for another job's.

use crate::store::config::SyncMode;
use crate::store::durability::SyncHandle;
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// How long the writer spins for the helper's result before it sleeps:
/// about one write and fsync of a large batch on the disks we measured.
const SPIN_FOR_RESULT: Duration = Duration::from_micros(400);

/// Which half of a job failed.
#[derive(Debug)]
pub(crate) enum IoFailure {
    /// The write failed: the file may hold part of the bytes, none durable.
    Write(std::io::Error),
    /// The fsync failed: the bytes are written but their durability is unknown.
    Sync(std::io::Error),
}

struct Job {
    target: SyncHandle,
    bytes: Vec<u8>,
    at: u64,
    mode: SyncMode,
}

/// A finished job: the buffer comes back for reuse with the outcome.
struct Done {
    bytes: Vec<u8>,
    outcome: Result<(), IoFailure>,
}

impl Job {
    fn run(self) -> Done {
        let outcome = (self.target.file.write_all_at(&self.bytes, self.at).map_err(IoFailure::Write))
            .and_then(|()| self.target.sync(self.mode).map_err(IoFailure::Sync));
        Done { bytes: self.bytes, outcome }
    }
}

/// The helper thread and the two channels to it.
pub(crate) struct IoHelper {
    jobs: Option<flume::Sender<Job>>,
    results: flume::Receiver<Done>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IoHelper {
    /// Starts the helper thread.
    pub(crate) fn spawn(name: String) -> std::io::Result<Self> {
        let (jobs, job_rx) = flume::bounded::<Job>(1);
        let (done_tx, results) = flume::bounded(1);
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            for job in job_rx.iter() {
                if done_tx.send(job.run()).is_err() {
                    return;
                }
            }
        })?;
        Ok(Self { jobs: Some(jobs), results, thread: Some(thread) })
    }

    /// Starts writing `bytes` at `at` in `file`, then fsyncing it.
    fn start(&mut self, target: SyncHandle, bytes: Vec<u8>, at: u64, mode: SyncMode) -> PendingIo<'_> {
        let job = Job { target, bytes, at, mode };
        let inline = match &self.jobs {
            Some(jobs) => jobs.send(job).err().map(|unsent| unsent.into_inner().run()),
            None => Some(job.run()),
        };
        PendingIo { helper: self, inline, waited: false }
    }
}

impl Drop for IoHelper {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One job in flight.
#[must_use = "a write's outcome decides whether the unit is durable"]
struct PendingIo<'a> {
    helper: &'a mut IoHelper,
    /// The outcome of a job run on the caller's thread (helper gone).
    inline: Option<Done>,
    waited: bool,
}

impl PendingIo<'_> {
    fn wait(mut self) -> Option<Done> {
        self.take()
    }

    fn take(&mut self) -> Option<Done> {
        self.waited = true;
        if let Some(done) = self.inline.take() {
            return Some(done);
        }
        super::spin_recv_for(&self.helper.results, SPIN_FOR_RESULT).ok()
    }
}

impl Drop for PendingIo<'_> {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.take();
        }
    }
}

impl super::Writer {
    /// Writes the framed unit in `self.buf` at `at` in the active segment
    /// and fsyncs it on the helper thread, running `work` meanwhile. Runs
    /// everything on this thread if the helper cannot be started.
    pub(super) fn persist_during<T>(
        &mut self,
        at: u64,
        work: impl FnOnce() -> T,
    ) -> (T, Result<(), IoFailure>) {
        let mode = self.cfg.sync.mode;
        let Some(seg) = self.active.as_ref() else {
            return (work(), Err(IoFailure::Write(std::io::Error::other("no active segment"))));
        };
        if let Err(e) = seg.zero_ahead_of(at + self.buf.len() as u64) {
            return (work(), Err(IoFailure::Write(e)));
        }
        let target = seg.sync_handle();
        if self.io_helper.is_none() {
            let name = format!("{}-io", std::thread::current().name().unwrap_or("batpak-writer"));
            self.io_helper = IoHelper::spawn(name)
                .inspect_err(|e| tracing::warn!(error = %e, "write helper not started; batches write inline"))
                .ok();
        }
        let bytes = std::mem::take(&mut self.buf);
        let (out, done) = match self.io_helper.as_mut() {
            Some(helper) => {
                let pending = helper.start(target, bytes, at, mode);
                let out = work();
                (out, pending.wait())
            }
            None => {
                let done = Job { target, bytes, at, mode }.run();
                (work(), Some(done))
            }
        };
        match done {
            Some(Done { bytes, outcome }) => {
                self.buf = bytes;
                (out, outcome)
            }
            None => (out, Err(IoFailure::Sync(std::io::Error::other("the write helper thread is gone")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::sync::Arc;

    fn target(file: &Arc<File>) -> SyncHandle {
        SyncHandle { file: Arc::clone(file), name: "test".into(), durability: Default::default() }
    }

    fn file_in(dir: &tempfile::TempDir) -> Arc<File> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(true);
        Arc::new(options.open(dir.path().join("f")).unwrap())
    }

    #[test]
    fn each_result_belongs_to_its_own_job() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir);
        let mut helper = IoHelper::spawn("io-helper-test".into()).unwrap();
        for i in 0..3u8 {
            // Dropped without waiting: the drop consumes its result.
            let _ = helper.start(target(&file), vec![i; 4], u64::from(i) * 4, SyncMode::SyncData);
        }
        let done = helper.start(target(&file), vec![9; 4], 12, SyncMode::SyncAll).wait().unwrap();
        assert!(done.outcome.is_ok());
        assert_eq!(done.bytes, vec![9; 4], "the job's own buffer comes back");
        assert!(helper.results.is_empty(), "no result left over for a later job");
        assert_eq!(
            std::fs::read(dir.path().join("f")).unwrap(),
            [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 9, 9, 9, 9]
        );
    }

    #[test]
    fn without_a_helper_the_job_runs_inline() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir);
        let mut helper = IoHelper::spawn("io-helper-test".into()).unwrap();
        helper.jobs = None;
        let done = helper.start(target(&file), b"abc".to_vec(), 0, SyncMode::SyncAll).wait().unwrap();
        assert!(done.outcome.is_ok());
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"abc");
    }

    #[test]
    fn a_failed_write_is_reported_as_a_write_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ro"), b"").unwrap();
        let read_only = Arc::new(File::open(dir.path().join("ro")).unwrap());
        let mut helper = IoHelper::spawn("io-helper-test".into()).unwrap();
        let done = helper.start(target(&read_only), b"abc".to_vec(), 0, SyncMode::SyncAll).wait().unwrap();
        assert!(matches!(done.outcome, Err(IoFailure::Write(_))), "{:?}", done.outcome);
    }
}
