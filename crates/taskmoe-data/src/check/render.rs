//! A [`DataCheck`] as text: the per-task table, the problems task by task, a summary.

use std::fmt::Write as _;

use super::{DataCheck, LabelStats, Problem, Severity, SplitCheck, TaskCheck};

/// Label names a table cell lists one by one; a task with more is summarised.
const LISTED_LABELS: usize = 4;

impl DataCheck {
    /// The report as text: what was checked, one table row per task and split (role,
    /// examples, bad rows, examples per label, token lengths, inputs over the sequence length,
    /// inputs repeated from an earlier split), the problems grouped by task with errors first
    /// (at most `max_per_task` of each task, then how many more), and a summary line.
    pub fn render(&self, max_per_task: usize) -> String {
        let mut out = String::new();
        let _ = match &self.registry {
            Some(path) => writeln!(
                out,
                "registry {}: {} tasks; inputs counted with the run's tokenizer, cut at {} tokens",
                path.display(),
                self.tasks.len(),
                self.seq_len
            ),
            None => writeln!(
                out,
                "the synthetic benchmark: {} generated tasks, no files to check; inputs must \
                 fit in {} tokens",
                self.tasks.len(),
                self.seq_len
            ),
        };
        if !self.tasks.is_empty() {
            out.push('\n');
            out.push_str(&self.table());
        }
        let mut groups: Vec<(Option<&str>, Vec<&Problem>)> = vec![(None, Vec::new())];
        groups.extend(
            self.tasks
                .iter()
                .map(|t| (Some(t.name.as_str()), Vec::new())),
        );
        for p in &self.problems {
            match groups.iter_mut().find(|g| g.0 == p.task.as_deref()) {
                Some(g) => g.1.push(p),
                None => groups.push((p.task.as_deref(), vec![p])),
            }
        }
        for (task, mut problems) in groups.into_iter().filter(|g| !g.1.is_empty()) {
            problems.sort_by_key(|p| std::cmp::Reverse(p.severity));
            let _ = writeln!(
                out,
                "\n{} ({}):",
                task.map_or("registry".to_string(), |t| format!("task `{t}`")),
                counts(&problems)
            );
            for p in problems.iter().take(max_per_task) {
                let _ = writeln!(out, "  {:<8}{p}", severity(p.severity));
            }
            if problems.len() > max_per_task {
                let _ = writeln!(out, "  ... and {} more", problems.len() - max_per_task);
            }
        }
        let all: Vec<&Problem> = self.problems.iter().collect();
        let _ = match all.is_empty() {
            true => writeln!(out, "\nno problems"),
            false => writeln!(out, "\n{}", counts(&all)),
        };
        out
    }

    /// The per-task table, columns padded to their widest cell.
    fn table(&self) -> String {
        let over = format!("> {}", self.seq_len);
        let header = [
            "task",
            "role",
            "split",
            "examples",
            "bad",
            "labels",
            "tokens min/mean/max",
            over.as_str(),
            "repeated",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for task in &self.tasks {
            for (i, split) in task.splits.iter().enumerate() {
                let (name, role) = match i {
                    0 => (task.name.clone(), role(task).to_string()),
                    _ => (String::new(), String::new()),
                };
                rows.push(row(name, role, task, split));
            }
            if task.splits.is_empty() {
                let mut cells = vec![task.name.clone(), role(task).to_string(), "-".into()];
                cells.resize(header.len(), String::new());
                rows.push(cells);
            }
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        // Text columns align left, numbers right.
        let left = [true, true, true, false, false, true, false, false, false];
        let mut out = String::new();
        for r in &rows {
            let cells: Vec<String> = (r.iter().zip(&widths).zip(left))
                .map(|((cell, &w), left)| match left {
                    true => format!("{cell:<w$}"),
                    false => format!("{cell:>w$}"),
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out
    }
}

/// One table row: a split of `task`.
fn row(name: String, role: String, task: &TaskCheck, split: &SplitCheck) -> Vec<String> {
    let mut cells = vec![name, role, split.split.clone()];
    if !split.read {
        cells.extend(["-".into(), "-".into(), "not read".into()]);
        cells.resize(9, "-".into());
        return cells;
    }
    let tokens = split.tokens.map_or("-".to_string(), |t| {
        format!("{} / {:.1} / {}", t.min, t.mean, t.max)
    });
    let repeated = match &split.same_file_as {
        Some(earlier) => format!("= {earlier}"),
        None => split.repeated.to_string(),
    };
    cells.extend([
        split.examples.to_string(),
        split.bad_rows.to_string(),
        labels(task, &split.labels),
        tokens,
        split.over_seq_len.to_string(),
        repeated,
    ]);
    cells
}

/// Whether a task is trained, held out, or neither.
fn role(task: &TaskCheck) -> &'static str {
    match (task.trained, task.held_out) {
        (true, _) => "trained",
        (false, true) => "held out",
        (false, false) => "unused",
    }
}

/// The labels cell: each label's count, or a summary of many; the targets' range.
fn labels(task: &TaskCheck, stats: &LabelStats) -> String {
    match stats {
        LabelStats::Unlabeled => "unlabeled".into(),
        LabelStats::Values { min, mean, max } => format!("{min:.2}..{max:.2}, mean {mean:.2}"),
        LabelStats::Classes(counts) if counts.len() <= LISTED_LABELS => {
            let named: Vec<String> = (task.labels.iter().zip(counts))
                .map(|(l, n)| format!("{l}={n}"))
                .collect();
            named.join(", ")
        }
        LabelStats::Classes(counts) => format!(
            "{} labels, {}..{} each",
            counts.len(),
            counts.iter().min().unwrap_or(&0),
            counts.iter().max().unwrap_or(&0)
        ),
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// `2 errors, 1 warning`.
fn counts(problems: &[&Problem]) -> String {
    let n = |s| problems.iter().filter(|p| p.severity == s).count();
    let plural = |n: usize, what: &str| match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    };
    format!(
        "{}, {}",
        plural(n(Severity::Error), "error"),
        plural(n(Severity::Warning), "warning")
    )
}
