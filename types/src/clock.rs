//! The system clock, for the layers that need "now" (ids, the store's
//! default clock). At the bottom of the crate: it imports nothing.

/// Microseconds since the Unix epoch from the system clock (0 before 1970).
pub fn system_now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
