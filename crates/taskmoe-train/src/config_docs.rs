//! Each key's documentation, for `taskmoe config show`: taken from the doc comments of the
//! configuration structs themselves (their source is embedded), so the printed tree and the
//! rustdoc can never say different things.

use std::collections::BTreeMap;

/// The table path of each configuration struct in the run configuration tree.
const TABLES: &[(&str, &str)] = &[
    ("", "RunConfig"),
    ("model", "ModelConfig"),
    ("model.moe", "MoeConfig"),
    ("model.moe.router", "RouterConfig"),
    ("data", "DataConfig"),
    ("data.synthetic", "SyntheticConfig"),
    ("data.synthetic.families", "FamilyConfig"),
    ("data.synthetic.extra_tasks", "ExtraTaskConfig"),
    ("train", "TrainConfig"),
    ("init", "InitConfig"),
    ("optim", "OptimConfig"),
    ("schedule", "ScheduleConfig"),
    ("checkpoint", "CheckpointConfig"),
    ("eval", "EvalConfig"),
    ("runtime", "RuntimeConfig"),
    ("output", "OutputConfig"),
];

/// The sources the structs are defined in.
fn sources() -> [&'static str; 7] {
    [
        include_str!("run_config.rs"),
        include_str!("config_sections.rs"),
        taskmoe_optim::CONFIG_SOURCE,
        taskmoe_model::CONFIG_SOURCE,
        taskmoe_experts::CONFIG_SOURCE,
        taskmoe_router::CONFIG_SOURCE,
        taskmoe_data::synthetic::CONFIG_SOURCE,
    ]
}

/// The doc comment of every field of every `pub struct` in `source`, by `(struct, field)`,
/// joined into one paragraph.
fn field_docs(source: &str) -> BTreeMap<(String, String), String> {
    let mut docs = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut pending: Vec<&str> = Vec::new();
    for line in source.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub struct ") {
            current = rest.strip_suffix(" {").map(|n| n.trim().to_string());
            pending.clear();
        } else if t == "}" {
            current = None;
        } else if let Some(doc) = t.strip_prefix("///") {
            pending.push(doc.trim());
        } else if t.starts_with("#[") {
            // Attributes between a doc and its field keep the doc.
        } else if let (Some(name), Some(field)) = (&current, t.strip_prefix("pub ")) {
            if let Some((field, _)) = field.split_once(':') {
                docs.insert((name.clone(), field.trim().to_string()), pending.join(" "));
            }
            pending.clear();
        } else {
            pending.clear();
        }
    }
    docs
}

/// The documentation of every key of the run configuration, by dotted key (`train.steps`,
/// `model.moe.router.k`); a table's own key (`model.moe`) holds the doc of the field that
/// holds it.
pub(crate) fn key_docs() -> BTreeMap<String, String> {
    let mut by_field = BTreeMap::new();
    for source in sources() {
        by_field.extend(field_docs(source));
    }
    let mut out = BTreeMap::new();
    for (table, name) in TABLES {
        for ((owner, field), doc) in &by_field {
            if owner == name {
                let key = match table.is_empty() {
                    true => field.clone(),
                    false => format!("{table}.{field}"),
                };
                out.insert(key, doc.clone());
            }
        }
    }
    out
}

/// `toml` (a resolved configuration as [`crate::RunConfig::to_toml`] writes it) with each
/// key's and table's documentation as `#` comments above it, wrapped at `width` columns. The
/// result is still the same TOML.
pub fn annotate(toml: &str, width: usize) -> String {
    let docs = key_docs();
    let mut out = String::new();
    let mut table = String::new();
    for line in toml.lines() {
        let t = line.trim();
        let key = if let Some(name) = t
            .strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        {
            table = name.to_string();
            Some(name.to_string())
        } else {
            t.split_once('=').map(|(k, _)| match table.is_empty() {
                true => k.trim().to_string(),
                false => format!("{table}.{}", k.trim()),
            })
        };
        if let Some(doc) = key.as_ref().and_then(|k| docs.get(k)) {
            if t.starts_with('[') && !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            for wrapped in wrap(doc, width.saturating_sub(2).max(20)) {
                out.push_str("# ");
                out.push_str(&wrapped);
                out.push('\n');
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `text` in lines of at most `width` characters (a longer word stands alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunConfig;

    #[test]
    fn every_key_of_the_resolved_default_tree_has_its_doc() {
        let cfg = RunConfig::default();
        let table = toml::Table::try_from(&cfg).unwrap();
        let docs = key_docs();
        let mut missing = Vec::new();
        fn walk(
            t: &toml::Table,
            prefix: &str,
            docs: &BTreeMap<String, String>,
            m: &mut Vec<String>,
        ) {
            for (k, v) in t {
                let key = match prefix.is_empty() {
                    true => k.clone(),
                    false => format!("{prefix}.{k}"),
                };
                match v {
                    // Maps keyed by task name and tagged tables document their owner only.
                    toml::Value::Table(inner)
                        if ![
                            "data.mixture",
                            "data.train_examples",
                            "train.task_weights",
                            "init.task_init",
                            "init.routing_from",
                        ]
                        .contains(&key.as_str()) =>
                    {
                        walk(inner, &key, docs, m)
                    }
                    _ => {}
                }
                if docs.get(&key).is_none_or(|d| d.is_empty()) {
                    m.push(key);
                }
            }
        }
        walk(&table, "", &docs, &mut missing);
        assert!(missing.is_empty(), "keys without a doc: {missing:?}");
    }

    #[test]
    fn the_annotated_tree_reads_back_as_the_same_configuration() {
        let cfg = RunConfig::default();
        let text = annotate(&cfg.to_toml(), 96);
        assert!(
            text.contains("# Optimizer steps. Default 4000.\nsteps = 4000"),
            "{text}"
        );
        assert!(
            text.contains("# Clip the global gradient L2 norm"),
            "{text}"
        );
        assert!(
            text.contains("# The router:"),
            "model.moe.router's doc: {text}"
        );
        assert!(text.lines().all(|l| l.len() <= 96 || !l.starts_with('#')));
        let back: RunConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
    }
}
