//! The index image (`index.image`): the index as a clean close left it,
//! so the next open reads it instead of rebuilding the index from every
//! segment's footer.
//!
//! The image holds what the index keeps in memory (string table, entity
//! heads, the position lists, fences, side maps, where each spilled chunk
//! sits in the slot file, the newest chunks' slots) and names the slot
//! file that holds the rest. Its size is what open reads: a few bytes per
//! thousand events for the slot file's directory plus the lists, not the
//! 96 bytes per event of the slots themselves.
//!
//! **When it is trusted.** Only together with a checkpoint that open
//! already accepted (the segments on disk are exactly those it names and
//! the last one's frames end where it says), and only if the image names
//! the same segments and end, its CRC holds, and the slot file it names
//! exists, carries the id the image records and holds at least the bytes
//! the image needs. Every block read from the slot file is then checked
//! against the CRC the image carries for it.
//!
//! **Why a trusted image describes the store.** A close removes the old
//! image (durably) before it writes a new checkpoint, and writes the
//! image only after that checkpoint, from the index that matches it. So
//! an image on disk always describes the state the checkpoint beside it
//! describes. Anything that changes the log afterwards either adds a
//! segment (the first append after a clean close starts a new one), so
//! the checkpoint no longer matches, or is a compaction, which removes the
//! checkpoint before its outputs take their segments' names. A crash in
//! any of these steps leaves no checkpoint, a checkpoint that does not
//! match, or a checkpoint without an image: each of them means a rebuild.

use super::generation::{FastMap, IndexGen, NO_SEQ};
use super::id_runs::{self, IdRun};
use super::pos_list::PosList;
use super::slot_log::{LogSettings, SlotLog};
use crate::store::data_dir::DataDir;
use crate::store::segment::codec::{envelope, open_envelope, Cursor, PutBytes, ShortRead};
use hashbrown::HashTable;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Why an image could not be read: the value it was cut short at.
pub(super) fn short(e: ShortRead) -> String {
    format!("image truncated at {}", e.0)
}

/// File name of the index image.
pub(crate) const IMAGE_FILE: &str = "index.image";
const MAGIC: &[u8; 6] = b"FBATIX";
const VERSION: u16 = 4;

/// Gate-set records: (set id, record body).
pub(crate) type GateSets = Vec<(u32, Vec<u8>)>;

/// What an image must agree with: the checkpoint open accepted.
pub(crate) struct Manifest<'a> {
    pub segments: &'a [u64],
    pub frames_end: u64,
}

/// Writes the image of `gen` (settled: nothing due for the slot file
/// still in memory) beside the checkpoint `manifest` describes. The slot
/// file is made durable first, then the image is written atomically.
pub(crate) fn write(
    dir: &DataDir,
    gen: &IndexGen,
    manifest: &Manifest<'_>,
    gate_sets: &GateSets,
) -> Result<(), String> {
    let mut body = Vec::new();
    encode_manifest(manifest, gate_sets, &mut body);
    gen.encode_image(&mut body)?;
    gen.log.persist()?;
    // The slot file's name too is durable before an image names it.
    dir.sync_dir().map_err(|e| e.to_string())?;
    dir.write_atomic(IMAGE_FILE, &envelope(MAGIC, VERSION, &body)).map_err(|e| e.to_string())
}

/// Removes the image, durably (before a new checkpoint is written).
pub(crate) fn remove(dir: &DataDir) -> Result<(), crate::store::StoreError> {
    if dir.dir().exists(IMAGE_FILE) {
        dir.remove_optional(IMAGE_FILE)?;
        dir.sync_dir()?;
    }
    Ok(())
}

/// The index generation and gate sets of the image in `dir`, if there is
/// one that matches `manifest`; `Err` says why an image was refused.
pub(crate) fn load(
    dir: &DataDir,
    manifest: &Manifest<'_>,
    settings: &LogSettings,
) -> Result<Option<(IndexGen, GateSets)>, String> {
    let Some(file) = dir.open_optional(IMAGE_FILE).map_err(|e| e.to_string())? else { return Ok(None) };
    match map_whole(&file) {
        Some(map) => parse(&map, Some(manifest), settings).map(Some),
        None => {
            let mut bytes = Vec::new();
            (&file).read_to_end(&mut bytes).map_err(|e| format!("{IMAGE_FILE}: {e}"))?;
            parse(&bytes, Some(manifest), settings).map(Some)
        }
    }
}

