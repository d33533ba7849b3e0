//! `react_loop`: run a [`crate::event::Reactive`] over every committed event
//! of a region, in order, appending its reactions.

use crate::coordinate::Region;
use crate::event::Reactive;
use crate::store::Store;
use std::sync::{Arc, Weak};

/// The loop run by `Store::react_loop`. It holds the store weakly, so
/// dropping the last handle ends it. A lossy subscription is only the
/// wake-up signal; the cursor guarantees every event is seen once, in order.
pub(crate) fn run<R>(store: Weak<Store>, region: Region, from: u64, reactor: R)
where
    R: Reactive<serde_json::Value>,
{
    let Some(sub) = store.upgrade().map(|s| s.subscribe_lossy(&region)) else { return };
    let mut next = from;
    loop {
        let Some(strong) = store.upgrade() else { return };
        next = drain(&strong, &region, next, &reactor);
        drop(strong);
        if sub.recv().is_none() {
            return;
        }
    }
}

fn drain<R: Reactive<serde_json::Value>>(store: &Arc<Store>, region: &Region, from: u64, reactor: &R) -> u64 {
    let mut cursor = store.cursor_from(region, from);
    loop {
        let batch = cursor.poll_batch(256);
        if batch.is_empty() {
            return cursor.position();
        }
        for entry in batch {
            let trigger = match store.get(entry.event_id) {
                Ok(stored) => stored.event,
                Err(e) => {
                    tracing::warn!(error = %e, "reactor could not read its trigger");
                    continue;
                }
            };
            for (coord, kind, payload) in reactor.react(&trigger) {
                let corr = trigger.header.correlation_id;
                if let Err(e) = store.append_reaction(&coord, kind, &payload, corr, trigger.header.event_id) {
                    tracing::warn!(error = %e, "reaction append failed");
                }
            }
        }
    }
}
