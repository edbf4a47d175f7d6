//! The Python docstring scanner (`taskmoe_data::pydocs::read_tree`) on a small library written
//! here: every docstring form it must read, the ones it must skip (bytes, f-strings, a
//! concatenation, a file with a string never closed), test folders and installed packages
//! left out, and which of the found docstrings the tasks may use (word limits, duplicates).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::files::{scratch, write};
use taskmoe_data::pydocs::{self, Docstring, Kind};
use taskmoe_data::DataError;

/// The module with every docstring form: raw module docstring, one-line, decorated
/// multi-line signature with a `)` in a default and a `(` in a comment, one-quote class
/// docstring, `u` prefix, nested class, positional-only and keyword-only markers,
/// static and class methods, `async def`, nested function, a string that is not a docstring,
/// bytes and f-string literals, a concatenation, an inline docstring, escapes, duplicates.
const MOD_PY: &str = r#"#!/usr/bin/env python3
# -*- coding: utf-8 -*-
r'''Raw module docstring keeps \d as written.

Second paragraph, dropped.'''
import os


def one_line(a, b=1):
    """Return the sum of two numbers."""
    return a + b


@decorator(arg)
def multi_line_signature(
    first,
    second: "str" = ")",  # a comment with a ( bracket
    *args,
    key=None,
    **kwargs,
) -> dict:
    '''
    Build a mapping from
    the given   arguments.

    Details follow here.
    '''


class Outer(Base, metaclass=Meta):
    "A class with a one-quote docstring."

    class Inner:
        u"""Nested class docstring here."""

        def method(self, x, /, y, *, z):
            """Nested method docstring here."""

        @staticmethod
        def static(x, y):
            """A static method has no self."""

        @classmethod
        def build(cls):
            """A class method drops cls."""

    async def fetch(self, *, url):
        """Fetch the resource asynchronously."""
        def helper():
            """A nested helper function here."""

    def no_doc(self):
        x = """not a docstring"""


def bytes_doc():
    b"""bytes are not docstrings"""


def fstring_doc():
    f"""f-strings are not docstrings either"""


def concatenated():
    """Concatenated """ """docstring."""


def inline(): """Inline docstring on the def line."""


def escaped():
    """Tab\there and a backslash \\ here."""


def dup_a():
    """Same text in two places."""


def dup_c():
    """Kept once, at its first place."""
"#;

/// The fixture library: `pkg` (package docstring, the module above, a file with a string never
/// closed, a Latin-1 file, a test folder and a `tests` folder), `other.py`,
/// `idlelib/idle_test` and `site-packages`.
fn fixture_lib() -> PathBuf {
    let lib = scratch("lib");
    write(&lib, "pkg/mod.py", MOD_PY);
    write(
        &lib,
        "pkg/__init__.py",
        "\"\"\"Package doc.\"\"\"\n\n\ndef dup_c():\n    \"\"\"Kept once, at its first place.\"\"\"\n",
    );
    write(
        &lib,
        "other.py",
        "\"\"\"The other module's docstring.\"\"\"\n\n\ndef dup_b():\n    \"\"\"Same text in two places.\"\"\"\n",
    );
    write(&lib, "pkg/broken.py", "x = 1\n\"\"\"never closed\n");
    std::fs::write(lib.join("pkg/latin.py"), b"x = 1\n'''caf\xe9'''\n").unwrap();
    for rel in [
        "pkg/test/test_mod.py",
        "pkg/sub/tests/t.py",
        "idlelib/idle_test/t.py",
        "site-packages/foo.py",
    ] {
        write(&lib, rel, "\"\"\"A test module docstring.\"\"\"\n");
    }
    write(&lib, "pkg/README.txt", "\"\"\"Not Python.\"\"\"\n");
    lib
}

/// One expected docstring: path, line, kind, object, params, summary.
type Found = (
    &'static str,
    usize,
    Kind,
    &'static str,
    Option<usize>,
    &'static str,
);

