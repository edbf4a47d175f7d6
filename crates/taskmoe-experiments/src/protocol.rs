//! Running an experiment: its protocol, then its report with the resolved base run beside it,
//! then the verdicts over every report written so far.

use std::fmt::Write as _;

use crate::error::{Context, Result};

use crate::context::ExperimentContext;
use crate::experiment::Experiment;
use crate::report::Report;
use crate::{low_resource, unrelated, unseen};

impl Experiment {
    /// Runs it and writes its report into `<out>/<name>/`.
    pub fn run(self, ctx: &ExperimentContext) -> Result<Report> {
        let mut report = match self {
            Experiment::LowResource => low_resource::run(ctx),
            Experiment::Unseen => unseen::run(ctx),
            Experiment::Unrelated => unrelated::run(ctx),
        }
        .with_context(|| format!("experiment {}", self.name()))?;
        // Every number of the report is only as good as the configuration behind it: the
        // resolved base run (each arm's own is in its run folder) goes into the report.
        let base = ctx.loaded.run.to_toml();
        let _ = write!(
            report.markdown,
            "\n## The resolved base run configuration\n\nEvery arm starts from this (also \
             `base-run.resolved.toml`; each arm's own configuration is in its run folder, \
             `checkpoint-*/config.toml`).\n\n```toml\n{base}```\n"
        );
        // The seeds behind every per-seed list, so the reports of chunks (disjoint seed ranges)
        // can be merged (`verdicts::across`).
        if let Some(obj) = report.json.as_object_mut() {
            obj.insert("seeds".into(), serde_json::json!(ctx.seeds()));
        }
        let dir = ctx.dir(self);
        report.write(&dir)?;
        crate::verdicts::write(&ctx.out)?;
        for (file, text) in [
            ("settings.toml", ctx.loaded.settings_toml.as_str()),
            ("base-run.resolved.toml", base.as_str()),
        ] {
            std::fs::write(dir.join(file), text)
                .with_context(|| format!("writing {}", dir.join(file).display()))?;
        }
        Ok(report)
    }
}
