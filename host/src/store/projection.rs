//! Native projection caching, at the path batpak 0.3.0 gives it
//! (`batpak::store::projection`). The items live in [`crate::projection`].

pub use crate::projection::{
    CacheCapabilities, CacheMeta, Freshness, NativeCache, NoCache, ProjectionCache, ProjectionWatcher,
};
