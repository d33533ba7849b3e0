//! The rewrite step of a compaction, run on the caller's thread while the
//! writer keeps appending: decide each event's fate, write the survivors
//! into new segments (temporary names, fsynced), and build the index
//! generation that describes them.

use super::plan::{output_name, Plan};
use super::{CompactionResult, CompactionStart, CompactionStrategy};
use crate::event::{EventKind, StoredEvent};
use crate::store::config::SyncMode;
use crate::store::data_dir::DataDir;
use crate::store::index::{DiskPos, IndexEntry, IndexGen, StoreIndex};
use crate::store::reader::SegmentReader;
use crate::store::segment::file::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::store::segment::footer;
use crate::store::segment::frame::{self, Record};
use crate::store::StoreError;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Events whose payloads are read (and predicates run) at a time.
const FATE_CHUNK: usize = 4096;
/// Bytes buffered before an output write.
const WRITE_CHUNK: usize = 1 << 20;
/// Entries inserted into the new generation at a time.
const INSERT_CHUNK: usize = 16 * 1024;
/// Outputs fill up to this size when segments are small: merging many
/// small sealed segments into few is the point of a compaction. Offsets
/// stay far below the 3 GiB that 32-bit positions allow.
const MERGED_SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
/// Payload of a tombstone.
const TOMBSTONE_PAYLOAD: &[u8] = b"null";

/// What happens to one event of the run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Tombstone,
    Remove,
}

/// What the rewrite hands to the writer's commit.
pub(crate) struct Prepared {
    /// What the commit does to the directory.
    pub plan: Plan,
    /// The sealed segments rewritten.
    pub run: Vec<u64>,
    /// The generation covers every sequence below this.
    pub watermark: u64,
    /// The next index generation (sequences below `watermark`).
    pub gen: IndexGen,
    /// Figures for the caller.
    pub result: CompactionResult,
    /// The reader whose cached files the commit must forget.
    pub reader: Arc<SegmentReader>,
}

/// What the rewrite reads and writes through.
pub(crate) struct RewriteCtx<'a> {
    pub dir: &'a DataDir,
    pub index: &'a StoreIndex,
    pub reader: &'a Arc<SegmentReader>,
    pub segment_max_bytes: u64,
    pub now_us: i64,
    /// Gate-set records to carry (every recorded one; duplicates are harmless).
    pub gate_sets: Vec<(u32, Vec<u8>)>,
}

/// Rewrites the run named by `start`. On error every output written so far is removed.
pub(crate) fn prepare(
    ctx: &RewriteCtx<'_>,
    start: CompactionStart,
    strategy: &CompactionStrategy,
) -> Result<Prepared, StoreError> {
    let mut outputs = Vec::new();
    let result = rewrite(ctx, &start, strategy, &mut outputs);
    if result.is_err() {
        for id in &outputs {
            let _ = ctx.dir.remove_optional(&output_name(*id));
        }
    }
    result
}

fn rewrite(
    ctx: &RewriteCtx<'_>,
    start: &CompactionStart,
    strategy: &CompactionStrategy,
    created: &mut Vec<u64>,
) -> Result<Prepared, StoreError> {
    let run: HashSet<u64> = start.run.iter().copied().collect();
    let (in_run, rest) = split(ctx.index, &run, start.watermark)?;
    let fates = decide(ctx, &in_run, strategy)?;
    let gen = IndexGen::with_settings(&ctx.index.generation().settings().clone());
    let mut result = CompactionResult::default();
    let mut pending = Vec::with_capacity(INSERT_CHUNK);
    let mut out = Outputs { ctx, ids: &start.run, created, current: None, sizes: 0 };
    out.next()?;
    let mut last_kept: HashMap<Arc<str>, [u8; 32]> = HashMap::new();
    let mut segment: Option<(u64, Vec<u8>)> = None;
    for (entry, fate) in in_run.iter().zip(&fates) {
        match fate {
            Fate::Remove => {
                result.events_removed += 1;
                continue;
            }
            Fate::Tombstone => result.events_tombstoned += 1,
            Fate::Keep => {}
        }
        let seg = entry.disk_pos.segment_id;
        if segment.as_ref().is_none_or(|(id, _)| *id != seg) {
            segment = Some((seg, read_whole(ctx.dir, seg)?));
        }
        let bytes = segment.as_ref().map_or(&[][..], |(_, b)| b.as_slice());
        let expected_prev = last_kept.get(entry.coord.entity()).copied().unwrap_or([0u8; 32]);
        let anchored = entry.hash_chain.prev_hash != expected_prev;
        last_kept.insert(Arc::clone(entry.coord.entity_arc()), entry.hash_chain.event_hash);
        pending.push(out.push(bytes, entry, *fate == Fate::Tombstone, anchored)?);
        if pending.len() >= INSERT_CHUNK {
            gen.insert(std::mem::take(&mut pending)).map_err(internal)?;
            gen.spill_ready();
        }
    }
    gen.insert(pending).map_err(internal)?;
    for chunk in rest.chunks(INSERT_CHUNK) {
        gen.insert(chunk.to_vec()).map_err(internal)?;
        gen.spill_ready();
    }
    if let Some(why) = gen.scratch_failure().or_else(|| ctx.index.scratch_failure()) {
        return Err(internal(why));
    }
    out.seal()?;
    let used = out.created.len();
    let before: u64 = start.run.iter().map(|id| file_len(ctx.dir, *id)).sum::<Result<u64, _>>()?;
    result.segments_removed = start.run.len() - used;
    result.bytes_reclaimed = before.saturating_sub(out.sizes);
    let plan = Plan { outputs: start.run[..used].to_vec(), removed: start.run[used..].to_vec() };
    Ok(Prepared {
        plan,
        run: start.run.clone(),
        watermark: start.watermark,
        gen,
        result,
        reader: Arc::clone(ctx.reader),
    })
}

