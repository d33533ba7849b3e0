//! Fuzz target: `batpak::fuzzing::segment_scan` (see host/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| batpak::fuzzing::segment_scan(data));
