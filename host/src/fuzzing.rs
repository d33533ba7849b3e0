//! Entry points for the fuzz targets (`fuzz/`), one per decoder of bytes
//! that come from disk. Compiled only with the `fuzzing` feature; not part
//! of the public API. Each takes arbitrary bytes and must return (an `Ok`
//! or a typed error, discarded here), never panic, hang or allocate beyond
//! what the input can justify. Formats protected by a CRC are also tried
//! with the CRC made right, so the fuzzer reaches the parser behind it.

use crate::store::checkpoint;
use crate::store::compaction::plan;
use crate::store::segment::codec::envelope;
use crate::store::segment::{footer, frame};

/// Every frame of a segment body, decoded one after another.
pub fn frames(bytes: &[u8]) {
    let mut at = 0;
    while let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
        match frame::decode(rest) {
            Ok((_, used)) if used > 0 => at += used,
            _ => return,
        }
    }
    let _ = crate::store::segment::frame_decode(bytes);
}

/// A footer body (version byte onwards) with its CRC made right, decoded
/// as recovery decodes it. Names are interned in a plain map and entries
/// dropped, so the target runs fast; loading entries into a real index is
/// what the `segment` target exercises.
pub fn footer(body: &[u8]) {
    let mut region = body.to_vec();
    region.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    region.extend_from_slice(&[0u8; footer::FOOTER_TRAILER_LEN]);
    decode_footer_region(&region, 32);
    debug_assert!(region.len() >= body.len());
}

/// Decodes a footer region (footer start to end of file) found at
/// `start`, with names interned in a plain map and entries dropped.
fn decode_footer_region(region: &[u8], start: u64) {
    let names = std::cell::RefCell::new(std::collections::HashMap::<String, u32>::new());
    let resolve = |s: &str| {
        let mut names = names.borrow_mut();
        let next = names.len() as u32;
        let id = *names.entry(s.to_string()).or_insert(next);
        Ok((std::sync::Arc::from(s), id))
    };
    let mut reserved = 0u64;
    let mut reserve = |n: u64| reserved = n;
    let mut sink = |entries: Vec<_>| {
        drop(entries);
        Ok(())
    };
    let _ = footer::decode(region, start, 1, &resolve, &mut reserve, &mut sink, &mut |_| {});
    debug_assert!(reserved <= region.len() as u64, "reserved beyond the footer's bytes");
}

/// `index.ckpt`, as found and with a valid envelope around the input.
pub fn checkpoint(bytes: &[u8]) {
    let _ = checkpoint::decode(bytes);
    let _ = checkpoint::decode(&envelope(checkpoint::MAGIC, checkpoint::VERSION, bytes));
}

/// `index.image`, as found and with a valid envelope around the input,
/// decoded into an index generation as open decodes it.
pub fn index_image(bytes: &[u8]) {
    crate::store::index::image::fuzz(bytes);
}

/// The compaction plan, as found and with a valid envelope around the input.
pub fn compaction_plan(bytes: &[u8]) {
    let _ = plan::Plan::decode(bytes);
    let _ = plan::Plan::decode(&envelope(plan::MAGIC, plan::VERSION, bytes));
}

/// A projection snapshot file, for any digest it names.
pub fn projection_snapshot(bytes: &[u8]) {
    let _ = crate::store::projections::parse_snapshot(bytes, "", 0);
    // The digest a real file names is 64 hex digits after the magic.
    let digest = bytes.get(9..73).and_then(|d| std::str::from_utf8(d).ok()).unwrap_or("");
    let _ = crate::store::projections::parse_snapshot(bytes, digest, 0);
}

/// A whole segment file handed to recovery's decoding, in memory: the
/// footer as recovery finds it (its CRC as found), then the frame scan
/// both as the crashed tail and as a sealed segment, with chain hashes
/// recomputed. The same code [`segment`] reaches through a real open, at
/// thousands of times the speed, so a campaign can reach 10 M inputs.
pub fn segment_scan(bytes: &[u8]) {
    let len = bytes.len() as u64;
    let frames_end = footer::footer_start(bytes).filter(|at| *at <= len).unwrap_or(len) as usize;
    if let Some(region) = bytes.get(frames_end..).filter(|r| !r.is_empty()) {
        decode_footer_region(region, frames_end as u64);
    }
    let intern = |s: &str| std::sync::Arc::<str>::from(s);
    let before = |_: &str| [0u8; 32];
    for tail in [true, false] {
        let _ = crate::store::recovery::scan::scan_segment(bytes, 1, frames_end, tail, &intern, &before);
    }
}

/// A whole segment file handed to recovery: written as the only segment
/// of a fresh data directory, opened, verified and closed.
pub fn segment(bytes: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let name = crate::store::segment::segment_filename(1);
    if std::fs::write(dir.path().join(name), bytes).is_err() {
        return;
    }
    let cfg = crate::store::StoreConfig::new(dir.path()).with_enable_checkpoint(false);
    if let Ok(store) = crate::store::Store::open(cfg) {
        let _ = store.verify();
        for e in store.query(&crate::coordinate::Region::all()) {
            let _ = store.get(e.event_id);
        }
        let _ = store.close();
    }
}
