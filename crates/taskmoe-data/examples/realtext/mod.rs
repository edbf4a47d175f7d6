//! What the real-text benchmarks' builders (`examples/wordnet.rs`, `examples/pydocs.rs`)
//! share: their command line, the registry check or rewrite, and writing the data folder.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;

/// The command line `INPUT OUT [--registry FILE] [--write-registry] [--quiet]`, with the
/// builder's own flags.
pub struct Args {
    /// The source folder the benchmark is built from.
    pub input: PathBuf,
    /// The data folder to write.
    pub out: PathBuf,
    /// `--registry FILE`.
    pub registry: Option<PathBuf>,
    /// `--write-registry`.
    pub write_registry: bool,
    /// `--quiet`.
    pub quiet: bool,
}

impl Args {
    /// Reads the process's arguments; `extra(flag, rest)` takes the builder's own flags
    /// (reading any value from `rest`) and says whether `flag` was one of them.
    pub fn parse(
        usage: &str,
        mut extra: impl FnMut(&str, &mut std::env::Args) -> Result<bool, Box<dyn Error>>,
    ) -> Result<Self, Box<dyn Error>> {
        let mut paths = Vec::new();
        let (mut registry, mut write_registry, mut quiet) = (None, false, false);
        let mut args = std::env::args();
        args.next();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--registry" => registry = Some(PathBuf::from(args.next().ok_or(usage)?)),
                "--write-registry" => write_registry = true,
                "--quiet" => quiet = true,
                flag if extra(flag, &mut args)? => {}
                flag if flag.starts_with('-') => {
                    return Err(format!("unknown flag `{flag}`\n{usage}").into())
                }
                _ => paths.push(PathBuf::from(arg)),
            }
        }
        let [input, out] = <[PathBuf; 2]>::try_from(paths).map_err(|_| usage.to_string())?;
        Ok(Args {
            input,
            out,
            registry,
            write_registry,
            quiet,
        })
    }

    /// With `--write-registry` writes `generated` (the registry of `taskmoe_data::<module>`)
    /// to the `--registry` file, else warns when that file differs from it.
    pub fn sync_registry(
        &self,
        generated: String,
        module: &str,
        usage: &str,
    ) -> Result<(), Box<dyn Error>> {
        match (&self.registry, self.write_registry) {
            (Some(file), true) => {
                std::fs::write(file, generated)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                eprintln!("wrote {}", file.display());
            }
            (Some(file), false) => {
                if std::fs::read_to_string(file).ok() != Some(generated) {
                    eprintln!(
                        "warning: {} differs from the task table of taskmoe_data::{module}; \
                         --write-registry rewrites it",
                        file.display()
                    );
                }
            }
            (None, true) => {
                return Err(format!("--write-registry needs --registry FILE\n{usage}").into())
            }
            (None, false) => {}
        }
        Ok(())
    }

    /// Writes `files` as the data folder when they changed, then, unless `--quiet`, prints
    /// their `source_file` (the summary) to stderr and the folder to stdout.
    pub fn write_data(
        &self,
        files: &BTreeMap<String, String>,
        source_file: &str,
    ) -> Result<(), Box<dyn Error>> {
        let out = &self.out;
        if taskmoe_data::wordnet::write_if_changed(out, files)? {
            eprintln!("wrote {}", out.display());
        } else {
            eprintln!("{} is up to date", out.display());
        }
        if !self.quiet {
            eprint!("{}", files[source_file]);
            println!("{}", out.display());
        }
        Ok(())
    }
}
