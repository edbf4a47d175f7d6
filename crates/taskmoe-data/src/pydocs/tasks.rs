//! The task table of the docstring benchmark: labels (groups of top-level packages, kinds of
//! object, parameter counts), roles and [`TASKS`], from which both the split files and the
//! registry are made.

use super::parse::{Docstring, Kind};
pub use crate::realtext::Role;

/// Which docstrings a label takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The docstrings (of any kind) of these top-level packages and modules.
    Packages(&'static [&'static str]),
    /// The docstrings of this kind from the packages of no family ([`outside_families`]).
    Kind(Kind),
    /// The function and method docstrings from the packages of no family whose callable takes
    /// `min` to `max` parameters (`self` / `cls` not counted; `usize::MAX` = no limit).
    Params {
        /// The fewest parameters.
        min: usize,
        /// The most parameters.
        max: usize,
    },
}

/// One label of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// The label name in the files and the registry.
    pub label: &'static str,
    /// The docstrings it takes.
    pub rule: Rule,
    /// What it is, for the registry comments and `SOURCE.txt`.
    pub about: &'static str,
}

impl Class {
    /// Whether the docstring `d` belongs to this label.
    pub fn takes(&self, d: &Docstring) -> bool {
        match self.rule {
            Rule::Packages(p) => p.contains(&d.package.as_str()),
            Rule::Kind(k) => d.kind == k && outside_families(&d.package),
            Rule::Params { min, max } => {
                outside_families(&d.package) && d.params.is_some_and(|n| (min..=max).contains(&n))
            }
        }
    }
}

const fn packages(label: &'static str, about: &'static str, p: &'static [&'static str]) -> Class {
    Class {
        label,
        rule: Rule::Packages(p),
        about,
    }
}

/// Packages no task uses: generated code whose docstrings are near copies of each other (the
/// codec modules: "Python Character Mapping Codec cp1252 generated from ..."), which would put
/// near duplicates in different splits.
pub const EXCLUDED: &[&str] = &["encodings"];

// Family "internet": the Python Library Reference's chapters on internet data, protocols and
// markup.
const MAIL: Class = packages(
    "mail",
    "email messages and mailboxes",
    &[
        "email", "mailbox", "smtplib", "smtpd", "imaplib", "poplib", "mailcap", "quopri", "uu",
    ],
);
const WEB: Class = packages(
    "web",
    "HTTP, URLs, WSGI, CGI, HTML",
    &[
        "http",
        "urllib",
        "wsgiref",
        "cgi",
        "cgitb",
        "webbrowser",
        "mimetypes",
        "html",
        "nturl2path",
    ],
);
const NETWORK: Class = packages(
    "network",
    "sockets, TLS, servers, FTP, Telnet, NNTP, XML-RPC",
    &[
        "socket",
        "ssl",
        "socketserver",
        "selectors",
        "ipaddress",
        "ftplib",
        "telnetlib",
        "nntplib",
        "xmlrpc",
        "asynchat",
        "asyncore",
        "netrc",
    ],
);
const MARKUP: Class = packages("markup", "XML processing", &["xml", "_markupbase"]);

// Family "tooling": importing and packaging, language services, testing, debugging.
const IMPORTING: Class = packages(
    "importing",
    "imports, packaging, site and build configuration",
    &[
        "importlib",
        "pkgutil",
        "modulefinder",
        "runpy",
        "imp",
        "site",
        "sysconfig",
        "zipimport",
        "compileall",
        "py_compile",
        "venv",
        "zipapp",
        "_sitebuiltins",
        "_distutils_system_mod",
        "distutils",
        "_aix_support",
        "_osx_support",
    ],
);
const LANGUAGE: Class = packages(
    "language",
    "introspection, typing and Python language services",
    &[
        "inspect",
        "typing",
        "dis",
        "ast",
        "symtable",
        "tokenize",
        "token",
        "pyclbr",
        "keyword",
        "opcode",
        "pickletools",
        "tabnanny",
        "codeop",
        "code",
    ],
);
const TESTING: Class = packages(
    "testing",
    "unit tests and doctests",
    &["unittest", "doctest"],
);
const DEBUGGING: Class = packages(
    "debugging",
    "debuggers, tracebacks, tracing and profiling",
    &[
        "pdb",
        "bdb",
        "traceback",
        "trace",
        "tracemalloc",
        "profile",
        "cProfile",
        "pstats",
        "timeit",
        "faulthandler",
    ],
);

