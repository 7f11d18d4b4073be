"""What every `libra` command shares: the warehouse and config options, opening a warehouse, printing
rows and JSON, failing with a clear message.

It imports typer and the warehouse module (DuckDB) only: `libra sql` and `libra status` answer without
polars, pyarrow, pydantic, rich or Prefect (bench/cli_start.py measures it), so rows are printed by
the plain formatter below, not a rich table, and the factory config (pydantic) is read only when
--config is given.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
import unicodedata
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from libra.warehouse import Warehouse, WarehouseError

if TYPE_CHECKING:
    import polars as pl

WarehouseOpt = Annotated[
    str | None,
    typer.Option("--warehouse", "-w", help="DuckDB warehouse file (default: $LIBRA_WAREHOUSE, else the config's)."),
]
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Factory config YAML (see configs/).")]
ReaderConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Take the warehouse from this factory config.")
]


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` on stderr and leave with `code` (2: the input is wrong)."""
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def print_json(value: Any) -> None:
    echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def warehouse_from(warehouse: str | None, config: Path | None = None) -> str:
    """--warehouse, else $LIBRA_WAREHOUSE, else the config's `warehouse` key."""
    path = warehouse or os.environ.get("LIBRA_WAREHOUSE")
    if not path and config is not None:
        from libra.tasks.core.config import ConfigError, load_config

        try:
            path = load_config(config).warehouse
        except ConfigError as e:
            fail(str(e))
    if not path:
        fail("no warehouse given: pass --warehouse PATH, --config FILE or set LIBRA_WAREHOUSE")
    return path


def open_reader(warehouse: str | None, config: Path | None = None) -> Warehouse:
    """The warehouse a read command inspects; it must exist."""
    try:
        return Warehouse(warehouse_from(warehouse, config), create=False)
    except WarehouseError as e:
        fail(str(e))


def open_writer(warehouse: str | None) -> Warehouse:
    """The warehouse an import writes (created when missing): --warehouse, else $LIBRA_WAREHOUSE."""
    path = warehouse or os.environ.get("LIBRA_WAREHOUSE")
    if not path:
        fail("no warehouse given: pass --warehouse PATH or set LIBRA_WAREHOUSE")
    try:
        return Warehouse(path)
    except WarehouseError as e:
        fail(str(e))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _width(text: str) -> int:
    """Terminal cells of `text`: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None) -> str:
    cells = [[_cell(v).replace("\n", " ") for v in row] for row in rows]
    widths = [max([_width(c), *(_width(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "│ " + " │ ".join(v + " " * (w - _width(v)) for v, w in zip(values, widths)) + " │"

    def rule(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    out = [title] if title else []
    out += [rule("┌", "┬", "┐"), line(columns), rule("├", "┼", "┤"), *(line(r) for r in cells), rule("└", "┴", "┘")]
    return "\n".join(out)


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: OutputFormat = OutputFormat.table,
               title: str | None = None) -> None:
    """Rows as a table (CJK-aware widths), CSV with a header, or one JSON object per line."""
    if fmt is OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
        return
    if fmt is OutputFormat.json:
        for row in rows:
            sys.stdout.write(json.dumps(dict(zip(columns, row)), ensure_ascii=False, default=str) + "\n")
        return
    echo(_table(columns, rows, title))


def print_frame(frame: pl.DataFrame, fmt: OutputFormat = OutputFormat.table, title: str | None = None) -> None:
    print_rows(frame.columns, frame.rows(), fmt, title)
