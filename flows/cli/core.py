"""`libra sql`, `libra status`, `libra check-config` and `libra demo`: the commands a newcomer meets first.

sql and status must answer in well under a second while a flow writes: they import typer and DuckDB
only (see flows/cli/common.py); demo and check-config import what they run, inside the command.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from libra.flows.cli.common import (
    FormatOpt,
    OutputFormat,
    ReaderConfigOpt,
    WarehouseOpt,
    echo,
    fail,
    open_reader,
    print_rows,
)
from libra.warehouse import Warehouse, WarehouseError, sql_text


def sql(
    query: Annotated[str, typer.Argument(help="SQL to run read-only, e.g. \"SELECT * FROM v_dataset LIMIT 5\".")],
    warehouse: WarehouseOpt = None,
    config: ReaderConfigOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Run one read-only SQL query against the warehouse (it answers while a flow is writing).

    One SELECT (or DESCRIBE, SHOW, SUMMARIZE, VALUES) per call; COPY, EXPORT, ATTACH, INSTALL/LOAD,
    SET/PRAGMA, CALL and every write are refused, and the query can read no file but the warehouse.
    """
    wh = open_reader(warehouse, config)
    try:
        columns, rows = wh.read_only_rows(query)
    except WarehouseError as e:
        fail(str(e))
    print_rows(columns, rows, fmt)


def print_status(wh: Warehouse) -> None:
    tables = [
        ("queries/status_stage_counts.sql", "Counts per stage"),
        ("queries/status_scenarios.sql", "Labelled responses per scenario"),
        ("queries/status_tokens.sql", "Tokens per model"),
        ("queries/status_cost.sql", "LLM cost per currency (more: v_cost_by_run, _stage, _endpoint, _judge)"),
        ("queries/status_latest_runs.sql", "Latest runs"),
    ]
    *results, (columns, down) = wh.query_rows([*((sql_text(name), None) for name, _ in tables),
                                                (sql_text("queries/endpoints_down.sql"), {"runs": 5})])
    for (_, title), (names, rows) in zip(tables, results):
        print_rows(names, rows, title=title)
    if down:  # their samples stay pending until a run reaches them (docs/reliability.md)
        print_rows(columns, down, title="Endpoints declared down in the latest runs: their samples are pending")


def status(warehouse: WarehouseOpt = None, config: ReaderConfigOpt = None) -> None:
    """Counts per stage, per scenario and label, tokens per model, LLM cost (per settled label and training
    example), latest runs."""
    print_status(open_reader(warehouse, config))


def check_config(config: Annotated[Path, typer.Argument(help="Factory config YAML.")]) -> None:
    """Validate a factory config without running anything."""
    from libra.tasks.core.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as e:
        fail(str(e))
    echo(f"{config}: ok — {len(cfg.endpoints)} endpoints, judges {cfg.roles.judges}, "
         f"responders {cfg.roles.responders}")


def example_queries() -> list[tuple[str, str]]:
    """(title, SQL) of warehouse/queries/example_queries.sql: a `-- title` line, then its query line."""
    lines = [line.strip() for line in sql_text("queries/example_queries.sql").splitlines() if line.strip()]
    body = lines[next(i for i, line in enumerate(lines) if not line.startswith("--")) - 1:]
    return [(body[i].removeprefix("--").strip(), body[i + 1]) for i in range(0, len(body) - 1, 2)]


def demo(
    warehouse: WarehouseOpt = None,
    latency_ms: Annotated[float, typer.Option(help="Stub latency per request.")] = 5.0,
    fault_429: Annotated[float, typer.Option(help="Stub: share of requests answered 429.")] = 0.0,
    fault_500: Annotated[float, typer.Option(help="Stub: share of requests answered 500.")] = 0.0,
    fault_timeout: Annotated[float, typer.Option(help="Stub: share of requests that hang past the timeout.")] = 0.0,
) -> None:
    """Start the stub LLM server, run the demo factory into a warehouse, print a summary.

    Without --warehouse a new file libra-demo-<time>.duckdb is created in the working directory;
    an existing --warehouse file is continued (already-done work is skipped), never replaced.
    """
    from libra.tasks.llm.servers import free_port, start_server

    given = warehouse or f"libra-demo-{datetime.now():%Y%m%d-%H%M%S}.duckdb"
    path = Path(given).expanduser().resolve()
    config = Path(str(resources.files("libra.configs").joinpath("demo.yaml")))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.gettempdir()) / f"libra-stub-{port}.log"
    cmd = [sys.executable, "-m", "libra.stubllm", "--port", str(port), "--latency-ms", str(latency_ms),
           "--fault-429", str(fault_429), "--fault-500", str(fault_500), "--fault-timeout", str(fault_timeout),
           "--timeout-sleep-s", "15"]
    echo(f"libra demo: stub LLM server on {url}; warehouse {path}")
    with start_server(cmd, url, log_path=log, timeout_s=60):
        os.environ["LIBRA_STUB_URL"] = url
        from libra.flows.factory import factory_flow

        factory_flow(str(config), str(path))
    print_status(Warehouse(path, create=False))
    echo("\nTry these (read-only, also while a flow is running):")
    for title, query in example_queries():  # the warehouse as the user named it, so that each line runs as shown
        echo(f"  # {title}\n  libra sql --warehouse {shlex.quote(given)} {shlex.quote(query)}")
