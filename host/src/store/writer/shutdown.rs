//! Sealing on shutdown, the checkpoint, and recovery after a writer panic.

use super::Writer;
use crate::store::checkpoint::{self, CHECKPOINT_FILE};
use crate::store::config::RestartPolicy;
use crate::store::index::image;
use crate::store::StoreError;
use std::time::Instant;

/// Counts writer restarts against the configured policy.
pub(super) struct RestartBudget {
    policy: RestartPolicy,
    used: u32,
    window_start: Instant,
}

impl RestartBudget {
    pub(super) fn new(policy: RestartPolicy) -> Self {
        Self { policy, used: 0, window_start: Instant::now() }
    }

    /// Whether one more restart is allowed (and counts it).
    pub(super) fn allow(&mut self) -> bool {
        let max = match self.policy {
            RestartPolicy::Once => 1,
            RestartPolicy::Bounded { max_restarts, within_ms } => {
                if self.window_start.elapsed().as_millis() > u128::from(within_ms) {
                    self.window_start = Instant::now();
                    self.used = 0;
                }
                max_restarts
            }
        };
        if self.used >= max {
            return false;
        }
        self.used += 1;
        true
    }
}

impl Writer {
    /// Seals the active segment, writes the checkpoint, then the index
    /// image (see `index::image` for why this order keeps an image from
    /// ever describing anything but the checkpoint beside it).
    pub(super) fn shutdown(&mut self) -> Result<(), StoreError> {
        // A failed fsync in flight poisons first: the seal must not hide it.
        let _ = self.collect_sync(true);
        self.check_poisoned()?;
        let end_seq = self.gen.inserted();
        let frames_end = match self.active.take() {
            Some(mut seg) => Some(seg.seal(&self.index, end_seq)?),
            None => None,
        };
        if !self.cfg.index.enable_checkpoint {
            return Ok(());
        }
        let unchanged = frames_end.is_none() && self.checkpoint_current;
        if unchanged && self.image_current {
            return Ok(());
        }
        let Some(&last) = self.segments.last() else { return Ok(()) };
        let frames_end = match frames_end {
            Some(end) => end,
            None => crate::store::segment::read::frames_end(&self.dir, last)?,
        };
        if !unchanged {
            image::remove(&self.dir)?;
            let bytes = checkpoint::encode(&self.segments, frames_end);
            self.dir.write_atomic(CHECKPOINT_FILE, &bytes)?;
            self.checkpoint_current = true;
        }
        self.write_image(frames_end);
        Ok(())
    }

    /// Writes the index image beside the checkpoint just written (or found
    /// current). A failure costs only speed: the next open rebuilds the
    /// index from the footers.
    fn write_image(&mut self, frames_end: u64) {
        self.index.settle();
        let gen = self.index.generation();
        if gen.settings().scratch_dir.is_none() {
            return;
        }
        let manifest = image::Manifest { segments: &self.segments, frames_end };
        match image::write(&self.dir, &gen, &manifest, &self.provenance.records()) {
            Ok(()) => self.image_current = true,
            Err(why) => {
                tracing::warn!(reason = %why, "index image not written; the next open reads the footers")
            }
        }
    }

    /// After a panic: cut back whatever the interrupted unit wrote and seal
    /// the segment, so the restarted loop starts on a clean new one.
    pub(super) fn recover_after_panic(&mut self) {
        let _ = self.collect_sync(true);
        if let Some(mut seg) = self.active.take() {
            if let Err(e) = seg.seal(&self.index, self.gen.inserted()) {
                self.poison(&format!("could not seal the segment after a panic: {e}"));
            }
        }
        if self.quorum_on() && self.gen.inserted() > self.gen.visible() {
            // Quorum acks: what the panicked group staged was never
            // confirmed by the stream, so it must not become visible.
            self.poison(
                "the writer panicked before the stream confirmed a group; reopen the store to settle it",
            );
        } else {
            self.gen.publish();
        }
        if self.compaction_pending() {
            self.poison("a compaction was interrupted by a panic; reopen the store to finish it");
        }
    }
}
