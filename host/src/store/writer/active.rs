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
    /// Sequence of the first event in this segment.
    pub first_seq: u64,
    strings: HashMap<Arc<str>, u32>,
    string_list: Vec<Arc<str>>,
    /// Gate-set records written to this segment (copied into its footer).
    pub gate_sets: Vec<(u32, Vec<u8>)>,
}

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

    /// Writes `bytes` at the committed end. Does not move `len`: the caller
    /// commits with [`ActiveSegment::commit`] or undoes with [`ActiveSegment::cut_back`].
    pub(crate) fn write_at_end(&self, at: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.zero_ahead_of(at + bytes.len() as u64)?;
        self.file.write_all_at(bytes, at)?;
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
    pub(crate) fn cut_back(&self) -> Result<(), StoreError> {
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
    pub(crate) fn seal(&self, index: &StoreIndex, end_seq: u64) -> Result<u64, StoreError> {
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
