//! Floats in JSON logs: finite values as numbers, NaN and infinities as the strings `"NaN"`,
//! `"inf"` and `"-inf"` (serde_json would write `null`, which reads as "missing").

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::Serializer;

/// The text of a non-finite value.
fn name(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// Serializes one float (for `#[serde(serialize_with)]`).
pub(crate) fn f64<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_str(name(*v))
    }
}

/// Serializes a name -> float map (for `#[serde(serialize_with)]`).
pub(crate) fn map<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
    let mut out = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        if v.is_finite() {
            out.serialize_entry(k, v)?;
        } else {
            out.serialize_entry(k, name(*v))?;
        }
    }
    out.end()
}
