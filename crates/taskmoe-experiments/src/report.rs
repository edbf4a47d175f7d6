//! A report: markdown for people, JSON for programs, SVG plots, written into one folder.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Context, Result};

/// How the tables name the bag-of-words baseline ([`taskmoe_eval::bag_of_words()`]).
pub const BOW: &str = "bag-of-words baseline";

/// What an experiment produced.
#[derive(Clone, Debug)]
pub struct Report {
    /// The experiment's name (`low-resource`, `unseen`, `unrelated`): the folder's name.
    pub name: &'static str,
    /// `report.md`: what was run, the tables, the plots, the verdicts.
    pub markdown: String,
    /// `results.json`: every number of the tables, per seed.
    pub json: serde_json::Value,
    /// SVG plots: file name and document.
    pub plots: Vec<(String, String)>,
    /// What the command prints: the main tables and the primary contrast.
    pub summary: String,
    /// The claim's primary contrast (also under `primary` in `results.json`), decided with
    /// the other claims' (`verdicts.rs`).
    pub primary: Option<crate::stats::PrimaryContrast>,
}

impl Report {
    /// Appends a `## {title}` section to the markdown.
    pub fn append_section(&mut self, title: &str, text: &str) {
        let _ = writeln!(self.markdown, "## {title}\n\n{text}\n");
    }

    /// Writes `report.md`, `results.json` and the plots into `dir` (each file atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(&dir.join("report.md"), &self.markdown)?;
        let mut json = self.json.clone();
        if let Some(obj) = json.as_object_mut() {
            obj.insert("primary".into(), serde_json::to_value(&self.primary)?);
            obj.insert(
                "provenance".into(),
                crate::preregistration::provenance_json(),
            );
        }
        write_atomic(
            &dir.join("results.json"),
            &(serde_json::to_string_pretty(&json)? + "\n"),
        )?;
        for (name, svg) in &self.plots {
            write_atomic(&dir.join(name), svg)?;
        }
        Ok(())
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// A markdown table; the first column is left-aligned, the others right-aligned.
pub fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let align: Vec<&str> = (0..header.len())
        .map(|i| if i == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

/// Strings from string slices, for table headers.
pub fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_a_rule_and_one_line_per_row() {
        let t = md_table(
            &header(&["arm", "accuracy"]),
            &[vec!["dense".into(), "0.7".into()]],
        );
        assert_eq!(t, "| arm | accuracy |\n|---|---:|\n| dense | 0.7 |\n");
    }
}
