//! JSON Lines, as `Dataset.to_json(path)` of HF `datasets` writes them: one object per line.

use super::{utf8, Sink, Value};
use crate::error::Result;

/// Reads a JSONL file into `sink`. Each non-empty line must be a JSON object; fields are looked
/// up by name at its top level.
pub(crate) fn read(bytes: &[u8], sink: &mut Sink<'_>) -> Result<()> {
    let text = utf8(sink, bytes)?;
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let example = match serde_json::from_str::<serde_json::Value>(raw) {
            Err(e) => Err(sink.malformed(line, format!("invalid JSON: {e}"))),
            Ok(serde_json::Value::Object(map)) => {
                sink.example(line, |field| map.get(field).map(Value::Json))
            }
            Ok(other) => Err(sink.malformed(
                line,
                format!("expected a JSON object, found {}", json_kind(&other)),
            )),
        };
        sink.push(example)?;
    }
    Ok(())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
