//! The `__metadata__` of safetensors files. tch writes none, and `transformers` (through
//! `safetensors.torch`) expects `{"format": "pt"}` in a PyTorch checkpoint; [`set_metadata`]
//! rewrites a file's header with the given entries and leaves its tensor bytes as they were.
//!
//! Layout (safetensors format): 8 bytes little-endian header length `n`, `n` bytes of JSON
//! (tensor name -> dtype, shape, data offsets relative to the data section, plus the optional
//! `__metadata__` string map), then the data section.

use std::path::Path;

use crate::error::{ModelError, Result};

/// Rewrites the header of the safetensors file `path` in place so that its `__metadata__`
/// holds `entries` (replacing any earlier metadata). The data section is copied unchanged.
pub fn set_metadata(path: &Path, entries: &[(&str, &str)]) -> Result<()> {
    let (bytes, n) = read_file(path)?;
    let mut json: serde_json::Map<String, serde_json::Value> = parse_header(path, &bytes, n)?;
    let meta: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    json.insert("__metadata__".into(), serde_json::Value::Object(meta));
    let mut text = serde_json::to_vec(&json).expect("a JSON map serializes");
    // The data section starts 8-byte aligned, as safetensors' own writer keeps it.
    while (8 + text.len()) % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The `__metadata__` entries of a safetensors file (empty when it has none).
pub fn read_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    let (bytes, n) = read_file(path)?;
    let json: serde_json::Value = parse_header(path, &bytes, n)?;
    Ok(json
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default())
}

/// An error naming `path` as a malformed safetensors file.
fn malformed(path: &Path, message: String) -> ModelError {
    ModelError::Checkpoint {
        path: path.to_path_buf(),
        problems: vec![message],
    }
}

/// The bytes of the safetensors file `path` and the length `n` of its JSON header.
fn read_file(path: &Path) -> Result<(Vec<u8>, usize)> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| malformed(path, "shorter than a safetensors header".into()))?;
    Ok((bytes, n))
}

/// The JSON header (`n` bytes after the length) of the safetensors file `path`, as `T`.
fn parse_header<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8], n: usize) -> Result<T> {
    let header = n
        .checked_add(8)
        .and_then(|end| bytes.get(8..end))
        .ok_or_else(|| malformed(path, "header length beyond the end of the file".into()))?;
    serde_json::from_slice(header).map_err(|e| malformed(path, format!("safetensors header: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header length near `usize::MAX` is named as running past the file's end; it must not
    /// overflow the arithmetic that checks it.
    #[test]
    fn a_header_length_that_overflows_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, bytes).unwrap();
        let err = read_metadata(&path).unwrap_err().to_string();
        assert!(
            err.contains("header length beyond the end of the file"),
            "{err}"
        );
        assert!(err.contains("bad.safetensors"), "{err}");
    }
}