/// The image file mapped read-only, for the time its parse takes. An image
/// of 10 M keyed events is about 25 MB, mostly the runs' filters: reading
/// it into a fresh buffer cost a copy out of the page cache and a page
/// fault per 4 KiB of the buffer, half of such an open. `None` (the caller
/// then reads it) if it is empty or the OS refuses the mapping.
fn map_whole(file: &std::fs::File) -> Option<memmap2::Mmap> {
    // SAFETY: a store never changes an image file in place: a close writes
    // a new file and renames it over the old name, and a lost read or a
    // new checkpoint unlinks it; a mapped inode keeps its bytes through
    // both. The data directory's lock keeps other stores out. What remains
    // is what any mapped file carries: a truncation by a program that
    // ignores the lock, or a disk read error, while the parse runs faults
    // the process (`SIGBUS`) instead of returning an error.
    let map = unsafe { memmap2::Mmap::map(file) }
        .inspect_err(|e| tracing::debug!(error = %e, "index image not mapped; reading it"))
        .ok()?;
    (!map.is_empty()).then_some(map)
}

/// Decodes image `bytes`; with a manifest, refuses an image that
/// describes other segments.
fn parse(
    bytes: &[u8],
    manifest: Option<&Manifest<'_>>,
    settings: &LogSettings,
) -> Result<(IndexGen, GateSets), String> {
    let body = open_envelope(bytes, MAGIC, VERSION)?;
    let mut c = Cursor::new(body);
    let n = c.varint("segments").map_err(short)?;
    if n > body.len() as u64 {
        return Err("more segments than bytes".into());
    }
    let segments = (0..n).map(|_| c.varint("segment id")).collect::<Result<Vec<u64>, _>>().map_err(short)?;
    let frames_end = c.varint("frames end").map_err(short)?;
    if manifest.is_some_and(|m| segments != m.segments || frames_end != m.frames_end) {
        return Err("the image describes other segments than the checkpoint".into());
    }
    let mut gate_sets = Vec::new();
    for _ in 0..c.varint("gate sets").map_err(short)? {
        let id = c.varint_u32("gate set id").map_err(short)?;
        let n = c.varint("gate set length").map_err(short)? as usize;
        gate_sets.push((id, c.take(n, "gate set").map_err(short)?.to_vec()));
    }
    let gen = IndexGen::decode_image(settings, &mut c)?;
    if !c.rest().is_empty() {
        return Err("trailing bytes after the image".into());
    }
    Ok((gen, gate_sets))
}

/// Decodes image bytes as open does, as found and with a valid envelope
/// around them, against a directory that holds no slot file (the fuzz
/// target).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz(bytes: &[u8]) {
    let settings = |chunk_bits| LogSettings {
        chunk_bits,
        scratch_dir: Some(std::env::temp_dir().join("batpak-fuzz-no-slot-files")),
        cache_bytes: 16 * crate::store::index::slot_log::BLOCK_BYTES,
    };
    // The default chunk size, which the seeds were written with.
    let _ = parse(bytes, None, &settings(14));
    let _ = parse(&envelope(MAGIC, VERSION, bytes), None, &settings(14));
}

fn encode_manifest(manifest: &Manifest<'_>, gate_sets: &GateSets, out: &mut Vec<u8>) {
    out.put_varint(manifest.segments.len() as u64);
    for id in manifest.segments {
        out.put_varint(*id);
    }
    out.put_varint(manifest.frames_end);
    out.put_varint(gate_sets.len() as u64);
    for (id, body) in gate_sets {
        out.put_varint(u64::from(*id));
        out.put_varint(body.len() as u64);
        out.extend_from_slice(body);
    }
}