/// Entries below `watermark`: those in the run, then the rest (which all
/// come after, since the run is a prefix of the log).
fn split(
    index: &StoreIndex,
    run: &HashSet<u64>,
    watermark: u64,
) -> Result<(Vec<IndexEntry>, Vec<IndexEntry>), StoreError> {
    let (mut in_run, mut rest) = (Vec::new(), Vec::new());
    for seq in 0..watermark {
        let Some(e) = index.get_any(seq) else { continue };
        if run.contains(&e.disk_pos.segment_id) {
            if !rest.is_empty() {
                return Err(internal(format!(
                    "sequence {seq} lies in a sealed segment after the active one"
                )));
            }
            in_run.push(e);
        } else {
            rest.push(e);
        }
    }
    Ok((in_run, rest))
}

/// Each event's fate under `strategy`.
fn decide(
    ctx: &RewriteCtx<'_>,
    entries: &[IndexEntry],
    strategy: &CompactionStrategy,
) -> Result<Vec<Fate>, StoreError> {
    let (predicate, dropped) = match strategy {
        CompactionStrategy::Merge => return Ok(vec![Fate::Keep; entries.len()]),
        CompactionStrategy::Retention(p) => (p, Fate::Remove),
        CompactionStrategy::Tombstone(p) => (p, Fate::Tombstone),
    };
    let mut fates = Vec::with_capacity(entries.len());
    for chunk in entries.chunks(FATE_CHUNK) {
        let events = ctx.reader.read_events(chunk)?;
        if events.len() != chunk.len() {
            return Err(internal("events vanished while their fate was decided".to_string()));
        }
        for (entry, event) in chunk.iter().zip(events) {
            let already_tombstone = entry.kind == EventKind::TOMBSTONE && dropped == Fate::Tombstone;
            let stored = StoredEvent { coordinate: entry.coord.clone(), event };
            fates.push(if already_tombstone || predicate(&stored) { Fate::Keep } else { dropped });
        }
    }
    // The last event of each entity in the run is what later events chain from.
    let mut seen: HashSet<&str> = HashSet::new();
    for (entry, fate) in entries.iter().zip(fates.iter_mut()).rev() {
        if seen.insert(entry.coord.entity()) && *fate == Fate::Remove {
            *fate = Fate::Tombstone;
        }
    }
    Ok(fates)
}

/// The output segments: ids taken in order from the run.
struct Outputs<'a, 'c> {
    ctx: &'a RewriteCtx<'c>,
    ids: &'a [u64],
    created: &'a mut Vec<u64>,
    current: Option<Output>,
    /// Bytes of the outputs sealed so far.
    sizes: u64,
}

/// One output segment being written.
struct Output {
    id: u64,
    file: File,
    /// Bytes written or buffered.
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
    strings: HashMap<Arc<str>, u32>,
    string_list: Vec<Arc<str>>,
    gate_sets: Vec<(u32, Vec<u8>)>,
    entries: Vec<IndexEntry>,
    anchored: HashSet<u64>,
}