/// The docstrings as CPython's `ast` reads the fixture, less `concatenated` (a
/// concatenation, which the scanner skips and counts).
#[rustfmt::skip]
const EXPECTED: [Found; 18] = [
    ("other.py", 1, Kind::Module, "other", None,
        "The other module's docstring."),
    ("other.py", 4, Kind::Function, "other.dup_b", Some(0),
        "Same text in two places."),
    ("pkg/__init__.py", 1, Kind::Module, "pkg", None,
        "Package doc."),
    ("pkg/__init__.py", 4, Kind::Function, "pkg.dup_c", Some(0),
        "Kept once, at its first place."),
    ("pkg/mod.py", 3, Kind::Module, "pkg.mod", None,
        r"Raw module docstring keeps \d as written."),
    ("pkg/mod.py", 9, Kind::Function, "pkg.mod.one_line", Some(2),
        "Return the sum of two numbers."),
    ("pkg/mod.py", 15, Kind::Function, "pkg.mod.multi_line_signature", Some(5),
        "Build a mapping from the given arguments."),
    ("pkg/mod.py", 30, Kind::Class, "pkg.mod.Outer", None,
        "A class with a one-quote docstring."),
    ("pkg/mod.py", 33, Kind::Class, "pkg.mod.Outer.Inner", None,
        "Nested class docstring here."),
    ("pkg/mod.py", 36, Kind::Method, "pkg.mod.Outer.Inner.method", Some(3),
        "Nested method docstring here."),
    ("pkg/mod.py", 40, Kind::Method, "pkg.mod.Outer.Inner.static", Some(2),
        "A static method has no self."),
    ("pkg/mod.py", 44, Kind::Method, "pkg.mod.Outer.Inner.build", Some(0),
        "A class method drops cls."),
    ("pkg/mod.py", 47, Kind::Method, "pkg.mod.Outer.fetch", Some(1),
        "Fetch the resource asynchronously."),
    ("pkg/mod.py", 49, Kind::Function, "pkg.mod.Outer.fetch.helper", Some(0),
        "A nested helper function here."),
    ("pkg/mod.py", 68, Kind::Function, "pkg.mod.inline", Some(0),
        "Inline docstring on the def line."),
    ("pkg/mod.py", 71, Kind::Function, "pkg.mod.escaped", Some(0),
        r"Tab here and a backslash \ here."),
    ("pkg/mod.py", 75, Kind::Function, "pkg.mod.dup_a", Some(0),
        "Same text in two places."),
    ("pkg/mod.py", 79, Kind::Function, "pkg.mod.dup_c", Some(0),
        "Kept once, at its first place."),
];

#[test]
fn the_scanner_reads_every_docstring_form_and_skips_tests() {
    let lib = fixture_lib();
    let scan = pydocs::read_tree(&lib).unwrap();
    let _ = std::fs::remove_dir_all(&lib);
    let got: Vec<_> = scan
        .docstrings
        .iter()
        .map(|d| {
            (
                d.path.as_str(),
                d.line,
                d.kind,
                d.object(),
                d.params,
                d.summary.as_str(),
            )
        })
        .collect();
    let want: Vec<_> = EXPECTED
        .iter()
        .map(|&(p, l, k, o, n, s)| (p, l, k, o.to_string(), n, s))
        .collect();
    assert_eq!(got, want);
    let pkg = &scan.docstrings[2];
    assert_eq!((pkg.module.as_str(), pkg.package.as_str()), ("pkg", "pkg"));
    let method = &scan.docstrings[9];
    assert_eq!(
        (method.module.as_str(), method.package.as_str()),
        ("pkg.mod", "pkg")
    );
    assert_eq!(method.name, "Outer.Inner.method");
    // Five files read (broken.py and latin.py among them), four test or installed files left
    // out.
    assert_eq!((scan.files, scan.test_files), (5, 4));
    let skipped: Vec<(&str, usize)> = scan.skipped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        skipped,
        [
            ("bytes or f-string literal where a docstring belongs", 2),
            ("docstring literal followed by more code", 1),
            ("file: a string literal is never closed", 1),
            ("file: not UTF-8", 1),
        ]
    );
    assert_eq!(
        scan.unreadable,
        [
            "pkg/broken.py:2: a string literal is never closed",
            "pkg/latin.py:2: not UTF-8"
        ]
    );
}

#[test]
fn a_file_that_cannot_be_scanned_names_its_line() {
    let mut skipped = BTreeMap::new();
    let err = pydocs::parse_source("pkg/broken.py", "x = 1\n\"\"\"never closed\n", &mut skipped);
    assert_eq!(err.unwrap_err(), (2, "a string literal is never closed"));
    let err = pydocs::parse_source("f.py", "def f(\n    a,\n", &mut skipped).unwrap_err();
    assert_eq!(err, (1, "a bracket is never closed"));
    let missing = pydocs::read_tree(Path::new("/nonexistent/taskmoe-pydocs")).unwrap_err();
    assert!(matches!(missing, DataError::Io { .. }), "{missing}");
    assert_eq!(pydocs::module_of("email/mime/text.py"), "email.mime.text");
    assert_eq!(pydocs::module_of("json/__init__.py"), "json");
}

#[test]
fn usable_keeps_three_to_forty_words_and_each_text_once() {
    let lib = fixture_lib();
    let scan = pydocs::read_tree(&lib).unwrap();
    let _ = std::fs::remove_dir_all(&lib);
    let usable: Vec<String> = pydocs::usable(&scan.docstrings)
        .iter()
        .map(|d| format!("{}:{}", d.path, d.line))
        .collect();
    // "Package doc." has two words; "Same text in two places." is in two packages (dropped
    // everywhere); "Kept once, ..." twice in `pkg` as a function of no parameter (kept first).
    assert!(!usable.contains(&"pkg/__init__.py:1".to_string()));
    assert!(!usable
        .iter()
        .any(|u| u == "other.py:4" || u == "pkg/mod.py:75"));
    assert!(usable.contains(&"pkg/__init__.py:4".to_string()));
    assert!(!usable.contains(&"pkg/mod.py:79".to_string()));
    assert_eq!(usable.len(), EXPECTED.len() - 4);
    let long = Docstring {
        summary: vec!["word"; 41].join(" "),
        ..scan.docstrings[0].clone()
    };
    assert!(pydocs::usable(&[long]).is_empty());
}
