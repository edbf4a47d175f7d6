//! Inputs repeated across the splits of a task: an evaluation example that is also a
//! training example measures memory, not generalisation.

use std::collections::HashMap;

use super::split::ReadSplit;
use super::{DataCheck, Problem, ProblemKind, Severity, SplitCheck};
use crate::spec::TaskSpec;

impl DataCheck {
    /// Counts, per split, the examples whose input is also in an earlier split of the task,
    /// with a warning per pair of splits placed at the first such example.
    pub(super) fn repeated_inputs(
        &mut self,
        spec: &TaskSpec,
        splits: &[ReadSplit],
        checks: &mut [SplitCheck],
    ) {
        // Input -> (split index, example index) of its first appearance.
        let mut seen: HashMap<(&str, Option<&str>), (usize, usize)> = HashMap::new();
        for (s, rows) in splits.iter().enumerate() {
            let ReadSplit::Read(rows) = rows else {
                continue;
            };
            let same_file = (rows.path.is_some())
                .then(|| (0..s).find(|&e| checks[e].read && checks[e].path == rows.path))
                .flatten();
            if let Some(e) = same_file {
                checks[s].same_file_as = Some(checks[e].split.clone());
                continue;
            }
            // Earlier split -> (count, first example here, its example there).
            let mut pairs: Vec<(usize, usize, usize, usize)> = Vec::new();
            for (i, example) in rows.examples.iter().enumerate() {
                let key = (example.text_a.as_str(), example.text_b.as_deref());
                match seen.get(&key) {
                    None => {
                        seen.insert(key, (s, i));
                    }
                    Some(&(earlier, j)) if earlier != s => {
                        checks[s].repeated += 1;
                        match pairs.iter_mut().find(|p| p.0 == earlier) {
                            Some(p) => p.1 += 1,
                            None => pairs.push((earlier, 1, i, j)),
                        }
                    }
                    Some(_) => {}
                }
            }
            for (earlier, count, i, j) in pairs {
                let ReadSplit::Read(there) = &splits[earlier] else {
                    continue;
                };
                let message = format!(
                    "{count} example{} repeat{} an input of the `{}` split; the first is {}, \
                     {} of `{}`",
                    if count == 1 { "" } else { "s" },
                    if count == 1 { "s" } else { "" },
                    there.split,
                    rows.place(i),
                    there.place(j),
                    there.split
                );
                let mut problem = Problem::new(
                    Severity::Warning,
                    ProblemKind::Duplicate,
                    Some(&spec.name),
                    Some(&rows.split),
                    message,
                )
                .field(spec.text_fields.join(", "));
                problem.path = rows.path.clone();
                if rows.examples[i].line > 0 {
                    problem.line = Some(rows.examples[i].line);
                }
                self.problems.push(problem);
            }
        }
    }
}
