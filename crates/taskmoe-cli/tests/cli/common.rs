//! Helpers shared by the CLI's integration tests.

use std::path::PathBuf;

/// The MiniLM folder (`cargo xtask test` sets `TASKMOE_MINILM_DIR`).
pub fn minilm() -> PathBuf {
    let dir = std::env::var_os("TASKMOE_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/taskmoe/models/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").exists(),
        "{}: run `cargo xtask fetch-model minilm`",
        dir.display()
    );
    dir
}
