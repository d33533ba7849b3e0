//! Little-endian and LEB128 primitives shared by frames, footers and the checkpoint.

/// Appends fixed-width and variable-width integers to a byte buffer.
pub(crate) trait PutBytes {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_u128(&mut self, v: u128);
    fn put_varint(&mut self, v: u64);
    fn put_str(&mut self, s: &str);
}

impl PutBytes for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u128(&mut self, v: u128) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.push(v as u8);
    }
    fn put_str(&mut self, s: &str) {
        self.put_varint(s.len() as u64);
        self.extend_from_slice(s.as_bytes());
    }
}

/// Why a byte cursor could not read a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShortRead(pub &'static str);

/// Reads values from a byte slice, failing (never panicking) on short input.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or(&[])
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ShortRead> {
        let end = self.pos.checked_add(n).ok_or(ShortRead(what))?;
        let slice = self.bytes.get(self.pos..end).ok_or(ShortRead(what))?;
        self.pos = end;
        Ok(slice)
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ShortRead> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    #[inline]
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ShortRead> {
        let byte = *self.bytes.get(self.pos).ok_or(ShortRead(what))?;
        self.pos += 1;
        Ok(byte)
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, ShortRead> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ShortRead> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// `n` little-endian u32s in a row, decoded in one pass.
    pub(crate) fn u32s(&mut self, n: usize, what: &'static str) -> Result<Box<[u32]>, ShortRead> {
        let bytes = self.take(n.checked_mul(4).ok_or(ShortRead(what))?, what)?;
        Ok(bytes.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect())
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, ShortRead> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u128(&mut self, what: &'static str) -> Result<u128, ShortRead> {
        Ok(u128::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn hash(&mut self, what: &'static str) -> Result<[u8; 32], ShortRead> {
        self.array(what)
    }

    /// A LEB128 value; one-byte values (most lengths, refs and deltas)
    /// take the inlined path.
    #[inline]
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, ShortRead> {
        match self.bytes.get(self.pos) {
            Some(&byte) if byte < 0x80 => {
                self.pos += 1;
                Ok(u64::from(byte))
            }
            _ => self.varint_long(what),
        }
    }

    fn varint_long(&mut self, what: &'static str) -> Result<u64, ShortRead> {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        let mut value = 0u64;
        for (i, &byte) in rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7F) << (7 * i);
            if byte < 0x80 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(ShortRead(what))
    }

    #[inline]
    pub(crate) fn varint_u32(&mut self, what: &'static str) -> Result<u32, ShortRead> {
        u32::try_from(self.varint(what)?).map_err(|_| ShortRead(what))
    }

    pub(crate) fn str(&mut self, what: &'static str) -> Result<&'a str, ShortRead> {
        let len = usize::try_from(self.varint(what)?).map_err(|_| ShortRead(what))?;
        std::str::from_utf8(self.take(len, what)?).map_err(|_| ShortRead(what))
    }
}

/// Wraps `body` in the envelope of the store's small files (checkpoint,
/// compaction plan): `magic (6) | u16 LE version | u32 LE CRC32(body) |
/// u64 LE body length | body`.
pub(crate) fn envelope(magic: &[u8; 6], version: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + body.len());
    out.extend_from_slice(magic);
    out.put_u16(version);
    out.put_u32(crc32fast::hash(body));
    out.put_u64(body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// The body of an [`envelope`], if magic, version and CRC all hold;
/// otherwise why not.
pub(crate) fn open_envelope<'a>(bytes: &'a [u8], magic: &[u8; 6], version: u16) -> Result<&'a [u8], String> {
    let mut c = Cursor::new(bytes);
    let short = |e: ShortRead| format!("truncated at {}", e.0);
    if c.take(6, "magic").map_err(short)? != magic {
        return Err("bad magic".into());
    }
    if c.u16("version").map_err(short)? != version {
        return Err("unsupported version".into());
    }
    let crc = c.u32("crc").map_err(short)?;
    let len = usize::try_from(c.u64("length").map_err(short)?).map_err(|_| "length".to_string())?;
    let body = c.take(len, "body").map_err(short)?;
    if crc32fast::hash(body) != crc {
        return Err("CRC mismatch".into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edges() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            buf.put_varint(v);
            assert_eq!(Cursor::new(&buf).varint("v"), Ok(v));
        }
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let mut c = Cursor::new(&[0x80, 0x80]);
        assert!(c.varint("v").is_err());
        assert!(Cursor::new(&[1, 2]).u32("u").is_err());
        assert!(Cursor::new(&[5, b'a']).str("s").is_err());
    }
}
