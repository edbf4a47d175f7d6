//! Export (`hf_export`): the golden fixtures made once by `python/taskmoe_hf.py` keep the
//! Python module (and, for the bert layout, `transformers.BertModel`) equal to taskmoe's
//! logits without Python in CI; a task's dense sub-network gives the MoE model's logits
//! exactly; dtypes and the `format: pt` metadata; a taskmoe-layout folder carries the
//! modelling code its `auto_map` names (the fixtures' `config.json` is today's export's).
//!
//! Regenerating the fixtures (only when the export layout changes on purpose):
//! `TASKMOE_WRITE_EXPORT_FIXTURES=1 cargo test -p taskmoe-model --test export`, then for each
//! folder under `tests/golden/export/`:
//! `python python/taskmoe_hf.py DIR --inputs DIR/inputs.json --out DIR/expected.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use taskmoe_model::{
    hf_export, read_metadata, write_hf_export, ExportDtype, HeadSpec, HfLayout, ModelConfig,
    ModelInput, MultiTaskModel, NormPlacement, Pooling, TaskEmbedding, Variant, HF_AUTO_MAP,
    HF_CONFIG_FILE, HF_HEADS_FILE, HF_MODELING_FILES, HF_MODEL_FILE,
};
use taskmoe_router::RouterKind;
use tch::{nn, Device, Kind, Tensor};

fn heads() -> Vec<HeadSpec> {
    vec![
        HeadSpec::classification("two", 2),
        HeadSpec::classification("three", 3),
        HeadSpec::regression("score"),
    ]
}

fn small() -> ModelConfig {
    let mut cfg = ModelConfig::tiny();
    cfg.vocab_size = 32;
    cfg.max_position = 16;
    cfg.d_model = 16;
    cfg.num_heads = 2;
    cfg.d_ff = 32;
    cfg.moe.d_ff = 24;
    cfg.moe.router.num_experts = 4;
    cfg.moe.router.task_embedding_dim = 8;
    // BERT's layout (the presets are pre-LN with mean pooling): what the fixtures were made
    // with, and what a BertModel export needs.
    cfg.norm = NormPlacement::Post;
    cfg.pooling = Pooling::First;
    cfg
}

/// The fixtures: name, model, exported task.
fn cases() -> Vec<(&'static str, ModelConfig, Option<usize>)> {
    // Task-concat top-2 with a shared expert, eval-time capacity drops, an added task
    // embedding; post-LN, first-token pooling.
    let mut a = small();
    a.variant = Variant::TaskMoe;
    a.moe.router.kind = RouterKind::TaskConcat;
    a.moe.router.k = 2;
    a.moe.router.renormalize = true;
    a.moe.router.capacity_factor_eval = 1.0;
    a.moe.num_shared_experts = 1;
    a.task_embedding = TaskEmbedding::Added;
    // Per-task top-1 (raw softmax weight) every second block, pre-LN, a task token, mean
    // pooling.
    let mut b = small();
    b.variant = Variant::TaskMoe;
    b.moe.router.kind = RouterKind::PerTask;
    b.moe.router.renormalize = false;
    b.moe_every = 2;
    b.norm = NormPlacement::Pre;
    b.pooling = Pooling::Mean;
    b.task_embedding = TaskEmbedding::Prefix;
    // Task-level top-2 with a shared expert: task 1's sub-network is a BertModel.
    let mut c = small();
    c.variant = Variant::TaskMoe;
    c.moe.router.kind = RouterKind::TaskLevel;
    c.moe.router.k = 2;
    c.moe.num_shared_experts = 1;
    c.task_embedding = TaskEmbedding::Added;
    vec![
        ("moe-task-concat", a, None),
        ("moe-per-task-pre-ln", b, None),
        ("task-level-subnetwork", c, Some(1)),
    ]
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/export")
        .join(name)
}

/// A batch with padding, sentence pairs and every task; `tasks` limits the task ids.
fn inputs(tasks: &[i64]) -> BTreeMap<&'static str, Vec<Vec<i64>>> {
    let lens = [8usize, 5, 7, 3, 8, 6];
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    let mut types = Vec::new();
    for (i, &n) in lens.iter().enumerate() {
        let row: Vec<i64> = (0..8)
            .map(|j| {
                if j < n {
                    ((i * 7 + j * 5) % 30 + 2) as i64
                } else {
                    0
                }
            })
            .collect();
        ids.push(row);
        mask.push((0..8).map(|j| i64::from(j < n)).collect());
        types.push((0..8).map(|j| i64::from(j < n && j >= n / 2)).collect());
    }
    let task_ids = (0..lens.len()).map(|i| tasks[i % tasks.len()]).collect();
    BTreeMap::from([
        ("input_ids", ids),
        ("attention_mask", mask),
        ("token_type_ids", types),
        ("task_ids", vec![task_ids]),
    ])
}

