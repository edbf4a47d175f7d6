//! The integration tests of `taskmoe-experiments`, one test binary (one link of libtorch) with
//! a module per topic.

use std::path::PathBuf;

mod config;
mod identical;

/// An empty scratch folder for test `name` of this process (emptied first if it exists).
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("taskmoe-experiments-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
