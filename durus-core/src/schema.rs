//! Schema evolution at the record level: class aliases, unknown fields
//! kept and written back, and decode errors that name the field.
//!
//! A record's state is a CBOR map from field names to values. The field
//! names a type knows are learned once per type, from the list serde passes
//! to `deserialize_struct` (a probing deserializer reads it and stops). When
//! a record's map holds keys outside that list (fields written by a newer
//! version of the program, or fields this version removed), those entries
//! are kept, as their raw CBOR bytes, beside the object's state, and
//! appended to the map when this program writes the object again. A record
//! with no unknown keys costs one pass over its top-level keys and no
//! allocation.
//!
//! Where the keys cannot be checked against a fixed list (a type with a
//! `#[serde(flatten)]` field), the record's top-level keys are remembered
//! instead, and writing the object is refused, with an error naming the
//! class and the keys, when the new state would drop any of them.
//!
//! See docs/RECORDS.md ("Unknown fields") and docs/SCHEMA.md.

use crate::cbor_de;
use crate::encoding;
use crate::error::EncodingError;
use crate::oid::Oid;
use crate::persistent::{PRef, Persistent};
use serde::de::{self, DeserializeOwned, Visitor};
use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// What a record held that the object's type does not store itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Unknown {
    /// Top-level map entries whose keys the type does not know, as they
    /// were in the record (key then value, raw CBOR), in record order.
    entries: Vec<u8>,
    /// How many entries `entries` holds.
    count: u64,
    /// For flattened types: every top-level key of the record as loaded.
    loaded_keys: Vec<String>,
}

impl Unknown {
    /// The names of the unknown fields (`?` for a key that is not text).
    fn names(&self) -> Vec<String> {
        encoding::raw_entries(&self.entries)
            .map(|e| e.key.unwrap_or("?").to_string())
            .collect()
    }
}

// ---------------------------------------------------------------------
// Learning a type's fields

/// The stop signal of [`Probe`]: the field list, or `None` when the type
/// is not deserialized as a struct.
#[derive(Debug)]
struct Probed(Option<&'static [&'static str]>);

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Probed(None)
    }
}

/// A deserializer that only reads what the type asks for first: the field
/// list of `deserialize_struct`. It never calls the visitor.
struct Probe;

impl<'de> de::Deserializer<'de> for Probe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A hasher for `TypeId`s, which are already well mixed: cheaper than
/// SipHash on this path, which every load takes.
#[derive(Default)]
struct TypeIdHasher(u64);

impl std::hash::Hasher for TypeIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FieldCache =
    HashMap<TypeId, Option<&'static [&'static str]>, std::hash::BuildHasherDefault<TypeIdHasher>>;

thread_local! {
    static FIELDS: RefCell<FieldCache> = RefCell::new(FieldCache::default());
}

/// The top-level field names of `T`, learned once per type and thread;
/// `None` when `T` is not deserialized as a struct.
fn fields_of<T: DeserializeOwned + 'static>() -> Option<&'static [&'static str]> {
    let id = TypeId::of::<T>();
    if let Some(known) = FIELDS.with(|f| f.borrow().get(&id).copied()) {
        return known;
    }
    let fields = match T::deserialize(Probe) {
        Err(Probed(fields)) => fields,
        Ok(_) => None,
    };
    FIELDS.with(|f| f.borrow_mut().insert(id, fields));
    fields
}

/// True when `key` is one of `fields`. Records are written in the order of
/// the fields, so the search starts where the last one matched.
fn known(fields: &[&str], key: &[u8], cursor: &mut usize) -> bool {
    let tail = fields.get(*cursor..).unwrap_or_default();
    if let Some(i) = tail.iter().position(|f| f.as_bytes() == key) {
        *cursor += i + 1;
        return true;
    }
    fields.iter().any(|f| f.as_bytes() == key)
}

// ---------------------------------------------------------------------
// Decoding and encoding

/// True when `found` is `T`'s class name or one of its aliases.
fn is_class_of<T: Persistent>(found: &str) -> bool {
    found == T::CLASS_NAME || T::CLASS_ALIASES.contains(&found)
}

