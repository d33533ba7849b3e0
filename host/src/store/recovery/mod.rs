//! Opening a store: check the checkpoint (the manifest of a clean close),
//! then load each segment from its footer, or by scanning its frames. Every
//! path reads the sequences and ids that the frames carry, so all yield the
//! same index. The last segment of a crashed run is cut back to its last
//! committed unit, durably, and the writer resumes appending to it.

pub(crate) mod scan;
mod stream;

use crate::store::checkpoint::{self, CHECKPOINT_FILE};
use crate::store::data_dir::DataDir;
use crate::store::index::{image, is_slot_file_name, LoadedEntry, StoreIndex};
use crate::store::segment::file::{list_segments, segment_filename, SEGMENT_HEADER_LEN};
use crate::store::segment::footer;
use crate::store::segment::read::footer_bounds;
use crate::store::segment::Resume;
use crate::store::StoreError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// How the index was rebuilt; reported in diagnostics and traces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments covered by the checkpoint.
    pub from_checkpoint: u32,
    /// Segments loaded from their footers.
    pub from_footers: u32,
    /// Segments read frame by frame.
    pub scanned: u32,
    /// Bytes of torn writes and uncommitted batches cut from the end of a
    /// crashed segment (the zeros the writer keeps ahead of its frames are
    /// cut too, but not counted).
    pub truncated_bytes: u64,
    /// Uncommitted batches discarded.
    pub discarded_batches: u32,
    /// Why the checkpoint was not used, if one existed.
    pub checkpoint_rejected: Option<String>,
    /// The index was read from the image a clean close wrote beside its
    /// checkpoint: no footer was read and nothing was rebuilt.
    pub from_image: bool,
    /// Why the index image beside an accepted checkpoint was not used, if
    /// there was one.
    pub image_rejected: Option<String>,
    /// A newest segment that a crash left without a whole header (so
    /// without any event), removed durably. Segments are created
    /// crash-atomically, so only stores written by older versions, or file
    /// systems that lose a synced header, leave one.
    pub removed_unborn_segment: Option<u64>,
}

/// What open needs from recovery besides the filled index.
pub(crate) struct Recovered {
    pub segments: Vec<u64>,
    pub gate_sets: Vec<(u32, Vec<u8>)>,
    pub report: RecoveryReport,
    /// The crashed last segment, cut back, for the writer to append to.
    pub resume: Option<Resume>,
}

/// Builds the index from the files in `dir` and publishes it.
pub(crate) fn recover(
    dir: &DataDir,
    use_checkpoint: bool,
    settings: &crate::store::index::LogSettings,
) -> Result<(StoreIndex, Recovered), StoreError> {
    dir.remove_stale_temporaries()?;
    crate::store::compaction::plan::recover(dir)?;
    let mut segments = list_segments(dir.dir())?;
    let mut report = RecoveryReport::default();
    if let Some(&last) = segments.last() {
        if remove_if_unborn(dir, last)? {
            tracing::warn!(
                segment = last,
                "removed a newest segment without a whole header (crash artifact)"
            );
            segments.pop();
            report.removed_unborn_segment = Some(last);
        }
    }
    let mut resume = None;
    let mut gate_sets = Vec::new();
    let mut accepted = None;
    if use_checkpoint {
        match dir.read_optional(CHECKPOINT_FILE)?.map(|b| try_checkpoint(dir, &b, &segments)).transpose() {
            Ok(Some(ck)) => {
                report.from_checkpoint = ck.segments.len() as u32;
                accepted = Some(ck);
            }
            Ok(None) => {}
            Err(why) => {
                tracing::warn!(reason = %why, "checkpoint not used; loading segments");
                report.checkpoint_rejected = Some(why);
            }
        }
    }
    if let Some(ck) = accepted.as_ref().filter(|_| settings.scratch_dir.is_some()) {
        let manifest = image::Manifest { segments: &ck.segments, frames_end: ck.frames_end };
        match image::load(dir, &manifest, settings) {
            Ok(Some((gen, gate_sets))) => {
                let kept = gen.slot_file_name();
                remove_slot_files(dir, kept.as_deref())?;
                let index = StoreIndex::from_gen(gen);
                index.settle();
                report.from_image = true;
                tracing::info!(
                    events = index.visible(),
                    segments = segments.len(),
                    "index read from its image"
                );
                return Ok((index, Recovered { segments, gate_sets, report, resume }));
            }
            Ok(None) => {}
            Err(why) => {
                tracing::warn!(reason = %why, "index image not used; loading segments");
                report.image_rejected = Some(why);
            }
        }
    }
    remove_slot_files(dir, None)?;
    let index = StoreIndex::with_settings(settings);
    for (i, &id) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        gate_sets.extend(load_segment(dir, &index, id, is_last, &mut report, &mut resume)?);
    }
    index.publish();
    // Every chunk due for the scratch file is there before the store is
    // handed out: resident memory after open is what the settings say.
    index.settle();
    tracing::info!(events = index.visible(), segments = segments.len(), ?report, "index recovered");
    Ok((index, Recovered { segments, gate_sets, report, resume }))
}

