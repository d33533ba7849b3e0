//! Helpers shared by test binaries (each uses some of them).

#![allow(dead_code)] // each test binary uses only some helpers

use std::path::Path;

#[cfg(feature = "dangerous-test-hooks")]
pub mod power;

/// Files a compaction leaves behind until it is finished or undone:
/// outputs, the plan, temporaries.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.expect("entry").file_name().into_string().ok())
        .filter(|n| n.ends_with(".compact") || n == "compact.plan" || n.ends_with(".tmp"))
        .collect()
}

/// Replays `entity`'s stream of deposits (`deposit`) and withdrawals:
/// asserts the running balance never goes negative, and returns it.
pub fn replayed_balance(
    store: &batpak::prelude::Store,
    entity: &str,
    deposit: batpak::prelude::EventKind,
) -> i64 {
    let mut running = 0i64;
    for e in store.stream(entity) {
        let amount = store.get(e.event_id).expect("get").event.payload["amount"].as_i64().expect("amount");
        running += if e.kind == deposit { amount } else { -amount };
        assert!(running >= 0, "{entity} went negative at sequence {}", e.global_sequence);
    }
    running
}

/// xorshift64*: a seeded, replayable stream of choices for tests that must
/// reproduce a failure from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
