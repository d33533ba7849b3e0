//! Ids: UUIDv7 generation and typed entity ids.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A typed 128-bit id.
pub trait EntityIdType:
    Copy + Eq + std::hash::Hash + std::fmt::Debug + std::fmt::Display + std::str::FromStr + Send + Sync + 'static
{
    /// Label used in `Display` (`"label:hex"`).
    const ENTITY_NAME: &'static str;
    /// Wraps a raw id.
    fn new(raw: u128) -> Self;
    /// The raw id.
    fn as_u128(&self) -> u128;
    /// A fresh UUIDv7 id.
    fn now_v7() -> Self {
        Self::new(generate_v7_id())
    }
    /// The all-zero id.
    fn nil() -> Self {
        Self::new(0)
    }
}

/// A fresh UUIDv7 (RFC 9562) as a `u128`: 48 bits of Unix milliseconds,
/// then random bits. Ids from one process are strictly increasing, so two
/// calls never return the same id.
pub fn generate_v7_id() -> u128 {
    generate_v7_id_at(crate::clock::system_now_us())
}

/// [`generate_v7_id`] for a caller that has just read the system clock
/// (`unix_us`, microseconds since the Unix epoch, as from
/// [`system_now_us`](crate::clock::system_now_us)): one clock read serves
/// both the id and the caller's timestamp. Ids stay strictly increasing
/// within the process whatever time is passed.
pub fn generate_v7_id_at(unix_us: i64) -> u128 {
    let fresh = fresh_v7(unix_us);
    static_last(|last| {
        let next = if fresh > *last { fresh } else { bump(*last) };
        *last = next;
        next
    })
}

/// Runs `f` on the last id handed out in this process, under its lock.
fn static_last<T>(f: impl FnOnce(&mut u128) -> T) -> T {
    static LAST: parking_lot::Mutex<u128> = parking_lot::Mutex::new(0);
    f(&mut LAST.lock())
}

/// `n` fresh UUIDv7 ids, strictly increasing and after every id handed out
/// before: one clock read and one lock for the lot (a batch's fresh ids).
pub fn generate_v7_ids(n: usize) -> Vec<u128> {
    static_last(|last| {
        let fresh = fresh_v7(crate::clock::system_now_us());
        let mut ids = Vec::with_capacity(n);
        let mut next = if fresh > *last { fresh } else { bump(*last) };
        for _ in 0..n {
            ids.push(next);
            *last = next;
            // Later ids keep the first one's random prefix and count up.
            next = bump(next);
        }
        ids
    })
}

/// The next id after `id` with the version and variant bits kept intact.
fn bump(id: u128) -> u128 {
    const RAND_B_MASK: u128 = (1u128 << 62) - 1;
    if id & RAND_B_MASK != RAND_B_MASK {
        return id + 1;
    }
    // rand_b exhausted: carry into rand_a/timestamp by clearing rand_b.
    let cleared = id & !RAND_B_MASK;
    cleared + (1u128 << 64)
}

fn fresh_v7(unix_us: i64) -> u128 {
    let ms = u128::from(u64::try_from(unix_us / 1000).unwrap_or(0));
    let rand = random_u128();
    let rand_a = (rand >> 64) & 0x0FFF;
    let rand_b = rand & ((1u128 << 62) - 1);
    ((ms & 0xFFFF_FFFF_FFFF) << 80) | (0x7u128 << 76) | (rand_a << 64) | (0b10u128 << 62) | rand_b
}

/// 128 random bits from a per-thread xorshift128+ generator seeded once
/// from the OS (through `RandomState`). Not cryptographic; ids only need to
/// be unlikely to collide, and the generator above makes them unique anyway.
fn random_u128() -> u128 {
    thread_local! {
        static STATE: std::cell::Cell<(u64, u64)> = std::cell::Cell::new(seed());
    }
    STATE.with(|cell| {
        let (mut s0, mut s1) = cell.get();
        let mut next = || {
            let (mut x, y) = (s0, s1);
            s0 = y;
            x ^= x << 23;
            x ^= x >> 17;
            x ^= y ^ (y >> 26);
            s1 = x;
            s0.wrapping_add(s1)
        };
        let v = (u128::from(next()) << 64) | u128::from(next());
        cell.set((s0, s1));
        v
    })
}

fn seed() -> (u64, u64) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let state = RandomState::new();
    let mut a = state.build_hasher();
    a.write_u64(n);
    let mut b = state.build_hasher();
    b.write_u64(!n);
    (a.finish() | 1, b.finish() | 2)
}

/// Defines a typed id: `define_entity_id!(OrderId, "order")` gives a
/// `u128` newtype displayed as `order:<32 hex digits>` that parses from
/// that form or from bare hex.
#[macro_export]
macro_rules! define_entity_id {
    ($name:ident, $label:literal) => {
        #[doc = concat!("A typed `", $label, "` id.")]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u128);

        impl $crate::id::EntityIdType for $name {
            const ENTITY_NAME: &'static str = $label;
            fn new(raw: u128) -> Self {
                Self(raw)
            }
            fn as_u128(&self) -> u128 {
                self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}:{:032x}", $label, self.0)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let hex = s.strip_prefix(concat!($label, ":")).unwrap_or(s);
                u128::from_str_radix(hex, 16)
                    .map(Self)
                    .map_err(|e| format!("invalid {} id {s:?}: {e}", $label))
            }
        }
    };
}

define_entity_id!(EventId, "event");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_are_unique_increasing_and_well_formed() {
        let ids: Vec<u128> = (0..10_000).map(|_| generate_v7_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for id in &ids {
            assert_eq!((id >> 76) & 0xF, 7, "version nibble");
            assert_eq!((id >> 62) & 0b11, 0b10, "variant bits");
        }
    }

    #[test]
    fn an_id_from_a_given_time_carries_its_millisecond_and_still_rises() {
        let now = crate::clock::system_now_us() + 10_000_000; // 10 s ahead of the clock
        let id = generate_v7_id_at(now);
        assert_eq!((id >> 80) as i64, now / 1000, "the top 48 bits are the given millisecond");
        assert_eq!((id >> 76) & 0xF, 7, "version 7");
        // A later id from an earlier time still comes after it.
        let next = generate_v7_id_at(now - 5_000_000);
        assert!(next > id);
        assert!(generate_v7_id() > next);
    }

    #[test]
    fn batch_ids_interleave_with_single_ids_in_order() {
        let mut ids = vec![generate_v7_id()];
        ids.extend(generate_v7_ids(1000));
        ids.push(generate_v7_id());
        ids.extend(generate_v7_ids(3));
        assert_eq!(ids.len(), 1005);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly increasing across both generators");
        for id in &ids {
            assert_eq!((id >> 76) & 0xF, 7, "version nibble");
            assert_eq!((id >> 62) & 0b11, 0b10, "variant bits");
        }
        assert!(generate_v7_ids(0).is_empty());
    }

    #[test]
    fn entity_ids_round_trip_through_text() {
        let id = EventId::new(0xABCD);
        let text = id.to_string();
        assert_eq!(text, "event:0000000000000000000000000000abcd");
        assert_eq!(text.parse::<EventId>(), Ok(id));
        assert_eq!("abcd".parse::<EventId>(), Ok(id));
        assert!("event:zz".parse::<EventId>().is_err());
    }
}
