//! Examples: as read from a file (text) and as fed to a model (token ids).

use serde::{Deserialize, Serialize};

/// The target of one example.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Label {
    /// A class index into the task's `labels`.
    Class(i64),
    /// A regression target.
    Value(f32),
    /// No label: a row of an unlabeled split (a test set without answers) or an input to
    /// predict on. Ignored by the losses; evaluation writes predictions but no scores.
    Missing,
}

impl Label {
    /// The class index, if this is a classification label.
    pub fn class(self) -> Option<i64> {
        match self {
            Label::Class(c) => Some(c),
            Label::Value(_) | Label::Missing => None,
        }
    }

    /// Whether there is a label (not [`Label::Missing`]).
    pub fn is_present(self) -> bool {
        self != Label::Missing
    }
}

/// One example as text, before tokenization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextExample {
    /// The first (or only) sentence.
    pub text_a: String,
    /// The second sentence of a pair.
    pub text_b: Option<String>,
    /// The target.
    pub label: Label,
    /// The value of the spec's `id_field`, if it names one.
    pub source_id: Option<String>,
    /// The 1-based line of the file the example came from (0 for generated examples).
    pub line: usize,
}

/// One example as token ids, unpadded; [`crate::Batch`] pads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedExample {
    /// The example's index in its split; carried into batches so predictions can be matched
    /// back to examples.
    pub id: u64,
    /// Token ids, special tokens included (`[CLS] a [SEP] (b [SEP])`).
    pub input_ids: Vec<i64>,
    /// Segment ids: 0 for the first sentence and its specials, 1 for the second sentence.
    pub token_type_ids: Vec<i64>,
    /// The target.
    pub label: Label,
    /// The value of the spec's `id_field` in the source file, if it names one (written into
    /// predictions so they can be matched back to the source rows).
    #[serde(default)]
    pub source_id: Option<String>,
}

/// The encoded examples of one task split, with the task's registry id.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskData {
    /// The task's id in its registry (the row of its task embedding).
    pub task_id: usize,
    /// The examples.
    pub examples: Vec<EncodedExample>,
}
