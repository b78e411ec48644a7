//! Differential tests: this deserializer against `ciborium::from_reader`,
//! on random values (written by ciborium and by a writer that picks every
//! encoding CBOR allows: long heads, indefinite lengths, chunked strings,
//! short floats), on random damage to their bytes, and on named cases.

use super::{from_slice, Error};
use crate::internals::SplitMix64;
use ciborium::tag::{Accepted, Captured, Required};
use ciborium::Value;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;

const REF_TAG: u64 = crate::encoding::REF_TAG;

/// An error reduced to what the two decoders must agree on.
#[derive(Debug, PartialEq)]
enum Kind {
    /// Truncated or malformed bytes (ciborium reads long strings in
    /// chunks, so which of the two it meets first may differ).
    Bad,
    Semantic(String),
    Deep,
}

fn ours<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), Kind> {
    from_slice::<T>(bytes).map_err(|e| match e {
        Error::Eof | Error::Syntax(_) => Kind::Bad,
        Error::Semantic(_, m) => Kind::Semantic(m),
        Error::RecursionLimitExceeded => Kind::Deep,
    })
}

fn theirs<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), Kind> {
    let mut reader = bytes;
    match ciborium::from_reader::<T, _>(&mut reader) {
        Ok(value) => Ok((value, bytes.len() - reader.len())),
        Err(ciborium::de::Error::Io(_) | ciborium::de::Error::Syntax(_)) => Err(Kind::Bad),
        Err(ciborium::de::Error::Semantic(_, m)) => Err(Kind::Semantic(m)),
        Err(ciborium::de::Error::RecursionLimitExceeded) => Err(Kind::Deep),
    }
}

