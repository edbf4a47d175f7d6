//! `cargo xtask test --repeat N [--only SUBSTR]... [-- test args]`: builds the workspace's test
//! binaries once, runs every one of them `N` times (each from its package folder, as `cargo
//! test` does) and reports every test whose outcome was not the same in all runs. A flaky test
//! is one this finds; the rule that prevents them is in docs/architecture.md (testing).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::libtorch::Libtorch;
use crate::project::{cargo, check_status};
use crate::Result;

/// One test binary of the workspace.
#[derive(Debug, PartialEq)]
struct TestBinary {
    /// `crate/target` as reports name it.
    name: String,
    executable: PathBuf,
    /// The package folder (the working directory `cargo test` gives it).
    package_dir: PathBuf,
}

/// Outcomes of one test over the runs: `[passed, failed, ignored]`.
type Tally = [usize; 3];

/// Parses `--repeat N`, `--only SUBSTR` and the test binaries' own arguments (after `--`).
pub fn parse(args: &[String]) -> Result<(usize, Vec<String>, Vec<String>)> {
    let (ours, theirs) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], args[i + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    let (mut repeat, mut only) = (None, Vec::new());
    let mut it = ours.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "--repeat" => {
                let v = value("--repeat")?;
                repeat = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("--repeat {v}: expected a positive count"))?,
                )
            }
            "--only" => only.push(value("--only")?),
            other => return Err(format!("test --repeat: unknown argument `{other}`").into()),
        }
    }
    let repeat = repeat.ok_or("test --repeat: missing --repeat N")?;
    Ok((repeat, only, theirs))
}

/// Builds the test binaries and runs each `repeat` times; an error when any test failed in any
/// run (a report of which, and whether it also passed, comes first).
pub fn run(
    lt: &Libtorch,
    envs: &[(&str, PathBuf)],
    repeat: usize,
    only: &[String],
    test_args: &[String],
) -> Result<()> {
    let binaries: Vec<TestBinary> = build(lt)?
        .into_iter()
        .filter(|b| only.is_empty() || only.iter().any(|o| b.name.contains(o.as_str())))
        .collect();
    if binaries.is_empty() {
        return Err("test --repeat: no test binary matches --only".into());
    }
    let started = Instant::now();
    let mut flaky = Vec::new();
    let mut failed = Vec::new();
    for bin in &binaries {
        let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
        let mut crashes = 0;
        for _ in 0..repeat {
            let mut cmd = Command::new(&bin.executable);
            cmd.args(test_args).current_dir(&bin.package_dir);
            lt.apply_env(&mut cmd);
            for (k, v) in envs {
                cmd.env(k, v);
            }
            let out = cmd.output().map_err(|e| format!("{}: {e}", bin.name))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let results = parse_results(&text);
            if !out.status.success() && !results.iter().any(|(_, o)| *o == 1) {
                // Died without naming a failing test (a crash, an abort).
                crashes += 1;
            }
            for (test, outcome) in results {
                tallies.entry(test).or_default()[outcome] += 1;
            }
        }
        let tests = tallies.len();
        for (test, [pass, fail, _]) in &tallies {
            if *fail > 0 && *pass > 0 {
                flaky.push(format!(
                    "{}: {test} (passed {pass}, failed {fail})",
                    bin.name
                ));
            } else if *fail > 0 {
                failed.push(format!("{}: {test} (failed {fail} of {repeat})", bin.name));
            }
        }
        if crashes > 0 {
            failed.push(format!(
                "{}: the binary exited with an error and no failing test {crashes} of \
                 {repeat} times",
                bin.name
            ));
        }
        println!(
            "{:<40} {tests:>4} tests x {repeat} runs: {}",
            bin.name,
            if tallies.values().all(|t| t[1] == 0) && crashes == 0 {
                "same outcome every run"
            } else {
                "FAILURES"
            }
        );
    }
    println!(
        "{} binaries, {repeat} runs each, {:.0} s; {} flaky, {} failing",
        binaries.len(),
        started.elapsed().as_secs_f64(),
        flaky.len(),
        failed.len()
    );
    for line in flaky.iter().chain(&failed) {
        println!("  {line}");
    }
    if flaky.is_empty() && failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} tests changed outcome between runs, {} failed",
            flaky.len(),
            failed.len()
        )
        .into())
    }
}

