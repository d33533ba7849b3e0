//! Reading committed frames back: by disk position, CRC-checked, with a
//! small cache of open segment files.
//!
//! Compaction can move an event between the moment a reader takes its
//! index entry and the moment it reads the frame. Every frame read is
//! checked against the entry (id and sequence), so a stale position never
//! yields another event; a failed read waits out any compaction commit in
//! progress, drops the cached files, looks the entry up again by sequence
//! and retries once.

use crate::coordinate::DagPosition;
use crate::event::{Event, EventHeader, StoredEvent};
use crate::store::data_dir::DataDir;
use crate::store::index::{DiskPos, IndexEntry, StoreIndex};
use crate::store::segment::frame::EventRecord;
use crate::store::segment::read::{decode_event, read_frame};
use crate::store::StoreError;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

mod bulk;
mod hot;
mod json_in_place;
mod scratch;

pub(crate) use hot::EventCache;
pub(crate) use scratch::ReplayScratch;

/// Open segment files, at most `budget` at a time.
pub(crate) struct SegmentReader {
    dir: Arc<DataDir>,
    index: Arc<StoreIndex>,
    files: Mutex<HashMap<u64, Arc<File>>>,
    budget: usize,
    /// Held exclusively while a compaction puts its files in place and
    /// swaps the index; a reader whose read failed waits on it.
    swap: RwLock<()>,
}

impl SegmentReader {
    pub(crate) fn new(dir: Arc<DataDir>, index: Arc<StoreIndex>, budget: usize) -> Self {
        Self { dir, index, files: Mutex::new(HashMap::new()), budget: budget.max(1), swap: RwLock::new(()) }
    }

    /// Blocks retrying readers while a compaction swaps files and index.
    pub(crate) fn lock_for_swap(&self) -> RwLockWriteGuard<'_, ()> {
        self.swap.write()
    }

    /// Closes every cached file (their names may now hold other segments).
    pub(crate) fn forget_files(&self) {
        self.files.lock().clear();
    }

    /// After a failed read of `entry`: waits for any compaction commit to
    /// end, forgets cached files and returns the entry as the index has it
    /// now (`NotFound` if compaction removed it).
    fn refreshed(&self, entry: &IndexEntry) -> Result<IndexEntry, StoreError> {
        drop(self.swap.read());
        self.forget_files();
        match self.index.get_any(entry.global_sequence) {
            Some(now) if now.event_id == entry.event_id => Ok(now),
            _ => Err(StoreError::NotFound(entry.event_id)),
        }
    }

    fn file(&self, segment_id: u64) -> Result<Arc<File>, StoreError> {
        if let Some(f) = self.files.lock().get(&segment_id) {
            return Ok(Arc::clone(f));
        }
        let file = Arc::new(self.dir.open_segment(segment_id)?);
        let mut files = self.files.lock();
        if files.len() >= self.budget {
            if let Some(evict) = files.keys().next().copied() {
                files.remove(&evict);
            }
        }
        files.insert(segment_id, Arc::clone(&file));
        Ok(file)
    }

    /// The whole of segment `id`.
    pub(crate) fn read_segment(&self, id: u64) -> Result<Vec<u8>, StoreError> {
        let file = self.file(id)?;
        let len = file.metadata()?.len();
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    /// A fresh read handle on segment `id`.
    pub(crate) fn open_file(&self, id: u64) -> Result<File, StoreError> {
        self.dir.open_segment(id)
    }

    /// Reads and decodes the event behind `entry`.
    pub(crate) fn read_event(
        &self,
        entry: &IndexEntry,
    ) -> Result<StoredEvent<serde_json::Value>, StoreError> {
        self.read_event_once(entry).or_else(|_| self.read_event_once(&self.refreshed(entry)?))
    }

    fn read_event_once(&self, entry: &IndexEntry) -> Result<StoredEvent<serde_json::Value>, StoreError> {
        let bytes = read_frame(&*self.file(entry.disk_pos.segment_id)?, entry.disk_pos)?;
        let ev = checked_event(&bytes, entry)?;
        let payload = serde_json::from_slice(ev.payload)?;
        Ok(StoredEvent { coordinate: entry.coord.clone(), event: build_event(entry, &ev, payload) })
    }
}

/// The event frame `bytes`, checked against the index entry that points at it.
fn checked_event<'a>(bytes: &'a [u8], entry: &IndexEntry) -> Result<EventRecord<'a>, StoreError> {
    checked_record(bytes, entry.event_id, entry.global_sequence, entry.disk_pos)
}

/// The event frame `bytes` read from `pos`, if it holds event `id` at `seq`.
fn checked_record(bytes: &[u8], id: u128, seq: u64, pos: DiskPos) -> Result<EventRecord<'_>, StoreError> {
    let ev = decode_event(bytes, pos)?;
    if ev.event_id != id || ev.global_sequence != seq {
        return Err(StoreError::corrupt(
            pos.segment_id,
            format!("offset {}: frame holds another event than the index says", pos.offset),
        ));
    }
    Ok(ev)
}