fn tensor(rows: &[Vec<i64>]) -> Tensor {
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, -1])
}

fn logits(model: &MultiTaskModel, inputs: &BTreeMap<&str, Vec<Vec<i64>>>) -> Tensor {
    let task_ids = Tensor::from_slice(&inputs["task_ids"][0]);
    tch::no_grad(|| {
        model.forward(
            &ModelInput {
                input_ids: &tensor(&inputs["input_ids"]),
                attention_mask: &tensor(&inputs["attention_mask"]),
                token_type_ids: Some(&tensor(&inputs["token_type_ids"])),
                task_ids: &task_ids,
            },
            false,
        )
    })
    .unwrap()
    .logits
}

/// Builds the network an export folder describes and loads its tensors (every parameter
/// must be in the files, and nothing else).
fn load_export(dir: &Path) -> (nn::VarStore, MultiTaskModel) {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(HF_CONFIG_FILE)).unwrap()).unwrap();
    let cfg: ModelConfig = serde_json::from_value(config["taskmoe"]["model"].clone()).unwrap();
    let heads: Vec<HeadSpec> = serde_json::from_value(config["taskmoe"]["heads"].clone()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &cfg, &heads).unwrap();
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    for file in [HF_MODEL_FILE, HF_HEADS_FILE] {
        tensors.extend(Tensor::read_safetensors(dir.join(file)).unwrap());
    }
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    assert_eq!(
        names,
        tensors.keys().collect::<Vec<_>>(),
        "{}: the files hold exactly the model's tensors",
        dir.display()
    );
    tch::no_grad(|| {
        for (name, var) in &vars {
            var.shallow_clone()
                .copy_(&tensors[name].to_kind(Kind::Float));
        }
    });
    (vs, model)
}

fn close(a: &Tensor, b: &Tensor, what: &str) {
    let diff = (a - b).abs();
    let bound = b.abs() * 1e-4 + 1e-5;
    let worst = (&diff - &bound).max().double_value(&[]);
    assert!(
        worst <= 0.0,
        "{what}: logits differ by up to {} ({a} vs {b})",
        diff.max().double_value(&[])
    );
}

#[test]
fn golden_fixtures_match_the_python_module() {
    // Building a model draws its initial weights (overwritten or not compared here).
    let _rng = taskmoe_device::lock_global_rng();
    crate::threads();
    let write = std::env::var_os("TASKMOE_WRITE_EXPORT_FIXTURES").is_some();
    for (i, (name, cfg, task)) in cases().into_iter().enumerate() {
        let dir = golden(name);
        let tasks: Vec<i64> = match task {
            Some(_) => vec![0],
            None => vec![0, 1, 2],
        };
        let batch = inputs(&tasks);
        if write {
            tch::manual_seed(100 + i as i64);
            let vs = nn::VarStore::new(Device::Cpu);
            let model = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
            let export = hf_export(&model, &vs, task).unwrap();
            write_hf_export(&export, &dir, ExportDtype::F32).unwrap();
            // The fixtures keep tensors and config only: python/test_taskmoe_hf.py puts the
            // python/ files beside a copy, as an export does.
            for (file, _) in HF_MODELING_FILES {
                let _ = std::fs::remove_file(dir.join(file));
            }
            std::fs::write(
                dir.join("inputs.json"),
                serde_json::to_string(&batch).unwrap() + "\n",
            )
            .unwrap();
            continue;
        }
        let (vs, model) = load_export(&dir);
        if task.is_none() {
            // The fixture's config.json has what an export writes today outside `taskmoe`
            // (model_type, architectures, auto_map), so the Python checks of the fixtures
            // check today's folders. (`taskmoe.model` predates keys added since with their
            // defaults.)
            let mut fixture: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(HF_CONFIG_FILE)).unwrap())
                    .unwrap();
            let fixture = fixture.as_object_mut().unwrap();
            fixture.remove("torch_dtype");
            fixture.remove("taskmoe");
            let mut today = hf_export(&model, &vs, None).unwrap().config;
            let today = today.as_object_mut().unwrap();
            today.remove("taskmoe");
            assert_eq!(
                fixture, today,
                "{name}: config.json differs from today's export (regenerate the fixtures)"
            );
        }
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let rows: Vec<Vec<f64>> = serde_json::from_value(expected["logits"].clone()).unwrap();
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let want = Tensor::from_slice(&flat)
            .view([rows.len() as i64, -1])
            .to_kind(Kind::Float);
        close(&logits(&model, &batch), &want, name);
    }
}

