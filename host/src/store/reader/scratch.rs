//! The event vector replays reuse, and the parallel free of one that is
//! not kept.
//!
//! `Store::project` hands its vector back after folding; the next replay
//! overwrites it slot by slot (see `bulk`). What is kept is bounded: at
//! most `max_events` slots and [`MAX_KEPT_PAYLOAD_BYTES`] of stored
//! payload, whose parsed trees are the memory it holds between replays.

use crate::event::Event;
use parking_lot::Mutex;
use serde_json::Value;

/// Most stored payload bytes whose parsed events are kept between replays.
pub(crate) const MAX_KEPT_PAYLOAD_BYTES: u64 = 4 * 1024 * 1024;

/// One vector of events kept for the next replay.
pub(crate) struct ReplayScratch {
    events: Mutex<Vec<Event<Value>>>,
    max_events: usize,
}

impl ReplayScratch {
    /// Keeps vectors of at most `max_events` slots (0: keeps none).
    pub(crate) fn new(max_events: usize) -> Self {
        Self { events: Mutex::new(Vec::new()), max_events }
    }

    /// The kept vector, or an empty one when none is kept or another
    /// replay holds it.
    pub(crate) fn take(&self) -> Vec<Event<Value>> {
        self.events.try_lock().map(|mut kept| std::mem::take(&mut *kept)).unwrap_or_default()
    }

    /// Keeps `events` for the next replay if it is within the limits and
    /// larger than the vector kept now; frees it otherwise.
    pub(crate) fn keep(&self, events: Vec<Event<Value>>) {
        let payload: u64 = events.iter().map(|e| u64::from(e.header.payload_size)).sum();
        if events.capacity() > self.max_events || payload > MAX_KEPT_PAYLOAD_BYTES {
            drop_in_parallel(events);
            return;
        }
        let old = {
            let mut kept = self.events.lock();
            if kept.capacity() >= events.capacity() {
                events
            } else {
                std::mem::replace(&mut *kept, events)
            }
        };
        drop_in_parallel(old);
    }

    /// Slots kept now (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.events.lock().len()
    }
}

/// Frees the payloads of many events on two threads: freeing each JSON
/// tree costs as much as a fifth of reading it, and would otherwise be
/// serial. Each thread empties the payloads of its half in place.
pub(crate) fn drop_in_parallel(mut events: Vec<Event<Value>>) {
    const PARALLEL_FROM: usize = 4096;
    if events.len() >= PARALLEL_FROM {
        let mid = events.len() / 2;
        let (first, second) = events.split_at_mut(mid);
        let clear = |part: &mut [Event<Value>]| {
            for e in part {
                drop(std::mem::take(&mut e.payload));
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| clear(second));
            clear(first);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize, payload_size: u32) -> Vec<Event<Value>> {
        let mut v = Vec::with_capacity(n);
        v.resize_with(n, || {
            let mut e = super::super::bulk::placeholder();
            e.header.payload_size = payload_size;
            e.payload = serde_json::json!({"amount": 1});
            e
        });
        v
    }

    #[test]
    fn keeps_the_larger_vector_within_the_limits() {
        let scratch = ReplayScratch::new(100);
        scratch.keep(events(10, 20));
        assert_eq!(scratch.kept(), 10);
        scratch.keep(events(5, 20));
        assert_eq!(scratch.kept(), 10, "a smaller vector does not replace a larger one");
        scratch.keep(events(100, 20));
        assert_eq!(scratch.kept(), 100);
        let taken = scratch.take();
        assert_eq!(taken.len(), 100);
        assert_eq!(scratch.kept(), 0, "taking leaves nothing kept");
        assert!(scratch.take().is_empty());
    }

    #[test]
    fn keeps_nothing_beyond_the_limits() {
        let scratch = ReplayScratch::new(100);
        scratch.keep(events(101, 1));
        assert_eq!(scratch.kept(), 0, "more slots than allowed");
        let per_event = u32::try_from(MAX_KEPT_PAYLOAD_BYTES / 50).expect("fits");
        scratch.keep(events(60, per_event));
        assert_eq!(scratch.kept(), 0, "more payload than allowed");
        let none = ReplayScratch::new(0);
        none.keep(events(1, 1));
        assert_eq!(none.kept(), 0);
    }

    #[test]
    fn a_held_vector_is_not_shared() {
        let scratch = ReplayScratch::new(100);
        scratch.keep(events(10, 1));
        let guard = scratch.events.lock();
        assert!(scratch.take().is_empty(), "a replay running meanwhile gets a fresh vector");
        drop(guard);
        assert_eq!(scratch.take().len(), 10);
    }
}
