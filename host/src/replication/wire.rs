//! One committed event as a JetStream message body, and the subject it is
//! published on. The body carries every field the frame carries that the
//! chain hash covers, plus the hashes themselves, so a replica can check
//! the chain before it stores anything and rebuild identical ids,
//! sequences, clocks and hashes. Layout (little-endian, docs/design.md
//! "Scaling out"):
//!
//! ```text
//! u8 version (1) | u16 kind | u8 flags | u32 clock | u64 wall_ms |
//! i64 timestamp_us | u64 global_sequence | u128 event_id |
//! u128 correlation_id | u8 has_causation | u128 causation_id (if 1) |
//! [32] prev_hash | [32] event_hash |
//! u32 entity length | entity | u32 scope length | scope | payload (rest)
//! ```

use crate::store::segment::frame::EventRecord;

/// Version byte of the body layout.
const VERSION: u8 = 1;
/// Longest entity or scope name a body may carry (the store's own limit).
const MAX_NAME: usize = 1024;

/// A committed event as it travels through the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shipped {
    pub kind: u16,
    pub flags: u8,
    pub clock: u32,
    pub wall_ms: u64,
    pub timestamp_us: i64,
    pub global_sequence: u64,
    pub event_id: u128,
    pub correlation_id: u128,
    pub causation_id: Option<u128>,
    pub prev_hash: [u8; 32],
    pub event_hash: [u8; 32],
    pub entity: String,
    pub scope: String,
    pub payload: Vec<u8>,
}

impl Shipped {
    /// The shipped form of a stored record and its chain link.
    pub(crate) fn of(
        record: &EventRecord<'_>,
        entity: &str,
        scope: &str,
        chain: &crate::event::HashChain,
    ) -> Self {
        Self {
            kind: record.kind,
            flags: record.flags,
            clock: record.clock,
            wall_ms: record.wall_ms,
            timestamp_us: record.timestamp_us,
            global_sequence: record.global_sequence,
            event_id: record.event_id,
            correlation_id: record.correlation_id,
            causation_id: record.causation_id,
            prev_hash: chain.prev_hash,
            event_hash: chain.event_hash,
            entity: entity.to_string(),
            scope: scope.to_string(),
            payload: record.payload.to_vec(),
        }
    }

    /// The message body.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(190 + self.entity.len() + self.scope.len() + self.payload.len());
        out.push(VERSION);
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.push(self.flags);
        out.extend_from_slice(&self.clock.to_le_bytes());
        out.extend_from_slice(&self.wall_ms.to_le_bytes());
        out.extend_from_slice(&self.timestamp_us.to_le_bytes());
        out.extend_from_slice(&self.global_sequence.to_le_bytes());
        out.extend_from_slice(&self.event_id.to_le_bytes());
        out.extend_from_slice(&self.correlation_id.to_le_bytes());
        match self.causation_id {
            Some(c) => {
                out.push(1);
                out.extend_from_slice(&c.to_le_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.event_hash);
        for name in [&self.entity, &self.scope] {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes a message body; the error says which field is wrong.
    pub(crate) fn decode(body: &[u8]) -> Result<Self, String> {
        let mut r = Reader { body, at: 0 };
        if r.array::<1>("version")?[0] != VERSION {
            return Err("unsupported body version".into());
        }
        let kind = u16::from_le_bytes(r.array("kind")?);
        let flags = r.array::<1>("flags")?[0];
        let clock = u32::from_le_bytes(r.array("clock")?);
        let wall_ms = u64::from_le_bytes(r.array("wall_ms")?);
        let timestamp_us = i64::from_le_bytes(r.array("timestamp_us")?);
        let global_sequence = u64::from_le_bytes(r.array("global_sequence")?);
        let event_id = u128::from_le_bytes(r.array("event_id")?);
        let correlation_id = u128::from_le_bytes(r.array("correlation_id")?);
        let causation_id = match r.array::<1>("causation flag")?[0] {
            0 => None,
            1 => Some(u128::from_le_bytes(r.array("causation_id")?)),
            _ => return Err("causation flag is neither 0 nor 1".into()),
        };
        let prev_hash = r.array("prev_hash")?;
        let event_hash = r.array("event_hash")?;
        let entity = r.name("entity")?;
        let scope = r.name("scope")?;
        let payload = body.get(r.at..).unwrap_or(&[]).to_vec();
        Ok(Self {
            kind,
            flags,
            clock,
            wall_ms,
            timestamp_us,
            global_sequence,
            event_id,
            correlation_id,
            causation_id,
            prev_hash,
            event_hash,
            entity,
            scope,
            payload,
        })
    }

    /// The fields the chain hash covers.
    pub(crate) fn hashed_fields(&self) -> crate::chain_hash::HashedFields<'_> {
        crate::chain_hash::HashedFields {
            event_id: self.event_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            entity: &self.entity,
            scope: &self.scope,
            kind: self.kind,
            flags: self.flags,
            clock: self.clock,
            wall_ms: self.wall_ms,
            timestamp_us: self.timestamp_us,
            global_sequence: self.global_sequence,
        }
    }
}

/// A bounds-checked cursor over a body.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let end = self.at.checked_add(N).ok_or_else(|| format!("{what}: body too short"))?;
        let bytes = self.body.get(self.at..end).ok_or_else(|| format!("{what}: body too short"))?;
        self.at = end;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn name(&mut self, what: &str) -> Result<String, String> {
        let len = u32::from_le_bytes(self.array(what)?) as usize;
        if len > MAX_NAME {
            return Err(format!("{what}: {len} bytes, over the {MAX_NAME}-byte limit"));
        }
        let end = self.at + len;
        let bytes = self.body.get(self.at..end).ok_or_else(|| format!("{what}: body too short"))?;
        self.at = end;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what}: not UTF-8"))
    }
}