/// Removes the index slot files in `dir` but `keep`: those of runs that
/// crashed, or whose image is stale. Nothing reads them again.
fn remove_slot_files(dir: &DataDir, keep: Option<&str>) -> Result<(), StoreError> {
    for name in dir.names_ending_with(".slots")? {
        if is_slot_file_name(&name) && Some(name.as_str()) != keep {
            dir.remove_optional(&name)?;
        }
    }
    Ok(())
}

/// Removes segment `id` (durably) if it holds less than a whole header or
/// a header of zeros: a file whose creation a crash interrupted, which can
/// hold no event. Returns whether it did.
fn remove_if_unborn(dir: &DataDir, id: u64) -> Result<bool, StoreError> {
    let file = dir.open_segment(id)?;
    let len = file.metadata()?.len();
    let unborn = if len < SEGMENT_HEADER_LEN as u64 {
        true
    } else {
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        file.read_exact_at(&mut header, 0)?;
        header.iter().all(|b| *b == 0)
    };
    if unborn {
        drop(file);
        dir.remove_optional(&crate::store::segment::file::segment_filename(id))?;
        dir.sync_dir()?;
    }
    Ok(unborn)
}

/// Decodes the checkpoint and checks it describes the directory as it is:
/// exactly these segments, the last one's frames ending where it says.
fn try_checkpoint(dir: &DataDir, bytes: &[u8], segments: &[u64]) -> Result<checkpoint::Checkpoint, String> {
    let ck = checkpoint::decode(bytes)?;
    if ck.segments != segments {
        return Err("segments on disk differ from those the checkpoint names".into());
    }
    if let Some(&last) = ck.segments.last() {
        let file = dir.open_segment(last).map_err(|e| e.to_string())?;
        let (_, frames_end) = footer_bounds(&file).map_err(|e| e.to_string())?;
        if frames_end != ck.frames_end {
            return Err(format!("segment {last} changed since the checkpoint"));
        }
    }
    Ok(ck)
}

/// Loads one segment into `index` from its footer, or by scanning its
/// frames; returns its gate-set records. A crashed last segment (scanned
/// as the tail) is cut back and offered to the writer in `resume`.
fn load_segment(
    dir: &DataDir,
    index: &StoreIndex,
    id: u64,
    is_last: bool,
    report: &mut RecoveryReport,
    resume: &mut Option<Resume>,
) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
    let file = dir.open_segment_rw(id)?;
    let (len, frames_end) = footer_bounds(&file)?;
    if frames_end < len {
        // Mapped, like a scan: no zeroed buffer and no copy of the footer.
        let bytes = SegmentBytes::of(&file, len)?;
        let region = bytes.get(frames_end as usize..).unwrap_or(&[]);
        let inserted_before = index.inserted();
        let at = frames_end as usize;
        let mut done_with = |r: std::ops::Range<usize>| bytes.release(at + r.start..at + r.end);
        match load_footer(index, region, frames_end, id, &mut done_with) {
            Ok(sets) => {
                report.from_footers += 1;
                return Ok(sets);
            }
            Err(e) if index.inserted() == inserted_before => {
                tracing::warn!(segment = id, error = %e, "footer unusable; scanning frames");
            }
            Err(e) => return Err(e),
        }
    }
    let tail = is_last && frames_end == len;
    let next_seq = index.inserted();
    let summary = {
        let bytes = SegmentBytes::of(&file, len)?;
        stream::scan_into_index(&bytes, id, frames_end as usize, tail, index, &mut |r| bytes.release(r))?
        // The mapping ends here, before the tail is cut below.
    };
    tracing::debug!(segment = id, events = summary.events, tail, "segment scanned");
    report.scanned += 1;
    report.discarded_batches += summary.discarded_batches;
    if tail {
        cut_crashed_tail(dir, &file, id, len, &summary, report)?;
        *resume = resumable(id, next_seq, &summary);
    }
    Ok(summary.gate_sets)
}

/// Cuts a crashed segment back to its last committed unit, durably: the
/// writer appends after it, and a power loss must not bring back bytes of
/// the cut tail behind those appends. Zeros the writer wrote ahead go too,
/// but only torn or uncommitted data counts as truncated.
fn cut_crashed_tail(
    dir: &DataDir,
    file: &File,
    id: u64,
    len: u64,
    summary: &scan::ScanSummary,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let valid_end = summary.valid_end;
    if valid_end >= len {
        return Ok(());
    }
    let lost = summary.data_end.saturating_sub(valid_end);
    if lost > 0 {
        report.truncated_bytes += lost;
        tracing::warn!(segment = id, from = valid_end, bytes = lost, "cutting uncommitted tail");
    }
    file.set_len(valid_end)?;
    dir.sync_file(file, &segment_filename(id), crate::store::config::SyncMode::SyncAll)?;
    Ok(())
}