impl Outputs<'_, '_> {
    /// Seals the current output and starts the next.
    fn next(&mut self) -> Result<(), StoreError> {
        self.seal()?;
        let id = *self
            .ids
            .get(self.created.len())
            .ok_or_else(|| internal("more outputs than inputs".to_string()))?;
        let file = self.ctx.dir.create_new(&output_name(id))?;
        self.created.push(id);
        let mut out = Output {
            id,
            file,
            len: SEGMENT_HEADER_LEN as u64,
            buf: Vec::with_capacity(WRITE_CHUNK + 64 * 1024),
            buf_at: 0,
            strings: HashMap::new(),
            string_list: Vec::new(),
            gate_sets: Vec::new(),
            entries: Vec::new(),
            anchored: HashSet::new(),
        };
        out.buf.extend_from_slice(&SegmentHeader::new(id, self.ctx.now_us).encode());
        if self.created.len() == 1 {
            for (set, body) in &self.ctx.gate_sets {
                let n = frame::encode(&mut out.buf, &Record::GateSet { id: *set, body });
                out.len += n as u64;
                out.gate_sets.push((*set, body.clone()));
            }
        }
        self.current = Some(out);
        Ok(())
    }

    /// Appends the event behind `entry` (its frame is in `segment`) and
    /// returns its entry in the new generation.
    fn push(
        &mut self,
        segment: &[u8],
        entry: &IndexEntry,
        tombstone: bool,
        anchored: bool,
    ) -> Result<IndexEntry, StoreError> {
        let target = self.ctx.segment_max_bytes.max(MERGED_SEGMENT_BYTES);
        let full = self.current.as_ref().is_some_and(|o| o.len >= target);
        if full && self.created.len() < self.ids.len() {
            self.next()?;
        }
        let out = self.current.as_mut().ok_or_else(|| internal("no output open".to_string()))?;
        let pos = entry.disk_pos;
        let at = usize::try_from(pos.offset).unwrap_or(usize::MAX);
        let bytes = segment.get(at..at.saturating_add(pos.length as usize)).unwrap_or(&[]);
        let mut rec = match frame::decode(bytes) {
            Ok((Record::Event(ev), _)) if ev.event_id == entry.event_id => ev,
            _ => return Err(StoreError::CrcMismatch { segment_id: pos.segment_id, offset: pos.offset }),
        };
        rec.entity_ref = out.string_ref(entry.coord.entity_arc());
        rec.scope_ref = out.string_ref(entry.coord.scope_arc());
        rec.prev_hash = anchored.then_some(entry.hash_chain.prev_hash);
        let mut moved = entry.clone();
        if tombstone {
            rec.kind = EventKind::TOMBSTONE.as_raw();
            rec.payload = TOMBSTONE_PAYLOAD;
            rec.sealed_hash = Some(entry.hash_chain.event_hash);
            moved.kind = EventKind::TOMBSTONE;
        }
        let offset = out.len;
        let length = frame::encode(&mut out.buf, &Record::Event(rec)) as u32;
        out.len += u64::from(length);
        moved.disk_pos = DiskPos { segment_id: out.id, offset, length };
        if anchored {
            out.anchored.insert(entry.global_sequence);
        }
        out.entries.push(moved.clone());
        if out.buf.len() >= WRITE_CHUNK {
            out.flush()?;
        }
        Ok(moved)
    }

    /// Writes the current output's footer and fsyncs it.
    fn seal(&mut self) -> Result<(), StoreError> {
        let Some(mut out) = self.current.take() else { return Ok(()) };
        out.flush()?;
        let refs = |e: &IndexEntry| footer::string_refs(&out.strings, e);
        let anchored = |e: &IndexEntry| out.anchored.contains(&e.global_sequence);
        let bytes = footer::encode(out.len, &out.string_list, &out.gate_sets, &out.entries, refs, anchored)
            .map_err(|why| StoreError::corrupt(out.id, format!("compaction output footer: {why}")))?;
        out.file.write_all_at(&bytes, out.len)?;
        self.ctx.dir.sync_file(&out.file, &output_name(out.id), SyncMode::SyncAll)?;
        self.sizes += out.len + bytes.len() as u64;
        Ok(())
    }
}

impl Output {
    /// The output-local id of `s`, framing a string record on first use.
    fn string_ref(&mut self, s: &Arc<str>) -> u32 {
        if let Some(id) = self.strings.get(s) {
            return *id;
        }
        let id = self.string_list.len() as u32;
        let n = frame::encode(&mut self.buf, &Record::Str { id, value: s });
        self.len += n as u64;
        self.strings.insert(Arc::clone(s), id);
        self.string_list.push(Arc::clone(s));
        id
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.file.write_all_at(&self.buf, self.buf_at)?;
        self.buf_at += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

fn read_whole(dir: &DataDir, id: u64) -> Result<Vec<u8>, StoreError> {
    let file = dir.open_segment(id)?;
    let len = file.metadata()?.len();
    let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| internal(format!("segment {id} too large")))?];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

fn file_len(dir: &DataDir, id: u64) -> Result<u64, StoreError> {
    Ok(dir.open_segment(id)?.metadata()?.len())
}

fn internal(why: String) -> StoreError {
    StoreError::corrupt(0, format!("compaction: {why}"))
}
