"""What CPython's ast finds in a Python library folder, in the format of the pydocs example's
`--dump`: one docstring a line (path, line, kind, object, parameters, first paragraph;
tab-separated, sorted), so the pure-Rust scanner of taskmoe_data::pydocs can be compared with
the reference parser:

    cargo run -p taskmoe-data --example pydocs -- LIB /tmp/out --quiet --dump /tmp/rust.tsv
    python3 python/pydocs_ast.py LIB > /tmp/ast.tsv && diff /tmp/ast.tsv /tmp/rust.tsv

LIB is the unpacked library (`cargo xtask fetch-data pydocs` puts it in
~/.cache/taskmoe/data/python3.11-stdlib_3.11.2-6+deb12u7). Run it with a Python 3.11 (the
library's own grammar): on Debian bookworm's the two files are identical (6,502 docstrings).
Standard library only.
"""

import ast
import os
import sys

SKIPPED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def first_paragraph(doc):
    """The lines from the first non-blank one to the next blank one, blanks normalised."""
    doc = "".join(" " if c != "\n" and (ord(c) < 32 or 127 <= ord(c) < 160) else c for c in doc)
    lines = []
    for line in doc.split("\n"):
        if not line.strip():
            if lines:
                break
            continue
        lines.append(line)
    return " ".join(" ".join(lines).split())


def params(fn, method):
    """Parameters, not counting the first of a method that is not a staticmethod."""
    a = fn.args
    n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
    n += (a.vararg is not None) + (a.kwarg is not None)
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    return max(n - 1, 0) if method and not static else n


def docstrings(root):
    rows = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.relpath(os.path.join(folder, name), root)
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            module = path[:-3].replace("/__init__", "").replace("/", ".")
            doc = ast.get_docstring(tree, clean=False)
            if doc is not None:
                rows.append((path, tree.body[0].lineno, "module", module, "-", first_paragraph(doc)))

            def walk(node, in_class, qual):
                for child in ast.iter_child_nodes(node):
                    if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        walk(child, in_class, qual)
                        continue
                    is_class = isinstance(child, ast.ClassDef)
                    kind = "class" if is_class else ("method" if in_class else "function")
                    names = qual + [child.name]
                    doc = ast.get_docstring(child, clean=False)
                    if doc is not None:
                        n = "-" if is_class else str(params(child, in_class))
                        obj = module + "." + ".".join(names)
                        rows.append((path, child.lineno, kind, obj, n, first_paragraph(doc)))
                    walk(child, is_class, names)

            walk(tree, False, [])
    return sorted("\t".join(map(str, r)) + "\n" for r in rows)


if __name__ == "__main__":
    sys.stdout.write("".join(docstrings(sys.argv[1])))