fn build_event(
    entry: &IndexEntry,
    ev: &EventRecord<'_>,
    payload: serde_json::Value,
) -> Event<serde_json::Value> {
    event_of(entry.kind, entry.hash_chain, ev, payload)
}

fn event_of(
    kind: crate::event::EventKind,
    hash_chain: crate::event::HashChain,
    ev: &EventRecord<'_>,
    payload: serde_json::Value,
) -> Event<serde_json::Value> {
    Event { header: header_of(kind, &hash_chain, ev), payload, hash_chain: Some(hash_chain) }
}

/// The header of the event `ev`, with the kind and chain the index holds.
fn header_of(
    kind: crate::event::EventKind,
    hash_chain: &crate::event::HashChain,
    ev: &EventRecord<'_>,
) -> EventHeader {
    EventHeader {
        event_id: ev.event_id,
        correlation_id: ev.correlation_id,
        causation_id: ev.causation_id,
        timestamp_us: ev.timestamp_us,
        position: DagPosition::child_at(ev.clock, ev.wall_ms, 0),
        payload_size: ev.payload.len() as u32,
        event_kind: kind,
        flags: ev.flags,
        content_hash: hash_chain.event_hash,
    }
}

impl SegmentReader {
    /// The raw frame at `pos`.
    pub(crate) fn read_frame_bytes(&self, pos: DiskPos) -> Result<Vec<u8>, StoreError> {
        read_frame(&*self.file(pos.segment_id)?, pos)
    }

    /// The stored payload bytes (canonical JSON) of `entry`.
    pub(crate) fn read_payload_bytes(&self, entry: &IndexEntry) -> Result<Vec<u8>, StoreError> {
        self.with_record(entry, |record| record.payload.to_vec())
    }

    /// `f` applied to the checked record behind each of `entries`, in
    /// order. Frames that lie close together in one segment are fetched
    /// with one read; a run that fails (e.g. compaction moved it) falls
    /// back to [`SegmentReader::with_record`] per entry.
    #[cfg(feature = "replication")]
    pub(crate) fn with_records<T>(
        &self,
        entries: &[IndexEntry],
        f: impl Fn(&IndexEntry, &crate::store::segment::frame::EventRecord<'_>) -> T,
    ) -> Result<Vec<T>, StoreError> {
        /// Longest read for one run of frames, and the widest gap it spans.
        const MAX_RUN: u64 = 1 << 20;
        const GAP: u64 = 4096;
        let mut out = Vec::with_capacity(entries.len());
        let mut i = 0;
        while let Some(first) = entries.get(i) {
            let (seg, start) = (first.disk_pos.segment_id, first.disk_pos.offset);
            let mut end = start + u64::from(first.disk_pos.length);
            let mut j = i + 1;
            while let Some(e) = entries.get(j) {
                let (at, len) = (e.disk_pos.offset, u64::from(e.disk_pos.length));
                if e.disk_pos.segment_id != seg || at < end || at - end > GAP || at + len - start > MAX_RUN {
                    break;
                }
                end = at + len;
                j += 1;
            }
            let run = &entries[i..j];
            let read = || -> Result<Vec<T>, StoreError> {
                let mut buf = vec![0u8; (end - start) as usize];
                self.file(seg)?.read_exact_at(&mut buf, start)?;
                run.iter()
                    .map(|e| {
                        let from = (e.disk_pos.offset - start) as usize;
                        let bytes = buf
                            .get(from..from + e.disk_pos.length as usize)
                            .ok_or_else(|| StoreError::corrupt(seg, "frame outside its run"))?;
                        Ok(f(e, &checked_event(bytes, e)?))
                    })
                    .collect()
            };
            match read() {
                Ok(done) => out.extend(done),
                Err(_) => {
                    for e in run {
                        out.push(self.with_record(e, |r| f(e, r))?);
                    }
                }
            }
            i = j;
        }
        Ok(out)
    }

    /// `f` applied to the checked record behind `entry`, looked up again
    /// once if compaction moved it meanwhile.
    pub(crate) fn with_record<T>(
        &self,
        entry: &IndexEntry,
        f: impl Fn(&crate::store::segment::frame::EventRecord<'_>) -> T,
    ) -> Result<T, StoreError> {
        let once = |e: &IndexEntry| -> Result<T, StoreError> {
            let bytes = read_frame(&*self.file(e.disk_pos.segment_id)?, e.disk_pos)?;
            Ok(f(&checked_event(&bytes, e)?))
        };
        once(entry).or_else(|_| once(&self.refreshed(entry)?))
    }
}

/// The payload of the event behind `entry` within a whole segment's bytes.
pub(crate) fn payload_at<'a>(segment: &'a [u8], entry: &IndexEntry) -> Result<&'a [u8], StoreError> {
    let pos = entry.disk_pos;
    let start = usize::try_from(pos.offset).unwrap_or(usize::MAX);
    let frame = segment.get(start..start.saturating_add(pos.length as usize)).ok_or_else(|| {
        StoreError::corrupt(pos.segment_id, format!("offset {}: frame beyond the file", pos.offset))
    })?;
    Ok(checked_event(frame, entry)?.payload)
}
