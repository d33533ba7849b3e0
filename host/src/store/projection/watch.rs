//! [`ProjectionWatcher`]: wake up when an entity changes and hand back its
//! fresh projection.

use super::Freshness;
use crate::event::EventSourced;
use crate::store::{Store, StoreError, Subscription};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::Arc;

/// Follows one entity's projection.
pub struct ProjectionWatcher<T> {
    store: Arc<Store>,
    entity: String,
    freshness: Freshness,
    sub: Subscription,
    _state: PhantomData<fn() -> T>,
}

impl<T> ProjectionWatcher<T>
where
    T: EventSourced<serde_json::Value> + Serialize + DeserializeOwned + 'static,
{
    pub(crate) fn new(store: Arc<Store>, entity: &str, freshness: Freshness) -> Self {
        let sub = store.subscribe_lossy(&crate::coordinate::Region::entity(entity));
        Self { store, entity: entity.to_string(), freshness, sub, _state: PhantomData }
    }

    /// Blocks until the entity gets a new event, then returns its projection.
    /// `Ok(None)` once the store is gone.
    pub fn recv(&mut self) -> Result<Option<T>, StoreError> {
        loop {
            let Some(n) = self.sub.recv() else { return Ok(None) };
            // The subscription is a prefix match; only this exact entity counts.
            if n.coord.entity() == self.entity {
                return self.store.project::<T>(&self.entity, &self.freshness);
            }
        }
    }

    /// The underlying subscription.
    #[doc(hidden)]
    pub fn subscription(&self) -> &Subscription {
        &self.sub
    }
}
