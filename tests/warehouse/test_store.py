import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from libra.warehouse import Warehouse, WarehouseError

EXPECTED_VIEWS = {"v_queries", "v_dataset", "v_hard_samples", "v_llm_usage", "v_vote_summary", "v_final_labels",
                  "v_judge_agreement", "v_stage_counts", "v_token_cost"}
FACT_TABLES = {"runs", "queries", "responses", "votes", "adjudications", "human_labels", "llm_calls", "benchmarks",
               "predictions", "training_runs"}


def _q(i: int) -> dict:
    return {"query_id": f"q{i}", "text": f"问题{i}", "source": "synthetic", "method": "seed", "run_id": "r1"}


def test_migrations_create_tables_and_views_once(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    tables = set(wh.table_counts())
    assert tables >= FACT_TABLES
    views = set(wh.query("SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"])
    assert views >= EXPECTED_VIEWS
    n_files = len(list((Path(__file__).parents[2] / "warehouse" / "migrations").glob("*.sql")))
    Warehouse(tmp_path / "w.duckdb")  # reopening applies nothing twice
    assert wh.scalar("SELECT count(*) FROM schema_migrations") == n_files


def test_insert_is_idempotent_and_replace_overwrites(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    frame = pl.DataFrame([_q(1), _q(2)])
    assert wh.insert("queries", frame) == 2
    assert wh.insert("queries", frame) == 0
    changed = frame.with_columns(pl.lit("改").alias("text"))
    assert wh.insert("queries", changed) == 0
    assert wh.query("SELECT text FROM queries ORDER BY 1")["text"].to_list() == ["问题1", "问题2"]
    wh.insert("queries", changed, on_conflict="replace")
    assert set(wh.query("SELECT text FROM queries")["text"]) == {"改"}


def test_failed_write_leaves_stored_rows_untouched(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.insert("queries", pl.DataFrame([_q(1)]))
    with pytest.raises(RuntimeError, match="crash"), wh.writer():
        wh.insert("queries", pl.DataFrame([_q(2)]))
        raise RuntimeError("crash in the middle of a stage")
    assert wh.query("SELECT query_id FROM queries")["query_id"].to_list() == ["q1"]


def test_reader_on_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(WarehouseError, match="no warehouse here"):
        Warehouse(tmp_path / "nope.duckdb", create=False)


def test_bad_sql_is_a_warehouse_error(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with pytest.raises(WarehouseError, match="SQL error"):
        wh.query("SELECT * FROM no_such_table")


def test_reads_answer_while_another_process_writes(tmp_path):
    """Two real processes: a writer inserting batches for a few seconds, and readers (in-process and
    the `libra sql` CLI) that must keep answering, seeing a growing count, never an error."""
    path = tmp_path / "w.duckdb"
    Warehouse(path)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, polars as pl
        from libra.warehouse import Warehouse
        wh = Warehouse({str(path)!r})
        i, end = 0, time.time() + 4
        while time.time() < end:
            rows = [{{"query_id": f"q{{i}}-{{k}}", "text": "t", "source": "s", "method": "m", "run_id": "w"}}
                    for k in range(50)]
            wh.insert("queries", pl.DataFrame(rows))
            i += 1
        print(i)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        wh = Warehouse(path, create=False)
        seen = []
        deadline = time.time() + 3
        while time.time() < deadline:
            seen.append(wh.scalar("SELECT count(*) FROM queries"))
        cli = subprocess.run(
            ["libra", "sql", "--warehouse", str(path), "--format", "csv", "SELECT count(*) AS n FROM queries"],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        batches = int(writer.communicate(timeout=60)[0])
    assert writer.returncode == 0
    assert cli.returncode == 0, cli.stderr
    assert int(cli.stdout.splitlines()[1]) >= seen[-1]
    assert len(seen) > 10 and seen == sorted(seen) and seen[-1] > seen[0]
    assert wh.scalar("SELECT count(*) FROM queries") == batches * 50


def test_two_writer_processes_serialise_without_errors(tmp_path):
    path = tmp_path / "w.duckdb"
    Warehouse(path)
    script = textwrap.dedent("""
        import sys, polars as pl
        from libra.warehouse import Warehouse
        wh = Warehouse(sys.argv[1])
        for i in range(40):
            wh.insert("queries", pl.DataFrame([{"query_id": f"{sys.argv[2]}-{i}", "text": "t", "source": "s",
                                               "method": "m", "run_id": sys.argv[2]}]))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), name]) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT run_id, count(*) FROM queries GROUP BY 1 ORDER BY 1").fetchall() == [("a", 40), ("b", 40)]
    finally:
        con.close()
