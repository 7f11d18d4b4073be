"""`libra sql` is read-only: one SELECT per call on a connection that reaches no other file, loads no
extension and changes no setting; whatever it refuses leaves the warehouse file byte-identical."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import polars as pl
import pytest

from libra.warehouse import Warehouse, WarehouseError


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.set_settings({"probe": "1"})
    (tmp_path / "other.duckdb").touch()
    return wh


REFUSED = {
    "copy_to": "COPY (SELECT * FROM settings) TO '{tmp}/out.csv'",
    "copy_table_to": "COPY settings TO '{tmp}/settings.parquet' (FORMAT parquet)",
    "export": "EXPORT DATABASE '{tmp}/exported'",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "attach": "ATTACH '{tmp}/other.duckdb' AS other (READ_WRITE)",
    "detach": "DETACH w",
    "use": "USE memory",
    "set": "SET threads = 1",
    "reset": "RESET threads",
    "set_variable": "SET VARIABLE x = 1",
    "pragma": "PRAGMA enable_profiling",
    "call": "CALL checkpoint()",
    "checkpoint": "CHECKPOINT",
    "delete": "DELETE FROM settings",
    "create": "CREATE TABLE t AS SELECT 1",
    "transaction": "BEGIN TRANSACTION",
    "multi_statement": "SELECT 1; SELECT 2",
    "attach_then_delete": (
        "ATTACH '{tmp}/w.duckdb' AS rw (READ_WRITE); USE rw; DELETE FROM settings; DETACH w"
    ),
    "select_then_copy": "SELECT 1; COPY settings TO '{tmp}/out.csv'",
    "explain_analyze_copy": "EXPLAIN ANALYZE COPY settings TO '{tmp}/out.csv'",
    "explain_delete": "EXPLAIN ANALYZE DELETE FROM settings",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_each_non_read_is_refused_and_the_file_is_untouched(warehouse: Warehouse, name: str):
    tmp = warehouse.path.parent
    before = _sha(warehouse.path)
    listing = sorted(p.name for p in tmp.iterdir())
    with pytest.raises(WarehouseError, match="read-only"):
        warehouse.read_only_query(REFUSED[name].format(tmp=tmp))
    assert _sha(warehouse.path) == before
    assert sorted(p.name for p in tmp.iterdir()) == listing  # no file written beside it either
    assert warehouse.query("SELECT value FROM settings WHERE key = 'probe'").item() == "1"


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/tmp/*')",
    "SELECT * FROM 'elsewhere.csv'",
    "SELECT * FROM query('COPY settings TO ''/tmp/libra-sql-probe.csv''')",
])
def test_a_select_cannot_reach_other_files(warehouse: Warehouse, sql: str):
    before = _sha(warehouse.path)
    with pytest.raises(WarehouseError):
        warehouse.read_only_query(sql)
    assert _sha(warehouse.path) == before
    assert not Path("/tmp/libra-sql-probe.csv").exists()


def test_reads_still_answer(warehouse: Warehouse):
    assert warehouse.read_only_query("SELECT value FROM settings WHERE key = 'probe';").item() == "1"
    assert "settings" in warehouse.read_only_query("SHOW TABLES")["name"].to_list()
    assert warehouse.read_only_query("FROM range(3)").height == 3
    assert warehouse.read_only_query("EXPLAIN SELECT * FROM settings").height >= 1
    assert warehouse.read_only_query("explain analyze SELECT count(*) FROM settings").height >= 1
    described = warehouse.read_only_query("DESCRIBE SELECT 1 AS a")
    assert isinstance(described, pl.DataFrame) and described["column_name"].to_list() == ["a"]
    # the internal reader (the flows' own queries) is unaffected by the user connection's lock-down
    assert warehouse.query("SELECT count(*) FROM settings").item() >= 1


def test_cli_refuses_copy_and_multi_statement_naming_why(warehouse: Warehouse):
    tmp = warehouse.path.parent
    before = _sha(warehouse.path)
    for sql, why in [(f"COPY settings TO '{tmp}/x.csv'", "COPY statement is refused"),
                     ("SELECT 1; SELECT 2", "one statement per call")]:
        out = subprocess.run(["libra", "sql", "--warehouse", str(warehouse.path), sql],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and why in out.stderr and "Traceback" not in out.stderr
    assert _sha(warehouse.path) == before and not (tmp / "x.csv").exists()