impl IndexGen {
    /// Appends this generation's image body: the log part (see
    /// `SlotLog::encode_image`), then varint inserted, varint entries, the
    /// strings (varint count, each varint length and bytes), one u32 head
    /// per string (`u32::MAX`: none), the rising list, the other ids in
    /// the hash table (varint count, u128 id and u32 position each), the
    /// id runs (varint count, each as `IdRun::encode` writes it), the scope lists (varint count, varint string id and
    /// list each), the kind lists (varint count, u16 kind and list each),
    /// then the side maps of chunks still in memory: correlations and
    /// causations (varint count, u32 position and u128 id each) and
    /// anchors (varint count, u32 position and 32 bytes each).
    fn encode_image(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let maps = self.maps.read();
        let inserted = self.inserted.load(Ordering::Acquire);
        if self.visible.load(Ordering::Acquire) != inserted {
            return Err("entries inserted but not published".into());
        }
        self.log.encode_image(self.spilled_below.load(Ordering::Acquire), inserted, out)?;
        out.put_varint(inserted);
        out.put_varint(self.entries.load(Ordering::Acquire));
        out.put_varint(maps.heads.len() as u64);
        for id in 0..maps.heads.len() as u64 {
            out.put_str(self.strings.get(id).ok_or("string table slot missing")?);
        }
        for head in &maps.heads {
            out.put_u32(*head);
        }
        maps.rising.encode(out);
        out.put_varint(maps.by_id.len() as u64);
        for at in maps.by_id.iter() {
            let id = self.log.get(u64::from(*at)).ok_or("an id's slot is missing")?.event_id.get();
            out.put_u128(id);
            out.put_u32(*at);
        }
        out.put_varint(maps.runs.len() as u64);
        for run in &maps.runs {
            run.encode(out);
        }
        out.put_varint(maps.by_scope.len() as u64);
        for (scope, list) in &maps.by_scope {
            out.put_varint(u64::from(*scope));
            list.encode(out);
        }
        out.put_varint(maps.by_kind.len() as u64);
        for (kind, list) in &maps.by_kind {
            out.put_u16(*kind);
            list.encode(out);
        }
        for side in [&maps.correlations, &maps.causations] {
            out.put_varint(side.len() as u64);
            for (at, id) in side {
                out.put_u32(*at);
                out.put_u128(*id);
            }
        }
        out.put_varint(maps.anchors.len() as u64);
        for (at, hash) in &maps.anchors {
            out.put_u32(*at);
            out.extend_from_slice(hash);
        }
        Ok(())
    }

    /// The generation [`IndexGen::encode_image`] wrote, every entry
    /// visible. Counts, string ids and positions are checked against
    /// each other, so a damaged image is refused, not half-used.
    fn decode_image(settings: &LogSettings, c: &mut Cursor<'_>) -> Result<Self, String> {
        let (log, spilled) = SlotLog::decode_image(settings, c)?;
        let mut gen = Self::with_settings(settings);
        gen.log = log;
        let inserted = c.varint("inserted").map_err(short)?;
        let limit = u32::try_from(inserted).map_err(|_| "more positions than the index holds")?;
        let entries = c.varint("entries").map_err(short)?;
        if entries > inserted {
            return Err("more entries than positions".into());
        }
        {
            let maps = &mut *gen.maps.write();
            decode_strings(&gen, maps, limit, c)?;
            let file = gen.log.file_range();
            maps.rising = PosList::decode(c, limit, true, file.clone())?;
            decode_other_ids(&gen, &mut maps.by_id, limit, c)?;
            let runs = c.varint("id runs").map_err(short)?;
            if runs > c.rest().len() as u64 {
                return Err("more id runs than bytes".into());
            }
            for _ in 0..runs {
                maps.runs.push(Arc::new(IdRun::decode(c, &file)?));
            }
            if id_runs::due_merge(&maps.runs).is_some() {
                gen.merge_wanted.store(true, Ordering::Release);
            }
            for _ in 0..c.varint("scopes").map_err(short)? {
                let scope = c.varint_u32("scope").map_err(short)?;
                maps.by_scope.insert(scope, PosList::decode(c, limit, false, file.clone())?);
            }
            for _ in 0..c.varint("kinds").map_err(short)? {
                let kind = c.u16("kind").map_err(short)?;
                maps.by_kind.insert(kind, PosList::decode(c, limit, false, file.clone())?);
            }
            maps.correlations = decode_side(c, limit, |c| c.u128("correlation"))?;
            maps.causations = decode_side(c, limit, |c| c.u128("causation"))?;
            maps.anchors = decode_side(c, limit, |c| c.hash("anchor"))?;
        }
        gen.spilled_below.store(spilled, Ordering::Release);
        gen.inserted.store(inserted, Ordering::Release);
        gen.entries.store(entries, Ordering::Release);
        gen.publish();
        Ok(gen)
    }
}

