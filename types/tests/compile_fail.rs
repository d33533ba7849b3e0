//! Things that must not compile: a forged `Receipt`, an illegal typestate
//! transition, a foreign type joining a sealed state machine.
//!
//! `batpak` re-exports these macros and `guard::Receipt` unchanged, so
//! `batpak::define_state_machine!` fails the same way. The cases live here
//! so trybuild, which builds in a directory of its own, compiles this small
//! crate and not the store with its WebAssembly runtime.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

#[test]
fn forbidden_code_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
