//! A record as JSON: its class and its CBOR state, with references to
//! other objects shown as `{"$ref": oid}`. Records written by Python Durus
//! (pickles) are named as such with their class, not decoded.

use ciborium::Value as Cbor;
use durus_core::error::{EncodingError, Result};
use durus_core::internals::encoding::{self, REF_TAG};
use durus_core::internals::record;
use serde_json::{json, Map, Value};

/// The JSON form of one record.
///
/// ```text
/// {"oid": 12, "class": "app::Book", "state": {...}, "refs": [3, 4]}
/// {"oid": 0, "class": "durus.persistent_dict.PersistentDict",
///  "python_pickle": true, "data_bytes": 120, "refs": [...]}
/// ```
pub fn record_json(rec: &[u8]) -> Result<Value> {
    let view = record::unpack(rec)?;
    let refs: Vec<u64> = view.ref_oids().map(|o| o.0).collect();
    match encoding::split(view.oid, view.data) {
        Ok((class, state)) => {
            let mut reader = state;
            let cbor: Cbor =
                ciborium::from_reader(&mut reader).map_err(|e| EncodingError::Decode {
                    oid: view.oid,
                    message: e.to_string(),
                })?;
            Ok(json!({
                "oid": view.oid.0,
                "class": class,
                "state": cbor_json(&cbor),
                "refs": refs,
            }))
        }
        Err(EncodingError::Foreign { class, .. }) => Ok(json!({
            "oid": view.oid.0,
            "class": class,
            "python_pickle": true,
            "data_bytes": view.data.len(),
            "refs": refs,
        })),
        Err(e) => Err(e.into()),
    }
}

/// Converts a CBOR value to JSON: references become `{"$ref": n}`, byte
/// strings `{"$bytes": "hex"}`, maps with non-text keys `{"$map": [[k, v], ...]}`.
fn cbor_json(v: &Cbor) -> Value {
    match v {
        Cbor::Integer(i) => {
            let n = i128::from(*i);
            if let Ok(n) = i64::try_from(n) {
                Value::from(n)
            } else if let Ok(n) = u64::try_from(n) {
                Value::from(n)
            } else {
                Value::from(n.to_string())
            }
        }
        Cbor::Bytes(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            json!({ "$bytes": hex })
        }
        Cbor::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Cbor::Text(s) => Value::from(s.as_str()),
        Cbor::Bool(b) => Value::from(*b),
        Cbor::Null => Value::Null,
        Cbor::Tag(REF_TAG, inner) => json!({ "$ref": cbor_json(inner) }),
        Cbor::Tag(tag, inner) => json!({ "$tag": tag, "value": cbor_json(inner) }),
        Cbor::Array(items) => Value::Array(items.iter().map(cbor_json).collect()),
        Cbor::Map(pairs) => {
            if pairs.iter().all(|(k, _)| matches!(k, Cbor::Text(_))) {
                let mut m = Map::new();
                for (k, val) in pairs {
                    if let Cbor::Text(k) = k {
                        m.insert(k.clone(), cbor_json(val));
                    }
                }
                Value::Object(m)
            } else {
                let list = pairs
                    .iter()
                    .map(|(k, val)| Value::Array(vec![cbor_json(k), cbor_json(val)]))
                    .collect();
                json!({ "$map": Value::Array(list) })
            }
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use durus_core::oid::Oid;

    #[test]
    fn references_and_pickles() {
        let mut state = Vec::new();
        ciborium::into_writer(
            &Cbor::Map(vec![
                (Cbor::Text("n".into()), Cbor::Integer(5.into())),
                (
                    Cbor::Text("next".into()),
                    Cbor::Tag(REF_TAG, Box::new(Cbor::Integer(12.into()))),
                ),
            ]),
            &mut state,
        )
        .unwrap();
        let mut data = encoding::encode(None, "app::Item", &()).unwrap();
        data.truncate(data.len() - 1);
        data.extend_from_slice(&state);
        let rec = record::pack(Oid(3), &data, &[Oid(12)]).unwrap();
        assert_eq!(
            record_json(&rec).unwrap(),
            json!({"oid": 3, "class": "app::Item", "state": {"n": 5, "next": {"$ref": 12}}, "refs": [12]})
        );
        let pickle = b"\x80\x02cdurus.persistent_dict\nPersistentDict\nq\x00.";
        let rec = record::pack(Oid(0), pickle, &[]).unwrap();
        let v = record_json(&rec).unwrap();
        assert_eq!(v["class"], "durus.persistent_dict.PersistentDict");
        assert_eq!(v["python_pickle"], true);
    }
}
