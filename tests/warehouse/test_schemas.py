"""Every table schema declared in warehouse/schemas.py matches its DuckDB table in a fresh warehouse."""

from __future__ import annotations

import polars as pl
import pytest

from libra.warehouse import Warehouse
from libra.warehouse.schemas import TABLES, schema

# DuckDB's type names for the polars types the declarations use (JSON columns are strings in Python).
DUCKDB_TYPES = {pl.String: {"VARCHAR", "JSON"}, pl.Int32: {"INTEGER"}, pl.Int64: {"BIGINT"},
                pl.Float64: {"DOUBLE"}, pl.Boolean: {"BOOLEAN"}}


@pytest.fixture(scope="module")
def columns(tmp_path_factory) -> dict[str, dict[str, str]]:
    wh = Warehouse(tmp_path_factory.mktemp("schemas") / "fresh.duckdb")
    rows = wh.query("SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'main' AND column_name <> 'created_at'")
    found: dict[str, dict[str, str]] = {}
    for table, column, kind in rows.iter_rows():
        found.setdefault(table, {})[column] = kind
    return found


@pytest.mark.parametrize("table", sorted(TABLES))
def test_declared_schema_equals_the_duckdb_table(table: str, columns: dict[str, dict[str, str]]):
    assert table in columns, f"warehouse/schemas.py declares {table}, which no migration creates"
    stored = columns[table]
    declared = TABLES[table]
    assert sorted(declared) == sorted(stored), (
        f"{table}: declared only {sorted(set(declared) - set(stored))}, in DuckDB only {sorted(set(stored) - set(declared))}")
    wrong = {c: (str(t), stored[c]) for c, t in declared.items() if stored[c] not in DUCKDB_TYPES[t]}
    assert not wrong, f"{table}: declared polars type vs DuckDB type differ: {wrong}"


def test_a_frame_built_from_a_declaration_inserts_into_its_table(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    row = {c: ("x" if t == pl.String else 1 if t in (pl.Int32, pl.Int64) else 1.0 if t == pl.Float64 else True)
           for c, t in schema("responses").items()}
    assert wh.insert("responses", pl.DataFrame([row], schema=schema("responses"))) == 1


def test_unknown_tables_and_columns_are_named():
    with pytest.raises(KeyError, match="no table 'nope'"):
        schema("nope")
    with pytest.raises(KeyError, match=r"no columns \['nope'\]"):
        schema("queries", "query_id", "nope")