/// Decodes a record's data into a `T`, keeping what `T` does not know.
pub(crate) fn decode<T: Persistent>(
    oid: Oid,
    data: &[u8],
) -> Result<(T, Option<Box<Unknown>>), EncodingError> {
    let (found, state) = encoding::split(oid, data)?;
    if !is_class_of::<T>(found) {
        return Err(EncodingError::WrongClass {
            oid,
            expected: T::CLASS_NAME.to_string(),
            found: found.to_string(),
        });
    }
    let unknown = unknown_entries::<T>(state);
    let (value, used): (T, usize) = match cbor_de::from_slice(state) {
        Ok(decoded) => decoded,
        Err(e) => return Err(state_error::<T>(oid, state, e)),
    };
    if used < state.len() {
        return Err(EncodingError::Decode {
            oid,
            message: format!("{} bytes after the state", state.len() - used),
        });
    }
    Ok((value, unknown))
}

/// The entries of `state` that `T` does not know, if any.
fn unknown_entries<T: Persistent>(state: &[u8]) -> Option<Box<Unknown>> {
    if T::FLATTENED {
        let entries = encoding::map_entries(state)?;
        let keys = entries.filter_map(|e| e.key.map(str::to_string)).collect();
        return Some(Box::new(Unknown {
            loaded_keys: keys,
            ..Unknown::default()
        }));
    }
    let mut keys = encoding::map_keys(state)?;
    let fields = fields_of::<T>()?;
    let mut cursor = 0;
    let mut out: Option<Box<Unknown>> = None;
    while let Some(key) = keys.next_key() {
        let keep = match key {
            Some(key) => !known(fields, key, &mut cursor),
            None => true,
        };
        if keep {
            // Malformed bytes: the decode that follows reports them.
            let bytes = keys.entry()?;
            let u = out.get_or_insert_with(Box::default);
            u.entries.extend_from_slice(bytes);
            u.count += 1;
        }
    }
    out
}

/// Encodes `state` as `T`'s record data, with the unknown fields it was
/// loaded with.
pub(crate) fn encode<T: Persistent>(
    oid: Option<Oid>,
    state: &T,
    unknown: Option<&Unknown>,
) -> Result<Vec<u8>, EncodingError> {
    let mut out = encoding::encode(oid, T::CLASS_NAME, state)?;
    let Some(unknown) = unknown else {
        return Ok(out);
    };
    let state_len = encoding::split(oid.unwrap_or_default(), &out)
        .map(|(_, state)| state.len())
        .unwrap_or(0);
    let start = out.len() - state_len;
    if !unknown.loaded_keys.is_empty() {
        let written: Vec<&str> = encoding::map_entries(out.get(start..).unwrap_or_default())
            .map(|entries| entries.filter_map(|e| e.key).collect())
            .unwrap_or_default();
        let dropped: Vec<String> = unknown
            .loaded_keys
            .iter()
            .filter(|k| !written.contains(&k.as_str()))
            .cloned()
            .collect();
        if !dropped.is_empty() {
            return Err(EncodingError::UnknownFields {
                oid,
                class: T::CLASS_NAME.to_string(),
                fields: dropped,
                reason: "its type has a #[serde(flatten)] field and the new state would drop them"
                    .into(),
            });
        }
    }
    if unknown.count == 0 {
        return Ok(out);
    }
    // A key the state now writes itself (a field serde serializes but does
    // not read, such as a `skip_deserializing` one) is not written twice.
    let written: Vec<&[u8]> = match encoding::map_keys(out.get(start..).unwrap_or_default()) {
        Some(mut keys) => std::iter::from_fn(|| keys.next_key()).flatten().collect(),
        None => Vec::new(),
    };
    let mut kept = Vec::with_capacity(unknown.entries.len());
    let mut count = 0;
    for entry in encoding::raw_entries(&unknown.entries) {
        if entry.key.is_some_and(|k| written.contains(&k.as_bytes())) {
            continue;
        }
        kept.extend_from_slice(entry.bytes);
        count += 1;
    }
    if count == 0 {
        return Ok(out);
    }
    if !encoding::append_to_map(&mut out, start, &kept, count) {
        return Err(EncodingError::UnknownFields {
            oid,
            class: T::CLASS_NAME.to_string(),
            fields: unknown.names(),
            reason: "the new state is not a map, so they cannot be kept".into(),
        });
    }
    Ok(out)
}