/// `cargo test --workspace --no-run`, returning the test binaries it built.
fn build(lt: &Libtorch) -> Result<Vec<TestBinary>> {
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-run", "--message-format=json"]);
    lt.apply_env(&mut cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("cargo test --no-run: {e}"))?;
    check_status(&cmd, out.status)?;
    Ok(parse_artifacts(&String::from_utf8_lossy(&out.stdout)))
}

/// The test executables in cargo's JSON messages (one object per line).
fn parse_artifacts(json_lines: &str) -> Vec<TestBinary> {
    json_lines
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && built_for_test(l))
        .filter_map(|l| {
            let executable = PathBuf::from(string_field(l, "executable")?);
            let manifest = PathBuf::from(string_field(l, "manifest_path")?);
            let package_dir = manifest.parent()?.to_path_buf();
            let target = string_field(l, "name")?;
            let package = package_dir.file_name()?.to_string_lossy().into_owned();
            Some(TestBinary {
                name: format!("{package}/{target}"),
                executable,
                package_dir,
            })
        })
        .collect()
}

/// Whether an artifact was built by the test profile (`"profile":{...,"test":true}`), not a
/// plain binary that tests run as a subprocess (its target also says `"test":true`).
fn built_for_test(line: &str) -> bool {
    line.find("\"profile\":{").is_some_and(|start| {
        let profile = &line[start..];
        let end = profile.find('}').unwrap_or(profile.len());
        profile[..end].contains("\"test\":true")
    })
}

/// The first `"key":"value"` string of a JSON line (cargo writes no spaces and escapes only
/// `"` and `\` in paths, which ours do not contain).
fn string_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = line[start..].find('"')?;
    Some(line[start..start + len].to_string())
}

/// `test NAME ... ok|FAILED|ignored` lines of libtest's output, as `(name, outcome index)`.
fn parse_results(stdout: &str) -> Vec<(String, usize)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("test ")?;
            let (name, outcome) = rest.rsplit_once(" ... ")?;
            let i = match outcome.trim() {
                "ok" => 0,
                "FAILED" => 1,
                o if o.starts_with("ignored") => 2,
                _ => return None,
            };
            Some((name.to_string(), i))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_and_results_parse() {
        let line = r#"{"reason":"compiler-artifact","package_id":"x","manifest_path":"/w/crates/taskmoe-model/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"transfer","src_path":"/w/crates/taskmoe-model/tests/transfer.rs"},"profile":{"opt_level":"1","test":true},"features":[],"filenames":["/w/target/debug/deps/transfer-1"],"executable":"/w/target/debug/deps/transfer-1","fresh":true}"#;
        let lib = line.replace("\"test\":true", "\"test\":false");
        // A binary the tests run as a subprocess: its target is testable, its profile is not.
        let bin = r#"{"reason":"compiler-artifact","manifest_path":"/w/crates/taskmoe-cli/Cargo.toml","target":{"kind":["bin"],"name":"taskmoe","test":true},"profile":{"opt_level":"1","test":false},"executable":"/w/target/debug/taskmoe","fresh":true}"#;
        let bins = parse_artifacts(&format!("{line}\n{lib}\n{bin}\n"));
        assert_eq!(
            bins,
            vec![TestBinary {
                name: "taskmoe-model/transfer".into(),
                executable: "/w/target/debug/deps/transfer-1".into(),
                package_dir: "/w/crates/taskmoe-model".into(),
            }]
        );
        let out =
            "running 3 tests\ntest a ... ok\ntest b::c ... FAILED\ntest d ... ignored, slow\n\
                   test result: FAILED. 1 passed; 1 failed";
        assert_eq!(
            parse_results(out),
            vec![("a".into(), 0), ("b::c".into(), 1), ("d".into(), 2)]
        );
    }

    #[test]
    fn repeat_flags_parse_and_reject_nonsense() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let (n, only, rest) = parse(&args("--repeat 20 --only model -- --test-threads 2")).unwrap();
        assert_eq!(
            (n, only, rest),
            (20, vec!["model".into()], args("--test-threads 2"))
        );
        assert!(parse(&args("--repeat 0")).is_err());
        assert!(parse(&args("--repeat x")).is_err());
        assert!(parse(&args("--only a")).is_err());
    }
}
