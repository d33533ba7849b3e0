//! Native projections (folding an entity's events into a Rust value),
//! their caches, watchers and reactors. The same items as
//! [`crate::store::projection`], where batpak 0.3.0 has them.

pub use crate::store::projection::{
    cache, CacheCapabilities, CacheMeta, Freshness, NativeCache, NoCache, ProjectionCache, ProjectionWatcher,
};
