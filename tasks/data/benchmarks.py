"""Benchmarks in the Libra-Test record format: read, validate, register — all or nothing.

A file is a JSON list of records (or JSON Lines, one record per line; CSV and Parquet are read too,
through tasks/data/read.py) with the fields source,
category_name, sub_category_name, question, response, label (安全 | 不安全), analyze, id. question, label
and id are required; id is unique within the file. Fields beyond these are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from libra.tasks.core.errors import InputError
from libra.tasks.data.read import SUFFIX_FORMAT, read_file
from libra.warehouse import Warehouse, sql_text

LABELS = ("安全", "不安全")
TEXT_FIELDS = ("source", "category_name", "sub_category_name", "response", "analyze")
MAX_FIELD_CHARS = 100_000
MAX_ERRORS_SHOWN = 10
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

BENCHMARK_SCHEMA = {"item_id": pl.String, "source": pl.String, "category_name": pl.String,
                    "sub_category_name": pl.String, "question": pl.String, "response": pl.String,
                    "label": pl.String, "analyze": pl.String}


class BenchmarkError(InputError):
    """A benchmark file or registration the user has to fix; the message names the file and record."""


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BenchmarkError(f"benchmark name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
    return name


def _records(path: Path) -> list[tuple[str, Any]]:
    """(where, record) pairs: where = 'record [i]' for a JSON list, 'line N' for JSON Lines and CSV,
    'row N' for Parquet. A file without a known suffix is read as JSON (an array or JSON Lines)."""
    fmt = "auto" if path.suffix.lower() in SUFFIX_FORMAT else "json"
    got = read_file(path, format=fmt, undecodable="fail", error=BenchmarkError)
    if got.bad:
        first = got.bad[0]
        raise BenchmarkError(f"{path}: line {first.line}: {first.error}")
    if got.format == "json":
        return [(f"record [{r.row - 1}]", r.value) for r in got.records]
    return [(f"line {r.line}" if r.line is not None else f"row {r.row}", r.value) for r in got.records]


def _check_record(rec: Any, seen: dict[str, str], where: str) -> tuple[dict[str, Any] | None, list[str]]:
    if not isinstance(rec, dict):
        return None, [f"{where}: expected an object, found {type(rec).__name__}"]
    errors = []
    rid = rec.get("id")
    if isinstance(rid, bool) or not isinstance(rid, str | int) or str(rid).strip() == "":
        errors.append(f"{where}: 'id' must be a non-empty string or integer, found {rid!r}")
        item_id = None
    else:
        item_id = str(rid).strip()
        where = f"{where} (id {item_id!r})"
        if item_id in seen:
            errors.append(f"{where}: duplicate id (first at {seen[item_id]})")
        else:
            seen[item_id] = where.split(" (")[0]
    question = rec.get("question")
    if not isinstance(question, str) or not question.strip():
        errors.append(f"{where}: 'question' must be a non-empty string, found {question!r:.60}")
    label = rec.get("label")
    if label not in LABELS:
        errors.append(f"{where}: 'label' must be one of {' / '.join(LABELS)}, found {label!r:.60}")
    for key in TEXT_FIELDS:
        value = rec.get(key)
        if value is not None and not isinstance(value, str):
            errors.append(f"{where}: {key!r} must be a string or null, found {type(value).__name__}")
    for key in ("question", *TEXT_FIELDS):
        value = rec.get(key)
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            errors.append(f"{where}: {key!r} has {len(value):,} characters (at most {MAX_FIELD_CHARS:,})")
    if errors:
        return None, errors
    row = {"item_id": item_id, "question": question, "label": label}
    row.update({k: rec.get(k) for k in TEXT_FIELDS})
    return row, []


def read_benchmark(path: str | Path) -> pl.DataFrame:
    """Every record of a Libra-Test-format file, validated; a BenchmarkError lists what is wrong."""
    path = Path(path)
    records = _records(path)
    if not records:
        raise BenchmarkError(f"{path}: no records")
    rows, errors = [], []
    seen: dict[str, str] = {}
    for where, rec in records:
        row, errs = _check_record(rec, seen, where)
        errors += errs
        if row:
            rows.append(row)
    if errors:
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = f"\n  … and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise BenchmarkError(f"{path}: {len(errors)} invalid field(s); nothing was imported:\n  {shown}{more}")
    return pl.DataFrame(rows, schema=BENCHMARK_SCHEMA)


def register_benchmark(wh: Warehouse, name: str, items: pl.DataFrame, run_id: str) -> int:
    """Insert the items under `name` in one transaction; returns how many were new. Registering the
    same items again changes nothing; different items under a registered name are refused."""
    check_name(name)
    with wh.writer():
        stored = wh.query(sql_text("queries/benchmark_items.sql"), {"name": name})
        if stored.height:
            if stored.cast(BENCHMARK_SCHEMA).equals(items.sort("item_id")):  # type: ignore[arg-type]
                return 0
            raise BenchmarkError(f"benchmark {name!r} is already registered with {stored.height} different "
                                 "items; register this file under another --name")
        return wh.insert("benchmarks", items.with_columns(benchmark=pl.lit(name), run_id=pl.lit(run_id)))