/// Decodes `bytes` as a `T` both ways and panics when the results differ
/// (values compared by their `Debug` text, which tells floats apart by
/// value and sign). Returns whether it decoded.
fn agree<T: DeserializeOwned + Debug>(bytes: &[u8]) -> bool {
    let (a, b) = (ours::<T>(bytes), theirs::<T>(bytes));
    let same = match (&a, &b) {
        (Ok((x, n)), Ok((y, m))) => format!("{x:?}") == format!("{y:?}") && n == m,
        (Err(x), Err(y)) => x == y,
        _ => false,
    };
    assert!(
        same,
        "{}: ours {a:?}, ciborium {b:?}, {} bytes {:02x?}",
        std::any::type_name::<T>(),
        bytes.len(),
        &bytes[..bytes.len().min(64)]
    );
    a.is_ok()
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Shape {
    Unit,
    New(u32),
    Pair(i8, String),
    Rec { x: Option<u64>, y: Vec<Shape> },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Wrapper(u64);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Empty;

/// A struct with a field of every kind serde has.
#[derive(Serialize, Deserialize, Debug)]
struct Typed {
    a: u8,
    b: u16,
    c: u32,
    d: u64,
    e: i8,
    f: i16,
    g: i32,
    h: i64,
    i: u128,
    j: i128,
    k: f32,
    l: f64,
    m: String,
    n: Vec<u8>,
    o: Option<Box<Typed>>,
    p: Vec<Option<i32>>,
    q: BTreeMap<String, u64>,
    r: Shape,
    s: Required<u64, REF_TAG>,
    t: Accepted<String, 7>,
    u: Captured<Value>,
    v: char,
    w: bool,
    x: (),
    y: Wrapper,
    z: (u8, String),
    empty: Empty,
    #[serde(default)]
    absent: Option<String>,
}

/// What the object model stores: an item with a reference.
#[derive(Serialize, Deserialize, Debug)]
struct Item {
    n: u64,
    s: String,
    parent: Required<u64, REF_TAG>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Strict {
    n: u64,
}

/// Decodes `bytes` as each of many types, both ways.
fn agree_all(bytes: &[u8]) {
    agree::<Value>(bytes);
    agree::<IgnoredAny>(bytes);
    agree::<Typed>(bytes);
    agree::<Item>(bytes);
    agree::<Strict>(bytes);
    agree::<Vec<(u64, Required<u64, REF_TAG>)>>(bytes);
    agree::<Shape>(bytes);
    agree::<Vec<Shape>>(bytes);
    agree::<u8>(bytes);
    agree::<u16>(bytes);
    agree::<u32>(bytes);
    agree::<u64>(bytes);
    agree::<u128>(bytes);
    agree::<i8>(bytes);
    agree::<i16>(bytes);
    agree::<i32>(bytes);
    agree::<i64>(bytes);
    agree::<i128>(bytes);
    agree::<f32>(bytes);
    agree::<f64>(bytes);
    agree::<bool>(bytes);
    agree::<char>(bytes);
    agree::<String>(bytes);
    agree::<Box<str>>(bytes);
    agree::<Vec<u8>>(bytes);
    agree::<Option<u64>>(bytes);
    agree::<Option<Option<String>>>(bytes);
    agree::<()>(bytes);
    agree::<Empty>(bytes);
    agree::<Wrapper>(bytes);
    agree::<(u8, String)>(bytes);
    agree::<(i64, f64, bool)>(bytes);
    agree::<BTreeMap<String, Value>>(bytes);
    agree::<BTreeMap<u64, String>>(bytes);
    agree::<Vec<Value>>(bytes);
    agree::<Required<u64, REF_TAG>>(bytes);
    agree::<Required<Value, 2>>(bytes);
    agree::<Accepted<String, 7>>(bytes);
    agree::<Captured<Value>>(bytes);
    agree::<Captured<u64>>(bytes);
    agree::<std::marker::PhantomData<u8>>(bytes);
}

// ---------------------------------------------------------------------
// Random values

const EDGE_INTS: &[i128] = &[
    0,
    1,
    23,
    24,
    127,
    128,
    255,
    256,
    32767,
    32768,
    65535,
    65536,
    2147483647,
    2147483648,
    4294967295,
    4294967296,
    9223372036854775807,
    9223372036854775808,
    18446744073709551615,
    -1,
    -24,
    -25,
    -128,
    -129,
    -256,
    -257,
    -32768,
    -32769,
    -65536,
    -65537,
    -2147483648,
    -2147483649,
    -4294967296,
    -4294967297,
    -9223372036854775808,
    -9223372036854775809,
    -18446744073709551616,
];

const EDGE_FLOATS: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.1,
    65504.0,
    65505.0,
    5.960464477539063e-8,
    1e-40,
    3.4028234663852886e38,
    1e300,
    f64::MIN_POSITIVE,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    16777217.0,
];

const CHARS: &[char] = &[
    'a',
    'z',
    'Q',
    '0',
    ' ',
    '\0',
    '\u{7f}',
    '\u{80}',
    'é',
    'ß',
    '\u{7ff}',
    '\u{800}',
    '€',
    '中',
    '\u{ffff}',
    '\u{10000}',
    '😀',
    '\u{10ffff}',
];

fn gen_int(rng: &mut SplitMix64) -> i128 {
    if rng.below(3) == 0 {
        return EDGE_INTS[rng.below(EDGE_INTS.len() as u64) as usize];
    }
    let bits = rng.below(65) as u32;
    let n = if bits == 0 {
        0
    } else {
        rng.next_u64() >> (64 - bits)
    };
    if rng.below(2) == 0 {
        i128::from(n)
    } else {
        -1 - i128::from(n)
    }
}

fn gen_float(rng: &mut SplitMix64) -> f64 {
    match rng.below(4) {
        0 => EDGE_FLOATS[rng.below(EDGE_FLOATS.len() as u64) as usize],
        1 => f64::from(f32::from_bits(rng.next_u64() as u32)),
        2 => f64::from(half::f16::from_bits(rng.next_u64() as u16)),
        _ => f64::from_bits(rng.next_u64()),
    }
}

fn gen_string(rng: &mut SplitMix64) -> String {
    let len = match rng.below(40) {
        0 => 1360 + rng.below(20), // around the 4 KiB scratch in bytes, with 3-byte chars
        1 => 4090 + rng.below(12),
        _ => rng.below(12),
    };
    let mut s = String::new();
    for _ in 0..len {
        if len > 1000 && rng.below(2) == 0 {
            s.push(if len < 2000 { '€' } else { 'x' });
        } else {
            s.push(CHARS[rng.below(CHARS.len() as u64) as usize]);
        }
    }
    s
}

fn gen_bytes(rng: &mut SplitMix64) -> Vec<u8> {
    let len = match rng.below(40) {
        0 => 4090 + rng.below(12),
        _ => rng.below(20),
    };
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn gen_tag(rng: &mut SplitMix64) -> u64 {
    [0, 1, 2, 3, 7, 24, 55799, REF_TAG, u64::MAX][rng.below(9) as usize]
}

fn gen_value(rng: &mut SplitMix64, depth: u32) -> Value {
    let kinds = if depth == 0 { 6 } else { 9 };
    match rng.below(kinds) {
        0 => Value::Integer(gen_int(rng).try_into().expect("in range")),
        1 => Value::Float(gen_float(rng)),
        2 => Value::Text(gen_string(rng)),
        3 => Value::Bytes(gen_bytes(rng)),
        4 => Value::Bool(rng.below(2) == 0),
        5 => Value::Null,
        6 => Value::Array(
            (0..rng.below(5))
                .map(|_| gen_value(rng, depth - 1))
                .collect(),
        ),
        7 => Value::Map(
            (0..rng.below(5))
                .map(|_| {
                    let key = if rng.below(3) == 0 {
                        gen_value(rng, depth - 1)
                    } else {
                        Value::Text(
                            ["a", "n", "s", "parent", "x", "y", "New", "Unit"]
                                [rng.below(8) as usize]
                                .into(),
                        )
                    };
                    (key, gen_value(rng, depth - 1))
                })
                .collect(),
        ),
        _ => Value::Tag(gen_tag(rng), Box::new(gen_value(rng, depth - 1))),
    }
}

fn gen_shape(rng: &mut SplitMix64, depth: u32) -> Shape {
    match rng.below(if depth == 0 { 3 } else { 4 }) {
        0 => Shape::Unit,
        1 => Shape::New(rng.next_u64() as u32),
        2 => Shape::Pair(rng.next_u64() as i8, gen_string(rng)),
        _ => Shape::Rec {
            x: (rng.below(2) == 0).then(|| rng.next_u64()),
            y: (0..rng.below(3))
                .map(|_| gen_shape(rng, depth - 1))
                .collect(),
        },
    }
}

fn gen_typed(rng: &mut SplitMix64, depth: u32) -> Typed {
    let int = |rng: &mut SplitMix64| gen_int(rng);
    Typed {
        a: int(rng) as u8,
        b: int(rng) as u16,
        c: int(rng) as u32,
        d: int(rng) as u64,
        e: int(rng) as i8,
        f: int(rng) as i16,
        g: int(rng) as i32,
        h: int(rng) as i64,
        i: (int(rng) as u128) << rng.below(64),
        j: int(rng) << rng.below(63),
        k: gen_float(rng) as f32,
        l: gen_float(rng),
        m: gen_string(rng),
        n: gen_bytes(rng),
        o: (depth > 0 && rng.below(2) == 0).then(|| Box::new(gen_typed(rng, depth - 1))),
        p: (0..rng.below(4))
            .map(|_| (rng.below(2) == 0).then(|| int(rng) as i32))
            .collect(),
        q: (0..rng.below(3))
            .map(|_| (gen_string(rng), rng.next_u64()))
            .collect(),
        r: gen_shape(rng, 2),
        s: Required(rng.next_u64() >> rng.below(64)),
        t: Accepted(gen_string(rng)),
        u: Captured((rng.below(2) == 0).then(|| gen_tag(rng)), gen_value(rng, 1)),
        v: CHARS[rng.below(CHARS.len() as u64) as usize],
        w: rng.below(2) == 0,
        x: (),
        y: Wrapper(rng.next_u64()),
        z: (rng.next_u64() as u8, gen_string(rng)),
        empty: Empty,
        absent: None,
    }
}

// ---------------------------------------------------------------------
// A writer of every encoding

/// Appends a head, sometimes longer than it needs to be.
fn write_head(out: &mut Vec<u8>, rng: &mut SplitMix64, major: u8, n: u64) {
    let m = major << 5;
    let min = match n {
        0..=23 => 0,
        24..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 3,
        _ => 4,
    };
    let width = if rng.below(8) == 0 {
        min + rng.below(5 - min)
    } else {
        min
    };
    match width {
        0 => out.push(m | n as u8),
        1 => out.extend_from_slice(&[m | 24, n as u8]),
        2 => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        3 => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Appends a byte (major 2) or text (major 3) string, sometimes in chunks,
/// cut at character boundaries for text.
fn write_string(out: &mut Vec<u8>, rng: &mut SplitMix64, major: u8, bytes: &[u8], text: bool) {
    if rng.below(4) != 0 {
        write_head(out, rng, major, bytes.len() as u64);
        out.extend_from_slice(bytes);
        return;
    }
    out.push(major << 5 | 31);
    let mut rest = bytes;
    for _ in 0..64 {
        if rest.is_empty() {
            break;
        }
        let mut cut = 1 + rng.below(rest.len() as u64) as usize;
        while text && cut < rest.len() && (rest[cut] & 0xc0) == 0x80 {
            cut += 1;
        }
        if rng.below(6) == 0 {
            // A nested indefinite chunk, which ciborium accepts.
            out.push(major << 5 | 31);
            write_head(out, rng, major, cut as u64);
            out.extend_from_slice(&rest[..cut]);
            out.push(0xff);
        } else {
            write_head(out, rng, major, cut as u64);
            out.extend_from_slice(&rest[..cut]);
        }
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        write_head(out, rng, major, rest.len() as u64);
        out.extend_from_slice(rest);
    }
    out.push(0xff);
}

fn write_value(out: &mut Vec<u8>, rng: &mut SplitMix64, value: &Value) {
    match value {
        Value::Integer(i) => {
            let i = i128::from(*i);
            if i >= 0 {
                write_head(out, rng, 0, i as u64);
            } else {
                write_head(out, rng, 1, (-1 - i) as u64);
            }
        }
        Value::Bytes(b) => write_string(out, rng, 2, b, false),
        Value::Text(s) => write_string(out, rng, 3, s.as_bytes(), true),
        Value::Float(f) => {
            let half = half::f16::from_f64(*f);
            let single = *f as f32;
            if f64::from(half).to_bits() == f.to_bits() && rng.below(2) == 0 {
                out.push(0xf9);
                out.extend_from_slice(&half.to_bits().to_be_bytes());
            } else if f64::from(single).to_bits() == f.to_bits() && rng.below(2) == 0 {
                out.push(0xfa);
                out.extend_from_slice(&single.to_bits().to_be_bytes());
            } else {
                out.push(0xfb);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
        }
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Null => out.push(if rng.below(4) == 0 { 0xf7 } else { 0xf6 }),
        Value::Tag(t, v) => {
            write_head(out, rng, 6, *t);
            write_value(out, rng, v);
        }
        Value::Array(items) => {
            let indefinite = rng.below(4) == 0;
            if indefinite {
                out.push(0x9f);
            } else {
                write_head(out, rng, 4, items.len() as u64);
            }
            for item in items {
                write_value(out, rng, item);
            }
            if indefinite {
                out.push(0xff);
            }
        }
        Value::Map(entries) => {
            let indefinite = rng.below(4) == 0;
            if indefinite {
                out.push(0xbf);
            } else {
                write_head(out, rng, 5, entries.len() as u64);
            }
            for (k, v) in entries {
                write_value(out, rng, k);
                write_value(out, rng, v);
            }
            if indefinite {
                out.push(0xff);
            }
        }
        _ => out.push(0xf6),
    }
}

fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("encodes");
    out
}

/// Damaged copies of `bytes`: cut short, a byte changed, added, removed.
fn damaged(rng: &mut SplitMix64, bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let len = bytes.len() as u64;
    let at = rng.below(len) as usize;
    out.push(bytes[..at].to_vec());
    let mut changed = bytes.to_vec();
    if let Some(b) = changed.get_mut(at) {
        *b = if rng.below(2) == 0 {
            rng.next_u64() as u8
        } else {
            *b ^ (1 << rng.below(8))
        };
    }
    out.push(changed);
    let mut added = bytes.to_vec();
    added.insert(at, rng.next_u64() as u8);
    out.push(added);
    let mut removed = bytes.to_vec();
    if at < removed.len() {
        removed.remove(at);
    }
    out.push(removed);
    out
}

/// Iterations, fewer in an unoptimized build.
fn rounds(release: u64, debug: u64) -> u64 {
    if cfg!(debug_assertions) {
        debug
    } else {
        release
    }
}

#[test]
fn random_values_decode_alike() {
    let mut rng = SplitMix64::new(0x0cb0_4de1);
    let (mut decoded, mut total) = (0u64, 0u64);
    for _ in 0..rounds(4000, 400) {
        let value = gen_value(&mut rng, 4);
        let canonical = to_cbor(&value);
        assert!(agree::<Value>(&canonical), "{value:?}");
        agree_all(&canonical);
        let mut varied = Vec::new();
        write_value(&mut varied, &mut rng, &value);
        decoded += u64::from(agree::<Value>(&varied));
        total += 1;
        agree_all(&varied);
        for bytes in damaged(&mut rng, &varied) {
            agree_all(&bytes);
        }
    }
    // The varied encodings are all valid CBOR that ciborium reads.
    assert_eq!(decoded, total);
}

#[test]
fn random_structs_decode_alike() {
    let mut rng = SplitMix64::new(0x5eed_0002);
    for _ in 0..rounds(2000, 200) {
        let typed = gen_typed(&mut rng, 2);
        let bytes = to_cbor(&typed);
        assert!(agree::<Typed>(&bytes), "{typed:?}");
        agree_all(&bytes);
        // The same state in every encoding.
        let value: Value = ciborium::from_reader(&bytes[..]).expect("a value");
        let mut varied = Vec::new();
        write_value(&mut varied, &mut rng, &value);
        agree::<Typed>(&varied);
        agree_all(&varied);
        for bytes in damaged(&mut rng, &varied) {
            agree_all(&bytes);
        }
        let item = Item {
            n: rng.next_u64() >> rng.below(64),
            s: gen_string(&mut rng),
            parent: Required(rng.next_u64() >> rng.below(64)),
        };
        let bytes = to_cbor(&item);
        assert!(agree::<Item>(&bytes));
        for bytes in damaged(&mut rng, &bytes) {
            agree_all(&bytes);
        }
    }
}

#[test]
fn random_bytes_decode_alike() {
    let mut rng = SplitMix64::new(7);
    for _ in 0..rounds(20000, 2000) {
        let len = rng.below(24) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| match rng.below(4) {
                // Short heads of every major type, breaks and simple values.
                0 => [0x9f, 0xbf, 0x5f, 0x7f, 0xff, 0xc2, 0xc3, 0xf6, 0xf7][rng.below(9) as usize],
                _ => rng.next_u64() as u8,
            })
            .collect();
        agree_all(&bytes);
    }
}

// ---------------------------------------------------------------------
// Named cases

#[test]
fn indefinite_lengths() {
    // ["a" "bc" (chunked), h'01' h'0203' (chunked)] as an indefinite array.
    let bytes = [
        0x9f, 0x7f, 0x61, b'a', 0x62, b'b', b'c', 0xff, 0x5f, 0x41, 1, 0x42, 2, 3, 0xff, 0xff,
    ];
    assert!(agree::<Value>(&bytes));
    let (value, used) = from_slice::<(String, Vec<u8>)>(&bytes).unwrap();
    assert_eq!(value, ("abc".to_string(), vec![1, 2, 3]));
    // A tuple reads its two items and leaves the break, as ciborium does.
    assert_eq!(used, bytes.len() - 1);
    // An indefinite map as a struct; an indefinite key is refused (as a
    // field name must fit ciborium's scratch buffer in one piece).
    let item = [
        0xbf, 0x61, b'n', 0x05, 0x61, b's', 0x60, 0x66, b'p', b'a', b'r', b'e', b'n', b't', 0xd9,
        0x44, 0x55, 0x01, 0xff,
    ];
    assert!(agree::<Item>(&item));
    assert!(!agree::<Strict>(&[
        0xbf, 0x7f, 0x61, b'n', 0xff, 0x01, 0xff
    ]));
    // A chunk of the wrong type, and a missing break.
    assert!(!agree::<String>(&[0x7f, 0x41, b'a', 0xff]));
    assert!(!agree::<Vec<u8>>(&[0x9f, 0x01]));
    // Nested indefinite chunks: accepted, as ciborium does.
    assert!(agree::<String>(&[0x7f, 0x7f, 0x61, b'a', 0xff, 0xff]));
}

#[test]
fn wrong_tags() {
    let reference = to_cbor(&Required::<u64, REF_TAG>(9));
    assert!(agree::<Required<u64, REF_TAG>>(&reference));
    assert!(!agree::<Required<u64, 7>>(&reference));
    // No tag at all, and a tag around the wrong item.
    assert!(!agree::<Required<u64, REF_TAG>>(&[0x09]));
    assert!(!agree::<Required<u64, REF_TAG>>(&[
        0xd9, 0x44, 0x55, 0x61, b'x'
    ]));
    // Two tags: the protocol reads one, then a u64 skips the other.
    assert!(agree::<Required<u64, REF_TAG>>(&[
        0xd9, 0x44, 0x55, 0xc1, 0x09
    ]));
    // Most types skip tags; an Option does not look through them.
    assert!(agree::<u64>(&[0xc1, 0xc1, 0x09]));
    assert!(!agree::<Option<u64>>(&[0xc1, 0xf6]));
    // Bignums: read by integer types, a tag in a Value when too long.
    assert!(agree::<u128>(&[0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert!(agree::<i128>(&[0xc3, 0x42, 1, 0]));
    assert!(agree::<Value>(&[0xc2, 0x42, 1, 0]));
    let mut long = vec![0xc2, 0x51];
    long.extend_from_slice(&[1; 17]);
    assert!(!agree::<u128>(&long));
    assert!(agree::<Value>(&long));
    assert!(!agree::<u64>(&[0xc2, 0x61, b'a']));
}

#[test]
fn over_deep_nesting_is_an_error() {
    // Unoptimized frames are several KiB per level: give both decoders the
    // room that 256 levels take there (a release build fits in 2 MiB).
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(deep_nesting)
        .expect("a thread")
        .join()
        .expect("no panic");
}

fn deep_nesting() {
    for depth in [255usize, 256, 257, 100_000] {
        let mut arrays = vec![0x81; depth];
        arrays.push(0x00);
        let ok = depth <= 256;
        assert_eq!(agree::<Value>(&arrays), ok, "{depth}");
        assert_eq!(agree::<IgnoredAny>(&arrays), ok, "{depth}");
        let mut tags = vec![0xc1; depth];
        tags.push(0x00);
        agree::<Value>(&tags);
        let mut maps = vec![0xa1, 0x00];
        for _ in 1..depth.min(400) {
            maps.extend_from_slice(&[0xa1, 0x00]);
        }
        maps.push(0x00);
        agree::<Value>(&maps);
        agree::<Vec<Shape>>(&arrays);
    }
    assert_eq!(
        from_slice::<Value>(&[0x81; 300]).unwrap_err(),
        Error::RecursionLimitExceeded
    );
}

#[test]
fn invalid_utf8_is_an_error() {
    for bytes in [
        &[0x61, 0xff][..],
        &[0x62, 0xc3, 0x28],
        &[0x63, 0xe2, 0x82, 0x28],
        &[0x7f, 0x61, 0xe2, 0x62, 0x82, 0xac, 0xff], // a character across chunks
        &[0x61, 0x80],
        &[0x64, 0xed, 0xa0, 0x80, 0x61], // a surrogate
    ] {
        for ok in [
            agree::<String>(bytes),
            agree::<Value>(bytes),
            agree::<char>(bytes),
            agree::<Shape>(bytes),
        ] {
            assert!(!ok, "{bytes:02x?}");
        }
    }
    assert!(matches!(
        from_slice::<String>(&[0x61, 0xff]),
        Err(Error::Syntax(0))
    ));
}

#[test]
fn out_of_range_integers_are_errors() {
    let cases: &[(&[u8], bool, bool, bool, bool)] = &[
        // bytes, as u8, as i8, as u64, as i64
        (&[0x18, 0xff], true, false, true, true),
        (&[0x19, 0x01, 0x00], false, false, true, true),
        (&[0x38, 0x7f], false, true, false, true),
        (&[0x38, 0x80], false, false, false, true),
        (
            &[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            false,
            false,
            true,
            false,
        ),
        (
            &[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            false,
            false,
            false,
            true,
        ),
        (
            &[0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0],
            false,
            false,
            false,
            false,
        ),
    ];
    for (bytes, u8_ok, i8_ok, u64_ok, i64_ok) in cases {
        assert_eq!(agree::<u8>(bytes), *u8_ok, "{bytes:02x?}");
        assert_eq!(agree::<i8>(bytes), *i8_ok, "{bytes:02x?}");
        assert_eq!(agree::<u64>(bytes), *u64_ok, "{bytes:02x?}");
        assert_eq!(agree::<i64>(bytes), *i64_ok, "{bytes:02x?}");
        assert!(agree::<i128>(bytes));
        assert!(agree::<Value>(bytes));
    }
    // Floats and integers do not convert into each other.
    assert!(!agree::<f64>(&[0x01]));
    assert!(!agree::<u64>(&[0xf9, 0x3c, 0x00]));
    assert!(agree::<f32>(&[
        0xfb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18
    ]));
}

#[test]
fn odd_corners() {
    // Reserved additional information, a lone break, unknown simple values.
    for bytes in [
        &[0x1c][..],
        &[0xff],
        &[0xf0],
        &[0xf8, 0x20],
        &[0x1f],
        &[0xdf, 0x00],
    ] {
        assert!(!agree::<Value>(bytes), "{bytes:02x?}");
    }
    // A unit variant in a map leaves its value unread; a tuple reads only
    // what it needs; trailing bytes are the caller's to report.
    assert!(agree::<Shape>(&[0xa1, 0x64, b'U', b'n', b'i', b't', 0xf6]));
    assert!(agree::<(u8, u8)>(&[0x83, 1, 2, 3]));
    assert_eq!(from_slice::<(u8, u8)>(&[0x83, 1, 2, 3]).unwrap().1, 3);
    // A byte string read as a sequence, and an array as bytes.
    assert!(agree::<Vec<u8>>(&[0x43, 1, 2, 3]));
    assert!(agree::<(u8, u8)>(&[0x42, 1, 2]));
    // Text longer than ciborium's scratch buffer: a String, not a &str.
    let mut long = vec![0x79, 0x10, 0x01];
    long.extend(std::iter::repeat_n(b'x', 4097));
    assert!(agree::<String>(&long));
    assert!(agree::<Value>(&long));
    assert!(!agree::<Strict>(&[&[0xa1][..], &long, &[0x01]].concat()));
    // A struct is a map, not an array.
    assert!(!agree::<Strict>(&[0x81, 0x01]));
    assert!(agree::<Strict>(&[0xa1, 0x61, b'n', 0x01]));
    assert!(!agree::<Strict>(&[0xa1, 0x61, b'm', 0x01]));
    // A lone tag, undefined, and a huge length that is not there.
    assert!(!agree::<Value>(&[0xc1]));
    assert!(agree::<Option<u8>>(&[0xf7]));
    assert!(!agree::<Vec<u8>>(&[
        0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
    ]));
    assert!(!agree::<String>(&[
        0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
    ]));
}
