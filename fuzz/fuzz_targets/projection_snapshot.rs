//! Fuzz target: `batpak::fuzzing::projection_snapshot` (see host/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| batpak::fuzzing::projection_snapshot(data));
