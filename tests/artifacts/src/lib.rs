//! Paths of the guest components built by this crate's build script:
//! every example gate in `guest/plugins/examples`, plus negative cases
//! (`WRONG_WORLD`, `SNEAKY_IMPORT`, `TRAP_IN_DESCRIBE`, `TRAP_AT_INSTANTIATION`, `CORE_MODULE`)
//! and gates written in WebAssembly text for attacks Rust cannot express
//! (`STACK_DEPTH`, `MULTI_MEMORY`).
//!
//! [`nats`] starts loopback nats-server processes for the replication
//! tests and the bench.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

pub mod nats;
