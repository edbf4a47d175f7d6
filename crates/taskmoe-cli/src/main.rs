//! `taskmoe`: train, evaluate and inspect multi-task models with sparse, task-aware MoE layers.
//!
//! ```text
//! taskmoe train   [--config FILE] [--set key.path=value]... [--resume] [--run DIR --resume]
//! taskmoe eval    (--run DIR | --checkpoint DIR) [--split validation|test|train] [--set ...]
//!                 [--out DIR]
//! taskmoe affinity (--run DIR | --checkpoint DIR | --init [--config FILE]) [--set ...]
//!                 [--split train|validation|test] [--examples N] [--batch-size N] [--out DIR]
//! taskmoe predict (--run DIR | --checkpoint DIR) --input FILE (--task NAME | --task-field F)
//!                 [--output FILE] [--format tsv|csv|jsonl] [--batch-size N]
//! taskmoe verify  CHECKPOINT_OR_RUN_DIR
//! taskmoe export  (--run DIR | --checkpoint DIR) --format hf [--dtype fp32|bf16|fp16]
//!                 [--task NAME] [--out DIR]
//! taskmoe inspect [--config FILE] [--set ...]
//! taskmoe config show [--config FILE] [--set ...]
//! taskmoe data check [--config FILE] [--set ...] [--max-problems N]
//! taskmoe check   [--device cuda|cpu|auto] [--checkpoint DIR] [--moe-sizes TxDxE,...] [--tiny]
//! taskmoe experiment (low-resource|unseen|unrelated|all) [--profile quick|full] [--seeds N]
//!                    [--config FILE] [--set key.path=value]... [--run-set key.path=value]...
//!                    [--out DIR]
//! ```
//! `cargo xtask train` / `eval` / `predict` build this binary and run it.

mod affinity_cmd;
mod check_cmd;
mod checkpoint_arg;
mod compare_cmd;
mod config_cmd;
mod curves;
mod data_cmd;
mod eval_cmd;
mod experiment_cmd;
mod export_cmd;
mod families_cmd;
mod inspect_cmd;
mod model_card;
mod predict_cmd;
mod progress;
mod report;
mod search_cmd;
mod train_cmd;
mod verify_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "taskmoe",
    version,
    about = "Multi-task learning with task-aware sparse MoE"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a run's configuration comes from.
