//! `--set key.path=value` overrides on a TOML table, and key-path errors.

use crate::error::{invalid, Result};

/// Applies `key.path=value` overrides in order. The value is parsed as a TOML value (`3`,
/// `1e-3`, `true`, `"text"`, `[1, 2]`, `{ kind = "uniform" }`); anything that does not parse
/// is taken as a bare string (`--set runtime.device=cpu`), and so is any value for a key whose
/// default (in `defaults`) is a string (`--set output.name=123`). Missing tables on the path
/// are created; whether the key exists is checked when the table is deserialized.
///
/// Setting the `kind` of a table listed in `tagged` (a serde-tagged enum such as
/// `data.mixture`) to another value clears that table first: the other kind's fields do not
/// apply to the new one.
pub fn apply_overrides(
    table: &mut toml::Table,
    overrides: &[String],
    defaults: &toml::Table,
    tagged: &[&str],
) -> Result<()> {
    for spec in overrides {
        let Some((path, raw)) = spec.split_once('=') else {
            return Err(invalid(
                "--set",
                format!("`{spec}` is not `key.path=value`"),
            ));
        };
        let keys: Vec<&str> = path.trim().split('.').collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(invalid("--set", format!("`{path}` is not a key path")));
        }
        let value = if lookup(defaults, &keys).is_some_and(toml::Value::is_str) {
            toml::Value::String(raw.trim().trim_matches('"').to_string())
        } else {
            parse_value(raw.trim())
        };
        let (last, parents) = keys.split_last().expect("split gives at least one key");
        let mut current = &mut *table;
        for (i, key) in parents.iter().enumerate() {
            let entry = current
                .entry(key.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            current = entry.as_table_mut().ok_or_else(|| {
                invalid(
                    "--set",
                    format!("`{}` is a value, not a section", keys[..=i].join(".")),
                )
            })?;
        }
        if *last == "kind"
            && tagged.contains(&parents.join(".").as_str())
            && current.get("kind") != Some(&value)
        {
            current.clear();
        }
        current.insert(last.to_string(), value);
    }
    Ok(())
}

/// Merges the layer `over` into `base` key by key: a table merges into the table beneath it
/// (only the keys it gives change), anything else (values, arrays, arrays of tables) replaces
/// what was there. A table listed in `tagged` (dotted path of a serde-tagged enum such as
/// `data.mixture`) whose `kind` differs from the one beneath replaces it whole.
pub fn merge_tables(base: &mut toml::Table, over: toml::Table, tagged: &[&str]) {
    merge_at(base, over, tagged, "");
}

fn merge_at(base: &mut toml::Table, over: toml::Table, tagged: &[&str], prefix: &str) {
    for (key, value) in over {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if !(tagged.contains(&path.as_str())
                    && o.get("kind").is_some_and(|k| b.get("kind") != Some(k))) =>
            {
                merge_at(b, o, tagged, &path)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The value at `keys` in `table`, if every step exists.
fn lookup<'a>(table: &'a toml::Table, keys: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = keys.split_last()?;
    let mut t = table;
    for k in parents {
        t = t.get(*k)?.as_table()?;
    }
    t.get(*last)
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Deserializes `table` into `T`, naming the key path of any error (`train.steps: invalid
/// type...`, `unknown key train.stepz, expected one of ...`) and `origin` (the file); an error
/// at a key one of `overrides` (`key.path=value`) set names that `--set` instead of the file.
pub fn deserialize_layered<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    origin: &str,
    overrides: &[String],
) -> Result<T> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().message().to_string();
        let (key, message) = match inner.strip_prefix("unknown field `") {
            Some(rest) => {
                let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
                // The path already ends with the unknown field.
                let key = if path.ends_with(field) {
                    path.clone()
                } else {
                    format!("{path}.{field}")
                };
                (key.clone(), format!("unknown key `{key}`{expected}"))
            }
            None => (path.clone(), format!("key `{path}`: {inner}")),
        };
        let given_by = overrides.iter().rev().find(|spec| {
            let set = spec
                .split_once('=')
                .map_or(spec.as_str(), |(k, _)| k)
                .trim();
            key == set || key.starts_with(&format!("{set}.")) || set.starts_with(&format!("{key}."))
        });
        match given_by {
            Some(spec) => invalid("config", format!("--set {spec}: {message}")),
            None => invalid("config", format!("{origin}: {message}")),
        }
    })
}