/// A decode error in our words: the oid, the class and, when it can be
/// found, the field.
fn state_error<T: Persistent>(oid: Oid, state: &[u8], e: cbor_de::Error) -> EncodingError {
    let message = match e {
        cbor_de::Error::Semantic(_, m) => m,
        cbor_de::Error::Syntax(at) => format!("malformed CBOR at byte {at} of the state"),
        cbor_de::Error::Eof => "the state ends early".into(),
        cbor_de::Error::RecursionLimitExceeded => "the state nests too deeply".into(),
    };
    let quoted = |prefix: &str| -> Option<String> {
        let rest = message.strip_prefix(prefix)?;
        let end = rest.find('`')?;
        Some(rest.get(..end)?.to_string())
    };
    if let Some(field) = quoted("missing field `") {
        return EncodingError::State {
            oid,
            class: T::CLASS_NAME.to_string(),
            field: Some(field),
            message: "missing from the record (a field added to a stored type needs \
                      #[serde(default)])"
                .into(),
        };
    }
    if let Some(field) = quoted("unknown field `") {
        return EncodingError::State {
            oid,
            class: T::CLASS_NAME.to_string(),
            field: Some(field),
            message: "not a field of this type, which denies unknown fields \
                      (#[serde(deny_unknown_fields)])"
                .into(),
        };
    }
    let field = quoted("duplicate field `").or_else(|| failing_field::<T>(state));
    EncodingError::State {
        oid,
        class: T::CLASS_NAME.to_string(),
        field,
        message,
    }
}

/// The first top-level field whose value `T` cannot decode: decodes maps
/// of the first k entries until the error is something other than a
/// missing field. Only runs after a failure.
fn failing_field<T: Persistent>(state: &[u8]) -> Option<String> {
    let mut prefix = Vec::new();
    let mut count = 0u64;
    for entry in encoding::map_entries(state)? {
        prefix.extend_from_slice(entry.bytes);
        count += 1;
        let mut map = encoding::map_head(count);
        map.extend_from_slice(&prefix);
        match cbor_de::from_slice::<T>(&map) {
            Ok(_) => {}
            Err(cbor_de::Error::Semantic(_, m)) if m.starts_with("missing field") => {}
            Err(_) => return entry.key.map(str::to_string),
        }
    }
    None
}

// ---------------------------------------------------------------------
// What a program can see of unknown fields

/// The names of the fields the object's record holds that its type does not
/// know, as last loaded (empty for a new object or a ghost).
pub fn unknown_fields<T: Persistent>(obj: &PRef<T>) -> Vec<String> {
    obj.0
        .unknown
        .borrow()
        .as_deref()
        .map(Unknown::names)
        .unwrap_or_default()
}

/// Drops the unknown fields of an object (loading it first), so that its
/// next commit writes only the fields its type knows: the last step of
/// removing a field (docs/SCHEMA.md). Marks the object changed when there
/// was something to drop.
pub fn forget_unknown_fields<T: Persistent>(obj: &PRef<T>) -> crate::Result<Vec<String>> {
    drop(obj.read()?);
    let names = unknown_fields(obj);
    if !names.is_empty() {
        let guard = obj.write()?;
        obj.0.unknown.borrow_mut().take();
        drop(guard);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Two {
        a: u32,
        #[serde(rename = "bee")]
        b: String,
        #[serde(skip)]
        c: u8,
    }

    #[test]
    fn a_struct_s_fields_are_learned_once() {
        assert_eq!(fields_of::<Two>(), Some(&["a", "bee"][..]));
        assert_eq!(fields_of::<Two>(), Some(&["a", "bee"][..]));
        assert_eq!(fields_of::<Vec<u8>>(), None);
        assert_eq!(fields_of::<std::collections::BTreeMap<String, u8>>(), None);
    }

    #[test]
    fn known_keys_in_any_order() {
        let fields = ["a", "b", "c"];
        let mut cursor = 0;
        assert!(known(&fields, b"a", &mut cursor));
        assert!(known(&fields, b"c", &mut cursor));
        assert!(known(&fields, b"b", &mut cursor));
        assert!(!known(&fields, b"d", &mut cursor));
    }
}
