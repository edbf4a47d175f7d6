//! What makes a checkpoint self-contained: the task specs (names, kinds, label names, text
//! fields) and the tokenizer travel inside it, so a copied checkpoint folder predicts on new
//! text, and evaluates, without the data folder or the registry it was trained from.
//!
//! Every checkpoint holds [`TASKS_FILE`] (the run's task registry as TOML, split paths
//! dropped) and one tokenizer file: a copy of the run's `tokenizer.json` or WordPiece
//! `vocab.txt` ([`TOKENIZER_JSON`] / [`VOCAB_TXT`]), or for the synthetic benchmark the
//! `vocab.txt` under which its text renderings tokenize to the generated ids.
//! [`crate::Inference`] loads a checkpoint for use on new text from these files alone.

use taskmoe_data::synthetic::SyntheticVocab;
use taskmoe_data::{TaskRegistry, TaskSpec};

use crate::checkpoint::CheckpointFiles;
use crate::error::Result;
use crate::run_config::RunConfig;
use crate::run_data::RunData;
use crate::run_folder::{TASKS_FILE, TOKENIZER_JSON, VOCAB_TXT};

/// The files beside the weights that a checkpoint needs to run on new text.
#[derive(Debug, Clone)]
pub struct RunAssets {
    /// [`TASKS_FILE`]'s content.
    tasks_toml: String,
    /// The tokenizer file's name in the checkpoint and its bytes.
    tokenizer: (&'static str, Vec<u8>),
}

impl RunAssets {
    /// The assets of a run: its specs (without split paths) and its tokenizer.
    pub fn from_run(cfg: &RunConfig, data: &RunData) -> Result<Self> {
        let specs: Vec<TaskSpec> = data
            .specs
            .iter()
            .map(|s| TaskSpec {
                splits: Default::default(),
                ..s.clone()
            })
            .collect();
        let tasks_toml = TaskRegistry::new(specs)?.to_toml();
        let tokenizer = match &data.tokenizer_file {
            Some(path) => {
                let name = if path.extension().is_some_and(|e| e == "txt") {
                    VOCAB_TXT
                } else {
                    TOKENIZER_JSON
                };
                let bytes = std::fs::read(path).map_err(crate::error::io_err(path))?;
                (name, bytes)
            }
            None => {
                // The synthetic vocabulary is a function of the word count alone.
                let vocab = SyntheticVocab::new(cfg.data.synthetic.total_words()).tokens();
                (VOCAB_TXT, (vocab.join("\n") + "\n").into_bytes())
            }
        };
        Ok(RunAssets {
            tasks_toml,
            tokenizer,
        })
    }

    /// Writes the assets into a checkpoint being made.
    pub fn write(&self, files: &CheckpointFiles) -> Result<()> {
        files.write_bytes(TASKS_FILE, self.tasks_toml.as_bytes())?;
        files.write_bytes(self.tokenizer.0, &self.tokenizer.1)
    }
}
