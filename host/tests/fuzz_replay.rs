//! The fuzz targets (host/src/fuzzing.rs) in the ordinary test suite: every
//! seed (fuzz/seeds), every input a campaign once failed on
//! (fuzz/regressions), and a fixed, seeded slice of mutations of the seeds
//! for each target. The coverage-guided campaigns run from fuzz/run.sh.

#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

mod common;

use common::Rng;
use std::path::Path;
use std::time::{Duration, Instant};

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target, usize)] = &[
    ("frames", batpak::fuzzing::frames, 20_000),
    ("footer", batpak::fuzzing::footer, 20_000),
    ("checkpoint", batpak::fuzzing::checkpoint, 20_000),
    ("index_image", batpak::fuzzing::index_image, 20_000),
    ("compaction_plan", batpak::fuzzing::compaction_plan, 20_000),
    ("projection_snapshot", batpak::fuzzing::projection_snapshot, 20_000),
    ("segment", batpak::fuzzing::segment, 300),
    ("segment_scan", batpak::fuzzing::segment_scan, 20_000),
];

/// A time cap per target, so the slice stays short on a slow machine.
const BUDGET: Duration = Duration::from_secs(8);

fn inputs(dir: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).filter_map(|e| std::fs::read(e.path()).ok()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// One mutation of `seed`: bit flips, byte sets, cuts, splices, varint
/// bombs (0xff runs) and length fields pushed high.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len());
        match rng.below(6) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 if !b.is_empty() => b[at] = rng.next() as u8,
            2 => b.truncate(at),
            3 => {
                let run = vec![0xff; 1 + rng.below(10)];
                b.splice(at..at, run);
            }
            4 if b.len() >= at + 4 => b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes()),
            _ => {
                let from = rng.below(seed.len());
                let len = rng.below(seed.len() - from.min(seed.len()) + 1);
                b.splice(at..at, seed[from..from + len].iter().copied());
            }
        }
    }
    b
}

#[test]
fn every_target_survives_its_seeds_regressions_and_a_mutation_slice() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (name, target, mutations) in TARGETS {
        let seeds = inputs(&root.join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} is empty");
        for input in seeds.iter().chain(&inputs(&root.join("regressions").join(name))) {
            target(input);
        }
        let mut rng = Rng(0x5eed ^ name.len() as u64);
        let start = Instant::now();
        let mut ran = 0;
        while ran < *mutations && start.elapsed() < BUDGET {
            let seed = &seeds[rng.below(seeds.len())];
            target(&mutate(seed, &mut rng));
            ran += 1;
        }
        assert!(ran > 0, "{name}: no mutation ran");
    }
}
