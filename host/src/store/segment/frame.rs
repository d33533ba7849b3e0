//! Frames: `[u32 LE body length][u32 LE CRC32 of body][body]`, and the
//! records a body holds. Byte layouts are in docs/design.md ("Frames").

use super::codec::{Cursor, PutBytes, ShortRead};

/// Bytes before a frame's body: length and CRC.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Largest frame body accepted when reading (64 MiB payload plus headroom).
pub(crate) const MAX_FRAME_BODY: usize = 65 * 1024 * 1024;

const TAG_EVENT: u8 = 1;
const TAG_BATCH_BEGIN: u8 = 2;
const TAG_BATCH_COMMIT: u8 = 3;
const TAG_STRING: u8 = 4;
const TAG_GATE_SET: u8 = 5;

const HAS_CAUSATION: u8 = 0x01;
const HAS_CORRELATION: u8 = 0x02;
const HAS_GATE_SET: u8 = 0x04;
/// Compaction: the entity's previous hash is stored (its predecessor was removed).
const HAS_PREV_HASH: u8 = 0x08;
/// Compaction: the event hash is stored (the record was rewritten into a tombstone).
const HAS_SEALED_HASH: u8 = 0x10;

/// One committed event as it sits in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventRecord<'a> {
    pub flags: u8,
    pub kind: u16,
    /// Segment-local id of the entity string (defined by an earlier string record).
    pub entity_ref: u32,
    /// Segment-local id of the scope string.
    pub scope_ref: u32,
    pub global_sequence: u64,
    pub clock: u32,
    pub timestamp_us: i64,
    pub wall_ms: u64,
    pub event_id: u128,
    pub correlation_id: u128,
    pub causation_id: Option<u128>,
    /// Store-wide id of the gate set that admitted the event.
    pub gate_set: Option<u32>,
    /// The hash this event chains from, when compaction removed the
    /// entity's previous event (otherwise it is that event's hash).
    pub prev_hash: Option<[u8; 32]>,
    /// The event's original hash, kept when compaction rewrote the record
    /// into a tombstone (its contents no longer hash to it).
    pub sealed_hash: Option<[u8; 32]>,
    /// Canonical JSON bytes.
    pub payload: &'a [u8],
}

impl<'a> EventRecord<'a> {
    /// The payload hash of this record, chained to `prev` (what the writer
    /// computed when it framed the event).
    pub(crate) fn chain_hash(&self, prev: &[u8; 32], entity: &str, scope: &str) -> [u8; 32] {
        let fields = crate::chain_hash::HashedFields {
            event_id: self.event_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            entity,
            scope,
            kind: self.kind,
            flags: self.flags,
            clock: self.clock,
            wall_ms: self.wall_ms,
            timestamp_us: self.timestamp_us,
            global_sequence: self.global_sequence,
        };
        crate::chain_hash::event_hash(prev, &fields, self.payload)
    }

    /// The event's hash: the sealed one of a tombstone, else recomputed
    /// from `prev` (which an anchored record overrides).
    pub(crate) fn resolved_hash(&self, prev: &[u8; 32], entity: &str, scope: &str) -> ([u8; 32], [u8; 32]) {
        let prev = self.prev_hash.unwrap_or(*prev);
        let hash = self.sealed_hash.unwrap_or_else(|| self.chain_hash(&prev, entity, scope));
        (prev, hash)
    }
}

/// What a frame body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    Event(EventRecord<'a>),
    /// Opens a batch of `count` event records, all of which precede the commit.
    BatchBegin {
        batch_id: u64,
        count: u32,
    },
    /// Closes the batch opened with the same id; only then are its events committed.
    BatchCommit {
        batch_id: u64,
        count: u32,
    },
    /// Defines segment-local string `id` (entity and scope names).
    Str {
        id: u32,
        value: &'a str,
    },
    /// Defines store-wide gate set `id`; the body is owned by the plugin module.
    GateSet {
        id: u32,
        body: &'a [u8],
    },
}

/// Why bytes at an offset are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes remain than the frame header or its declared body needs.
    Truncated,
    /// The declared body length is zero or above [`MAX_FRAME_BODY`].
    BadLength(u32),
    /// The body does not match its CRC.
    Crc { expected: u32, actual: u32 },
    /// The CRC matched but the body is not a record we know.
    Malformed(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => write!(f, "frame truncated"),
            Self::BadLength(n) => write!(f, "frame length {n} out of range"),
            Self::Crc { expected, actual } => {
                write!(f, "frame CRC {actual:08x} does not match stored {expected:08x}")
            }
            Self::Malformed(what) => write!(f, "malformed frame body ({what})"),
        }
    }
}

impl From<ShortRead> for FrameError {
    fn from(e: ShortRead) -> Self {
        Self::Malformed(e.0)
    }
}

