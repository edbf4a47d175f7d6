//! `taskmoe predict`: a trained model on new, unlabeled text.
//!
//! Everything the model needs comes from the checkpoint folder (`tasks.toml`, the tokenizer,
//! `config.json`, `model.safetensors`), so a copied checkpoint predicts anywhere. The input is
//! a TSV, CSV or JSONL file with the task's text fields (no label needed); each row belongs to
//! `--task`, or names its task in `--task-field`. One JSON line per input row, in input order:
//! `id` (the task's `id_field` value, else the row's line number), `line`, `task`, then the
//! predicted label name with the probability of every label, or the regression value.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use taskmoe_data::{read_inputs, Batch, EncodedExample, Format, InputTask, TaskData};
use taskmoe_eval::{predictions, Answer};
use taskmoe_train::{model_input, Inference};

use crate::checkpoint_arg::CheckpointArgs;

/// The arguments of `taskmoe predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The run or checkpoint to read.
    #[command(flatten)]
    pub source: CheckpointArgs,
    /// The rows to predict on: .tsv / .csv (with a header) or .jsonl.
    #[arg(long)]
    pub input: PathBuf,
    /// The input's format, when its extension does not say.
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// The task of every row.
    #[arg(
        long,
        conflicts_with = "task_field",
        required_unless_present = "task_field"
    )]
    pub task: Option<String>,
    /// A field of each row naming its task (for inputs mixing tasks).
    #[arg(long)]
    pub task_field: Option<String>,
    /// Where the predictions go (JSONL); default standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// The device to run on.
    #[arg(long, value_enum, default_value_t = crate::DeviceArg::Cpu)]
    pub device: crate::DeviceArg,
    /// Predict for tasks the model did not train on (held out, or left out of `data.tasks`):
    /// their heads are untrained, so this is refused unless asked for, and then warned about.
    #[arg(long)]
    pub allow_untrained: bool,
}

/// The input formats, as on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum InputFormat {
    /// Tab-separated with a header row.
    Tsv,
    /// Comma-separated with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl From<InputFormat> for Format {
    fn from(f: InputFormat) -> Format {
        match f {
            InputFormat::Tsv => Format::Tsv,
            InputFormat::Csv => Format::Csv,
            InputFormat::Jsonl => Format::Jsonl,
        }
    }
}

/// Runs `taskmoe predict`.
pub fn run(args: &PredictArgs) -> Result<()> {
    let started = Instant::now();
    let ckpt = args.source.resolve()?;
    let device = taskmoe_device::select_named(args.device.as_str())?;
    let inf = Inference::load(&ckpt, device)
        .with_context(|| format!("loading {}", ckpt.dir.display()))?;
    if inf.threads > 0 {
        tch::set_num_threads(inf.threads as i32);
    }
    let task = match (&args.task, &args.task_field) {
        (Some(name), _) => InputTask::Fixed(inf.task_id(name)?),
        (None, Some(field)) => InputTask::Field(field),
        (None, None) => bail!("pass --task NAME or --task-field FIELD"),
    };
    let report = read_inputs(&inf.specs, &args.input, args.format.map(Format::from), task)?;
    check_trained(&inf, &report.tasks, args.allow_untrained)?;
    let (rows, cut) = encode(&inf, &report.examples, &args.input)?;
    warn_truncated(&cut, &report.examples, &args.input, inf.tokenizer.max_len());
    let n = rows.len();
    let tokens: usize = rows.iter().map(|e| e.input_ids.len()).sum();
    eprintln!(
        "predicting {n} rows of {} with {} (step {})",
        args.input.display(),
        ckpt.dir.display(),
        ckpt.step
    );
    let loaded = started.elapsed().as_secs_f64();

    // Group rows by task, keeping each row's position so the output follows the input.
    let mut by_task: Vec<TaskData> = (0..inf.specs.len())
        .map(|t| TaskData {
            task_id: t,
            examples: Vec::new(),
        })
        .collect();
    for (row, &t) in rows.into_iter().zip(&report.tasks) {
        by_task[t].examples.push(row);
    }
    let mut out: Vec<Option<serde_json::Value>> = vec![None; n];
    let mut done = 0usize;
    let report_every = (n / 10).max(1000);
    for data in &by_task {
        let spec = &inf.specs[data.task_id];
        for chunk in data.examples.chunks(args.batch_size.max(1)) {
            // Each batch padded to its own longest row, as a training batch is.
            let seq_len = chunk.iter().map(|e| e.input_ids.len()).max().unwrap_or(1);
            let batch =
                Batch::from_examples(chunk.iter().map(|e| (data.task_id, e)), seq_len, inf.pad_id)?;
            let t = batch.to_tensors(device)?;
            let logits = tch::no_grad(|| inf.model.forward(&model_input(&t), false))?.logits;
            let members: Vec<&EncodedExample> = chunk.iter().collect();
            for p in predictions(spec, &logits, &members) {
                let index = p.index as usize;
                let line = report.examples[index].line;
                let mut record = serde_json::json!({
                    "id": p.id,
                    "line": line,
                    "task": p.task,
                });
                match p.prediction {
                    Answer::Class(name) => {
                        record["label"] = name.into();
                        record["probabilities"] = p.probabilities.into();
                    }
                    Answer::Value(v) => record["value"] = v.into(),
                }
                out[index] = Some(record);
            }
            let before = done;
            done += batch.len();
            if n > 1000 && done / report_every != before / report_every {
                eprintln!("{done} of {n} rows");
            }
        }
    }
    let mut sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for record in out.into_iter().flatten() {
        writeln!(sink, "{record}")?;
    }
    sink.flush()?;
    if let Some(path) = &args.output {
        eprintln!("wrote {n} predictions to {}", path.display());
    }
    let total = started.elapsed().as_secs_f64();
    let predicting = (total - loaded).max(1e-9);
    eprintln!(
        "predicted {n} rows ({tokens} tokens) in {total:.2} s: {:.1} rows/s, {:.0} tokens/s \
         (of which loading the model and reading the input {loaded:.2} s; predicting alone \
         {:.0} tokens/s)",
        n as f64 / total,
        tokens as f64 / total,
        tokens as f64 / predicting
    );
    Ok(())
}

