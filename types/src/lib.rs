//! # batpak-types
//!
//! The plain values of [batpak](https://docs.rs/batpak): event kinds, ids,
//! coordinates, events and their hash-chain links, outcomes, native gates
//! with their denials and receipts, the pipeline, and typestate macros.
//!
//! `batpak` re-exports every module here at the path batpak 0.3.0 gave it
//! (`batpak::event`, `batpak::guard`, …), so applications depend on
//! `batpak` alone. This crate exists so the layers below the store are
//! checked by the compiler to import nothing from it: no I/O, no threads,
//! no WebAssembly.
//!
//! It is **not** a store, a serialisation format, or a policy engine: gates
//! here are plain Rust predicates (`guard::Gate`); the WebAssembly gates
//! that run inside the writer live in `batpak::plugin`.
//!
//! ## Map
//!
//! Each module imports only those listed before it:
//!
//! | module | what |
//! |---|---|
//! | `clock` (hidden) | the system clock in microseconds |
//! | `kind` (private; `event::EventKind`) | 16-bit event kinds: category and type |
//! | `id` | UUIDv7 ids, `define_entity_id!` |
//! | `wire` | serde helpers for `u128` |
//! | `outcome` | `Outcome` and its combinators, `ErrorKind`, wait and compensation data |
//! | `coordinate` | `Coordinate`, `Region`, `DagPosition` |
//! | `event` | headers, events, `HashChain`, `EventSourced`, `Reactive` |
//! | `guard` | `Gate`, `GateSet`, `Denial`, sealed `Receipt`, `Proposal` |
//! | `pipeline` | evaluate, commit, audited bypass |
//! | `typestate` | `Transition`, `define_state_machine!`, `define_typestate!` |

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[doc(hidden)]
pub mod clock;
pub mod coordinate;
pub mod event;
pub mod guard;
pub mod id;
mod kind;
pub mod outcome;
pub mod pipeline;
pub mod typestate;
pub mod wire;
