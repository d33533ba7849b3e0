//! The store's per-event chain hash: `blake3(prev_hash ‖ canonical header ‖
//! payload)`, so changing any committed byte, or reordering an entity's
//! events, changes every later hash of that entity. The canonical header
//! layout is given in docs/design.md ("Hash chain").

/// The header fields an event hash covers, in the order they are hashed.
// Without `blake3` nothing is hashed, so nothing reads the fields.
#[cfg_attr(not(feature = "blake3"), allow(dead_code))]
pub(crate) struct HashedFields<'a> {
    pub event_id: u128,
    pub correlation_id: u128,
    pub causation_id: Option<u128>,
    pub entity: &'a str,
    pub scope: &'a str,
    pub kind: u16,
    pub flags: u8,
    pub clock: u32,
    pub wall_ms: u64,
    pub timestamp_us: i64,
    pub global_sequence: u64,
}

/// Longest canonical header: fixed fields plus two names of at most 1024 bytes.
#[cfg(feature = "blake3")]
const HEADER_MAX: usize = 32 + 16 + 16 + 17 + 4 + 1024 + 4 + 1024 + 2 + 1 + 4 + 8 + 8 + 8 + 8;

/// The chained hash of one event (all zero without the `blake3` feature).
/// The header is laid out in one stack buffer so blake3 sees two inputs
/// (header, payload) instead of a dozen small ones.
#[cfg(feature = "blake3")]
pub(crate) fn event_hash(prev: &[u8; 32], h: &HashedFields<'_>, payload: &[u8]) -> [u8; 32] {
    let mut buf = [0u8; HEADER_MAX];
    let mut at = 0usize;
    let mut put = |bytes: &[u8]| {
        if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
            at += bytes.len();
        }
    };
    put(prev);
    put(&h.event_id.to_le_bytes());
    put(&h.correlation_id.to_le_bytes());
    match h.causation_id {
        Some(c) => {
            put(&[1]);
            put(&c.to_le_bytes());
        }
        None => put(&[0]),
    }
    put(&(h.entity.len() as u32).to_le_bytes());
    put(h.entity.as_bytes());
    put(&(h.scope.len() as u32).to_le_bytes());
    put(h.scope.as_bytes());
    put(&h.kind.to_le_bytes());
    put(&[h.flags]);
    put(&h.clock.to_le_bytes());
    put(&h.wall_ms.to_le_bytes());
    put(&h.timestamp_us.to_le_bytes());
    put(&h.global_sequence.to_le_bytes());
    put(&(payload.len() as u64).to_le_bytes());
    let mut hasher = blake3::Hasher::new();
    hasher.update(&buf[..at]);
    hasher.update(payload);
    *hasher.finalize().as_bytes()
}

/// The chained hash of one event (all zero without the `blake3` feature).
#[cfg(not(feature = "blake3"))]
pub(crate) fn event_hash(_prev: &[u8; 32], _h: &HashedFields<'_>, _payload: &[u8]) -> [u8; 32] {
    [0u8; 32]
}
