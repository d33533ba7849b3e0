//! The active segment: the one file the writer appends to. It owns the
//! segment's string table, knows its committed length, creates and seals
//! segments, and cuts back anything written by a unit that failed.

use crate::store::config::SyncMode;
use crate::store::data_dir::DataDir;
use crate::store::durability::{Durability, SyncHandle};
use crate::store::index::{IndexEntry, StoreIndex};
use crate::store::segment::file::{segment_filename, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::store::segment::footer;
use crate::store::segment::frame::{self, Record};
use crate::store::StoreError;
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Zero bytes written ahead of the committed end at a time (at most the
/// segment size, at least one page). A commit that overwrites zeros the
/// file already holds changes no file size or block map, so its fsync
/// flushes data pages only, with no journal commit; an append that grows
/// the file pays for one on every fsync.
const ZERO_AHEAD_MAX: u64 = 1 << 20;

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    /// The seam its fsyncs go through.
    durability: Durability,
    pub id: u64,
    file: Arc<File>,
    /// End of the last committed unit; bytes past it belong to no one.
    pub len: u64,
    /// The file's length: `len..zeroed_to` holds zeros written ahead.
    zeroed_to: std::cell::Cell<u64>,
    /// How many zero bytes to write ahead.
    zero_ahead: u64,
    /// A shared mapping of zeros written ahead, which single appends under
    /// a periodic fsync are copied into instead of written with a system
    /// call (see [`Window`] and [`ActiveSegment::copy_at_end`]).
    window: Option<Window>,
    /// `zeroed_to` when a window was last mapped (or refused): a new
    /// mapping is tried only once the zeros reach further.
    mapped_to: u64,
    /// Sequence of the first event in this segment.
    pub first_seq: u64,
    strings: HashMap<Arc<str>, u32>,
    string_list: Vec<Arc<str>>,
    /// Gate-set records written to this segment (copied into its footer).
    pub gate_sets: Vec<(u32, Vec<u8>)>,
}

/// A writable shared mapping of `start..start + map.len()` of the active
/// segment: a stretch the writer has already written with `pwrite`, the
/// zeros ahead of the committed end and, in its first 64 KiB, frames
/// before it (which are never written through the mapping).
///
/// A byte copied into a shared mapping is in the page cache at once, as
/// it would be after a `pwrite`, so a unit copied here is in the OS when
/// the copy ends: it survives the process's death, and the next fsync of
/// the file makes it durable. The copy costs no system call; a page pays
/// one minor fault the first time it is written after each fsync.
///
/// Safety of the mapping rests on three rules, kept by [`ActiveSegment`]:
/// - only bytes the writer wrote itself are mapped, so every mapped page
///   has its disk blocks already (no block allocation, hence no `ENOSPC`,
///   at fault time) and lies inside the file;
/// - the file never shrinks while a window is mapped: `cut_back` drops the
///   window before it truncates;
/// - the data directory's exclusive lock keeps other stores off the file.
///
/// What remains is what every mapped file carries: a disk read error on
/// a page evicted since its zeros were written, or a truncation by a
/// program that ignores the lock, faults the process (`SIGBUS`) instead
/// of returning an error.
struct Window {
    start: u64,
    map: memmap2::MmapMut,
}

impl Window {
    /// Maps `start..end` of `file`, `start` page-aligned. `None` when the
    /// OS refuses the mapping; the writer then keeps writing with `pwrite`.
    fn map(file: &File, start: u64, end: u64) -> Option<Self> {
        let len = usize::try_from(end.checked_sub(start)?).ok().filter(|&n| n > 0)?;
        // SAFETY: see the type's documentation: `start..end` holds bytes
        // this writer wrote, inside the file, and the file does not shrink
        // until the window is dropped. Nothing else in this process maps
        // the range writably.
        let map = unsafe { memmap2::MmapOptions::new().offset(start).len(len).map_mut(file) }
            .inspect_err(|e| tracing::debug!(error = %e, "segment window not mapped; writing with pwrite"))
            .ok()?;
        Some(Self { start, map })
    }

    /// Copies `bytes` to file offset `at`, if the window covers all of it.
    fn copy(&mut self, at: u64, bytes: &[u8]) -> bool {
        let Some(from) = at.checked_sub(self.start).and_then(|d| usize::try_from(d).ok()) else {
            return false;
        };
        match self.map.get_mut(from..from.saturating_add(bytes.len())) {
            Some(dest) => {
                dest.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// The page size windows are aligned to (the mapping offset must be a
/// multiple of the OS page; 64 KiB covers every page size Linux uses).
const WINDOW_ALIGN: u64 = 64 * 1024;

fn zero_ahead(segment_max_bytes: u64) -> u64 {
    segment_max_bytes.clamp(4096, ZERO_AHEAD_MAX)
}

impl ActiveSegment {
    /// Creates segment `id` with its header, crash-atomically and durably
    /// (see `DataDir::create_segment`).
    pub(crate) fn create(
        dir: &DataDir,
        id: u64,
        first_seq: u64,
        now_us: i64,
        segment_max_bytes: u64,
        before_link: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<Self, StoreError> {
        let header = SegmentHeader::new(id, now_us).encode();
        let file = dir.create_segment(id, &header, before_link)?;
        Ok(Self {
            durability: dir.durability().clone(),
            id,
            file: Arc::new(file),
            len: SEGMENT_HEADER_LEN as u64,
            zeroed_to: std::cell::Cell::new(SEGMENT_HEADER_LEN as u64),
            zero_ahead: zero_ahead(segment_max_bytes),
            window: None,
            mapped_to: 0,
            first_seq,
            strings: HashMap::default(),
            string_list: Vec::new(),
            gate_sets: Vec::new(),
        })
    }

    /// Reopens a crashed last segment, already cut back to `resume.len`,
    /// to append after its last committed unit.
    pub(crate) fn resume(
        dir: &DataDir,
        resume: crate::store::segment::Resume,
        segment_max_bytes: u64,
    ) -> Result<Self, StoreError> {
        let file = dir.open_segment_rw(resume.id)?;
        let strings = resume.strings.iter().enumerate().map(|(i, s)| (Arc::clone(s), i as u32)).collect();
        Ok(Self {
            durability: dir.durability().clone(),
            id: resume.id,
            file: Arc::new(file),
            len: resume.len,
            zeroed_to: std::cell::Cell::new(resume.len),
            zero_ahead: zero_ahead(segment_max_bytes),
            window: None,
            mapped_to: 0,
            first_seq: resume.first_seq,
            strings,
            string_list: resume.strings,
            gate_sets: resume.gate_sets,
        })
    }

    /// The segment-local id of `s`, appending a string record to `buf` (and
    /// noting it in `added`) the first time `s` is used in this segment.
    pub(crate) fn string_ref(&mut self, s: &Arc<str>, buf: &mut Vec<u8>, added: &mut Vec<Arc<str>>) -> u32 {
        if let Some(id) = self.strings.get(s) {
            return *id;
        }
        let id = self.string_list.len() as u32;
        frame::encode(buf, &Record::Str { id, value: s });
        self.strings.insert(Arc::clone(s), id);
        self.string_list.push(Arc::clone(s));
        added.push(Arc::clone(s));
        id
    }

    /// Forgets strings whose records were cut back with a failed unit.
    pub(crate) fn forget_strings(&mut self, added: &[Arc<str>]) {
        for s in added.iter().rev() {
            if self.string_list.last() == Some(s) {
                self.string_list.pop();
                self.strings.remove(s);
            }
        }
    }

    /// Writes `bytes` at the committed end with `pwrite`: in the OS on
    /// return. Does not move `len`: the caller commits with
    /// [`ActiveSegment::commit`] or undoes with [`ActiveSegment::cut_back`].
    pub(crate) fn write_at_end(&self, at: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.zero_ahead_of(at + bytes.len() as u64)?;
        self.file.write_all_at(bytes, at)?;
        Ok(())
    }

    /// [`ActiveSegment::write_at_end`] for a unit the next fsync will not
    /// follow at once (a single append under `sync.every_n_events > 1`): a
    /// copy into the window of zeros written ahead when the window covers
    /// it, a `pwrite` that maps the next window otherwise. Either way the
    /// bytes are in the OS on return.
    ///
    /// Units fsynced right after their write keep using `pwrite`: after
    /// each fsync every mapped page is write-protected again, so a copy
    /// would pay a fault (and a TLB flush on the other cores) per unit.
    pub(crate) fn copy_at_end(&mut self, at: u64, bytes: &[u8]) -> Result<(), StoreError> {
        if self.window.as_mut().is_some_and(|w| w.copy(at, bytes)) {
            return Ok(());
        }
        let end = at + bytes.len() as u64;
        self.write_at_end(at, bytes)?;
        // The zeros past `end` become the next window. Its first page may
        // hold the end of this unit: written, so mapped safely.
        let zeroed_to = self.zeroed_to.get();
        if zeroed_to > self.mapped_to {
            self.window = None;
            self.window = Window::map(&self.file, end - end % WINDOW_ALIGN, zeroed_to);
            self.mapped_to = zeroed_to;
        }
        Ok(())
    }

    /// Before a unit ending at `end` is written: if it runs past the zeros
    /// already written, writes a new stretch of zeros right after `end`, so
    /// that the units after it only overwrite. (The unit itself grows the
    /// file this once.)
    pub(crate) fn zero_ahead_of(&self, end: u64) -> std::io::Result<()> {
        let from = self.zeroed_to.get();
        if end <= from {
            return Ok(());
        }
        // The unit itself covers `from..end`; zeros go only past it.
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let to = end + self.zero_ahead;
        let mut at = end;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64);
            self.file.write_all_at(&ZEROS[..n as usize], at)?;
            at += n;
        }
        self.zeroed_to.set(to);
        Ok(())
    }

    /// Marks everything up to `new_len` as committed.
    pub(crate) fn commit(&mut self, new_len: u64) {
        debug_assert!(new_len >= self.len, "commits only move forward");
        self.len = new_len;
    }

    /// Removes every byte past the committed end.
    pub(crate) fn cut_back(&mut self) -> Result<(), StoreError> {
        // The file is about to shrink: no mapping may reach past its end.
        self.window = None;
        self.mapped_to = 0;
        // Whatever happens to the call, assume nothing past `len` is zeroed.
        self.zeroed_to.set(self.len);
        self.file.set_len(self.len)?;
        Ok(())
    }

    /// What another thread needs to write and fsync this file.
    pub(crate) fn sync_handle(&self) -> SyncHandle {
        SyncHandle {
            file: Arc::clone(&self.file),
            name: segment_filename(self.id),
            durability: self.durability.clone(),
        }
    }

    /// Flushes written bytes to stable storage.
    pub(crate) fn sync(&self, mode: SyncMode) -> Result<(), StoreError> {
        Ok(self.durability.sync_file(&self.file, &segment_filename(self.id), mode)?)
    }

    /// Writes the footer (entries `first_seq..end_seq` of `index`) and fsyncs.
    /// Returns where the frames end (the footer start).
    pub(crate) fn seal(&mut self, index: &StoreIndex, end_seq: u64) -> Result<u64, StoreError> {
        self.cut_back()?;
        let entries: Vec<IndexEntry> = (self.first_seq..end_seq).filter_map(|s| index.get_any(s)).collect();
        if let Some(why) = index.scratch_failure() {
            return Err(StoreError::corrupt(self.id, format!("footer not written: {why}")));
        }
        let refs = |e: &IndexEntry| footer::string_refs(&self.strings, e);
        // Writer appends always chain from the entity's head: never anchored.
        let bytes = footer::encode(self.len, &self.string_list, &self.gate_sets, &entries, refs, |_| false)
            .map_err(|why| StoreError::corrupt(self.id, format!("footer not written: {why}")))?;
        let written = self.file.write_all_at(&bytes, self.len).and_then(|()| {
            self.durability.sync_file(&self.file, &segment_filename(self.id), SyncMode::SyncAll)
        });
        if let Err(e) = written {
            // Leave no half footer behind: the segment stays active and unsealed.
            let _ = self.cut_back();
            return Err(e.into());
        }
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::FileExt;

    fn segment(dir: &DataDir, max: u64) -> ActiveSegment {
        ActiveSegment::create(dir, 1, 0, 0, max, || Ok(())).unwrap()
    }

    /// Reads the segment through a handle of its own, as a reader would.
    fn on_disk(dir: &tempfile::TempDir, at: u64, len: usize) -> Vec<u8> {
        let file = File::open(dir.path().join(segment_filename(1))).unwrap();
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, at).unwrap();
        bytes
    }

    /// Appends `units` units of `size` bytes, each committed, and checks
    /// each is readable through another handle as soon as it is written.
    fn append_units(seg: &mut ActiveSegment, dir: &tempfile::TempDir, units: u64, size: usize) {
        for i in 0..units {
            let unit = vec![(i % 251) as u8 + 1; size];
            let at = seg.len;
            seg.copy_at_end(at, &unit).unwrap();
            assert_eq!(on_disk(dir, at, size), unit, "unit {i} at {at}");
            seg.commit(at + size as u64);
        }
    }

    #[test]
    fn units_copied_into_the_window_are_in_the_file_at_once_across_many_windows() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path(), Durability::default()).unwrap();
        let mut seg = segment(&dir, 64 << 20);
        // 3 MiB of 200-byte units: three windows of zeros written ahead.
        append_units(&mut seg, &tmp, 3 * 5243, 200);
        assert!(seg.window.is_some(), "small units are copied, not written");
        assert!(seg.zeroed_to.get() > seg.len, "zeros stay ahead of the end");
        // A unit larger than what the window has left still lands whole.
        append_units(&mut seg, &tmp, 3, 700 * 1024);
    }

    #[test]
    fn cut_back_drops_the_window_before_the_file_shrinks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path(), Durability::default()).unwrap();
        let mut seg = segment(&dir, 64 << 20);
        append_units(&mut seg, &tmp, 10, 100);
        let committed = seg.len;
        seg.copy_at_end(committed, &[7u8; 50]).unwrap(); // a unit that fails
        seg.cut_back().unwrap();
        assert!(seg.window.is_none(), "no mapping may outlive the file's end");
        let file_len = std::fs::metadata(tmp.path().join(segment_filename(1))).unwrap().len();
        assert_eq!(file_len, committed, "the failed unit and the zeros ahead are gone");
        // Appends go on after the cut, in a new window.
        append_units(&mut seg, &tmp, 100, 100);
        assert!(seg.window.is_some());
        assert_eq!(on_disk(&tmp, committed, 100), vec![1u8; 100], "the cut bytes were overwritten");
    }

    #[test]
    fn small_segments_map_the_zeros_they_write_ahead() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path(), Durability::default()).unwrap();
        let mut seg = segment(&dir, 8192);
        append_units(&mut seg, &tmp, 200, 64);
        let file_len = std::fs::metadata(tmp.path().join(segment_filename(1))).unwrap().len();
        assert_eq!(file_len, seg.zeroed_to.get(), "the file ends where the zeros end");
        assert!(seg.window.as_ref().is_some_and(|w| w.start + w.map.len() as u64 == file_len));
    }
}