// Family "system": files, processes, data formats, archives.
const FILES: Class = packages(
    "files",
    "paths, directories, file objects",
    &[
        "pathlib",
        "os",
        "posixpath",
        "ntpath",
        "genericpath",
        "glob",
        "fnmatch",
        "stat",
        "shutil",
        "tempfile",
        "filecmp",
        "fileinput",
        "linecache",
        "io",
        "_pyio",
    ],
);
const PROCESSES: Class = packages(
    "processes",
    "processes and signals",
    &[
        "multiprocessing",
        "subprocess",
        "signal",
        "pty",
        "tty",
        "_bootsubprocess",
    ],
);
const FORMATS: Class = packages(
    "formats",
    "serialisation, data files and binary encodings",
    &[
        "pickle",
        "copyreg",
        "shelve",
        "marshal",
        "dbm",
        "sqlite3",
        "csv",
        "configparser",
        "tomllib",
        "plistlib",
        "json",
        "xdrlib",
        "codecs",
        "base64",
        "struct",
    ],
);
const ARCHIVES: Class = packages(
    "archives",
    "compression and archives",
    &[
        "tarfile",
        "zipfile",
        "gzip",
        "bz2",
        "lzma",
        "_compression",
        "zlib",
    ],
);

// The unrelated tasks: the docstrings of the packages of no family, by form, not topic.
const CLASS: Class = Class {
    label: "class",
    rule: Rule::Kind(Kind::Class),
    about: "class docstrings",
};
const FUNCTION: Class = Class {
    label: "function",
    rule: Rule::Kind(Kind::Function),
    about: "function docstrings",
};
const METHOD: Class = Class {
    label: "method",
    rule: Rule::Kind(Kind::Method),
    about: "method docstrings",
};
const NO_PARAMS: Class = Class {
    label: "none",
    rule: Rule::Params { min: 0, max: 0 },
    about: "callables of no parameter",
};
const ONE_PARAM: Class = Class {
    label: "one",
    rule: Rule::Params { min: 1, max: 1 },
    about: "callables of one parameter",
};
const PARAMS: Class = Class {
    label: "several",
    rule: Rule::Params {
        min: 2,
        max: usize::MAX,
    },
    about: "callables of two or more parameters",
};

/// One task of the benchmark.
pub type TaskDef = crate::realtext::TaskDef<Class>;

impl crate::realtext::ClassDef for Class {
    fn label(&self) -> &'static str {
        self.label
    }
}

/// Examples per label of the high-resource tasks.
const HIGH: [usize; 3] = [90, 15, 40];
/// Examples per label of the low-resource and held-out tasks.
const FEW: [usize; 3] = [15, 15, 40];
/// Examples per label of the unrelated tasks.
const UNRELATED: [usize; 3] = [150, 15, 40];

/// The tasks, in registry (task id) order. Each family draws on four labels A, B, C, D: the
/// high-resource task is [A, B, C], the low-resource one [A, D, C] and the held-out one
/// [A, B, D], so every pair of a family shares two labels, the held-out task shares its first
/// two label positions with the high-resource one (whose head it can start from), and D is
/// learned only from the low-resource task. A label is a set of top-level packages, and
/// families share none; the unrelated tasks take the docstrings of the other packages,
/// labelled by what they document and by its number of parameters.
pub const TASKS: &[TaskDef] = &[
    task(
        "internet_hi",
        "internet",
        Role::High,
        &[MAIL, WEB, NETWORK],
        HIGH,
    ),
    task(
        "tooling_hi",
        "tooling",
        Role::High,
        &[IMPORTING, LANGUAGE, TESTING],
        HIGH,
    ),
    task(
        "system_hi",
        "system",
        Role::High,
        &[FILES, PROCESSES, ARCHIVES],
        HIGH,
    ),
    task(
        "internet_lo",
        "internet",
        Role::Low,
        &[MAIL, MARKUP, NETWORK],
        FEW,
    ),
    task(
        "tooling_lo",
        "tooling",
        Role::Low,
        &[IMPORTING, DEBUGGING, TESTING],
        FEW,
    ),
    task(
        "system_lo",
        "system",
        Role::Low,
        &[FILES, FORMATS, ARCHIVES],
        FEW,
    ),
    task(
        "internet_new",
        "internet",
        Role::HeldOut,
        &[MAIL, WEB, MARKUP],
        FEW,
    ),
    task(
        "tooling_new",
        "tooling",
        Role::HeldOut,
        &[IMPORTING, LANGUAGE, DEBUGGING],
        FEW,
    ),
    task(
        "system_new",
        "system",
        Role::HeldOut,
        &[FILES, PROCESSES, FORMATS],
        FEW,
    ),
    task(
        "doc_kind",
        "doc_kind",
        Role::Unrelated,
        &[CLASS, FUNCTION, METHOD],
        UNRELATED,
    ),
    task(
        "arity",
        "arity",
        Role::Unrelated,
        &[NO_PARAMS, ONE_PARAM, PARAMS],
        UNRELATED,
    ),
];

const fn task(
    name: &'static str,
    family: &'static str,
    role: Role,
    classes: &'static [Class],
    per_class: [usize; 3],
) -> TaskDef {
    TaskDef {
        name,
        family,
        role,
        classes,
        per_class,
    }
}

/// Whether the top-level package `package` belongs to no label of a family (and is not
/// [`EXCLUDED`]): the packages whose docstrings the unrelated tasks take.
pub fn outside_families(package: &str) -> bool {
    !EXCLUDED.contains(&package)
        && !TASKS.iter().flat_map(|t| t.classes).any(|c| match c.rule {
            Rule::Packages(p) => p.contains(&package),
            _ => false,
        })
}
