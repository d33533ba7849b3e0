//! A native projection: a counter folded from two event kinds.
use batpak::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

const ADD: EventKind = EventKind::custom(1, 1);
const RESET: EventKind = EventKind::custom(1, 2);

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    total: i64,
}

impl EventSourced<serde_json::Value> for Counter {
    fn from_events(events: &[Event<serde_json::Value>]) -> Option<Self> {
        let mut c = Counter::default();
        events.iter().for_each(|e| c.apply_event(e));
        Some(c)
    }
    fn apply_event(&mut self, e: &Event<serde_json::Value>) {
        if e.event_kind() == RESET {
            self.total = 0;
        } else {
            self.total += e.payload["n"].as_i64().unwrap_or(0);
        }
    }
    fn relevant_event_kinds() -> &'static [EventKind] {
        &[ADD, RESET]
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path()))?;
    let clicks = Coordinate::new("counter:clicks", "ui")?;
    for n in [3, 4, 5] {
        store.append(&clicks, ADD, &json!({ "n": n }))?;
    }
    store.append(&clicks, RESET, &json!({}))?;
    let last = store.append(&clicks, ADD, &json!({ "n": 7 }))?;
    let counter = store.project::<Counter>("counter:clicks", &Freshness::Consistent)?;
    println!("projected total: {:?}", counter.as_ref().map(|c| c.total));
    assert_eq!(counter.map(|c| c.total), Some(7));
    let chain = store.walk_ancestors(last.event_id, 10);
    println!("hash chain from the last event back: {} events", chain.len());
    assert_eq!(chain.len(), 5);
    store.close()?;
    Ok(())
}
