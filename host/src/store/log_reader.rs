//! Reading a data directory without opening it as a store: no lock, no
//! writes, no writer thread. For inspection tools (`batpak inspect`, `tail`)
//! that run beside a live store. It sees what is committed on disk: with
//! `sync.every_n_events > 1`, that may be ahead of what was fsynced.

use crate::plugin::GateSetInfo;
use crate::store::index::IndexEntry;
use crate::store::recovery::scan::scan_segment;
use crate::store::segment::file::list_segments;
use crate::store::segment::footer::{self, FOOTER_TRAILER_LEN};
use crate::store::segment::frame::{self, Record};
use crate::store::StoreError;
use cap_std::fs::Dir;
use std::path::Path;
use std::sync::Arc;

/// One committed event read from disk.
#[derive(Clone, Debug)]
pub struct LoggedEvent {
    /// Its index entry (prev hash zero: the reader does not rebuild chains).
    pub entry: IndexEntry,
    /// When it was appended, µs since the epoch.
    pub timestamp_us: i64,
    /// The payload bytes (canonical JSON).
    pub payload: Vec<u8>,
}

/// One segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Segment id.
    pub id: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Whether it has a footer (sealed).
    pub sealed: bool,
    /// Committed events in it.
    pub events: usize,
}

/// A read-only view of a data directory.
pub struct LogReader {
    dir: Dir,
    /// Chain heads carried from one segment to the next during a pass.
    heads: parking_lot::Mutex<std::collections::HashMap<Arc<str>, [u8; 32]>>,
    /// A prefix of sealed segments already read whose events all lie below
    /// the last `events_from` bound, with the chain heads after it, so a
    /// follower (`tail --follow`) rereads only the segments that can change.
    skipped: parking_lot::Mutex<SkippedPrefix>,
}

#[derive(Default)]
struct SkippedPrefix {
    /// Segment ids in the prefix, with their file lengths (a compaction
    /// that rewrites one under the same id changes its length).
    ids: Vec<(u64, u64)>,
    /// Next sequence after the prefix.
    next_seq: u64,
    heads: std::collections::HashMap<Arc<str>, [u8; 32]>,
}

impl LogReader {
    /// Opens `path` for reading; fails if it is missing or holds no batpak files.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(|e| StoreError::Configuration(format!("cannot open {}: {e}", path.display())))?;
        let has_segments = !list_segments(&dir)?.is_empty();
        let has_store_files =
            dir.exists(crate::store::checkpoint::CHECKPOINT_FILE) || dir.exists(crate::store::LOCK_FILE);
        if !has_segments && !has_store_files {
            return Err(StoreError::Configuration(format!(
                "{} is not a batpak data directory (no segments, no checkpoint, no lock file)",
                path.display()
            )));
        }
        Ok(Self {
            dir,
            heads: parking_lot::Mutex::new(std::collections::HashMap::new()),
            skipped: parking_lot::Mutex::new(SkippedPrefix::default()),
        })
    }

    fn len_of(&self, id: u64) -> Option<u64> {
        self.dir.metadata(crate::store::segment::segment_filename(id)).ok().map(|m| m.len())
    }

    fn read(&self, id: u64) -> Result<Vec<u8>, StoreError> {
        Ok(self.dir.read(crate::store::segment::segment_filename(id))?)
    }

    /// Every segment, in order, with its committed event count.
    pub fn segments(&self) -> Result<Vec<SegmentSummary>, StoreError> {
        let ids = list_segments(&self.dir)?;
        self.heads.lock().clear();
        let mut out = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            let bytes = self.read(id)?;
            let sealed = footer::footer_start(&bytes).is_some();
            let (entries, _) = self.scan(&bytes, id, i + 1 == ids.len())?;
            out.push(SegmentSummary { id, bytes: bytes.len() as u64, sealed, events: entries.len() });
        }
        Ok(out)
    }

    /// Committed events with global sequence ≥ `from`, in order. Repeated
    /// calls with a rising `from` skip the sealed segments already passed.
    pub fn events_from(&self, from: u64) -> Result<Vec<LoggedEvent>, StoreError> {
        let ids = list_segments(&self.dir)?;
        let mut skipped = self.skipped.lock();
        let unchanged = skipped.ids.len() <= ids.len()
            && skipped
                .ids
                .iter()
                .zip(&ids)
                .all(|(&(sid, len), &id)| sid == id && self.len_of(id) == Some(len));
        let reusable = from >= skipped.next_seq && unchanged;
        if !reusable {
            *skipped = SkippedPrefix::default();
        }
        *self.heads.lock() = skipped.heads.clone();
        let mut out = Vec::new();
        let mut extend_prefix = true;
        for (i, &id) in ids.iter().enumerate().skip(skipped.ids.len()) {
            let bytes = self.read(id)?;
            let is_last = i + 1 == ids.len();
            let (entries, _) = self.scan(&bytes, id, is_last)?;
            let end = entries.last().map(|e| e.global_sequence + 1);
            let sealed = footer::footer_start(&bytes).is_some() && !is_last;
            for entry in entries.into_iter().filter(|e| e.global_sequence >= from) {
                let at = entry.disk_pos.offset as usize;
                let Ok((Record::Event(ev), _)) = frame::decode(bytes.get(at..).unwrap_or(&[])) else {
                    return Err(StoreError::corrupt(id, format!("offset {at}: not an event frame")));
                };
                out.push(LoggedEvent { timestamp_us: ev.timestamp_us, payload: ev.payload.to_vec(), entry });
            }
            extend_prefix &= sealed && end.is_none_or(|e| e <= from);
            if extend_prefix {
                skipped.ids.push((id, bytes.len() as u64));
                skipped.next_seq = end.unwrap_or(skipped.next_seq);
                skipped.heads = self.heads.lock().clone();
            }
        }
        Ok(out)
    }

    /// Every gate set recorded in the log.
    pub fn gate_sets(&self) -> Result<Vec<GateSetInfo>, StoreError> {
        let ids = list_segments(&self.dir)?;
        self.heads.lock().clear();
        let mut out = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let bytes = self.read(id)?;
            let (_, sets) = self.scan(&bytes, id, i + 1 == ids.len())?;
            out.extend(sets.into_iter().filter_map(|(sid, body)| GateSetInfo::decode(sid, &body)));
        }
        Ok(out)
    }

    fn scan(
        &self,
        bytes: &[u8],
        id: u64,
        tail: bool,
    ) -> Result<(Vec<IndexEntry>, crate::store::segment::footer::GateSetRecords), StoreError> {
        let frames_end = match footer::footer_start(bytes) {
            Some(start) if (start as usize) <= bytes.len().saturating_sub(FOOTER_TRAILER_LEN) => {
                start as usize
            }
            _ => bytes.len(),
        };
        let intern = |s: &str| Arc::<str>::from(s);
        let heads = self.heads.lock().clone();
        let before = |e: &str| heads.get(e).copied().unwrap_or([0u8; 32]);
        let scanned = scan_segment(bytes, id, frames_end, tail, &intern, &before)?;
        self.heads.lock().extend(scanned.heads);
        Ok((scanned.entries, scanned.gate_sets))
    }
}
