//! The task table of a real-text benchmark: a task's role, labels and per-label quotas.

/// One label of a task, as the shared steps see it.
pub trait ClassDef {
    /// The label name in the files and the registry.
    fn label(&self) -> &'static str;
}

/// What a task is for in the experiments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A related high-resource task of the training mixture.
    High,
    /// A related task with few training examples (the experiments cut it further).
    Low,
    /// A held-out task (`held_out = true`): never in a training mixture; its small training
    /// split is the k-shot pool.
    HeldOut,
    /// Other text, labelled by another kind of label than the families' (another part of
    /// speech, docstrings labelled by form rather than topic): the tasks added in the
    /// robustness experiment.
    Unrelated,
}

impl Role {
    /// The role as the registry comments and `SOURCE.txt` write it (`high-resource`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Role::High => "high-resource",
            Role::Low => "low-resource",
            Role::HeldOut => "held-out",
            Role::Unrelated => "unrelated",
        }
    }
}

/// One task of a benchmark whose labels are `C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDef<C: 'static> {
    /// The task name (registry `name`, folder of its split files).
    pub name: &'static str,
    /// The task family (registry `family`): the tasks of a family share labels.
    pub family: &'static str,
    /// What the task is for in the experiments.
    pub role: Role,
    /// The labels, in label-index order.
    pub classes: &'static [C],
    /// Examples per label in the train, dev and test splits.
    pub per_class: [usize; 3],
}

impl<C: ClassDef> TaskDef<C> {
    /// The label names, in label-index order.
    pub fn labels(&self) -> Vec<&'static str> {
        self.classes.iter().map(ClassDef::label).collect()
    }
}