#[test]
fn a_task_level_sub_network_is_a_bert_model_with_the_same_logits() {
    // Building a model draws its initial weights (overwritten or not compared here).
    let _rng = taskmoe_device::lock_global_rng();
    crate::threads();
    let (_, cfg, _) = cases().remove(2);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
    let dir = tempfile_dir("subnet");
    for task in 0..3usize {
        let export = hf_export(&model, &vs, Some(task)).unwrap();
        assert_eq!(export.layout, HfLayout::Bert);
        assert_eq!(export.config["model_type"], "bert");
        // k = 2 experts + 1 shared expert of width 24, concatenated.
        assert_eq!(export.config["intermediate_size"], 3 * 24);
        write_hf_export(&export, &dir, ExportDtype::F32).unwrap();
        let (_dense_vs, dense) = load_export(&dir);
        assert!(dense.moe_layers().is_empty(), "the sub-network is dense");
        let batch = inputs(&[task as i64]);
        let mut single = batch.clone();
        single.insert("task_ids", vec![vec![0; 6]]);
        let original = logits(&model, &batch);
        let width = heads()[task].num_outputs() as i64;
        close(
            &logits(&dense, &single).narrow(1, 0, width),
            &original.narrow(1, 0, width),
            &format!("task {task}"),
        );
    }
    let err = hf_export(&model, &vs, Some(3)).unwrap_err().to_string();
    assert!(err.contains("out of range"), "{err}");
    let mut per_task = cfg.clone();
    per_task.moe.router.kind = RouterKind::PerTask;
    let vs2 = nn::VarStore::new(Device::Cpu);
    let m2 = MultiTaskModel::new(&vs2.root(), &per_task, &heads()).unwrap();
    let err = hf_export(&m2, &vs2, Some(0)).unwrap_err().to_string();
    assert!(err.contains("task-level"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_dense_model_exports_as_bert_with_pt_metadata_in_any_dtype() {
    // Building a model draws its initial weights (overwritten or not compared here).
    let _rng = taskmoe_device::lock_global_rng();
    crate::threads();
    let cfg = small().with_variant(Variant::Dense);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
    let export = hf_export(&model, &vs, None).unwrap();
    assert_eq!(export.layout, HfLayout::Bert);
    let names: Vec<&String> = export.encoder.keys().collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("embeddings.") || n.starts_with("encoder.layer.")),
        "{names:?}"
    );
    assert!(names.contains(&&"encoder.layer.1.intermediate.dense.weight".to_string()));
    assert_eq!(
        export.heads.len(),
        3 * 4,
        "dense + out, weight + bias, per task"
    );
    let dir = tempfile_dir("dtypes");
    for (dtype, kind, torch) in [
        (ExportDtype::F32, Kind::Float, "float32"),
        (ExportDtype::Bf16, Kind::BFloat16, "bfloat16"),
        (ExportDtype::F16, Kind::Half, "float16"),
    ] {
        write_hf_export(&export, &dir, dtype).unwrap();
        for file in [HF_MODEL_FILE, HF_HEADS_FILE] {
            let meta = read_metadata(&dir.join(file)).unwrap();
            assert_eq!(meta, vec![("format".to_string(), "pt".to_string())]);
            for (name, t) in Tensor::read_safetensors(dir.join(file)).unwrap() {
                assert_eq!(t.kind(), kind, "{name}");
            }
        }
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(HF_CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(config["torch_dtype"], torch);
        assert_eq!(config["hidden_size"], 16);
    }
    // A MoE model keeps taskmoe's layout.
    let moe_vs = nn::VarStore::new(Device::Cpu);
    let moe = MultiTaskModel::new(&moe_vs.root(), &small(), &heads()).unwrap();
    let export = hf_export(&moe, &moe_vs, None).unwrap();
    assert_eq!(export.layout, HfLayout::Taskmoe);
    assert_eq!(export.config["model_type"], "taskmoe");
    assert!(export
        .encoder
        .contains_key("encoder.layer.0.moe.experts.w1"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lora_experts_export_merged_into_ffn_experts_with_the_same_logits() {
    // Building a model draws its initial weights.
    let _rng = taskmoe_device::lock_global_rng();
    crate::threads();
    tch::manual_seed(9);
    let mut cfg = small();
    cfg.variant = Variant::TaskMoe;
    cfg.moe.router.kind = RouterKind::PerTask;
    cfg.moe.router.k = 2;
    cfg.moe.router.renormalize = true;
    cfg.moe.expert_kind = taskmoe_experts::ExpertKind::Lora;
    cfg.moe.lora_rank = 4;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
    // Trained-looking factors, so the experts differ from the base and from one another.
    tch::no_grad(|| {
        for (name, t) in vs.variables() {
            if name.contains(".lora_") {
                let _ = t.shallow_clone().normal_(0.0, 0.2);
            }
        }
    });
    let export = hf_export(&model, &vs, None).unwrap();
    assert_eq!(export.layout, HfLayout::Taskmoe);
    assert_eq!(
        export.config["taskmoe"]["model"]["moe"]["expert_kind"],
        "ffn"
    );
    assert!(export
        .encoder
        .keys()
        .all(|n| !n.contains("lora_") && !n.contains(".base.")));
    let dir = tempfile_dir("lora");
    write_hf_export(&export, &dir, ExportDtype::F32).unwrap();
    let (_merged_vs, merged) = load_export(&dir);
    let batch = inputs(&[0, 1, 2]);
    close(
        &logits(&merged, &batch),
        &logits(&model, &batch),
        "merged LoRA experts",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `python3 -c ast.parse` on `file` when a `python3` is on the PATH; `false` when there is none.
fn python_parses(file: &Path) -> bool {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])",
        ])
        .arg(file)
        .output();
    match out {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{} does not parse: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
        Err(_) => false,
    }
}

#[test]
fn a_taskmoe_layout_export_carries_the_modelling_code_its_auto_map_names() {
    // Building a model draws its initial weights.
    let _rng = taskmoe_device::lock_global_rng();
    crate::threads();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &small(), &heads()).unwrap();
    let export = hf_export(&model, &vs, None).unwrap();
    assert_eq!(export.layout, HfLayout::Taskmoe);
    let dir = tempfile_dir("auto-map");
    write_hf_export(&export, &dir, ExportDtype::F32).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(HF_CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(config["model_type"], "taskmoe");
    assert_eq!(config["architectures"][0], "TaskmoeModel");
    assert_eq!(
        config["auto_map"],
        serde_json::json!({
            "AutoConfig": "configuration_taskmoe.TaskmoeConfig",
            "AutoModel": "modeling_taskmoe.TaskmoeModel",
        })
    );
    assert_eq!(
        config["auto_map"].as_object().unwrap().len(),
        HF_AUTO_MAP.len()
    );
    // Each file is the repository's python/ file, unchanged (one implementation).
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python");
    let mut parsed = true;
    for (name, code) in HF_MODELING_FILES {
        let written = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(written, code, "{name}");
        assert_eq!(
            written,
            std::fs::read_to_string(python.join(name)).unwrap(),
            "{name} is python/{name}"
        );
        parsed &= python_parses(&dir.join(name));
    }
    if !parsed {
        eprintln!("no python3 on the PATH: the written files were not parsed");
    }
    // Every auto_map entry names a class its module defines, and that class a model_type /
    // the relative imports transformers copies beside it.
    let source = |module: &str| std::fs::read_to_string(dir.join(format!("{module}.py"))).unwrap();
    for (auto, target) in HF_AUTO_MAP {
        let (module, class) = target.split_once('.').unwrap();
        assert_eq!(config["auto_map"][auto], target);
        assert!(
            source(module).contains(&format!("\nclass {class}(")),
            "{module}.py defines {class}"
        );
    }
    assert!(source("configuration_taskmoe").contains("model_type = \"taskmoe\""));
    let modeling = source("modeling_taskmoe");
    for import in [
        "from .configuration_taskmoe import TaskmoeConfig",
        "from .taskmoe_hf import TaskMoeExport",
    ] {
        assert!(modeling.contains(import), "{import}");
    }
    assert!(source("taskmoe_hf").contains("\nclass TaskMoeExport("));
    // transformers' check_imports scans each file (docstrings included) for `import X` and
    // `from X import` lines and refuses to load when X is not importable: only relative
    // imports, the standard library used and what transformers itself brings.
    let importable = [
        "argparse",
        "json",
        "math",
        "os",
        "torch",
        "safetensors",
        "transformers",
        "huggingface_hub",
    ];
    for (name, code) in HF_MODELING_FILES {
        for line in code.lines().map(str::trim_start) {
            let module = match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["import", m] | ["from", m, "import", ..] => m,
                _ => continue,
            };
            let top = module.split('.').next().unwrap();
            assert!(
                module.starts_with('.') || importable.contains(&top),
                "{name}: `{line}` imports {module}, which a user's environment may lack"
            );
        }
    }
    // A bert-layout export into the same folder leaves no modelling code for AutoModel.
    let dense_vs = nn::VarStore::new(Device::Cpu);
    let dense = MultiTaskModel::new(
        &dense_vs.root(),
        &small().with_variant(Variant::Dense),
        &heads(),
    )
    .unwrap();
    let export = hf_export(&dense, &dense_vs, None).unwrap();
    assert_eq!(export.layout, HfLayout::Bert);
    assert!(export.config.get("auto_map").is_none());
    write_hf_export(&export, &dir, ExportDtype::F32).unwrap();
    for (name, _) in HF_MODELING_FILES {
        assert!(!dir.join(name).exists(), "{name}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskmoe-export-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