/// Appends one frame holding `record` to `out`; returns the frame's length.
pub(crate) fn encode(out: &mut Vec<u8>, record: &Record<'_>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    encode_body(out, record);
    let body_len = out.len() - start - FRAME_HEADER_LEN;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

fn encode_body(out: &mut Vec<u8>, record: &Record<'_>) {
    match record {
        Record::Event(e) => encode_event(out, e),
        Record::BatchBegin { batch_id, count } => {
            out.put_u8(TAG_BATCH_BEGIN);
            out.put_u64(*batch_id);
            out.put_u32(*count);
        }
        Record::BatchCommit { batch_id, count } => {
            out.put_u8(TAG_BATCH_COMMIT);
            out.put_u64(*batch_id);
            out.put_u32(*count);
        }
        Record::Str { id, value } => {
            out.put_u8(TAG_STRING);
            out.put_varint(u64::from(*id));
            out.put_str(value);
        }
        Record::GateSet { id, body } => {
            out.put_u8(TAG_GATE_SET);
            out.put_varint(u64::from(*id));
            out.extend_from_slice(body);
        }
    }
}

fn encode_event(out: &mut Vec<u8>, e: &EventRecord<'_>) {
    let mut present = 0u8;
    if e.causation_id.is_some() {
        present |= HAS_CAUSATION;
    }
    if e.correlation_id != e.event_id {
        present |= HAS_CORRELATION;
    }
    if e.gate_set.is_some() {
        present |= HAS_GATE_SET;
    }
    if e.prev_hash.is_some() {
        present |= HAS_PREV_HASH;
    }
    if e.sealed_hash.is_some() {
        present |= HAS_SEALED_HASH;
    }
    out.put_u8(TAG_EVENT);
    out.put_u8(e.flags);
    out.put_u8(present);
    out.put_u16(e.kind);
    out.put_varint(u64::from(e.entity_ref));
    out.put_varint(u64::from(e.scope_ref));
    out.put_varint(e.global_sequence);
    out.put_varint(u64::from(e.clock));
    out.put_u128(e.event_id);
    out.put_varint(zigzag(e.timestamp_us.wrapping_sub(id_time_us(e.event_id))));
    out.put_varint(e.wall_ms.saturating_sub(wall_base(e.timestamp_us)));
    if present & HAS_CORRELATION != 0 {
        out.put_u128(e.correlation_id);
    }
    if let Some(c) = e.causation_id {
        out.put_u128(c);
    }
    if let Some(g) = e.gate_set {
        out.put_varint(u64::from(g));
    }
    for hash in [e.prev_hash, e.sealed_hash].into_iter().flatten() {
        out.extend_from_slice(&hash);
    }
    out.extend_from_slice(e.payload);
}

/// The microseconds a UUIDv7 id's 48-bit millisecond field stands for. The
/// timestamp is stored as its (usually tiny) distance from this; for ids
/// that are not v7 (idempotency keys) the distance is simply larger.
pub(crate) fn id_time_us(event_id: u128) -> i64 {
    ((event_id >> 80) as i64).wrapping_mul(1000)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The wall-clock milliseconds a timestamp stands for (0 before the epoch).
/// `wall_ms` is stored as its excess over this, which is usually 0.
pub(crate) fn wall_base(timestamp_us: i64) -> u64 {
    u64::try_from(timestamp_us / 1000).unwrap_or(0)
}

/// Decodes the frame at the start of `bytes`; returns the record and the
/// frame's total length.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Record<'_>, usize), FrameError> {
    let body = checked_body(bytes)?;
    Ok((decode_body(body)?, FRAME_HEADER_LEN + body.len()))
}

/// Decodes the event frame at the start of `bytes` (what a reader fetched
/// by an index position): the same checks as [`decode`], without building
/// a [`Record`] for the other kinds.
#[inline]
pub(crate) fn decode_event_frame(bytes: &[u8]) -> Result<EventRecord<'_>, FrameError> {
    let mut c = Cursor::new(checked_body(bytes)?);
    if c.u8("tag")? != TAG_EVENT {
        return Err(FrameError::Malformed("not an event frame"));
    }
    decode_event(&mut c)
}

/// The body of the frame at the start of `bytes`, once its length and
/// CRC hold.
#[inline]
fn checked_body(bytes: &[u8]) -> Result<&[u8], FrameError> {
    let header = bytes.get(..FRAME_HEADER_LEN).ok_or(FrameError::Truncated)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let expected = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let body_len = len as usize;
    if body_len == 0 || body_len > MAX_FRAME_BODY {
        return Err(FrameError::BadLength(len));
    }
    let body = bytes.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + body_len).ok_or(FrameError::Truncated)?;
    let actual = crc32fast::hash(body);
    if actual != expected {
        return Err(FrameError::Crc { expected, actual });
    }
    Ok(body)
}

