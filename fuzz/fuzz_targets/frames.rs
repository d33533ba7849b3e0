//! Fuzz target: `batpak::fuzzing::frames` (see host/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| batpak::fuzzing::frames(data));
