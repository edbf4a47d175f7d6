//! A checkpoint loaded with its run's configuration and data: what evaluating a trained model
//! on the run's splits needs (`taskmoe eval`, the experiments). For new text without the data,
//! see [`crate::Inference`].

use tch::{nn, Device};

use taskmoe_model::MultiTaskModel;

use crate::checkpoint::Checkpoint;
use crate::error::{invalid, Result};
use crate::frozen_cache::read_frozen_states;
use crate::inference::checkpoint_tokenizer;
use crate::run_config::{DataSource, RunConfig};
use crate::run_data::RunData;
use crate::run_folder::RUN_CONFIG_FILE;

/// A trained model with the configuration and the data of its run.
pub struct TrainedRun {
    /// The checkpoint the weights come from.
    pub checkpoint: Checkpoint,
    /// The run's configuration (the checkpoint's `config.toml` with the caller's `--set`s).
    pub config: RunConfig,
    /// The run's data, loaded as the configuration names it.
    pub data: RunData,
    /// The parameters.
    pub vs: nn::VarStore,
    /// The model with the checkpoint's weights.
    pub model: MultiTaskModel,
    /// The device the model is on.
    pub device: Device,
}

impl TrainedRun {
    /// Loads `checkpoint` with its run's data onto `device`, or with `None` onto the run's own
    /// `runtime.device` with its `runtime.threads` (as the trainer does). `set` overrides keys of
    /// the saved configuration (`data.registry=NEW/tasks.toml` for a data folder that moved). A
    /// registry-based run tokenizes with the checkpoint's own copy of its tokenizer unless `set`
    /// names `data.tokenizer`; a registry that no longer exists is an error saying how to point
    /// at the moved data.
    pub fn load(checkpoint: Checkpoint, set: &[String], device: Option<Device>) -> Result<Self> {
        let mut config = RunConfig::load_saved(&checkpoint.file(RUN_CONFIG_FILE), set)?;
        let device = match device {
            Some(device) => device,
            None => {
                if config.runtime.threads > 0 {
                    tch::set_num_threads(config.runtime.threads as i32);
                }
                taskmoe_device::select_named(&config.runtime.device)?
            }
        };
        let tokenizer_set = set
            .iter()
            .any(|s| s.trim_start().starts_with("data.tokenizer"));
        if let (Some(tok), DataSource::Registry, false) = (
            checkpoint_tokenizer(&checkpoint.dir),
            config.data.source,
            tokenizer_set,
        ) {
            config.data.tokenizer = Some(tok);
        }
        if let (DataSource::Registry, Some(reg)) = (config.data.source, &config.data.registry) {
            if !reg.is_file() {
                return Err(invalid(
                    "data",
                    format!(
                        "the run's task registry {} is gone (moved data folder?): pass \
                         --set data.registry=NEW/tasks.toml to evaluate on data, or use \
                         `taskmoe predict`, which needs none",
                        reg.display()
                    ),
                ));
            }
        }
        let data = RunData::load(&config)?;
        let vs = nn::VarStore::new(device);
        // Building draws initial weights (overwritten by the checkpoint's) from the global
        // generator: under its lock, so a trainer in the same process draws what it would alone.
        let mut model = {
            let _rng = taskmoe_device::lock_global_rng();
            MultiTaskModel::new(&vs.root(), &config.model, &data.heads())?
        };
        checkpoint.load_weights(&vs)?;
        // With frozen blocks, the states its training cached (evaluations read them).
        read_frozen_states(&mut model, &vs, &config, device)?;
        Ok(TrainedRun {
            device,
            checkpoint,
            config,
            data,
            vs,
            model,
        })
    }
}
