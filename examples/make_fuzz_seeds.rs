//! Writes seed corpora for the fuzz targets from a real store: its
//! segments (whole, and their frames and footers), its checkpoint and index image, a
//! compaction plan and a projection snapshot.
//! `cargo run -p batpak-examples --example make_fuzz_seeds -- fuzz/seeds`
//! (the seeds in fuzz/seeds were made with it).

use batpak::prelude::*;
use batpak::store::{CompactionConfig, CompactionStrategy};
use serde_json::json;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).ok_or("usage: make_seeds <corpus dir>")?;
    let out = Path::new(&out);
    let tmp = std::env::temp_dir().join(format!("batpak-seeds-{}", std::process::id()));
    let store = Store::open(StoreConfig::new(&tmp).with_segment_max_bytes(4096))?;
    for i in 0..60u32 {
        let c = Coordinate::new(format!("entity:{}", i % 5), "seed")?;
        if i % 4 == 0 {
            let items = (0..3)
                .map(|j| {
                    BatchAppendItem::new(
                        c.clone(),
                        EventKind::DATA,
                        &json!({"i": i, "j": j}),
                        AppendOptions::new(),
                        CausationRef::None,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            store.append_batch(items)?;
        } else {
            store.append(&c, EventKind::DATA, &json!({"i": i, "pad": "x".repeat(i as usize)}))?;
        }
    }
    let keep: batpak::store::RetentionPredicate =
        Box::new(|e| e.event.payload["i"].as_u64().is_some_and(|i| i % 2 == 0));
    store.compact(&CompactionConfig { strategy: CompactionStrategy::Retention(keep), min_segments: 2 })?;
    store.close()?;
    let mut n = 0;
    for entry in std::fs::read_dir(&tmp)? {
        let path = entry?.path();
        let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = std::fs::read(&path)?;
        let target = if name.ends_with(".fbat") {
            write(out, "segment", &name, &bytes)?;
            if bytes.len() > 32 {
                write(out, "frames", &name, &bytes[32..])?;
            }
            if let Some(body) = footer_body(&bytes) {
                write(out, "footer", &name, body)?;
            }
            continue;
        } else if name == "index.ckpt" {
            "checkpoint"
        } else if name == "index.image" {
            "index_image"
        } else if name.starts_with("proj-") {
            "projection_snapshot"
        } else {
            continue;
        };
        write(out, target, &name, &bytes)?;
        n += 1;
    }
    // A plan as the store writes it: magic, version, CRC, length, two id lists.
    let mut body = vec![2u8, 7, 8, 3, 1, 2, 3];
    let mut plan = b"FBATCP".to_vec();
    plan.extend_from_slice(&1u16.to_le_bytes());
    plan.extend_from_slice(&crc32(&body).to_le_bytes());
    plan.extend_from_slice(&(body.len() as u64).to_le_bytes());
    plan.append(&mut body);
    write(out, "compaction_plan", "plan", &plan)?;
    // A projection snapshot as the store writes it.
    let state = br#"{"account:1":70,"account:2":5}"#;
    let mut snap = b"BPSNAP01".to_vec();
    snap.push(64);
    snap.extend_from_slice("0123456789abcdef".repeat(4).as_bytes());
    snap.extend_from_slice(&0u64.to_le_bytes());
    snap.extend_from_slice(&41u64.to_le_bytes());
    snap.extend_from_slice(&crc32(state).to_le_bytes());
    snap.push(state.len() as u8);
    snap.extend_from_slice(state);
    write(out, "projection_snapshot", "balance", &snap)?;
    std::fs::remove_dir_all(&tmp)?;
    println!("wrote seeds ({n} store files) under {}", out.display());
    Ok(())
}

/// The footer body of a sealed segment: from its start (the trailer names
/// it) up to the CRC before the 16-byte trailer.
fn footer_body(bytes: &[u8]) -> Option<&[u8]> {
    let trailer = bytes.get(bytes.len().checked_sub(16)?..)?;
    if &trailer[12..16] != b"SIDX" {
        return None;
    }
    let start = u64::from_le_bytes(trailer[0..8].try_into().ok()?) as usize;
    bytes.get(start..bytes.len().checked_sub(20)?)
}

fn crc32(bytes: &[u8]) -> u32 {
    // The same CRC-32 (IEEE) the store uses, bit by bit: a seed tool needs no speed.
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn write(out: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = out.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)
}