/// The subject an entity's events are published on: `prefix.token`, where
/// the token is the entity name with every byte outside `[A-Za-z0-9_:-]`
/// written as `%XX` (NATS gives `.`, `*`, `>` and whitespace meaning).
pub(crate) fn subject(prefix: &str, entity: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1 + entity.len());
    out.push_str(prefix);
    out.push('.');
    for b in entity.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A minimal event for unit tests: entity `e`, scope `s`, empty payload,
/// id and global sequence `seq`, committed at `timestamp_us`.
#[cfg(test)]
pub(crate) fn sample(seq: u64, timestamp_us: i64) -> Shipped {
    Shipped {
        kind: 1,
        flags: 0,
        clock: 0,
        wall_ms: 0,
        timestamp_us,
        global_sequence: seq,
        event_id: u128::from(seq),
        correlation_id: 0,
        causation_id: None,
        prev_hash: [0; 32],
        event_hash: [0; 32],
        entity: "e".into(),
        scope: "s".into(),
        payload: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Shipped {
        Shipped {
            kind: 0x1001,
            flags: 3,
            clock: 9,
            wall_ms: 1_700_000_000_000,
            timestamp_us: 1_700_000_000_000_123,
            global_sequence: 41,
            event_id: u128::MAX - 5,
            correlation_id: 77,
            causation_id: Some(12),
            prev_hash: [1; 32],
            event_hash: [2; 32],
            entity: "acct:a".into(),
            scope: "bank".into(),
            payload: br#"{"amount":5}"#.to_vec(),
        }
    }

    #[test]
    fn a_body_round_trips_and_every_cut_is_an_error() {
        let s = sample();
        let body = s.encode();
        assert_eq!(Shipped::decode(&body), Ok(s.clone()));
        let fixed = body.len() - s.payload.len();
        for cut in 0..fixed {
            assert!(Shipped::decode(&body[..cut]).is_err(), "a body cut at {cut} decoded");
        }
        let none = Shipped { causation_id: None, ..s };
        assert_eq!(Shipped::decode(&none.encode()), Ok(none));
    }

    #[test]
    fn subjects_escape_what_nats_gives_meaning() {
        assert_eq!(subject("bp.ev", "acct:a-1_x"), "bp.ev.acct:a-1_x");
        assert_eq!(subject("bp.ev", "a.b *>%"), "bp.ev.a%2Eb%20%2A%3E%25");
    }
}
