//! Kafka's field encodings for the records the coordinators keep in their internal topics
//! (`__consumer_offsets`, `__transaction_state`, `__share_group_state`): fixed-width strings in
//! keys, and in flexible-version values unsigned varints, compact strings and arrays
//! (`length + 1`, 0 for null), UUIDs and tagged-field sections.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Longest string Kafka reads or writes (its lengths are checked against `i16::MAX`).
const MAX_STRING: usize = i16::MAX as usize;

/// The longest prefix of `s`, on a character boundary, that Kafka can hold in a string.
pub fn clip(s: &str) -> &str {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes Kafka's unsigned varint (7 bits a byte, least significant first).
pub fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

/// Writes a compact (flexible-version) length of a non-null string or array: `n + 1`.
pub fn put_compact_len(b: &mut BytesMut, n: usize) {
    put_uvarint(
        b,
        u32::try_from(n).map_or(u32::MAX, |n| n.saturating_add(1)),
    );
}

/// Writes a non-null string with an int16 length (non-flexible versions, and every key).
pub fn put_str(b: &mut BytesMut, s: &str) {
    let s = clip(s);
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

/// Writes a compact string.
pub fn put_compact_str(b: &mut BytesMut, s: &str) {
    let s = clip(s);
    put_compact_len(b, s.len());
    b.put_slice(s.as_bytes());
}

/// Writes a compact nullable string.
pub fn put_compact_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_compact_str(b, s),
        None => put_uvarint(b, 0),
    }
}

/// Writes compact bytes.
pub fn put_compact_bytes(b: &mut BytesMut, bytes: &[u8]) {
    put_compact_len(b, bytes.len());
    b.put_slice(bytes);
}

/// Writes an empty tagged-field section.
pub fn put_no_tags(b: &mut BytesMut) {
    put_uvarint(b, 0);
}

/// A cursor over one record's bytes; every read is `None` once they run out.
pub struct Reader {
    /// What is left to read.
    buf: Bytes,
    /// Whether lengths are compact varints (flexible versions) rather than fixed-width.
    pub flexible: bool,
}

impl Reader {
    /// A non-flexible reader over `buf`.
    pub fn new(buf: Bytes) -> Reader {
        Reader {
            buf,
            flexible: false,
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<Bytes> {
        (self.buf.remaining() >= n).then(|| self.buf.split_to(n))
    }

    /// An int8.
    pub fn i8(&mut self) -> Option<i8> {
        (self.buf.remaining() >= 1).then(|| self.buf.get_i8())
    }

    /// An int16.
    pub fn i16(&mut self) -> Option<i16> {
        (self.buf.remaining() >= 2).then(|| self.buf.get_i16())
    }

    /// An int32.
    pub fn i32(&mut self) -> Option<i32> {
        (self.buf.remaining() >= 4).then(|| self.buf.get_i32())
    }

    /// An int64.
    pub fn i64(&mut self) -> Option<i64> {
        (self.buf.remaining() >= 8).then(|| self.buf.get_i64())
    }

    /// A UUID.
    pub fn uuid(&mut self) -> Option<uuid::Uuid> {
        uuid::Uuid::from_slice(&self.take(16)?).ok()
    }

    /// An unsigned varint of at most five bytes, as Kafka reads them.
    pub fn uvarint(&mut self) -> Option<u32> {
        let mut v = 0u32;
        for shift in [0, 7, 14, 21, 28] {
            let byte = self.buf.has_remaining().then(|| self.buf.get_u8())?;
            v |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A length: `Some(None)` for null (-1, or a compact 0).
    fn len(&mut self, fixed: impl FnOnce(&mut Reader) -> Option<i64>) -> Option<Option<usize>> {
        if self.flexible {
            Some(
                self.uvarint()?
                    .checked_sub(1)
                    .and_then(|n| usize::try_from(n).ok()),
            )
        } else {
            Some(usize::try_from(fixed(self)?).ok())
        }
    }

    /// A nullable string.
    pub fn nullable_string(&mut self) -> Option<Option<String>> {
        match self.len(|r| r.i16().map(i64::from))? {
            None => Some(None),
            Some(n) => Some(Some(String::from_utf8(self.take(n)?.to_vec()).ok()?)),
        }
    }

    /// A non-null string.
    pub fn string(&mut self) -> Option<String> {
        self.nullable_string()?
    }

    /// Non-null bytes.
    pub fn bytes(&mut self) -> Option<Bytes> {
        let n = self.len(|r| r.i32().map(i64::from))??;
        self.take(n)
    }

    /// An array length: `Some(None)` for a null array.
    pub fn array_len(&mut self) -> Option<Option<usize>> {
        self.len(|r| r.i32().map(i64::from))
    }

    /// A non-null array of int32s. Counts come off the wire: nothing is allocated for more
    /// entries than the bytes hold.
    pub fn i32s(&mut self) -> Option<Vec<i32>> {
        let count = self.array_len()??;
        let mut raw = self.take(count.checked_mul(4)?)?;
        Some((0..count).map(|_| raw.get_i32()).collect())
    }

    /// A tagged-field section, handing each field's tag and bytes to `field`.
    pub fn tagged_fields(&mut self, mut field: impl FnMut(u32, Bytes) -> Option<()>) -> Option<()> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).ok()?;
            field(tag, self.take(size)?)?;
        }
        Some(())
    }

    /// Skips a tagged-field section.
    pub fn skip_tags(&mut self) -> Option<()> {
        self.tagged_fields(|_, _| Some(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_fixed_fields_read_back() {
        let mut b = BytesMut::new();
        put_str(&mut b, "key");
        let mut r = Reader::new(b.freeze());
        assert_eq!(r.string().as_deref(), Some("key"));

        let mut b = BytesMut::new();
        put_compact_str(&mut b, "é");
        put_compact_nullable_str(&mut b, None);
        put_compact_bytes(&mut b, &[1, 2, 3]);
        put_compact_len(&mut b, 2);
        b.put_i32(7);
        b.put_i32(-1);
        put_uvarint(&mut b, 300);
        put_no_tags(&mut b);
        let mut r = Reader::new(b.freeze());
        r.flexible = true;
        assert_eq!(r.string().as_deref(), Some("é"));
        assert_eq!(r.nullable_string(), Some(None));
        assert_eq!(r.bytes().as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(r.i32s(), Some(vec![7, -1]));
        assert_eq!(r.uvarint(), Some(300));
        assert_eq!(r.skip_tags(), Some(()));
        assert_eq!(r.i8(), None);
    }

    #[test]
    fn a_count_larger_than_the_bytes_reads_as_none() {
        let mut b = BytesMut::new();
        put_uvarint(&mut b, 1_000_001);
        b.put_i32(1);
        let mut r = Reader::new(b.freeze());
        r.flexible = true;
        assert_eq!(r.i32s(), None);
    }

    #[test]
    fn clip_keeps_character_boundaries() {
        let long = "é".repeat(MAX_STRING);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_STRING);
        assert!(clipped.len() >= MAX_STRING - 1);
    }
}
