//! Reading committed frames back: by disk position, CRC-checked, with a
//! small cache of open segment files.

use crate::coordinate::DagPosition;
use crate::event::{Event, EventHeader, StoredEvent};
use crate::store::data_dir::DataDir;
use crate::store::index::{DiskPos, IndexEntry};
use crate::store::segment::frame::{self, EventRecord, FrameError, Record};
use crate::store::StoreError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Open segment files, at most `budget` at a time.
pub(crate) struct SegmentReader {
    dir: Arc<DataDir>,
    files: Mutex<HashMap<u64, Arc<File>>>,
    budget: usize,
}

impl SegmentReader {
    pub(crate) fn new(dir: Arc<DataDir>, budget: usize) -> Self {
        Self { dir, files: Mutex::new(HashMap::new()), budget: budget.max(1) }
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
        let bytes = read_frame(&*self.file(entry.disk_pos.segment_id)?, entry.disk_pos)?;
        let ev = decode_event(&bytes, entry.disk_pos)?;
        if ev.event_id != entry.event_id || ev.global_sequence != entry.global_sequence {
            return Err(StoreError::corrupt(
                entry.disk_pos.segment_id,
                format!("offset {}: frame holds another event than the index says", entry.disk_pos.offset),
            ));
        }
        let payload = serde_json::from_slice(ev.payload)?;
        let header = EventHeader {
            event_id: ev.event_id,
            correlation_id: ev.correlation_id,
            causation_id: ev.causation_id,
            timestamp_us: ev.timestamp_us,
            position: DagPosition::child_at(ev.clock, ev.wall_ms, 0),
            payload_size: ev.payload.len() as u32,
            event_kind: entry.kind,
            flags: ev.flags,
            content_hash: entry.hash_chain.event_hash,
        };
        let event = Event { header, payload, hash_chain: Some(entry.hash_chain) };
        Ok(StoredEvent { coordinate: entry.coord.clone(), event })
    }

    /// The raw frame at `pos`.
    pub(crate) fn read_frame_bytes(&self, pos: DiskPos) -> Result<Vec<u8>, StoreError> {
        read_frame(&*self.file(pos.segment_id)?, pos)
    }

    /// The stored payload bytes (canonical JSON) of `entry`.
    pub(crate) fn read_payload_bytes(&self, entry: &IndexEntry) -> Result<Vec<u8>, StoreError> {
        let bytes = read_frame(&*self.file(entry.disk_pos.segment_id)?, entry.disk_pos)?;
        Ok(decode_event(&bytes, entry.disk_pos)?.payload.to_vec())
    }
}

/// The payload of the event framed at `pos` within a whole segment's bytes.
pub(crate) fn payload_at(segment: &[u8], pos: DiskPos) -> Result<&[u8], StoreError> {
    let start = usize::try_from(pos.offset).unwrap_or(usize::MAX);
    let frame = segment.get(start..start.saturating_add(pos.length as usize)).ok_or_else(|| {
        StoreError::corrupt(pos.segment_id, format!("offset {}: frame beyond the file", pos.offset))
    })?;
    Ok(decode_event(frame, pos)?.payload)
}

/// The payload bytes of the event framed at `pos` (opens the file itself).
pub(crate) fn read_payload(dir: &DataDir, pos: DiskPos) -> Result<Vec<u8>, StoreError> {
    let bytes = read_frame(&dir.open_segment(pos.segment_id)?, pos)?;
    Ok(decode_event(&bytes, pos)?.payload.to_vec())
}

fn read_frame(file: &File, pos: DiskPos) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; pos.length as usize];
    file.read_exact_at(&mut buf, pos.offset)?;
    Ok(buf)
}

fn decode_event(bytes: &[u8], pos: DiskPos) -> Result<EventRecord<'_>, StoreError> {
    match frame::decode(bytes) {
        Ok((Record::Event(ev), _)) => Ok(ev),
        Ok(_) => {
            Err(StoreError::corrupt(pos.segment_id, format!("offset {}: not an event frame", pos.offset)))
        }
        Err(FrameError::Crc { .. }) => {
            Err(StoreError::CrcMismatch { segment_id: pos.segment_id, offset: pos.offset })
        }
        Err(e) => Err(StoreError::corrupt(pos.segment_id, format!("offset {}: {e}", pos.offset))),
    }
}
