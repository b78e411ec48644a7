//! The data part of a record: the class name, then the state, both CBOR.
//!
//! ```text
//! data = CBOR text string (class name) ++ CBOR item (state, via serde)
//! ```
//! A reference to another persistent object inside a state is CBOR tag
//! [`REF_TAG`] around the unsigned integer oid. Python Durus writes pickles
//! instead; their first byte is `0x80` (pickle PROTO), which no CBOR text
//! string starts with, so the two are told apart by one byte.
//!
//! Pure functions over bytes; nothing here can panic on bad input.

use crate::error::EncodingError;
use crate::oid::Oid;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The CBOR tag that marks a reference to a persistent object (0x4455, "DU").
pub const REF_TAG: u64 = 0x4455;

/// The first byte of a Python pickle of protocol 2 or later.
const PICKLE_PROTO: u8 = 0x80;

/// Appends the CBOR head of major type `major` with argument `n`.
fn push_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Encodes `state` of class `class` as a record's data.
pub fn encode<T: Serialize + ?Sized>(
    oid: Option<Oid>,
    class: &str,
    state: &T,
) -> Result<Vec<u8>, EncodingError> {
    let mut out = Vec::with_capacity(64 + class.len());
    push_head(&mut out, 3, class.len() as u64);
    out.extend_from_slice(class.as_bytes());
    ciborium::into_writer(state, &mut out).map_err(|e| EncodingError::Encode {
        oid,
        message: e.to_string(),
    })?;
    Ok(out)
}

/// Splits a record's data into its class name and the encoded state.
pub fn split(oid: Oid, data: &[u8]) -> Result<(&str, &[u8]), EncodingError> {
    let bad = |message: &str| EncodingError::Decode {
        oid,
        message: message.to_string(),
    };
    let first = *data.first().ok_or_else(|| bad("empty data"))?;
    if first == PICKLE_PROTO {
        return Err(EncodingError::Foreign {
            oid,
            class: pickle_class_name(data).unwrap_or_else(|| "?".to_string()),
        });
    }
    if first >> 5 != 3 {
        return Err(bad("data does not start with a class name"));
    }
    let (len, head) = match first & 0x1f {
        n @ 0..=23 => (n as u64, 1),
        24 => (
            *data.get(1).ok_or_else(|| bad("truncated class name"))? as u64,
            2,
        ),
        25 => (
            be_uint(data.get(1..3)).ok_or_else(|| bad("truncated class name"))?,
            3,
        ),
        26 => (
            be_uint(data.get(1..5)).ok_or_else(|| bad("truncated class name"))?,
            5,
        ),
        27 => (
            be_uint(data.get(1..9)).ok_or_else(|| bad("truncated class name"))?,
            9,
        ),
        _ => return Err(bad("class name has an indefinite length")),
    };
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(head))
        .filter(|end| *end <= data.len())
        .ok_or_else(|| bad("class name runs past the data"))?;
    let class = data
        .get(head..end)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| bad("class name is not UTF-8"))?;
    Ok((class, data.get(end..).unwrap_or_default()))
}

fn be_uint(bytes: Option<&[u8]>) -> Option<u64> {
    let bytes = bytes?;
    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
}

/// The class of a record's data, whoever wrote it (`module.Class` for Python).
pub fn class_name(oid: Oid, data: &[u8]) -> Result<String, EncodingError> {
    match split(oid, data) {
        Ok((class, _)) => Ok(class.to_string()),
        Err(EncodingError::Foreign { class, .. }) => Ok(class),
        Err(e) => Err(e),
    }
}

/// The class named by a pickle's leading GLOBAL opcode (`c module\n name\n`).
pub fn pickle_class_name(data: &[u8]) -> Option<String> {
    let rest = data.get(2..)?.strip_prefix(b"c")?;
    let mut parts = rest.splitn(3, |b| *b == b'\n');
    let module = std::str::from_utf8(parts.next()?).ok()?;
    let name = std::str::from_utf8(parts.next()?).ok()?;
    parts.next()?;
    Some(format!("{module}.{name}"))
}

/// Decodes a state of class `class`, refusing other classes and trailing bytes.
pub fn decode<T: DeserializeOwned>(oid: Oid, class: &str, data: &[u8]) -> Result<T, EncodingError> {
    let (found, state) = split(oid, data)?;
    if found != class {
        return Err(EncodingError::WrongClass {
            oid,
            expected: class.to_string(),
            found: found.to_string(),
        });
    }
    let mut reader = state;
    let value = ciborium::from_reader(&mut reader).map_err(|e| EncodingError::Decode {
        oid,
        message: e.to_string(),
    })?;
    if !reader.is_empty() {
        return Err(EncodingError::Decode {
            oid,
            message: format!("{} bytes after the state", reader.len()),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_then_state() {
        let data = encode(None, "app::Point", &(1u8, 2u8)).unwrap();
        assert_eq!(data[0], 0x60 | 10);
        assert_eq!(&data[1..11], b"app::Point");
        assert_eq!(&data[11..], &[0x82, 0x01, 0x02]);
        let (class, state) = split(Oid(1), &data).unwrap();
        assert_eq!((class, state), ("app::Point", &[0x82, 0x01, 0x02][..]));
        assert_eq!(
            decode::<(u8, u8)>(Oid(1), "app::Point", &data).unwrap(),
            (1, 2)
        );
    }

    #[test]
    fn long_class_names() {
        let name = "x".repeat(300);
        let data = encode(None, &name, &0u8).unwrap();
        assert_eq!(&data[..3], &[0x79, 0x01, 0x2c]);
        assert_eq!(split(Oid(1), &data).unwrap().0, name);
    }

    #[test]
    fn python_pickles_are_named() {
        let pickle = b"\x80\x02cdurus.persistent_dict\nPersistentDict\nq\x00.";
        assert_eq!(
            split(Oid(0), pickle),
            Err(EncodingError::Foreign {
                oid: Oid(0),
                class: "durus.persistent_dict.PersistentDict".into()
            })
        );
    }

    #[test]
    fn garbage_is_an_error() {
        for data in [
            &b""[..],
            b"\x7b\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x61",
            b"\x01\x02",
            b"\x7f",
        ] {
            assert!(split(Oid(3), data).is_err(), "{data:?}");
        }
        let data = encode(None, "A", &5u32).unwrap();
        assert!(decode::<u32>(Oid(1), "B", &data).is_err());
        assert!(decode::<String>(Oid(1), "A", &data).is_err());
        let mut extra = data.clone();
        extra.push(0);
        assert!(decode::<u32>(Oid(1), "A", &extra).is_err());
    }
}
