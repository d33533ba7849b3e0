//! # batpak
//!
//! A sync-first event-sourcing store whose policy gates run as sandboxed
//! WebAssembly components.
//!
//! - An append-only segmented log with CRC32 frames, one writer at a time
//!   (its thread, or an idle store's lone caller), per-entity blake3 hash chains, atomic batches that survive crashes, and
//!   a visibility watermark: readers see a batch whole or not at all.
//! - Queries, guaranteed cursors, lossy subscriptions, optimistic
//!   concurrency and idempotency keys.
//! - Gates ([`plugin::GatePlugin`]) run inside the writer for every append,
//!   before the event gets its sequence, under fuel and memory limits.
//!
//! ```no_run
//! use batpak::prelude::*;
//! # fn main() -> Result<(), StoreError> {
//! let store = Store::open(StoreConfig::new("./data"))?;
//! let account = Coordinate::new("account:1", "bank")?;
//! let receipt = store.append(&account, EventKind::custom(1, 1), &serde_json::json!({"amount": 10}))?;
//! assert_eq!(store.get(receipt.event_id)?.event.payload["amount"], 10);
//! store.close()?;
//! # Ok(()) }
//! ```
//!
//! ## Map of the crate
//!
//! Each layer imports only the layers above it in this list (the store's
//! inner layers are listed in `store`'s docs):
//!
//! | layer | modules |
//! |---|---|
//! | plain values (crate `batpak-types`, re-exported whole) | `id`, `wire`, `outcome`, `coordinate`, `event`, `guard` (native gates, `Proposal`), `pipeline`, `typestate` |
//! | the chain hash (private) | `chain_hash` |
//! | WebAssembly guests | `plugin` (engines, limits, gate chain, projections as components) |
//! | the store | `store`: segment format → index → writer / reader / recovery / compaction → `Store` API |
//! | on top of the store | `projection` (native projections, caches, watchers, reactors), `testing` (guest harness), `prelude` |
//!
//! The bottom layer is its own crate, so the compiler checks that it imports
//! nothing from the store. Paths that batpak 0.3.0 gives an item elsewhere
//! are re-exports (for example `event::kind::EventKind`,
//! `store::projection::*`), so the logic stays in its layer.
//!
//! **It is not**: a database server, an async library (every call blocks;
//! wrap it in `spawn_blocking` if you live in async code), a distributed log,
//! or a general WebAssembly host (plugins get no WASI and no host calls).
//!
//! Limits: payloads ≤ 64 MiB (default 16 MiB), batches ≤ 4096 items and
//! ≤ 16 MiB, entity and scope names ≤ 1024 bytes, one writer per data
//! directory (enforced by a lock file).
//!
//! **Default durability**: a single `append` is acknowledged once its frame
//! is written to the OS, before its fsync (an fsync runs every 1000 appends,
//! `SyncConfig::every_n_events`): it survives a process crash, not
//! necessarily a power loss. Batches are fsynced before they are
//! acknowledged. Every setting is described in docs/design.md ("Durability
//! contract").

// The lints (no unwrap/expect/panic, documented public items) are the
// workspace's, in Cargo.toml; unit tests may use the panicking shortcuts.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// The layers below the store live in `batpak-types`; their modules are
// re-exported whole, at their 0.3.0 paths.
pub use batpak_types::{coordinate, event, guard, id, outcome, pipeline, typestate, wire};
pub use batpak_types::{define_entity_id, define_state_machine, define_typestate};

mod chain_hash;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod plugin;
pub mod prelude;
pub mod projection;
#[cfg(feature = "replication")]
pub mod replication;
pub mod store;
pub mod testing;

pub use coordinate::{Coordinate, CoordinateError, DagPosition, KindFilter, Region};
pub use event::EventKind;
