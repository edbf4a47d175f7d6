//! Writing the benchmark's data folder: all files at once (a temporary sibling renamed into
//! place), and not at all when the folder already holds exactly them.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::error::{invalid, DataError, Result};

/// The name prefix of the temporary siblings [`write_if_changed`] writes and moves aside; the
/// writer's process id follows it.
const TMP_PREFIX: &str = ".data.tmp-";

/// Writes `files` (relative path -> content, as [`super::extract`] returns them) as the
/// folder `out`, atomically: a temporary sibling is written and renamed into place, so a
/// reader sees the old folder or the new one, never a mix. Leaves `out` untouched when it
/// already holds exactly `files` and nothing else. Returns whether it wrote.
pub fn write_if_changed(out: &Path, files: &BTreeMap<String, String>) -> Result<bool> {
    if holds_exactly(out, files) {
        return Ok(false);
    }
    let parent = out
        .parent()
        .ok_or_else(|| invalid(out.display().to_string(), "the data folder has no parent"))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    fs::create_dir_all(parent).map_err(io(parent))?;
    remove_leftovers(parent);
    let tmp = parent.join(format!("{TMP_PREFIX}{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    for (rel, text) in files {
        let path = tmp.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        fs::write(&path, text).map_err(io(&path))?;
    }
    if out.exists() {
        let old = parent.join(format!("{TMP_PREFIX}{}-old", std::process::id()));
        fs::rename(out, &old).map_err(io(out))?;
        let _ = fs::remove_dir_all(&old);
    }
    fs::rename(&tmp, out).map_err(io(out))?;
    Ok(true)
}

/// Removes the temporary folders that writers which no longer run left in `dir` (their process
/// id, after [`TMP_PREFIX`], is not in `/proc`).
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(TMP_PREFIX) {
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Whether the folder `dir` holds `files` and nothing else.
fn holds_exactly(dir: &Path, files: &BTreeMap<String, String>) -> bool {
    fn list(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type()?.is_dir() {
                list(&entry.path(), &format!("{name}/"), out)?;
            } else {
                out.push(name);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    if list(dir, "", &mut found).is_err() {
        return false;
    }
    found.sort();
    found.iter().eq(files.keys())
        && files
            .iter()
            .all(|(rel, text)| fs::read_to_string(dir.join(rel)).is_ok_and(|t| &t == text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_what_changed_and_replaces_the_whole_folder() {
        let parent =
            std::env::temp_dir().join(format!("taskmoe-wordnet-write-{}", std::process::id()));
        let _ = fs::remove_dir_all(&parent);
        let out = parent.join("data");
        let mut files = BTreeMap::new();
        files.insert(
            "a/train.tsv".to_string(),
            "synset\tgloss\tlabel\n".to_string(),
        );
        files.insert("SOURCE.txt".to_string(), "v1\n".to_string());
        assert!(write_if_changed(&out, &files).unwrap());
        assert!(!write_if_changed(&out, &files).unwrap(), "nothing changed");
        // A stray file or a changed one makes it write again; the stray file is gone after.
        fs::write(out.join("stray.txt"), "x").unwrap();
        assert!(write_if_changed(&out, &files).unwrap());
        assert!(!out.join("stray.txt").exists());
        files.insert("SOURCE.txt".to_string(), "v2\n".to_string());
        assert!(write_if_changed(&out, &files).unwrap());
        assert_eq!(fs::read_to_string(out.join("SOURCE.txt")).unwrap(), "v2\n");
        // A dead writer's leftover goes; no temporary folder of this writer stays.
        let dead = parent.join(format!("{TMP_PREFIX}4294967295"));
        fs::create_dir_all(&dead).unwrap();
        files.insert("SOURCE.txt".to_string(), "v3\n".to_string());
        assert!(write_if_changed(&out, &files).unwrap());
        let mut left: Vec<String> = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let _ = fs::remove_dir_all(&parent);
        assert_eq!(left, ["data"]);
    }
}
