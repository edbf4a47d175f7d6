//! `taskmoe export --format hf`: a folder that `transformers` loads (as a `BertModel` for
//! post-LN dense models and their task sub-networks; through the modelling code the folder
//! carries, with `trust_remote_code=True`, for every other model), with the tokenizer, the task
//! heads and a model card (`README.md`, [`crate::model_card`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;
use taskmoe_data::TaskKind;
use taskmoe_model::{hf_export, write_hf_export, ExportDtype, HfLayout, HF_README_FILE};
use taskmoe_router::RouterKind;
use taskmoe_train::{checkpoint_tokenizer, Inference, VOCAB_TXT};

use crate::checkpoint_arg::CheckpointArgs;
use crate::model_card::{model_card, CardInputs};

/// The export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ExportFormat {
    /// A Hugging Face style folder: config.json, model.safetensors, heads.safetensors,
    /// tokenizer files, README.md (and the modelling code in the taskmoe layout).
    Hf,
}

/// The dtypes of exported weights.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DtypeArg {
    /// 32-bit floats (exact).
    Fp32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    Fp16,
}

/// The arguments of `taskmoe export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The run or checkpoint to read.
    #[command(flatten)]
    pub source: CheckpointArgs,
    /// The export format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Hf)]
    pub format: ExportFormat,
    /// The dtype of the exported weights.
    #[arg(long, value_enum, default_value_t = DtypeArg::Fp32)]
    pub dtype: DtypeArg,
    /// Export only this task's sub-network as a dense model (MoE models need
    /// `router.kind = task-level`).
    #[arg(long)]
    pub task: Option<String>,
    /// The folder to write (default: `export-hf-step<N>[-<task>]` beside the checkpoint).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `taskmoe export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let ExportFormat::Hf = args.format;
    let ckpt = args.source.resolve()?;
    let inf = Inference::load(&ckpt, tch::Device::Cpu)
        .with_context(|| format!("loading {}", ckpt.dir.display()))?;
    let task = args.task.as_deref().map(|t| inf.task_id(t)).transpose()?;
    let mut export = hf_export(&inf.model, &inf.vs, task)?;
    let tasks: Vec<serde_json::Value> = export
        .tasks
        .iter()
        .map(|&t| {
            let s = &inf.specs[t];
            json!({
                "name": s.name,
                "kind": match s.kind {
                    TaskKind::Classification => "classification",
                    TaskKind::Regression => "regression",
                },
                "labels": s.labels,
                "text_fields": s.text_fields,
            })
        })
        .collect();
    export.config["taskmoe"]["tasks"] = tasks.into();
    export.config["taskmoe"]["source_checkpoint_step"] = ckpt.step.into();
    if let [t] = export.tasks[..] {
        let labels = &inf.specs[t].labels;
        if !labels.is_empty() {
            export.config["id2label"] = labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), json!(l)))
                .collect::<serde_json::Map<_, _>>()
                .into();
            export.config["label2id"] = labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), json!(i)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
    }
    let dtype = match args.dtype {
        DtypeArg::Fp32 => ExportDtype::F32,
        DtypeArg::Bf16 => ExportDtype::Bf16,
        DtypeArg::Fp16 => ExportDtype::F16,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let name = match &args.task {
            Some(t) => format!("export-hf-step{}-{t}", ckpt.step),
            None => format!("export-hf-step{}", ckpt.step),
        };
        ckpt.dir.parent().unwrap_or(&ckpt.dir).join(name)
    });
    write_hf_export(&export, &out, dtype)?;
    // The tokenizer: the checkpoint's own file, with a tokenizer_config.json so that
    // `AutoTokenizer.from_pretrained(folder)` picks the BERT pipeline.
    if let Some(tok) = checkpoint_tokenizer(&ckpt.dir) {
        let name = tok.file_name().expect("a file").to_owned();
        std::fs::copy(&tok, out.join(&name))
            .with_context(|| format!("copying {}", tok.display()))?;
        let tok_cfg = json!({
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": name == VOCAB_TXT,
            "model_max_length": export.model.max_position,
        });
        std::fs::write(
            out.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&tok_cfg)? + "\n",
        )?;
    }
    let card = model_card(&CardInputs {
        ckpt: &ckpt,
        inf: &inf,
        export: &export,
        task: args.task.as_deref(),
        dtype: dtype.torch_name(),
    })?;
    let readme = out.join(HF_README_FILE);
    std::fs::write(&readme, card).with_context(|| format!("writing {}", readme.display()))?;
    let layout = match export.layout {
        HfLayout::Bert => "transformers BertModel layout (model_type bert)",
        HfLayout::Taskmoe => {
            "taskmoe layout (AutoModel.from_pretrained(folder, trust_remote_code=True) or \
             python/taskmoe_hf.py)"
        }
    };
    println!(
        "exported {} (step {}) to {}: {layout}, {} task head(s), {:?}",
        ckpt.dir.display(),
        ckpt.step,
        out.display(),
        export.tasks.len(),
        dtype
    );
    let kind = export.model.moe.router.kind;
    if export.layout == HfLayout::Taskmoe
        && export.model.variant != taskmoe_model::Variant::Dense
        && !matches!(
            kind,
            RouterKind::Token
                | RouterKind::TaskConcat
                | RouterKind::PerTask
                | RouterKind::TaskLevel
        )
    {
        eprintln!(
            "note: the exported modelling code (python/taskmoe_hf.py) computes the `{}` router from the formulas of \
             docs/architecture.md, but no golden fixture checks its logits against taskmoe's yet \
             (the fixtures cover token, task-concat, per-task and task-level)",
            kind.name()
        );
    }
    Ok(())
}
