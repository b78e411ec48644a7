//! A serde deserializer that reads CBOR straight from a byte slice.
//!
//! Object states are decoded on every load, and ciborium's deserializer
//! reads one header at a time through its `Read` abstraction, copying
//! strings through a scratch buffer. This one parses heads in place and
//! hands strings to visitors from the slice.
//!
//! It accepts and refuses exactly what `ciborium::de::from_reader` does
//! (with its 4 KiB scratch buffer), so states written with ciborium decode
//! to the same values: the same integer and float rules, the same tag
//! protocol (`"@@TAG@@"`, which `ciborium::tag::Required`, `Accepted`,
//! `Captured` and `ciborium::Value` use), the same nesting limit, the same
//! quirks (text and byte strings longer than the scratch buffer are refused
//! where ciborium refuses them; a sequence the visitor stops reading early
//! is left where the visitor stopped). Errors are of the same kinds; where
//! ciborium reads a truncated string in chunks, it may report a syntax
//! error where this reports the end of the data.
//! The differential tests (`tests.rs`) hold the two to that.

mod access;
mod error;

use access::{Access, BytesAccess, TagAccess};
pub(crate) use error::Error;
use serde::de::{self, Unexpected, Visitor};

/// Text and byte strings up to this long are read with `visit_str` and
/// `visit_bytes`, as ciborium does with its scratch buffer of this size.
const SCRATCH: usize = 4096;

/// The deepest nesting of arrays, maps, enums and tags (ciborium's default).
const MAX_DEPTH: usize = 256;

/// Tags 2 and 3: a byte string holding an unsigned or negative bignum.
const BIGPOS: u64 = 2;
const BIGNEG: u64 = 3;

/// Simple values.
const FALSE: u8 = 20;
const TRUE: u8 = 21;
const NULL: u8 = 22;
const UNDEFINED: u8 = 23;

/// Decodes one `T` from the start of `bytes`; returns it and how many bytes
/// it took (the caller decides what trailing bytes mean).
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(
    bytes: &'de [u8],
) -> Result<(T, usize), Error> {
    let mut de = Deserializer {
        input: bytes,
        pos: 0,
        depth: MAX_DEPTH,
    };
    let value = T::deserialize(&mut de)?;
    Ok((value, de.pos))
}

/// The head of a CBOR item.
#[derive(Debug, Clone, Copy)]
enum Head {
    Positive(u64),
    /// Stored as CBOR writes it: the value is `-1 - n`.
    Negative(u64),
    Bytes(Option<usize>),
    Text(Option<usize>),
    Array(Option<usize>),
    Map(Option<usize>),
    Tag(u64),
    Simple(u8),
    Float(f64),
    Break,
}

impl Head {
    /// The error for an item of the wrong type, as ciborium words it.
    #[cold]
    fn expected(self, kind: &'static str) -> Error {
        let unexpected = match self {
            Head::Positive(x) => Unexpected::Unsigned(x),
            Head::Negative(x) => Unexpected::Signed(x as i64 ^ !0),
            Head::Bytes(_) => Unexpected::Other("bytes"),
            Head::Text(_) => Unexpected::Other("string"),
            Head::Array(_) => Unexpected::Seq,
            Head::Map(_) => Unexpected::Map,
            Head::Tag(_) => Unexpected::Other("tag"),
            Head::Simple(FALSE) => Unexpected::Bool(false),
            Head::Simple(TRUE) => Unexpected::Bool(true),
            Head::Simple(NULL) => Unexpected::Other("null"),
            Head::Simple(UNDEFINED) => Unexpected::Other("undefined"),
            Head::Simple(_) => Unexpected::Other("simple"),
            Head::Float(x) => Unexpected::Float(x),
            Head::Break => Unexpected::Other("break"),
        };
        de::Error::invalid_type(unexpected, &kind)
    }
}

/// The deserializer: the input, the read position and the nesting left.
pub(crate) struct Deserializer<'de> {
    input: &'de [u8],
    pos: usize,
    depth: usize,
}