fn decode_body(body: &[u8]) -> Result<Record<'_>, FrameError> {
    let mut c = Cursor::new(body);
    let record = match c.u8("tag")? {
        TAG_EVENT => Record::Event(decode_event(&mut c)?),
        TAG_BATCH_BEGIN => Record::BatchBegin { batch_id: c.u64("batch id")?, count: c.u32("count")? },
        TAG_BATCH_COMMIT => Record::BatchCommit { batch_id: c.u64("batch id")?, count: c.u32("count")? },
        TAG_STRING => Record::Str { id: c.varint_u32("string id")?, value: c.str("string")? },
        TAG_GATE_SET => Record::GateSet { id: c.varint_u32("gate set id")?, body: c.rest() },
        _ => return Err(FrameError::Malformed("unknown record tag")),
    };
    Ok(record)
}

#[inline]
fn decode_event<'a>(c: &mut Cursor<'a>) -> Result<EventRecord<'a>, FrameError> {
    let flags = c.u8("flags")?;
    let present = c.u8("presence")?;
    let kind = c.u16("kind")?;
    let entity_ref = c.varint_u32("entity ref")?;
    let scope_ref = c.varint_u32("scope ref")?;
    let global_sequence = c.varint("sequence")?;
    let clock = c.varint_u32("clock")?;
    let event_id = c.u128("event id")?;
    let timestamp_us = id_time_us(event_id).wrapping_add(unzigzag(c.varint("timestamp")?));
    let wall_ms = wall_base(timestamp_us).saturating_add(c.varint("wall delta")?);
    let correlation_id = if present & HAS_CORRELATION != 0 { c.u128("correlation")? } else { event_id };
    let causation_id = if present & HAS_CAUSATION != 0 { Some(c.u128("causation")?) } else { None };
    let gate_set = if present & HAS_GATE_SET != 0 { Some(c.varint_u32("gate set")?) } else { None };
    let prev_hash = if present & HAS_PREV_HASH != 0 { Some(c.hash("prev hash")?) } else { None };
    let sealed_hash = if present & HAS_SEALED_HASH != 0 { Some(c.hash("sealed hash")?) } else { None };
    Ok(EventRecord {
        flags,
        kind,
        entity_ref,
        scope_ref,
        global_sequence,
        clock,
        timestamp_us,
        wall_ms,
        event_id,
        correlation_id,
        causation_id,
        gate_set,
        prev_hash,
        sealed_hash,
        payload: c.rest(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &[u8]) -> EventRecord<'_> {
        EventRecord {
            flags: 3,
            kind: 0x1002,
            entity_ref: 1,
            scope_ref: 2,
            global_sequence: 123_456,
            clock: 7,
            timestamp_us: 1_700_000_000_123_456,
            wall_ms: 1_700_000_000_200,
            event_id: 0xAABB,
            correlation_id: 0xCCDD,
            causation_id: Some(9),
            gate_set: Some(4),
            prev_hash: None,
            sealed_hash: None,
            payload,
        }
    }

    #[test]
    fn every_record_round_trips() {
        let records = [
            Record::Event(sample(br#"{"a":1}"#)),
            Record::Event(EventRecord {
                prev_hash: Some([7; 32]),
                sealed_hash: Some([9; 32]),
                ..sample(b"null")
            }),
            Record::BatchBegin { batch_id: 5, count: 3 },
            Record::BatchCommit { batch_id: 5, count: 3 },
            Record::Str { id: 3, value: "entity:1" },
            Record::GateSet { id: 2, body: &[1, 2, 3] },
        ];
        for record in records {
            let mut buf = Vec::new();
            let len = encode(&mut buf, &record);
            assert_eq!(len, buf.len());
            let (decoded, used) = decode(&buf).expect("decodes");
            assert_eq!(used, len);
            assert_eq!(decoded, record);
        }
    }

    #[test]
    fn timestamps_far_from_the_id_still_round_trip() {
        for ts in [i64::MIN / 4, -1, 0, 1_700_000_000_000_000, i64::MAX / 4] {
            let mut rec = sample(b"{}");
            rec.timestamp_us = ts;
            rec.wall_ms = wall_base(ts);
            let mut buf = Vec::new();
            encode(&mut buf, &Record::Event(rec.clone()));
            assert_eq!(decode(&buf).map(|(r, _)| r), Ok(Record::Event(rec)), "ts {ts}");
        }
    }

    #[test]
    fn flipped_bit_and_short_input_are_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, &Record::Event(sample(b"{}")));
        for cut in [0, 4, 8, buf.len() - 1] {
            assert_eq!(decode(&buf[..cut]).err(), Some(FrameError::Truncated), "cut at {cut}");
        }
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert!(matches!(decode(&buf), Err(FrameError::Crc { .. })));
    }
}
