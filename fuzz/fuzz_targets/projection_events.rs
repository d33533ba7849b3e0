//! Fuzz target: the guest SDK's decoder of `apply-packed` events
//! (guest/sdk/src/projection.rs), which runs inside every Rust projection.
//! Whatever the bytes, it must stop cleanly at the first malformed record,
//! and the events it did decode must re-pack to exactly the bytes they came
//! from: it never reads past its input or makes up a field.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut repacked = Vec::new();
    batpak_guest::projection::__unpack(data, |e| assert!(e.pack(&mut repacked)));
    assert!(data.starts_with(&repacked), "decoded events are not a prefix of the input");
});
