//! The `RESULT {json}` lines of the workload runner: a `serde_json` object
//! printed with sorted keys and the separators of Python's `json.dumps`
//! (`", "` and `": "`), as the Python harness prints them.

use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{Map, Value};
use std::fmt;
use std::io::{self, Write};

/// A JSON object printed with its keys sorted.
#[derive(Debug, Default, Clone)]
pub struct Record(Map<String, Value>);

impl Record {
    /// An empty record.
    pub fn new() -> Record {
        Record::default()
    }

    /// Sets `key` (replacing an earlier value). A float that is not finite
    /// becomes `null`.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Record {
        self.0.insert(key.to_string(), value.into());
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The record's `verified` field, when it has one.
    pub fn verified(&self) -> Option<bool> {
        self.get("verified").and_then(Value::as_bool)
    }
}

/// serde_json's compact output with Python's separators (the default
/// methods write the values).
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The map is ordered by key (serde_json without `preserve_order`).
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
        self.0.serialize(&mut ser).map_err(|_| fmt::Error)?;
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_python_json_dumps_sorted() {
        let mut r = Record::new();
        r.set("workload", "W1")
            .set("n", 3u64)
            .set("seconds", 1.5)
            .set("server_rss_kb", None::<u64>)
            .set("per_client", vec![1u64, 2]);
        assert_eq!(
            r.to_string(),
            r#"{"n": 3, "per_client": [1, 2], "seconds": 1.5, "server_rss_kb": null, "workload": "W1"}"#
        );
    }
}