#[derive(clap::Args, Clone, Debug)]
struct ConfigArgs {
    /// Run configuration (TOML); without it, the embedded default (synthetic benchmark, small
    /// task-MoE).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a key, e.g. `--set train.steps=100 --set model.variant=dense`.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model; prints a per-task table at the end.
    Train {
        #[command(flatten)]
        config: ConfigArgs,
        /// Continue the run from its newest usable checkpoint; an error (that changes no
        /// file) when it has none.
        #[arg(long)]
        resume: bool,
        /// The run folder to resume, wherever it now is (with --resume): its own saved
        /// config.toml, with every `--set` over it.
        #[arg(long, requires = "resume", conflicts_with = "config")]
        run: Option<PathBuf>,
    },
    /// Evaluate a run's newest checkpoint (or a given checkpoint) on a split of its data;
    /// results go into the run folder as `eval-<split>-step<N>.*`.
    Eval {
        /// A run folder: its newest complete checkpoint is evaluated.
        #[arg(
            long,
            conflicts_with = "checkpoint",
            required_unless_present = "checkpoint"
        )]
        run: Option<PathBuf>,
        /// A checkpoint folder.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Split to score.
        #[arg(long, value_enum, default_value_t = eval_cmd::Split::Validation)]
        split: eval_cmd::Split,
        /// Override keys of the run's saved configuration (e.g. other data).
        #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
        set: Vec<String>,
        /// Folder for the results (default: the run folder holding the checkpoint).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Whether related tasks pull the parameters they share the same way: per task, the
    /// gradient of its mean loss on a split; per parameter group (shared layers, experts, each
    /// router's task gates), the cosine between tasks, within against across families, and the
    /// family ARI of clustering tasks by it. For a checkpoint, or (`--init`) for a
    /// configuration's model as training starts it.
    Affinity(affinity_cmd::AffinityArgs),
    /// Predict on new, unlabeled text (TSV / CSV / JSONL) with a trained model; one JSON
    /// line per row: id, task, label and probabilities (or the regression value).
    Predict(predict_cmd::PredictArgs),
    /// Check a checkpoint's files (or every checkpoint of a run folder) against the sizes and
    /// SHA-256 hashes of its manifest, COMPLETE.json.
    Verify {
        /// A checkpoint folder or a run folder.
        path: PathBuf,
    },
    /// Export a checkpoint to a Hugging Face folder with a model card (README.md); `--task`
    /// cuts a task-level-routed model down to one task's dense sub-network.
    ///
    /// Which exports load as `transformers.BertModel` (`model_type: "bert"`): only those of
    /// post-LN models (`model.norm = "post"`) without a task token: a post-LN dense model
    /// without task embedding, and a `--task` sub-network of a post-LN model (an `added` task
    /// embedding is folded in; a `prefix` task token is not BERT). Every preset is pre-LN
    /// (`model.norm = "pre"`), so by default no export is a BertModel folder.
    ///
    /// Every other export (`model_type: "taskmoe"`: MoE models, pre-LN models, task tokens)
    /// carries its modelling code (modeling_taskmoe.py, configuration_taskmoe.py, taskmoe_hf.py)
    /// and an `auto_map`: `AutoModel.from_pretrained(folder, trust_remote_code=True)` loads it and
    /// returns taskmoe's logits (CPU, fp32); `python/taskmoe_hf.py`'s `TaskMoeExport(folder)`
    /// reads either layout. The folder also holds the weights, the task heads, the tokenizer and
    /// README.md (variant, tasks and labels, data, steps, final test table, taskmoe version and
    /// commit). The command prints which layout it wrote.
    Export(export_cmd::ExportArgs),
    /// Parameters, active parameters and FLOPs per token of a configuration, for every
    /// variant.
    Inspect {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Finished runs compared task by task. `compare RUN...`: each run's test score per task
    /// with its difference from the first run. `compare --a RUN... --b RUN...`: each side's
    /// mean test score and the seed-paired difference a - b with its 95% interval (runs pair by
    /// their saved seed; one against one pairs as given). A run may be a pattern
    /// (`--a 'runs/task-moe-seed*' --b 'runs/dense-seed*'`), expanded by the shell or, quoted,
    /// by taskmoe. `compare --identical A B`: whether two runs made the same computation bit
    /// for bit (checkpoint tensors, logs, results; wall-clock fields left out), for instance the
    /// same configuration trained by two builds; fails when they differ.
    Compare {
        /// Run folders side by side, each against the first (instead of --a and --b).
        #[arg(conflicts_with_all = ["a", "b"], required_unless_present_all = ["a", "b"])]
        runs: Vec<PathBuf>,
        /// Side a's run folders.
        #[arg(long, num_args = 1.., requires = "b")]
        a: Vec<PathBuf>,
        /// Side b's run folders.
        #[arg(long, num_args = 1.., requires = "a")]
        b: Vec<PathBuf>,
        /// Whether two runs (given as RUN RUN) computed the same outputs, file by file; exits
        /// with an error when any output differs.
        #[arg(long, conflicts_with_all = ["a", "b"])]
        identical: bool,
        /// Also write compare.md and compare.json into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The three claims decided on several benchmarks side by side: `--bench NAME=DIR` names
    /// an experiment output folder (its `*/results.json`); writes verdicts.md, verdicts.json and
    /// forest.svg (every arm of every benchmark against its claim's baseline) into `--out`.
    /// A name given several times is one benchmark run in chunks of disjoint seeds (`--set
    /// first_seed=K`): its folders' per-seed results are merged before the decision.
    Verdicts {
        /// `NAME=DIR`: a benchmark's name and its experiment output folder (or one of its
        /// chunks); repeat.
        #[arg(long = "bench", num_args = 1.., required = true)]
        benches: Vec<String>,
        /// Folder for verdicts.md, verdicts.json and forest.svg.
        #[arg(long)]
        out: PathBuf,
    },
    /// A recipe search on the tuning seeds: each `--axis key=v1,v2,...` tried one at a time
    /// around the base configuration, chosen on the mean validation score; a choice on the
    /// edge of its grid is flagged. Writes search.md / search.json / base.toml.
    Search(search_cmd::SearchArgs),
    /// Every router family (dense, token, per-task, task-level, mmoe, cgc, dselect-k,
    /// expert-choice, or `--arm`s of your own) on one configuration with the same data, budget
    /// and seeds: test and low-resource means, routing measures, parameters and throughput.
    /// Writes families.md / families.json / base.toml.
    Families(families_cmd::FamiliesArgs),
    /// The resolved run configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// The run's data, checked before training.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// The one-shot GPU check: CPU-vs-device logits (fp32, bf16), MoE layer vs dense FFN at
    /// large sizes, training tokens/s and MFU; prints one table (`cargo xtask gpu-bundle`).
    Check(check_cmd::CheckArgs),
    /// Run an experiment of the paper's three claims (or all): every arm trained over
    /// several seeds, a report folder (markdown, JSON, SVG plots) and a printed table.
    Experiment(experiment_cmd::ExperimentArgs),
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the configuration a run with these arguments would use (preset, then file, then
    /// every `--set`, merged key by key), as TOML with each key's documentation as a comment
    /// (`--bare`: the values only).
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// Leave out the documentation comments.
        #[arg(long)]
        bare: bool,
    },
    /// Rewrite a run configuration written for the old `[train]` layout (taskmoe 0.1) into the
    /// sections: prints the result, or with `--write` replaces the file (comments are not
    /// carried over; the old file is kept as FILE.old).
    Migrate {
        /// The configuration file.
        file: std::path::PathBuf,
        /// Replace the file instead of printing.
        #[arg(long)]
        write: bool,
    },
}

#[derive(Subcommand)]
enum DataAction {
    /// Read the registry and every split it names as the run would (its readers, its
    /// tokenizer cut at its length), or generate the synthetic benchmark; print a per-task
    /// table (examples, examples per label, token lengths, inputs over the sequence length,
    /// inputs repeated from an earlier split) and every problem with its file, line and
    /// field. Exits non-zero when any problem is an error; warnings (inputs cut, repeated
    /// inputs) do not fail.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Problems printed per task (the rest are counted).
        #[arg(long, default_value_t = 20)]
        max_problems: usize,
    },
}

