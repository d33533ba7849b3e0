//! Fuzz target: `batpak::fuzzing::compaction_plan` (see host/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| batpak::fuzzing::compaction_plan(data));
