//! Native projections: fold an entity's events into a Rust value
//! ([`crate::event::EventSourced`]), cached by a [`ProjectionCache`] and
//! kept fresh according to [`Freshness`]; watchers and reactors on top.
//! This is batpak 0.3.0's `store::projection`; `batpak::projection`
//! re-exports it.

pub mod cache;
mod react;
mod watch;

pub use cache::{CacheCapabilities, CacheMeta, NativeCache, NoCache, ProjectionCache};
pub(crate) use react::run as react_run;
pub use watch::ProjectionWatcher;

/// How fresh a projection must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// Exactly as of the entity's last visible event.
    Consistent,
    /// A cached state younger than this is good enough.
    MaybeStale {
        /// Maximum age in milliseconds.
        max_stale_ms: u64,
    },
}

/// The cache key of projection `T` for `entity`: stable across builds
/// (the type's path, not a `TypeId` hash) and separate per schema version.
pub(crate) fn cache_key<T>(entity: &str, schema_version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(entity.len() + 64);
    key.extend_from_slice(entity.as_bytes());
    key.push(0);
    key.extend_from_slice(std::any::type_name::<T>().as_bytes());
    key.push(0);
    key.extend_from_slice(&schema_version.to_le_bytes());
    key
}
