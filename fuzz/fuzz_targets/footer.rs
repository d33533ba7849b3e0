//! Fuzz target: `batpak::fuzzing::footer` (see host/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| batpak::fuzzing::footer(data));
