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
//!
//! An event is admitted on its second miss: the first only leaves the id's
//! fingerprint in a small direct-mapped table. So random reads over a large
//! log neither pay for a copy they will not reuse nor push out the hot set.

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
/// Fingerprints of ids missed once, per shard (a power of two).
const GHOSTS: usize = 1024;

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
    /// Ids missed once, as 64-bit fingerprints, slot chosen by fingerprint
    /// (allocated on the first miss).
    ghosts: Vec<u64>,
}

/// A 64-bit fingerprint of `id` (never 0, the empty ghost slot).
fn fingerprint(id: u128) -> u64 {
    let mixed = ((id >> 64) as u64 ^ id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed ^ (mixed >> 29)) | 1
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

    /// Offers `event` after a miss: kept (as by [`EventCache::put`]) if
    /// `id` missed before, else only remembered as missed once.
    pub(crate) fn offer(&self, id: u128, serial: u64, event: &StoredEvent<Value>, frame_len: u32) {
        if self.shard_bytes == 0 {
            return;
        }
        let Some(shard) = self.shard(id) else { return };
        let print = fingerprint(id);
        {
            let mut shard = shard.lock();
            if shard.ghosts.is_empty() {
                shard.ghosts = vec![0; GHOSTS];
            }
            let slot = (print >> 40) as usize & (GHOSTS - 1);
            let Some(ghost) = shard.ghosts.get_mut(slot) else { return };
            if *ghost != print {
                *ghost = print;
                return;
            }
            *ghost = 0;
        }
        self.put(id, serial, event, frame_len);
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
    fn an_event_is_admitted_on_its_second_miss() {
        let cache = EventCache::new(1 << 20);
        cache.offer(9, 1, &event(9), 100);
        assert!(cache.get(9, 1).is_none(), "one miss is only remembered");
        cache.offer(9, 1, &event(9), 100);
        assert!(cache.get(9, 1).is_some(), "the second is kept");
        // Many ids missed once each keep nothing.
        for id in 1000..3000u128 {
            cache.offer(id, 1, &event(id), 100);
        }
        assert!((1000..3000u128).all(|id| cache.get(id, 1).is_none()));
        assert!(cache.get(9, 1).is_some(), "a scan does not push out the hot event");
        assert!(EventCache::new(0).shards.iter().all(|s| s.lock().ghosts.is_empty()));
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
