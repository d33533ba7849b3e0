//! Events that `Store::get` returned recently, kept decoded so a hot id is
//! answered without reading, checking and parsing its frame again.
//!
//! An entry is keyed by event id and tagged with the serial of the index
//! generation it was read under. Events never change within a generation;
//! compaction (the only thing that moves, removes or tombstones events)
//! installs a new generation, so an entry tagged with an older serial is
//! simply a miss. Memory is bounded by bytes (each entry is charged its
//! frame's length plus a fixed overhead) and split into shards, each
//! evicting with CLOCK: a hit marks an entry, and the hand evicts the first
//! unmarked one it finds, unmarking the others as it passes.

use crate::event::StoredEvent;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Shards (a power of two), so concurrent readers rarely share a lock.
const SHARDS: usize = 16;
/// Bytes charged per entry beyond its frame: the map slot, the ring entry
/// and the decoded value's allocations.
const OVERHEAD: usize = 256;

type Event = Arc<StoredEvent<Value>>;

struct Cached {
    id: u128,
    serial: u64,
    event: Event,
    cost: usize,
    marked: bool,
}

#[derive(Default)]
struct Shard {
    /// Position of each id in `ring`.
    at: HashMap<u128, usize, foldhash::fast::RandomState>,
    ring: Vec<Cached>,
    hand: usize,
    bytes: usize,
}

/// A bounded cache of decoded events (see the module docs).
pub(crate) struct EventCache {
    shards: Box<[Mutex<Shard>]>,
    shard_bytes: usize,
}

impl EventCache {
    /// A cache of at most `bytes` (0 keeps nothing).
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_bytes: bytes / SHARDS,
        }
    }

    fn shard(&self, id: u128) -> Option<&Mutex<Shard>> {
        // Ids are UUIDv7-like: the low bits are the random ones.
        self.shards.get((id as usize) & (SHARDS - 1))
    }

    /// The event with `id` as read under generation `serial`, if cached.
    pub(crate) fn get(&self, id: u128, serial: u64) -> Option<Event> {
        if self.shard_bytes == 0 {
            return None;
        }
        let mut shard = self.shard(id)?.lock();
        let i = *shard.at.get(&id)?;
        let entry = shard.ring.get_mut(i)?;
        if entry.serial != serial {
            return None;
        }
        entry.marked = true;
        Some(Arc::clone(&entry.event))
    }

    /// Keeps `event`, read under generation `serial` from a frame of
    /// `frame_len` bytes, evicting others to make room.
    pub(crate) fn put(&self, id: u128, serial: u64, event: &StoredEvent<Value>, frame_len: u32) {
        let cost = frame_len as usize + OVERHEAD;
        if cost > self.shard_bytes {
            return;
        }
        let Some(shard) = self.shard(id) else { return };
        let event = Arc::new(event.clone());
        let mut shard = shard.lock();
        if let Some(i) = shard.at.get(&id).copied() {
            shard.remove(i);
        }
        while shard.bytes + cost > self.shard_bytes && shard.evict_one() {}
        let slot = shard.ring.len();
        shard.ring.push(Cached { id, serial, event, cost, marked: false });
        shard.at.insert(id, slot);
        shard.bytes += cost;
    }
}

impl Shard {
    /// Evicts the first unmarked entry from the hand on; false when empty.
    fn evict_one(&mut self) -> bool {
        // Two sweeps at most: the first unmarks everything it passes.
        for _ in 0..2 * self.ring.len() {
            if self.hand >= self.ring.len() {
                self.hand = 0;
            }
            let Some(entry) = self.ring.get_mut(self.hand) else { return false };
            if entry.marked {
                entry.marked = false;
                self.hand += 1;
            } else {
                self.remove(self.hand);
                return true;
            }
        }
        false
    }

    /// Removes ring entry `i`, moving the last entry into its place.
    fn remove(&mut self, i: usize) {
        if i >= self.ring.len() {
            return;
        }
        let gone = self.ring.swap_remove(i);
        self.at.remove(&gone.id);
        self.bytes -= gone.cost;
        if let Some(moved) = self.ring.get(i) {
            self.at.insert(moved.id, i);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;
    use crate::coordinate::{Coordinate, DagPosition};
    use crate::event::{Event as Ev, EventHeader, EventKind};

    fn event(id: u128) -> StoredEvent<Value> {
        let coordinate = Coordinate::new("e", "s").unwrap();
        let header = EventHeader::new(id, id, None, 0, DagPosition::new(0, 0, 0), 10, EventKind::DATA);
        StoredEvent { coordinate, event: Ev::new(header, serde_json::json!({ "id": id as u64 })) }
    }

    #[test]
    fn hits_only_under_the_same_generation() {
        let cache = EventCache::new(1 << 20);
        cache.put(7, 1, &event(7), 100);
        assert_eq!(cache.get(7, 1).unwrap().event.header.event_id, 7);
        assert!(cache.get(7, 2).is_none(), "another generation misses");
        assert!(cache.get(8, 1).is_none());
        cache.put(7, 2, &event(7), 100);
        assert!(cache.get(7, 2).is_some());
        assert!(cache.get(7, 1).is_none(), "the newer read replaced the older");
    }

    #[test]
    fn stays_within_its_bytes_and_keeps_what_is_used() {
        let per_shard = 10 * (100 + OVERHEAD);
        let cache = EventCache::new(per_shard * SHARDS);
        // Ids 0, 16, 32, … all land in shard 0.
        let id = |k: u128| k * SHARDS as u128;
        for k in 0..10 {
            cache.put(id(k), 1, &event(id(k)), 100);
        }
        assert!(cache.get(id(3), 1).is_some());
        for k in 10..19 {
            cache.put(id(k), 1, &event(id(k)), 100);
            let shard = cache.shards[0].lock();
            assert!(shard.bytes <= per_shard, "bounded");
            assert_eq!(shard.at.len(), shard.ring.len());
            for (i, c) in shard.ring.iter().enumerate() {
                assert_eq!(shard.at[&c.id], i, "the map follows the ring");
            }
        }
        assert!(cache.get(id(3), 1).is_some(), "a used entry outlives unused ones");
        assert!(cache.get(id(0), 1).is_none(), "the oldest unused entry went first");
        assert!(cache.get(id(18), 1).is_some());
    }

    #[test]
    fn zero_bytes_or_an_oversized_event_keeps_nothing() {
        let none = EventCache::new(0);
        none.put(1, 1, &event(1), 10);
        assert!(none.get(1, 1).is_none());
        let small = EventCache::new(SHARDS * (OVERHEAD + 50));
        small.put(2, 1, &event(2), 51);
        assert!(small.get(2, 1).is_none());
        small.put(2, 1, &event(2), 50);
        assert!(small.get(2, 1).is_some());
    }
}