/// Refuses rows of tasks the model did not train on unless `allow`ed; warns when allowed.
fn check_trained(inf: &Inference, tasks: &[usize], allow: bool) -> Result<()> {
    let mut untrained: Vec<&str> = tasks
        .iter()
        .filter(|&&t| !inf.trained[t])
        .map(|&t| inf.specs[t].name.as_str())
        .collect();
    untrained.sort_unstable();
    untrained.dedup();
    if untrained.is_empty() {
        return Ok(());
    }
    let names = untrained.join(", ");
    if !allow {
        bail!(
            "the model did not train on task(s) {names} (held out, or not in the run's \
             data.tasks): their heads are untrained and their predictions meaningless. Pass \
             --allow-untrained to predict anyway"
        );
    }
    eprintln!("warning: predicting for task(s) {names}, which the model did not train on");
    Ok(())
}

/// Warns, with the count and the first few lines, about rows cut to the model's length.
fn warn_truncated(cut: &[usize], examples: &[taskmoe_data::TextExample], path: &Path, max: usize) {
    if cut.is_empty() {
        return;
    }
    let lines: Vec<String> = cut
        .iter()
        .take(5)
        .map(|&i| examples[i].line.to_string())
        .collect();
    eprintln!(
        "warning: {} of {} rows of {} are longer than {max} tokens and were truncated (lines {}{})",
        cut.len(),
        examples.len(),
        path.display(),
        lines.join(", "),
        if cut.len() > lines.len() { ", ..." } else { "" }
    );
}

/// Tokenizes the input rows; example `i` gets id `i` (its position in the input) and, as its
/// source id, the `id_field` value or the line number. Also returns the positions of the rows
/// that were truncated.
fn encode(
    inf: &Inference,
    examples: &[taskmoe_data::TextExample],
    path: &Path,
) -> Result<(Vec<EncodedExample>, Vec<usize>)> {
    let mut cut = Vec::new();
    let mut rows = Vec::with_capacity(examples.len());
    for (i, ex) in examples.iter().enumerate() {
        let (input_ids, token_type_ids, truncated) = inf
            .tokenizer
            .encode_checked(&ex.text_a, ex.text_b.as_deref())
            .with_context(|| format!("{}:{}: tokenizing", path.display(), ex.line))?;
        if truncated {
            cut.push(i);
        }
        rows.push(EncodedExample {
            id: i as u64,
            input_ids,
            token_type_ids,
            label: ex.label,
            source_id: Some(ex.source_id.clone().unwrap_or_else(|| ex.line.to_string())),
        });
    }
    Ok((rows, cut))
}
