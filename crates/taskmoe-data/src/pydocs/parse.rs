//! The docstrings of Python source files: every module, class, function and method whose
//! body starts with a string literal, with where it is and what it documents.

use std::collections::BTreeMap;
use std::path::Path;

use super::literal::{find_at_depth, first_paragraph, leading_literal};
use super::scan::{logical_lines, LogicalLine};
use crate::error::{DataError, Result};

/// What a docstring documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A module (the first statement of its file).
    Module,
    /// A class.
    Class,
    /// A function (at module level or nested in a function).
    Function,
    /// A function defined in a class body.
    Method,
}

impl Kind {
    /// The kind as the files write it (`module`, `class`, `function`, `method`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Module => "module",
            Kind::Class => "class",
            Kind::Function => "function",
            Kind::Method => "method",
        }
    }
}

/// One docstring found in a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Docstring {
    /// The file, relative to the scanned root, with `/` separators (`email/mime/text.py`).
    pub path: String,
    /// The 1-based line of the `def` / `class` line, or of the docstring of a module.
    pub line: usize,
    /// The dotted module (`email.mime.text`; a package's `__init__.py` is the package).
    pub module: String,
    /// The top-level package or module (`email`).
    pub package: String,
    /// What it documents.
    pub kind: Kind,
    /// The qualified name in its module (`MIMEText.__init__`); empty for a module.
    pub name: String,
    /// For functions and methods, the number of parameters, not counting `self` / `cls` (the
    /// first parameter of a method that is not a `@staticmethod`), `/` and a bare `*`;
    /// `*args` and `**kwargs` count.
    pub params: Option<usize>,
    /// The first paragraph of the docstring, blanks normalised (may be empty).
    pub summary: String,
}

impl Docstring {
    /// `email.mime.text.MIMEText.__init__` (the module alone for a module).
    pub fn object(&self) -> String {
        if self.name.is_empty() {
            self.module.clone()
        } else {
            format!("{}.{}", self.module, self.name)
        }
    }
}

/// What scanning a tree of source files found: the docstrings, and what it skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scan {
    /// The docstrings, in path and then line order.
    pub docstrings: Vec<Docstring>,
    /// `.py` files read.
    pub files: usize,
    /// `.py` files left out as tests or installed packages.
    pub test_files: usize,
    /// What was skipped, by reason (`"string literal never closed"`, ...), with counts. A
    /// file that cannot be scanned is skipped whole; a literal where a docstring belongs that
    /// Python would not take as one (bytes, f-string) or that this scanner does not take
    /// (followed by more code: a concatenation, a method call) is skipped alone.
    pub skipped: BTreeMap<String, usize>,
    /// The files skipped whole, as `path:line: why` (the line where the problem starts).
    pub unreadable: Vec<String>,
}

/// The directory names whose files are not scanned: test suites, installed packages, caches.
pub const SKIPPED_DIRS: [&str; 6] = [
    "test",
    "tests",
    "idle_test",
    "site-packages",
    "dist-packages",
    "__pycache__",
];

/// The dotted module of a `.py` path relative to the tree root (`email/mime/text.py` ->
/// `email.mime.text`, `json/__init__.py` -> `json`).
pub fn module_of(path: &str) -> String {
    let stem = path.strip_suffix(".py").unwrap_or(path);
    let stem = stem.strip_suffix("/__init__").unwrap_or(stem);
    stem.replace('/', ".")
}

/// A class or function whose body is open at the current line.
struct Block {
    indent: usize,
    class: bool,
    qualname: String,
}

/// The docstrings of one source file (`path` relative to the tree root, `/` separators).
/// `Err` is the 1-based line and message of what makes the file unscannable (a string or
/// bracket never closed). Literals in docstring position that are not taken are counted in
/// `skipped`.
pub fn parse_source(
    path: &str,
    src: &str,
    skipped: &mut BTreeMap<String, usize>,
) -> std::result::Result<Vec<Docstring>, (usize, &'static str)> {
    let lines = logical_lines(src).map_err(|e| (e.line, e.message))?;
    let module = module_of(path);
    let package = module.split('.').next().unwrap_or("").to_string();
    let record = |line: usize, kind: Kind, name: String, params, summary| Docstring {
        path: path.to_string(),
        line,
        module: module.clone(),
        package: package.clone(),
        kind,
        name,
        params,
        summary,
    };
    let mut out = Vec::new();
    let mut stack: Vec<Block> = Vec::new();
    // A header whose block starts on the next line: (its indent, docstring record sans text).
    let mut pending: Option<(usize, Docstring)> = None;
    let mut decorators: Vec<String> = Vec::new();
    for (i, ll) in lines.iter().enumerate() {
        if i == 0 && ll.indent == 0 {
            if let Some(summary) = docstring(&ll.text, skipped) {
                out.push(record(ll.line, Kind::Module, String::new(), None, summary));
                continue;
            }
        }
        if let Some((indent, mut doc)) = pending.take() {
            if ll.indent > indent {
                if let Some(summary) = docstring(&ll.text, skipped) {
                    doc.summary = summary;
                    out.push(doc);
                    continue;
                }
            }
        }
        while stack.last().is_some_and(|b| b.indent >= ll.indent) {
            stack.pop();
        }
        if let Some(name) = ll.text.strip_prefix('@') {
            let end = name.find(|c: char| c == '(' || c.is_whitespace());
            decorators.push(name[..end.unwrap_or(name.len())].to_string());
            continue;
        }
        let decos = std::mem::take(&mut decorators);
        let Some(header) = header(ll, skipped) else {
            continue;
        };
        let parent = stack.last();
        let kind = match (header.class, parent) {
            (true, _) => Kind::Class,
            (false, Some(b)) if b.class => Kind::Method,
            _ => Kind::Function,
        };
        let params = header.params.map(|n| {
            let bound = kind == Kind::Method && !decos.iter().any(|d| d == "staticmethod");
            if bound {
                n.saturating_sub(1)
            } else {
                n
            }
        });
        let qualname = match parent {
            Some(b) => format!("{}.{}", b.qualname, header.name),
            None => header.name.to_string(),
        };
        let doc = record(ll.line, kind, qualname.clone(), params, String::new());
        match header.inline_body {
            Some(body) => {
                if let Some(summary) = docstring(body, skipped) {
                    out.push(Docstring { summary, ..doc });
                }
            }
            None => {
                stack.push(Block {
                    indent: ll.indent,
                    class: header.class,
                    qualname,
                });
                pending = Some((ll.indent, doc));
            }
        }
    }
    Ok(out)
}

