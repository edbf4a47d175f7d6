//! The task registry: the tasks of a run, their ids, and where their data lives.
//!
//! A registry file is TOML with one `[[tasks]]` table per [`TaskSpec`]. A task's id is its
//! position in the file; the model's task embedding rows and heads follow that order, so
//! appending a task keeps every existing id.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{invalid, DataError, Result};
use crate::readers::{read_file, read_file_with, LabelMode, ReadOptions, ReadReport};
use crate::spec::TaskSpec;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    tasks: Vec<TaskSpec>,
}

/// An ordered set of uniquely named, validated task specs.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRegistry {
    specs: Vec<TaskSpec>,
}

impl TaskRegistry {
    /// A registry of `specs`, in order; each is validated and names must be unique.
    pub fn new(specs: Vec<TaskSpec>) -> Result<Self> {
        if specs.is_empty() {
            return Err(invalid("registry", "no tasks"));
        }
        let mut names = std::collections::BTreeSet::new();
        for spec in &specs {
            spec.validate()?;
            if !names.insert(spec.name.as_str()) {
                return Err(invalid(
                    "registry",
                    format!("task `{}` is declared twice", spec.name),
                ));
            }
        }
        Ok(TaskRegistry { specs })
    }

    /// Parses registry TOML; relative split paths stay as written.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::parse(text, "<string>")
    }

    /// Reads a registry file; relative split paths are resolved against its folder.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut registry = Self::parse(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        for spec in &mut registry.specs {
            for file in spec.splits.values_mut() {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        Ok(registry)
    }

    fn parse(text: &str, origin: &str) -> Result<Self> {
        let file: RegistryFile = toml::from_str(text).map_err(|source| DataError::Toml {
            origin: origin.to_string(),
            source,
        })?;
        Self::new(file.tasks)
    }

    /// The registry as TOML (the format [`TaskRegistry::from_toml_str`] reads).
    pub fn to_toml(&self) -> String {
        toml::to_string(&RegistryFile {
            tasks: self.specs.clone(),
        })
        .expect("task specs serialize to TOML")
    }

    /// The number of tasks.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether the registry is empty (never true: [`TaskRegistry::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// All specs, in id order.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.specs
    }

    /// The id of task `name`.
    pub fn id(&self, name: &str) -> Result<usize> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| DataError::UnknownTask(name.to_string()))
    }

    /// The spec of task `name`.
    pub fn get(&self, name: &str) -> Result<&TaskSpec> {
        self.id(name).map(|i| &self.specs[i])
    }

    /// The spec with id `id`, if any.
    pub fn by_id(&self, id: usize) -> Option<&TaskSpec> {
        self.specs.get(id)
    }

    /// The distinct families, in order of first appearance.
    pub fn families(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for s in &self.specs {
            if !out.contains(&s.family.as_str()) {
                out.push(&s.family);
            }
        }
        out
    }

    /// The `(id, spec)` of every task of `family`.
    pub fn family(&self, family: &str) -> Vec<(usize, &TaskSpec)> {
        self.specs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.family == family)
            .collect()
    }

    /// The `(id, spec)` of every task that is not held out (the training tasks).
    pub fn seen(&self) -> Vec<(usize, &TaskSpec)> {
        self.specs
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.held_out)
            .collect()
    }

    /// The `(id, spec)` of every held-out (unseen) task.
    pub fn held_out(&self) -> Vec<(usize, &TaskSpec)> {
        self.specs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.held_out)
            .collect()
    }

    /// The file of split `split` of task `name`.
    pub fn split_path(&self, name: &str, split: &str) -> Result<&PathBuf> {
        let spec = self.get(name)?;
        spec.splits.get(split).ok_or_else(|| {
            invalid(
                format!("task `{name}`"),
                format!(
                    "no split `{split}` (has {:?})",
                    spec.splits.keys().collect::<Vec<_>>()
                ),
            )
        })
    }

    /// Reads split `split` of task `name` with the reader its format calls for.
    pub fn read_split(&self, name: &str, split: &str) -> Result<ReadReport> {
        let path = self.split_path(name, split)?;
        read_file(self.get(name)?, path, None)
    }

    /// Reads split `split` of task `name` with the given label mode: evaluation splits use
    /// [`LabelMode::IfPresent`], so a test set without answers reads as unlabeled.
    pub fn read_split_with(
        &self,
        name: &str,
        split: &str,
        labels: LabelMode,
    ) -> Result<ReadReport> {
        let path = self.split_path(name, split)?;
        read_file_with(
            self.get(name)?,
            path,
            ReadOptions {
                format: None,
                labels,
            },
        )
    }
}
