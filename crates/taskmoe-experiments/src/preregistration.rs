//! The confirmatory protocol the experiments follow (`PROTOCOL.md` beside this crate's
//! `Cargo.toml`, embedded at build time) and the provenance every report records: the
//! protocol's SHA-256 and the commit the binary was built from, so a reader can check that the
//! reports were made under the protocol the git history shows committed before them.

use sha2::{Digest, Sha256};

/// The protocol's text, as embedded in this build.
pub const PROTOCOL: &str = include_str!("../PROTOCOL.md");

/// The protocol's SHA-256 (lower-case hex).
pub fn protocol_sha256() -> String {
    Sha256::digest(PROTOCOL.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The commit this binary was built from: `TASKMOE_GIT_COMMIT` at build time (set by `cargo
/// xtask`, with `-dirty` when the work tree had changes), or `unknown`.
pub fn build_commit() -> &'static str {
    option_env!("TASKMOE_GIT_COMMIT").unwrap_or("unknown")
}

/// Which protocol, by its hash: the start of every provenance line.
fn protocol_clause() -> String {
    format!(
        "Protocol: `PROTOCOL.md` (crates/taskmoe-experiments), SHA-256 `{}`",
        protocol_sha256()
    )
}

/// The line every report and `verdicts.md` carries.
pub fn provenance_line() -> String {
    format!(
        "{}; built from commit `{}`.",
        protocol_clause(),
        build_commit()
    )
}

/// The line of the table merged across benchmarks (`verdicts::across`): the protocol, the
/// commit that merged the reports, and where the runs' own build commit is named (each
/// benchmark's chunks merge only when one build made them, and each source names it).
pub fn merge_provenance_line() -> String {
    format!(
        "{}. This table was merged by a build of commit `{}`; the commit that built the runs \
         is named with each source below.",
        protocol_clause(),
        build_commit()
    )
}

/// The same for `results.json` / `verdicts.json`.
pub fn provenance_json() -> serde_json::Value {
    serde_json::json!({
        "protocol_sha256": protocol_sha256(),
        "commit": build_commit(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_embedded_and_hashed() {
        assert!(PROTOCOL.contains("## Claim 1") && PROTOCOL.contains("## Claim 3"));
        let h = protocol_sha256();
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(provenance_line().contains(&h));
        assert!(merge_provenance_line().contains(&h));
        assert!(merge_provenance_line().contains(build_commit()));
    }
}
