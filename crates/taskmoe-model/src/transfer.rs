//! Starting a new (unseen) task from a related seen task: copy its head, its task embedding
//! and, for task-aware routers, its routing.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::model::MultiTaskModel;

/// What [`MultiTaskModel::init_task_from`] copies and what it found to copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInitReport {
    /// The head was copied.
    pub head: bool,
    /// The encoder's task embedding row was copied (models with a task embedding).
    pub task_embedding: bool,
    /// MoE blocks whose router took the source's routing (task-aware routers only).
    pub routers: usize,
}

impl MultiTaskModel {
    /// Makes task `task` start where task `source` is: its head (same number of outputs), its
    /// task embedding row when the encoder has one, and, with `routing`, the task-specific
    /// router parameters of every MoE block (`Router::init_task_from`). Without `routing` the
    /// routers keep `task`'s own (for a held-out task: freshly initialised) parameters.
    pub fn init_task_from(
        &self,
        task: usize,
        source: usize,
        routing: bool,
    ) -> Result<TaskInitReport> {
        let n = self.heads_spec.len();
        for t in [task, source] {
            if t >= n {
                return Err(ModelError::Input(format!(
                    "task {t} is out of range: the model has {n} tasks"
                )));
            }
        }
        let (dst, src) = (&self.heads_spec[task], &self.heads_spec[source]);
        if dst.kind != src.kind {
            return Err(ModelError::Input(format!(
                "cannot start task `{}` ({:?}) from `{}` ({:?}): the heads differ",
                dst.name, dst.kind, src.name, src.kind
            )));
        }
        self.heads[task].copy_from(&self.heads[source]);
        let mut report = TaskInitReport {
            head: true,
            task_embedding: self.embeddings.copy_task_row(task, source),
            routers: 0,
        };
        if routing {
            report.routers = self.copy_routing(task, source)?;
        }
        Ok(report)
    }

    /// Makes task `task` route as task `source` does, and nothing else: the task-specific
    /// router parameters of every MoE block (`Router::init_task_from`); returns how many
    /// routers took them (0 for task-blind routers).
    pub fn copy_routing(&self, task: usize, source: usize) -> Result<usize> {
        let n = self.heads_spec.len();
        if task >= n || source >= n {
            return Err(ModelError::Input(format!(
                "task {} is out of range: the model has {n} tasks",
                task.max(source)
            )));
        }
        let mut routers = 0;
        for (_, layer) in self.moe_layers() {
            if layer
                .router()
                .init_task_from(task, &[(source, 1.0)])
                .map_err(|e| ModelError::Input(e.to_string()))?
            {
                routers += 1;
            }
        }
        Ok(routers)
    }
}