/// The writer can append to a scanned tail segment it wrote itself: string
/// ids dense (as the writer assigns them) and no stored hashes (which only
/// compaction writes, and only into sealed segments). Otherwise it starts
/// a new segment and this one, already cut back, is scanned at each open.
fn resumable(id: u64, next_seq: u64, summary: &scan::ScanSummary) -> Option<Resume> {
    let dense = summary.strings.iter().enumerate().all(|(i, (sid, _))| *sid as usize == i);
    (dense && !summary.stored_hashes).then(|| Resume {
        id,
        len: summary.valid_end,
        first_seq: summary.first_seq.unwrap_or(next_seq),
        strings: summary.strings.iter().map(|(_, s)| Arc::clone(s)).collect(),
        gate_sets: summary.gate_sets.clone(),
    })
}

/// A whole segment's bytes for a scan: the file mapped into memory (no
/// copy, no zeroed buffer), or read into one if it cannot be mapped.
enum SegmentBytes {
    /// The mapping, and where the range not yet dropped from memory
    /// starts (see `release`).
    Mapped(memmap2::Mmap, std::cell::Cell<usize>),
    Read(Vec<u8>),
}

/// Bytes of a mapped segment that its reader may have finished with before
/// they are dropped from memory at once.
const RELEASE_STEP: usize = 4 << 20;

impl SegmentBytes {
    fn of(file: &File, len: u64) -> Result<Self, StoreError> {
        // SAFETY: the mapping is read-only and lives only while a footer
        // load or a scan reads it. The store holds the data directory's
        // exclusive lock, so no other store writes this file, and this store
        // writes to it (the tail cut) only after the mapping is dropped. A program
        // that ignores the lock and changes the file meanwhile yields frames
        // the CRCs reject; one that truncates it can make a read of the
        // mapping fault (SIGBUS), as with any mapped file.
        match unsafe { memmap2::Mmap::map(file) } {
            Ok(map) if map.len() as u64 == len => Ok(Self::Mapped(map, std::cell::Cell::new(0))),
            _ => {
                let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
                file.read_exact_at(&mut bytes, 0)?;
                Ok(Self::Read(bytes))
            }
        }
    }
}

impl SegmentBytes {
    /// Drops the mapped pages of `range`, which the reader is done with,
    /// from this process's memory (they stay in the page cache; a later
    /// read faults them back in). Ranges come in order within a pass and
    /// are gathered until `RELEASE_STEP` bytes are due. Without this,
    /// loading a footer holds all of it in resident memory at once: 60 to
    /// 70 MiB for a full 256 MiB segment of small events.
    fn release(&self, range: std::ops::Range<usize>) {
        let Self::Mapped(map, from) = self else { return };
        if range.start < from.get() {
            // A new pass over bytes released in the last one.
            from.set(range.start);
        }
        let page = 4096;
        let start = from.get() / page * page;
        let end = range.end.min(map.len()) / page * page;
        if end < start + RELEASE_STEP {
            return;
        }
        // SAFETY: the mapping is read-only and shared (see `of`), so
        // dropping its pages loses nothing: the next read of them maps the
        // file's bytes again. Both offsets are multiples of the page size.
        let dropped =
            unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        if dropped.is_ok() {
            from.set(end);
        }
    }
}

impl std::ops::Deref for SegmentBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(map, _) => map,
            Self::Read(bytes) => bytes,
        }
    }
}

/// Chunks of decoded footer entries waiting for the index.
const FOOTER_QUEUE: usize = 4;

/// Decodes segment `id`'s footer (`region`, starting at file offset
/// `start`) on this thread while a second thread inserts the decoded chunks
/// into the index, so decoding and indexing overlap. Returns the footer's
/// gate-set records.
fn load_footer(
    index: &StoreIndex,
    region: &[u8],
    start: u64,
    id: u64,
    done_with: &mut dyn FnMut(std::ops::Range<usize>),
) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
    let resolve = |s: &str| index.intern_with_id(s);
    let mut reserve = |n: u64| index.reserve(n as usize);
    let insert =
        |chunk: Vec<LoadedEntry>| index.insert_loaded(chunk).map_err(|why| StoreError::corrupt(id, why));
    std::thread::scope(|scope| {
        let (tx, rx) = flume::bounded::<Vec<LoadedEntry>>(FOOTER_QUEUE);
        let inserter = std::thread::Builder::new()
            .name("batpak-open".into())
            .spawn_scoped(scope, move || rx.iter().try_for_each(insert));
        let Ok(inserter) = inserter else {
            // No second thread: insert each chunk as it is decoded.
            let mut sink = |chunk: Vec<LoadedEntry>| insert(chunk);
            return footer::decode(region, start, id, &resolve, &mut reserve, &mut sink, done_with);
        };
        let decoded = {
            let mut sink = |chunk: Vec<LoadedEntry>| {
                tx.send(chunk).map_err(|_| StoreError::corrupt(id, "index insertion stopped"))
            };
            footer::decode(region, start, id, &resolve, &mut reserve, &mut sink, done_with)
        };
        drop(tx);
        let inserted = inserter.join().map_err(|_| StoreError::corrupt(id, "index insertion panicked"))?;
        // An insertion error explains a decode that stopped early; report it first.
        inserted.and(decoded)
    })
}
