//! The paths of a saved configuration (a run folder's or a checkpoint's `config.toml`), so a
//! run folder moved or copied elsewhere still finds its data:
//!
//! - **written** relative to the folder the file is saved in when the two share more than the
//!   filesystem root (data and models in the project tree, which move with it), absolute
//!   otherwise (a cache in the home folder, say); the file's first lines name the folder it
//!   was saved in;
//! - **read** relative to the file's folder where it now is (a project moved or copied whole),
//!   and where that names nothing, relative to the folder it was saved in (a run folder moved
//!   on its own, its data left where it was).

use std::path::{Component, Path, PathBuf};

/// The start of the line of a saved configuration that names the folder it was saved in.
pub const SAVED_IN: &str = "# saved in: ";

/// The header of a configuration saved in `folder` (absolute).
pub(crate) fn header(folder: &Path) -> String {
    format!(
        "# The resolved configuration of a taskmoe run. Relative paths are relative to this\n\
         # file's folder; where that names nothing, to the folder it was saved in:\n\
         {SAVED_IN}{}\n\n",
        folder.display()
    )
}

/// The folder a saved configuration's text names as the one it was saved in.
pub(crate) fn saved_in(text: &str) -> Option<PathBuf> {
    text.lines()
        .take_while(|line| line.starts_with('#'))
        .find_map(|line| line.strip_prefix(SAVED_IN))
        .map(PathBuf::from)
}

/// `target` as a path relative to `folder` (both absolute) when they share more than the
/// root, `target` itself otherwise.
pub(crate) fn portable(target: &Path, folder: &Path) -> PathBuf {
    let (target, folder) = (normalize(target), normalize(folder));
    let (t, f): (Vec<Component>, Vec<Component>) =
        (target.components().collect(), folder.components().collect());
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let shares_only_root = t
        .iter()
        .take(common)
        .all(|c| matches!(c, Component::RootDir | Component::Prefix(_)));
    if !target.is_absolute() || !folder.is_absolute() || shares_only_root {
        return target;
    }
    let mut relative = PathBuf::new();
    for _ in common..f.len() {
        relative.push("..");
    }
    for c in &t[common..] {
        relative.push(c.as_os_str());
    }
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    relative
}

/// A path of a configuration file in `dir`: relative ones against `dir`, and where that names
/// nothing but the same path against `saved_in` does, against `saved_in`.
pub(crate) fn resolve(path: &str, dir: &Path, saved_in: Option<&Path>) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let here = normalize(&dir.join(path));
    match saved_in.map(|folder| normalize(&folder.join(path))) {
        Some(there) if !here.exists() && there.exists() => there,
        _ => here,
    }
}

/// `path` with `.` dropped and each `..` taking off the component before it (lexically).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_the_tree_become_relative_and_others_stay_absolute() {
        let run = Path::new("/work/p/runs/a");
        let data = Path::new("/work/p/configs/../data/tasks.toml");
        assert_eq!(portable(data, run), Path::new("../../data/tasks.toml"));
        assert_eq!(
            portable(Path::new("/work/p/runs/a/v.txt"), run),
            Path::new("v.txt")
        );
        assert_eq!(portable(run, run), Path::new("."));
        let cache = Path::new("/root/.cache/taskmoe/models/m");
        assert_eq!(portable(cache, run), cache);
    }

    #[test]
    fn a_relative_path_is_read_where_the_file_is_then_where_it_was_saved() {
        let root = tempfile::tempdir().unwrap();
        let (old, new) = (
            root.path().join("old/runs/a"),
            root.path().join("new/runs/a"),
        );
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        let data = "../../data.toml";
        // Nowhere: read where the file is (the error will name that path).
        assert_eq!(
            resolve(data, &new, Some(&old)),
            root.path().join("new/data.toml")
        );
        // Only at the old place: read there.
        std::fs::write(root.path().join("old/data.toml"), "").unwrap();
        assert_eq!(
            resolve(data, &new, Some(&old)),
            root.path().join("old/data.toml")
        );
        // Moved with the file: read where the file is.
        std::fs::write(root.path().join("new/data.toml"), "").unwrap();
        assert_eq!(
            resolve(data, &new, Some(&old)),
            root.path().join("new/data.toml")
        );
        assert_eq!(resolve("/abs/x", &new, Some(&old)), Path::new("/abs/x"));
    }

    #[test]
    fn the_header_names_the_folder_and_reads_back() {
        let text = header(Path::new("/work/p/runs/my run")) + "[model]\n";
        assert_eq!(saved_in(&text), Some(PathBuf::from("/work/p/runs/my run")));
        assert_eq!(saved_in("[model]\n# saved in: /x\n"), None);
    }
}