/// A device, as `runtime.device` spells it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceArg {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (loads libtorch's CUDA library; an error naming it when that fails).
    Cuda,
    /// CUDA when it works, else the CPU (saying why).
    Auto,
}

impl DeviceArg {
    /// The spelling `runtime.device` and `taskmoe_device::select_named` take.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeviceArg::Cpu => "cpu",
            DeviceArg::Cuda => "cuda",
            DeviceArg::Auto => "auto",
        }
    }
}

/// `arg` as a POSIX shell reads it back as one word: unchanged when it holds only characters no
/// shell treats specially, else in single quotes (a quote inside written `'\''`).
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

fn main() {
    taskmoe_train::install_interrupt_handler();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train {
            config,
            resume,
            run,
        } => train_cmd::run(&config, resume, run.as_deref()),
        Command::Eval {
            run,
            checkpoint,
            split,
            set,
            out,
        } => eval_cmd::run(run, checkpoint, split, &set, out),
        Command::Affinity(args) => affinity_cmd::run(&args),
        Command::Predict(args) => predict_cmd::run(&args),
        Command::Verify { path } => verify_cmd::run(&path),
        Command::Export(args) => export_cmd::run(&args),
        Command::Inspect { config } => inspect_cmd::run(&config),
        Command::Config {
            action: ConfigAction::Show { config, bare },
        } => config_cmd::show(&config, bare),
        Command::Config {
            action: ConfigAction::Migrate { file, write },
        } => config_cmd::migrate(&file, write),
        Command::Data {
            action:
                DataAction::Check {
                    config,
                    max_problems,
                },
        } => data_cmd::check(&config, max_problems),
        Command::Check(args) => check_cmd::run(&args),
        Command::Compare {
            runs,
            a,
            b,
            identical,
            out,
        } => match identical {
            true => compare_cmd::identical(&runs, out.as_deref()),
            false => compare_cmd::run(&runs, &a, &b, out.as_deref()),
        },
        Command::Search(args) => search_cmd::run(&args),
        Command::Verdicts { benches, out } => experiment_cmd::verdicts(&benches, &out),
        Command::Families(args) => families_cmd::run(&args),
        Command::Experiment(args) => experiment_cmd::run(&args),
    };
    if let Err(e) = result {
        if let Some(taskmoe_train::TrainError::Interrupted { step, checkpoint }) = e.downcast_ref()
        {
            let mut command: Vec<String> = std::env::args().collect();
            if !command.iter().any(|a| a == "--resume") {
                command.push("--resume".into());
            }
            let quoted: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
            eprintln!(
                "interrupted after step {step}; checkpoint {} is complete. Resume with:\n  {}",
                checkpoint.display(),
                quoted.join(" ")
            );
            std::process::exit(130);
        }
        eprintln!("error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// An error and its causes joined by `: `, as anyhow's `{:#}` prints them, except that a cause
/// whose message the previous one already ends with is left out: the library errors that wrap
/// another (`data: {0}`) print their cause themselves, and would otherwise print it twice.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if !previous.is_empty() && previous.ends_with(&message) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&message);
        previous = message;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{error_chain, shell_quote};

    #[derive(Debug)]
    struct Inner;
    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("synthetic config: too few words")
        }
    }
    impl std::error::Error for Inner {}

    /// A wrapper that prints its cause itself, as `TrainError::Data` does.
    #[derive(Debug)]
    struct Wrapper(Inner);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "data: {}", self.0)
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_its_wrapper_already_printed_is_printed_once() {
        let e = anyhow::Error::new(Wrapper(Inner)).context("loading runs/x/config.toml");
        assert_eq!(
            error_chain(&e),
            "loading runs/x/config.toml: data: synthetic config: too few words"
        );
        // Causes with messages of their own are all kept, as `{:#}` keeps them.
        let plain = anyhow::Error::new(Inner).context("reading the data");
        assert_eq!(error_chain(&plain), format!("{plain:#}"));
    }

    #[test]
    fn resume_commands_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("output.name=run-1"), "output.name=run-1");
        assert_eq!(shell_quote("output.name=my run"), "'output.name=my run'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a$b"), "'a$b'");
    }
}