/// Reads the string table and heads into `maps` (and `gen.strings`).
fn decode_strings(
    gen: &IndexGen,
    maps: &mut super::generation::Maps,
    limit: u32,
    c: &mut Cursor<'_>,
) -> Result<(), String> {
    let n = c.varint("strings").map_err(short)?;
    if n > c.rest().len() as u64 {
        return Err("more strings than bytes".into());
    }
    maps.string_ids.reserve(n as usize);
    for id in 0..n {
        let shared: Arc<str> = Arc::from(c.str("string").map_err(short)?);
        if !gen.strings.set(id, Arc::clone(&shared)) || maps.string_ids.insert(shared, id as u32).is_some() {
            return Err(format!("string {id} repeated or out of range"));
        }
    }
    maps.heads = (0..n).map(|_| c.u32("head")).collect::<Result<_, _>>().map_err(short)?;
    for (id, head) in maps.heads.iter().enumerate() {
        if *head == NO_SEQ {
            continue;
        }
        if *head >= limit {
            return Err(format!("the head of string {id} is past the end"));
        }
        let name = gen.strings.get(id as u64).ok_or("string table slot missing")?;
        maps.entity_names.insert(Arc::clone(name), id as u32);
    }
    Ok(())
}

/// Reads the ids that did not rise into the hash table.
fn decode_other_ids(
    gen: &IndexGen,
    table: &mut HashTable<u32>,
    limit: u32,
    c: &mut Cursor<'_>,
) -> Result<(), String> {
    let n = c.varint("other ids").map_err(short)?;
    if n > c.rest().len() as u64 / 20 {
        return Err("more ids than bytes".into());
    }
    let log = &gen.log;
    let rehash = |s: &u32| log.get(u64::from(*s)).map_or(0, |x| gen.hash_id(x.event_id.get()));
    table.reserve(n as usize, rehash);
    for _ in 0..n {
        let id = c.u128("id").map_err(short)?;
        let at = c.u32("id position").map_err(short)?;
        if at >= limit {
            return Err("an id's position is past the end".into());
        }
        table.insert_unique(gen.hash_id(id), at, rehash);
    }
    Ok(())
}

/// One side map: varint count, then a u32 position and a value each.
fn decode_side<T>(
    c: &mut Cursor<'_>,
    limit: u32,
    value: impl Fn(&mut Cursor<'_>) -> Result<T, ShortRead>,
) -> Result<FastMap<u32, T>, String> {
    let n = c.varint("side map").map_err(short)?;
    if n > c.rest().len() as u64 / 4 {
        return Err("more side entries than bytes".into());
    }
    let mut map = FastMap::default();
    map.reserve(n as usize);
    for _ in 0..n {
        let at = c.u32("side position").map_err(short)?;
        if at >= limit {
            return Err("a side entry's position is past the end".into());
        }
        map.insert(at, value(c).map_err(short)?);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's seed is an image open accepts, so the fuzzer
    /// starts from inputs that reach every part of the decoder.
    #[test]
    fn the_fuzz_seed_decodes_and_any_cut_of_it_is_refused() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/index_image/index.image");
        let bytes = std::fs::read(path).expect("seed");
        let dir = tempfile::tempdir().expect("dir");
        let settings = LogSettings {
            chunk_bits: 14,
            scratch_dir: Some(dir.path().into()),
            cache_bytes: 16 * crate::store::index::slot_log::BLOCK_BYTES,
        };
        let (gen, _) = parse(&bytes, None, &settings).expect("the seed decodes");
        assert!(gen.visible() > 10 && gen.entity_count() == 5, "{} events", gen.visible());
        let body = open_envelope(&bytes, MAGIC, VERSION).expect("envelope");
        for cut in (0..body.len()).step_by(7) {
            let short = envelope(MAGIC, VERSION, &body[..cut]);
            assert!(parse(&short, None, &settings).is_err(), "a body cut at {cut} is refused");
        }
    }
}