impl<'de> Deserializer<'de> {
    /// The head at the read position and its length in bytes, without
    /// moving past it.
    #[inline(always)]
    fn peek(&self) -> Result<(Head, usize), Error> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let first = *rest.first().ok_or(Error::Eof)?;
        let (major, info) = (first >> 5, first & 0x1f);
        let (arg, len): (Option<u64>, usize) = match info {
            n @ 0..=23 => (Some(u64::from(n)), 1),
            24 => (Some(u64::from(*rest.get(1).ok_or(Error::Eof)?)), 2),
            25 => (Some(be(rest.get(1..3))?), 3),
            26 => (Some(be(rest.get(1..5))?), 5),
            27 => (Some(be(rest.get(1..9))?), 9),
            31 => (None, 1),
            _ => return Err(Error::Syntax(self.pos)),
        };
        let size = |arg: Option<u64>| match arg {
            None => Ok(None),
            Some(n) => usize::try_from(n)
                .map(Some)
                .map_err(|_| Error::Syntax(self.pos)),
        };
        let int = |arg: Option<u64>| arg.ok_or(Error::Syntax(self.pos));
        let head = match major {
            0 => Head::Positive(int(arg)?),
            1 => Head::Negative(int(arg)?),
            2 => Head::Bytes(size(arg)?),
            3 => Head::Text(size(arg)?),
            4 => Head::Array(size(arg)?),
            5 => Head::Map(size(arg)?),
            6 => Head::Tag(int(arg)?),
            _ => match (info, arg) {
                (31, _) | (_, None) => Head::Break,
                (0..=24, Some(n)) => Head::Simple(n as u8),
                (25, Some(n)) => Head::Float(f64::from(half::f16::from_bits(n as u16))),
                (26, Some(n)) => Head::Float(f64::from(f32::from_bits(n as u32))),
                (_, Some(n)) => Head::Float(f64::from_bits(n)),
            },
        };
        Ok((head, len))
    }

    /// The bytes of the text string at the read position when its length
    /// is under 256 (field names, most strings), and its length in bytes
    /// with its head; `None` sends the caller the general way.
    #[inline(always)]
    fn short_text(&self) -> Option<(&'de [u8], usize)> {
        let rest = self.input.get(self.pos..)?;
        let (n, head) = match *rest.first()? {
            b @ 0x60..=0x77 => (usize::from(b & 0x1f), 1),
            0x78 => (usize::from(*rest.get(1)?), 2),
            _ => return None,
        };
        Some((rest.get(head..head + n)?, head + n))
    }

    /// The head at the read position, moving past it.
    #[inline]
    fn pull(&mut self) -> Result<Head, Error> {
        let (head, len) = self.peek()?;
        self.pos += len;
        Ok(head)
    }

    /// The next `n` bytes, moving past them.
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Eof)?;
        let bytes = self.input.get(self.pos..end).ok_or(Error::Eof)?;
        self.pos = end;
        Ok(bytes)
    }

    /// The next head that is not a tag (tags are skipped, as ciborium does
    /// for most types), and where it starts.
    #[inline]
    fn pull_untagged(&mut self) -> Result<(Head, usize), Error> {
        loop {
            let at = self.pos;
            match self.pull()? {
                Head::Tag(_) => continue,
                head => return Ok((head, at)),
            }
        }
    }

    /// Runs `f` one nesting level down, refusing to go past the limit.
    #[inline]
    fn recurse<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R, Error>) -> Result<R, Error> {
        if self.depth == 0 {
            return Err(Error::RecursionLimitExceeded);
        }
        self.depth -= 1;
        let result = f(self);
        self.depth += 1;
        result
    }

    /// Calls `f` with each chunk of a byte (`text` false) or text string
    /// whose head (of length `len`, at `at`) was just read. An indefinite
    /// string is a run of definite chunks of its own type up to a break;
    /// like ciborium, indefinite chunks nest.
    /// Chunks are passed on in pieces of at most `piece` bytes, each once it
    /// is all there (ciborium reads bignums 16 bytes at a time, and so
    /// meets a bignum's excess before the end of the data).
    fn chunks(
        &mut self,
        text: bool,
        len: Option<usize>,
        at: usize,
        piece: usize,
        mut f: impl FnMut(&'de [u8], usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut chunk = |de: &mut Self, n: usize, at: usize| {
            let mut left = n;
            loop {
                let k = left.min(piece);
                f(de.take(k)?, at)?;
                left -= k;
                if left == 0 {
                    return Ok(());
                }
            }
        };
        if let Some(n) = len {
            return chunk(self, n, at);
        }
        let mut nested = 1usize;
        loop {
            let at = self.pos;
            match self.pull()? {
                Head::Break if nested == 1 => return Ok(()),
                Head::Break => nested -= 1,
                Head::Bytes(None) if !text => nested += 1,
                Head::Text(None) if text => nested += 1,
                Head::Bytes(Some(n)) if !text => chunk(self, n, at)?,
                Head::Text(Some(n)) if text => chunk(self, n, at)?,
                _ => return Err(Error::Syntax(at)),
            }
        }
    }

    /// A whole byte string (head just read), chunks joined.
    fn byte_buf(&mut self, len: Option<usize>, at: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.chunks(false, len, at, usize::MAX, |chunk, _| {
            out.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(out)
    }

    /// A whole text string (head just read), chunks joined; each chunk
    /// must be UTF-8 by itself.
    fn string(&mut self, len: Option<usize>, at: usize) -> Result<String, Error> {
        let mut out = String::new();
        self.chunks(true, len, at, usize::MAX, |chunk, at| {
            out.push_str(utf8(chunk, at)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// An integer, skipping tags other than the bignum tags, which are read
    /// as a big-endian byte string of up to 16 significant bytes.
    #[inline]
    fn integer(&mut self, first: Option<Head>) -> Result<(bool, u128), Error> {
        let mut first = first;
        loop {
            let head = match first.take() {
                Some(head) => head,
                None => self.pull()?,
            };
            let negative = match head {
                Head::Positive(x) => return Ok((false, u128::from(x))),
                Head::Negative(x) => return Ok((true, u128::from(x))),
                Head::Tag(BIGPOS) => false,
                Head::Tag(BIGNEG) => true,
                Head::Tag(_) => continue,
                head => return Err(head.expected("integer")),
            };
            let at = self.pos;
            return match self.pull()? {
                Head::Bytes(len) => {
                    let mut value = 0u128;
                    let mut digits = 0usize;
                    self.chunks(false, len, at, 16, |chunk, _| {
                        for b in chunk {
                            if digits == 16 {
                                return Err(de::Error::custom("bigint too large"));
                            }
                            if digits == 0 && *b == 0 {
                                continue;
                            }
                            value = (value << 8) | u128::from(*b);
                            digits += 1;
                        }
                        Ok(())
                    })?;
                    Ok((negative, value))
                }
                head => Err(head.expected("bytes")),
            };
        }
    }
}

/// A big-endian unsigned integer of 1 to 8 bytes, or the end of the input.
#[inline]
fn be(bytes: Option<&[u8]>) -> Result<u64, Error> {
    crate::encoding::be_uint(bytes).ok_or(Error::Eof)
}

/// `bytes` as UTF-8, or a syntax error at `at`.
#[inline]
fn utf8(bytes: &[u8], at: usize) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|_| Error::Syntax(at))
}

fn too_large() -> Error {
    de::Error::custom("integer too large")
}

fn negative() -> Error {
    de::Error::custom("unexpected negative integer")
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (head, len) = self.peek()?;
        match head {
            Head::Positive(_) => self.deserialize_u64(visitor),
            Head::Negative(x) if x <= i64::MAX as u64 => self.deserialize_i64(visitor),
            Head::Negative(_) => self.deserialize_i128(visitor),
            Head::Bytes(Some(n)) if n <= SCRATCH => self.deserialize_bytes(visitor),
            Head::Bytes(_) => self.deserialize_byte_buf(visitor),
            Head::Text(Some(n)) if n <= SCRATCH => self.deserialize_str(visitor),
            Head::Text(_) => self.deserialize_string(visitor),
            Head::Array(_) => self.deserialize_seq(visitor),
            Head::Map(_) => self.deserialize_map(visitor),
            Head::Tag(tag) => {
                self.pos += len;
                let (next, _) = self.peek()?;
                match (tag, next) {
                    (BIGPOS | BIGNEG, Head::Bytes(Some(n))) if n <= 16 => {
                        match self.integer(Some(head))? {
                            (false, raw) => visitor.visit_u128(raw),
                            (true, raw) => match i128::try_from(raw) {
                                Ok(x) => visitor.visit_i128(x ^ !0),
                                Err(_) => Err(too_large()),
                            },
                        }
                    }
                    _ => self.recurse(|de| visitor.visit_enum(TagAccess::new(de, Some(tag)))),
                }
            }
            Head::Float(_) => self.deserialize_f64(visitor),
            Head::Simple(FALSE | TRUE) => self.deserialize_bool(visitor),
            Head::Simple(NULL | UNDEFINED) => self.deserialize_option(visitor),
            Head::Simple(_) => Err(head.expected("known simple value")),
            Head::Break => Err(head.expected("non-break")),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.pull_untagged()? {
            (Head::Simple(FALSE), _) => visitor.visit_bool(false),
            (Head::Simple(TRUE), _) => visitor.visit_bool(true),
            (_, at) => Err(Error::Semantic(Some(at), "expected bool".into())),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.pull_untagged()? {
            (Head::Float(x), _) => visitor.visit_f64(x),
            (head, _) => Err(head.expected("float")),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.integer(None)? {
            (false, raw) => i64::try_from(raw),
            (true, raw) => i64::try_from(raw).map(|x| x ^ !0),
        };
        match result {
            Ok(x) => visitor.visit_i64(x),
            Err(_) => Err(too_large()),
        }
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.integer(None)? {
            (false, raw) => i128::try_from(raw),
            (true, raw) => i128::try_from(raw).map(|x| x ^ !0),
        };
        match result {
            Ok(x) => visitor.visit_i128(x),
            Err(_) => Err(too_large()),
        }
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    #[inline]
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // The common case first: an untagged unsigned integer.
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let (n, len) = match rest.first() {
            Some(&b) if b < 0x18 => (Some(u64::from(b)), 1),
            Some(0x18) => (rest.get(1).map(|b| u64::from(*b)), 2),
            Some(0x19) => (be(rest.get(1..3)).ok(), 3),
            Some(0x1a) => (be(rest.get(1..5)).ok(), 5),
            Some(0x1b) => (be(rest.get(1..9)).ok(), 9),
            _ => (None, 0),
        };
        if let Some(n) = n {
            self.pos += len;
            return visitor.visit_u64(n);
        }
        match self.integer(None)? {
            (false, raw) => match u64::try_from(raw) {
                Ok(x) => visitor.visit_u64(x),
                Err(_) => Err(too_large()),
            },
            (true, _) => Err(negative()),
        }
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.integer(None)? {
            (false, raw) => visitor.visit_u128(raw),
            (true, _) => Err(negative()),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.pull_untagged()? {
            (head @ Head::Text(Some(n)), at) if n <= 4 => {
                let s = utf8(self.take(n)?, at)?;
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => visitor.visit_char(c),
                    _ => Err(head.expected("char")),
                }
            }
            (head, _) => Err(head.expected("char")),
        }
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.pull_untagged()? {
            (Head::Text(Some(n)), at) if n <= SCRATCH => {
                visitor.visit_str(utf8(self.take(n)?, at)?)
            }
            (head, _) => Err(head.expected("str")),
        }
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if let Some((s, len)) = self.short_text() {
            let s = utf8(s, self.pos)?;
            self.pos += len;
            return visitor.visit_string(s.to_owned());
        }
        match self.pull_untagged()? {
            (Head::Text(Some(n)), at) => {
                let s = utf8(self.take(n)?, at)?;
                visitor.visit_string(s.to_owned())
            }
            (Head::Text(None), at) => {
                let s = self.string(None, at)?;
                visitor.visit_string(s)
            }
            (head, _) => Err(head.expected("string")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.pull_untagged()? {
            (Head::Bytes(Some(n)), _) if n <= SCRATCH => visitor.visit_bytes(self.take(n)?),
            (Head::Array(len), _) => self.recurse(|de| visitor.visit_seq(Access { de, left: len })),
            (head, _) => Err(head.expected("bytes")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.pull_untagged()? {
            (Head::Bytes(len), at) => {
                let bytes = self.byte_buf(len, at)?;
                visitor.visit_byte_buf(bytes)
            }
            (Head::Array(len), _) => self.recurse(|de| visitor.visit_seq(Access { de, left: len })),
            (head, _) => Err(head.expected("byte buffer")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Tags are not skipped here: a tagged null is `Some` of a null.
        match self.peek()? {
            (Head::Simple(NULL | UNDEFINED), len) => {
                self.pos += len;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.pull_untagged()? {
            (Head::Simple(NULL | UNDEFINED), _) => visitor.visit_unit(),
            (head, _) => Err(head.expected("unit")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.pull_untagged()? {
            (Head::Array(len), _) => self.recurse(|de| visitor.visit_seq(Access { de, left: len })),
            (Head::Bytes(len), at) => {
                let bytes = self.byte_buf(len, at)?;
                visitor.visit_seq(BytesAccess { bytes, next: 0 })
            }
            (head, _) => Err(head.expected("array")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.pull_untagged()? {
            (Head::Map(len), _) => self.recurse(|de| visitor.visit_map(Access { de, left: len })),
            (head, _) => Err(head.expected("map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == "@@TAG@@" {
            // ciborium's protocol for tags: one optional tag, then the item.
            let tag = match self.peek()? {
                (Head::Tag(tag), len) => {
                    self.pos += len;
                    Some(tag)
                }
                _ => None,
            };
            return self.recurse(|de| visitor.visit_enum(TagAccess::new(de, tag)));
        }
        // A unit variant is its name; any other, a map of one entry.
        loop {
            match self.peek()? {
                (Head::Tag(_), len) => self.pos += len,
                (Head::Map(Some(1)), len) => {
                    self.pos += len;
                    break;
                }
                (Head::Text(_), _) => break,
                (head, _) => return Err(head.expected("enum")),
            }
        }
        self.recurse(|de| visitor.visit_enum(Access { de, left: Some(0) }))
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if let Some((s, len)) = self.short_text() {
            let s = utf8(s, self.pos)?;
            self.pos += len;
            return visitor.visit_str(s);
        }
        match self.pull_untagged()? {
            (Head::Text(Some(n)), at) if n <= SCRATCH => {
                visitor.visit_str(utf8(self.take(n)?, at)?)
            }
            (Head::Bytes(Some(n)), _) if n <= SCRATCH => visitor.visit_bytes(self.take(n)?),
            (head, _) => Err(head.expected("str or bytes")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
