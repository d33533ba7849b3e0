//! Things that must not compile: a forged `Receipt`, an illegal typestate
//! transition, a foreign type joining a sealed state machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

#[test]
fn forbidden_code_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
