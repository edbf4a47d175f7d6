//! `cargo xtask fetch-data <benchmark>`: the real-text benchmarks ([`crate::wordnet`],
//! [`crate::pydocs`]) and how xtask runs their builders, which live in the data crate.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::libtorch;
use crate::project::{self, cargo, run_cmd};
use crate::pypi::remove_leftovers;
use crate::{pydocs, wordnet, Result};

/// The usage line of `fetch-data`.
const USAGE: &str = "usage: cargo xtask fetch-data <wordnet|pydocs> [--write-registry]";

/// `cargo xtask fetch-data <wordnet|pydocs> [--write-registry]`.
pub fn fetch(args: &[String]) -> Result<()> {
    let (name, rest) = args.split_first().ok_or(USAGE)?;
    match name.as_str() {
        "wordnet" => wordnet::BENCHMARK.fetch(rest),
        "pydocs" => pydocs::BENCHMARK.fetch(rest),
        other => Err(format!(
            "unknown data set `{other}`: the known ones are wordnet and pydocs\n{USAGE}"
        )
        .into()),
    }
}

/// A real-text benchmark: its input (a folder unpacked from pinned Debian packages, made once
/// in the cache) and the data crate's builder example of the same name, which writes
/// `configs/<name>/data/` from it when its files differ from what the rules give and checks
/// (or with `--write-registry` rewrites) `configs/<name>/tasks.toml`.
pub struct RealText {
    /// The benchmark's name: its folder under `configs/`, its builder example, its argument
    /// to `fetch-data`.
    pub name: &'static str,
    /// Makes the input folder when needed and returns it.
    pub input: fn() -> Result<PathBuf>,
}

impl RealText {
    /// `cargo xtask fetch-data <name> [--write-registry]` (`args` after the name): provisions
    /// the benchmark.
    pub fn fetch(&self, args: &[String]) -> Result<()> {
        let write_registry = match args {
            [] => false,
            [flag] if flag == "--write-registry" => true,
            _ => {
                return Err(format!(
                    "usage: cargo xtask fetch-data {} [--write-registry]",
                    self.name
                )
                .into())
            }
        };
        let input = (self.input)()?;
        let mut extra = vec![
            "--registry".to_string(),
            self.registry_path().display().to_string(),
        ];
        if write_registry {
            extra.push("--write-registry".into());
        }
        self.build(&input, &extra)
    }

    /// Unpacks the input when needed and (re)writes the task files when they differ from what
    /// the rules give; returns the input folder and the data folder.
    pub fn ensure(&self) -> Result<(PathBuf, PathBuf)> {
        let input = (self.input)()?;
        self.build(&input, &["--quiet".to_string()])?;
        Ok((input, self.data_dir()))
    }

    /// The committed registry of the benchmark.
    fn registry_path(&self) -> PathBuf {
        project::root()
            .join("configs")
            .join(self.name)
            .join("tasks.toml")
    }

    /// The folder the task files are written to (git-ignored; the registry's paths point
    /// there).
    fn data_dir(&self) -> PathBuf {
        project::root().join("configs").join(self.name).join("data")
    }

    /// Runs the builder example on `input`, writing [`RealText::data_dir`].
    fn build(&self, input: &Path, extra: &[String]) -> Result<()> {
        let mut args = vec![
            input.as_os_str().to_owned(),
            self.data_dir().into_os_string(),
        ];
        args.extend(extra.iter().map(Into::into));
        run_builder(self.name, &args)
    }
}

/// Unpacks the packages `debs` into a temporary folder beside `dest`, lets `keep` make
/// the finished folder from the unpacked tree (`keep(unpacked, scratch)` returns a folder
/// inside the temporary one), writes `stamp` into it as `stamp_file`, and moves it to `dest`,
/// replacing what was there: a folder at `dest` is always complete.
pub fn install_unpacked(
    debs: &[PathBuf],
    dest: &Path,
    (stamp_file, stamp): (&str, &str),
    keep: impl FnOnce(&Path, &Path) -> Result<PathBuf>,
) -> Result<()> {
    let data = dest.parent().ok_or("the install folder has no parent")?;
    fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp_prefix = format!(".tmp-{name}-");
    remove_leftovers(data, &[tmp_prefix.as_str()]);
    let tmp = data.join(format!("{tmp_prefix}{}", std::process::id()));
    let unpacked = tmp.join("deb");
    fs::create_dir_all(&unpacked).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    for deb in debs {
        crate::debian::unpack(deb, &unpacked)?;
    }
    let fresh = keep(&unpacked, &tmp)?;
    fs::write(fresh.join(stamp_file), stamp)
        .map_err(|e| format!("cannot write the stamp in {}: {e}", fresh.display()))?;
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(|e| format!("cannot replace {}: {e}", dest.display()))?;
    }
    fs::rename(&fresh, dest)
        .map_err(|e| format!("cannot move {} into place: {e}", fresh.display()))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(())
}

/// Runs the data crate's example `example` (a benchmark builder) with `args`.
///
/// The example is built with the whole workspace's examples (`cargo build --workspace
/// --examples`), not `cargo run -p taskmoe-data`: the workspace resolves its dependencies'
/// features once, so `cargo test --workspace` afterwards reuses the same tch build instead of
/// compiling it a second time. xtask links no library crate (it must build before libtorch
/// exists), hence a separate program.
pub fn run_builder(example: &str, args: &[OsString]) -> Result<()> {
    let lt = libtorch::ensure()?;
    let mut compile = cargo();
    compile.args(["build", "--workspace", "--examples", "--quiet"]);
    lt.apply_env(&mut compile);
    run_cmd(&mut compile)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| project::root().join("target"));
    let mut cmd = std::process::Command::new(target.join("debug").join("examples").join(example));
    cmd.args(args);
    lt.apply_env(&mut cmd);
    run_cmd(&mut cmd)
}
