"""The layout's rules, checked on the source tree.

* SQL lives under warehouse/ only (queries/, views/, migrations/ and store.py): a Python module in
  flows/, tasks/ or stubllm/ whose code holds a string that is an SQL statement fails. The scan reads
  string constants with `ast` (f-strings with their fields blanked), so comments never count and
  docstrings (the first statement of a module, class or function) and `help=` texts are skipped: prose
  may explain or show SQL.
  Statements are recognised by upper-case keywords in statement shape (SELECT … FROM, INSERT INTO,
  UPDATE … SET, DELETE FROM, CREATE TABLE/VIEW, COPY … TO, WITH … AS (…)), the project's SQL style;
  an English sentence ("select the rows from …") does not trip it. bench/ and tests/ are harnesses,
  not the product, and are not scanned.
* No module shadows an installed distribution: running a file of flows/ as a script puts its folder
  first on sys.path, where `datasets.py` once hid Hugging Face `datasets`. Every module and package
  name in flows/, tasks/, warehouse/ and stubllm/ (at any depth) is checked against the top-level
  import names of the installed distributions.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("flows", "tasks", "stubllm")
NAMED = ("flows", "tasks", "warehouse", "stubllm")

SQL_STATEMENT = re.compile(
    r"\bSELECT\b[^;]*?\bFROM\b|\bINSERT\s+(?:OR\s+\w+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?(?:TABLE|VIEW)\b|\bCOPY\b[^;]*?\bTO\b"
    r"|\bWITH\s+\w+\s+AS\s*\(|\bALTER\s+TABLE\b|\bDROP\s+(?:TABLE|VIEW)\b",
    re.DOTALL,
)


def _prose_ids(tree: ast.AST) -> set[int]:
    """Docstrings, and `help=` texts of CLI options (an example statement shown to the user)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "help" and isinstance(node.value, ast.Constant):
            ids.add(id(node.value))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string in code: constants, and f-strings with each field as `?`."""
    skip = _prose_ids(tree)
    out: list[tuple[int, str]] = []
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                inside_fstrings.add(id(value))
                parts.append(value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else "?")
            out.append((node.lineno, "".join(parts)))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
                and id(node) not in inside_fstrings):
            out.append((node.lineno, node.value))
    return out


def sql_in_python(roots: tuple[str, ...] = SCANNED, base: Path = ROOT) -> list[str]:
    """`file:line: text` for every SQL statement held by a Python module under `roots`."""
    found = []
    for root in roots:
        for path in sorted((base / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, text in _strings(tree):
                if SQL_STATEMENT.search(text):
                    found.append(f"{path.relative_to(base)}:{line}: {' '.join(text.split())[:80]}")
    return found


def test_no_python_module_outside_warehouse_holds_sql() -> None:
    offenders = sql_in_python()
    assert not offenders, ("SQL belongs in warehouse/queries/*.sql (read with libra.warehouse.sql_text):\n  "
                           + "\n  ".join(offenders))


def test_the_sql_scan_finds_statements_and_spares_prose(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "m.py").write_text(
        '"""Docstrings may say SELECT x FROM t."""\n'
        "# a comment: DELETE FROM t\n"
        "A = 'SELECT count(*) FROM runs'\n"
        "B = f'INSERT INTO {table} VALUES (?)'\n"
        "C = 'select the rows from the file'\n"
        "E = option(help='e.g. SELECT * FROM v_dataset')\n"
        "D = 'UPDATE runs SET summary = ?'\n"
        "def f():\n"
        "    '''Function docstring: COPY t TO x.'''\n"
        "    return 'WITH last AS (SELECT 1) SELECT * FROM last'\n",
        encoding="utf-8",
    )
    found = sql_in_python(("tasks",), tmp_path)
    assert [f.split(":")[1] for f in found] == ["4", "3", "7", "10"]


def _module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in root.rglob("*"):
        if path.suffix == ".py" and path.stem not in ("__init__", "__main__"):
            names.setdefault(path.stem, path)
        elif path.is_dir() and (path / "__init__.py").exists():
            names.setdefault(path.name, path)
    return names


def test_no_module_is_named_like_an_installed_distribution() -> None:
    installed = set(importlib.metadata.packages_distributions())
    assert "yaml" in installed and "polars" in installed  # the check sees the environment
    clashes = [f"{path.relative_to(ROOT)} shadows the installed {name!r} "
               f"({', '.join(importlib.metadata.packages_distributions()[name])})"
               for root in NAMED for name, path in sorted(_module_names(ROOT / root).items()) if name in installed]
    assert not clashes, "rename these modules:\n  " + "\n  ".join(clashes)