/// The summary of the docstring `text` is, when the logical line is one `str` literal; a
/// literal Python or this scanner does not take is counted in `skipped`.
fn docstring(text: &str, skipped: &mut BTreeMap<String, usize>) -> Option<String> {
    let lit = leading_literal(text)?;
    let reason = if !lit.is_str() {
        "bytes or f-string literal where a docstring belongs"
    } else if lit.followed {
        "docstring literal followed by more code"
    } else {
        return Some(first_paragraph(&lit.value));
    };
    *skipped.entry(reason.to_string()).or_default() += 1;
    None
}

/// A `def`, `async def` or `class` line.
struct Header<'a> {
    class: bool,
    name: &'a str,
    /// For a function, the number of its parameters (`self` included).
    params: Option<usize>,
    /// What follows the header's colon on the same line, if anything.
    inline_body: Option<&'a str>,
}

/// The header `ll` is, if it is one; a header this scanner cannot read is counted in
/// `skipped`.
fn header<'a>(ll: &'a LogicalLine, skipped: &mut BTreeMap<String, usize>) -> Option<Header<'a>> {
    let text = ll.text.as_str();
    let after_async = text
        .strip_prefix("async")
        .filter(|r| r.starts_with(char::is_whitespace))
        .map(str::trim_start)
        .unwrap_or(text);
    let (class, rest) = if let Some(r) = after_async.strip_prefix("def") {
        (false, r)
    } else if let Some(r) = after_async.strip_prefix("class") {
        (true, r)
    } else {
        return None;
    };
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let name_at = text.len() - rest.trim_start().len();
    let name_len = text[name_at..]
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len() - name_at);
    let name = &text[name_at..name_at + name_len];
    let mut bad = |reason: &str| {
        *skipped.entry(reason.to_string()).or_default() += 1;
        None
    };
    if name.is_empty() {
        return bad("def or class line without a name");
    }
    let after_name = name_at + name_len;
    let params = if class {
        None
    } else {
        let Some(open) = text[after_name..].find('(').map(|p| after_name + p + 1) else {
            return bad("def line without its parameter list");
        };
        let Some(&len) = find_at_depth(&text[open..], 0, b')').first() else {
            return bad("def line without its parameter list");
        };
        let inner = &text[open..open + len];
        let mut start = 0;
        let mut count = 0;
        for end in find_at_depth(inner, 0, b',')
            .into_iter()
            .chain([inner.len()])
        {
            let item = inner[start..end].trim();
            count += usize::from(!item.is_empty() && item != "/" && item != "*");
            start = end + 1;
        }
        Some(count)
    };
    let Some(&colon) = find_at_depth(text, after_name, b':').first() else {
        return bad("def or class line without its colon");
    };
    let body = text[colon + 1..].trim();
    Some(Header {
        class,
        name,
        params,
        inline_body: (!body.is_empty()).then_some(body),
    })
}

/// Every `.py` file under `root` (sorted by path; the directories of [`SKIPPED_DIRS`] left
/// out) scanned for docstrings. A file that is not UTF-8 or cannot be scanned is skipped,
/// counted and named with the line of the problem ([`Scan::unreadable`]); reading errors name
/// the file.
pub fn read_tree(root: &Path) -> Result<Scan> {
    let mut files = Vec::new();
    let mut scan = Scan::default();
    collect(root, "", &mut files, &mut scan.test_files)?;
    files.sort();
    for rel in files {
        let path = root.join(&rel);
        let bytes = std::fs::read(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        scan.files += 1;
        let result = match String::from_utf8(bytes) {
            Ok(text) => parse_source(&rel, &text, &mut scan.skipped),
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                Err((
                    valid.iter().filter(|&&b| b == b'\n').count() + 1,
                    "not UTF-8",
                ))
            }
        };
        match result {
            Ok(docs) => scan.docstrings.extend(docs),
            Err((line, message)) => {
                *scan.skipped.entry(format!("file: {message}")).or_default() += 1;
                scan.unreadable.push(format!("{rel}:{line}: {message}"));
            }
        }
    }
    if scan.docstrings.is_empty() {
        return Err(DataError::Empty {
            path: root.to_path_buf(),
        });
    }
    Ok(scan)
}

/// Collects the `.py` paths under `dir` (relative to the root, prefixed by `prefix`).
fn collect(dir: &Path, prefix: &str, out: &mut Vec<String>, tests: &mut usize) -> Result<()> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            if SKIPPED_DIRS.contains(&name.as_str()) {
                let mut inner = Vec::new();
                collect(&entry.path(), &format!("{rel}/"), &mut inner, tests)?;
                *tests += inner.len();
            } else {
                collect(&entry.path(), &format!("{rel}/"), out, tests)?;
            }
        } else if name.ends_with(".py") && kind.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}
