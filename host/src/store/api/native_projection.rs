//! Native projections on [`Store`]: `project`, watchers, reactors.

use crate::store::*;

impl Store<Open> {
    /// Folds the entity's relevant events into `T`, using the projection
    /// cache as `freshness` allows. `None` when the entity has no relevant
    /// events. Cache failures are logged and fall back to a full replay.
    pub fn project<T>(&self, entity: &str, freshness: &Freshness) -> Result<Option<T>, StoreError>
    where
        T: EventSourced<serde_json::Value> + Serialize + DeserializeOwned + 'static,
    {
        let kinds = T::relevant_event_kinds();
        let mut seqs = self.index.stream_seqs(entity);
        if !kinds.is_empty() {
            seqs.retain(|s| self.index.kind_at(*s).is_some_and(|k| kinds.contains(&k)));
        }
        let Some(&watermark) = seqs.last() else { return Ok(None) };
        let key = crate::store::projection::cache_key::<T>(entity, T::schema_version());
        let cached = self.cache.get(&key).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "projection cache read failed");
            None
        });
        if let Some((bytes, meta)) = cached {
            let fresh = match freshness {
                Freshness::Consistent => meta.watermark == watermark,
                Freshness::MaybeStale { max_stale_ms } => {
                    self.cfg.now_us().saturating_sub(meta.cached_at_us)
                        < (*max_stale_ms as i64).saturating_mul(1000)
                }
            };
            if let Ok(mut state) = serde_json::from_slice::<T>(&bytes) {
                if fresh {
                    return Ok(Some(state));
                }
                let incremental = T::supports_incremental_apply() && self.cfg.index.incremental_projection;
                if incremental && meta.watermark < watermark {
                    let newer = &seqs[seqs.partition_point(|s| *s <= meta.watermark)..];
                    for event in self.reader.read_events_at(newer)? {
                        state.apply_event(&event);
                    }
                    self.cache_state(&key, &state, watermark);
                    return Ok(Some(state));
                }
            }
        }
        let mut events = self.scratch.take();
        self.reader.read_events_into(&seqs, &mut events)?;
        let state = T::from_events(&events);
        self.scratch.keep(events);
        if let Some(s) = &state {
            self.cache_state(&key, s, watermark);
        }
        Ok(state)
    }

    fn cache_state<T: Serialize>(&self, key: &[u8], state: &T, watermark: u64) {
        let meta = CacheMeta { watermark, cached_at_us: self.cfg.now_us() };
        let put =
            serde_json::to_vec(state).map_err(StoreError::from).and_then(|b| self.cache.put(key, &b, meta));
        if let Err(e) = put {
            tracing::warn!(error = %e, "projection cache write failed");
        }
    }

    /// A watcher that yields the entity's projection each time it changes.
    pub fn watch_projection<T>(self: &Arc<Self>, entity: &str, freshness: Freshness) -> ProjectionWatcher<T>
    where
        T: EventSourced<serde_json::Value> + Serialize + DeserializeOwned + 'static,
    {
        ProjectionWatcher::new(Arc::clone(self), entity, freshness)
    }

    /// Runs `reactor` on every event of `region` committed from now on, in
    /// order, appending its reactions (correlated with, and caused by, the
    /// trigger) on a thread named `batpak-reactor`. The thread ends when the
    /// store is dropped.
    pub fn react_loop<R>(
        self: &Arc<Self>,
        region: &Region,
        reactor: R,
    ) -> Result<std::thread::JoinHandle<()>, StoreError>
    where
        R: Reactive<serde_json::Value> + Send + 'static,
    {
        let weak = Arc::downgrade(self);
        let (region, from) = (region.clone(), self.index.visible());
        let handle = std::thread::Builder::new()
            .name("batpak-reactor".into())
            .spawn(move || crate::store::projection::react_run(weak, region, from, reactor))?;
        Ok(handle)
    }
}
