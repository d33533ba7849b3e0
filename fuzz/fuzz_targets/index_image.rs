//! Fuzz target: `batpak::fuzzing::index_image` (see host/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| batpak::fuzzing::index_image(data));
