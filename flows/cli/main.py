"""`libra`: run the factory and its stages, and inspect the warehouse."""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
from datetime import datetime
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from libra.tasks.core.config import ConfigError, load_config
from libra.tasks.core.errors import InputError
from libra.warehouse import Warehouse, WarehouseError, sql_text

app = typer.Typer(
    help="libra-factory: a Prefect + DuckDB data factory for Chinese LLM safety guards.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
# `libra import queries|benchmark …`: the import commands register on this group (flows/cli/data.py,
# flows/cli/dedup.py).
import_app = typer.Typer(help="Import real queries or benchmarks into the warehouse.", no_args_is_help=True)
app.add_typer(import_app, name="import")
console = Console()
err = Console(stderr=True)

WarehouseOpt = Annotated[
    str | None,
    typer.Option("--warehouse", "-w", help="DuckDB warehouse file (default: $LIBRA_WAREHOUSE, else the config's)."),
]
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Factory config YAML (see configs/).")]

EXAMPLE_SQL = [
    ("labels per scenario",
     "SELECT scenario, final_label, count(*) AS n FROM v_dataset GROUP BY ALL ORDER BY ALL"),
    ("hard samples and why",
     "SELECT hard_reason, count(*) AS n FROM v_hard_samples GROUP BY ALL ORDER BY n DESC"),
    ("LLM usage per endpoint",
     "SELECT endpoint, sum(calls) AS calls, sum(retries) AS retries, sum(failures) AS failures, "
     "sum(prompt_tokens + completion_tokens) AS tokens FROM v_llm_usage GROUP BY ALL ORDER BY ALL"),
]


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


ReaderConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Take the warehouse from this factory config.")
]


def _open_reader(warehouse: str | None, config: Path | None = None) -> Warehouse:
    """The warehouse a read command inspects: --warehouse, else $LIBRA_WAREHOUSE, else the config's."""
    path = warehouse or os.environ.get("LIBRA_WAREHOUSE")
    if not path and config is not None:
        try:
            path = load_config(config).warehouse
        except ConfigError as e:
            _fail(str(e))
    if not path:
        _fail("no warehouse given: pass --warehouse PATH, --config FILE or set LIBRA_WAREHOUSE")
    try:
        return Warehouse(path, create=False)
    except WarehouseError as e:
        _fail(str(e))
        raise


def print_frame(frame: pl.DataFrame, fmt: OutputFormat = OutputFormat.table, title: str | None = None) -> None:
    if fmt is OutputFormat.csv:
        sys.stdout.write(frame.write_csv())
        return
    if fmt is OutputFormat.json:
        for row in frame.iter_rows(named=True):
            sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return
    table = Table(title=title, show_lines=False)
    for name in frame.columns:
        table.add_column(name, overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def _extra_options(args: list[str]) -> dict[str, str]:
    """`--guard x --benchmark y` after the known options -> {"guard": "x", "benchmark": "y"}."""
    out: dict[str, str] = {}
    it = iter(args)
    for arg in it:
        if not arg.startswith("--"):
            _fail(f"unexpected argument {arg!r} (flow options are --name value)")
        key, _, value = arg[2:].partition("=")
        if not value:
            value = next(it, None)
            if value is None:
                _fail(f"option --{key} needs a value")
        out[key.replace("-", "_")] = value
    return out


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    stage: Annotated[str, typer.Argument(
        help="factory (every stage in order) or one flow: elements, synthesize, augment, translate, dedup, "
             "respond, annotate, split, import, train, eval, ablation (an unknown name lists them all). Flow options "
             "follow as --name value, e.g. train --stages mixed, eval --guard training:latest --benchmark F; "
             "an unknown option lists the flow's options.")],
    config: ConfigOpt,
    warehouse: WarehouseOpt = None,
) -> None:
    """Run the factory flow or one stage flow under Prefect; extra --name value options go to the flow."""
    try:
        load_config(config)  # fail on a bad config before Prefect or any endpoint is touched
    except ConfigError as e:
        _fail(str(e))
    from libra.flows.factory import STAGE_FLOWS, factory_flow

    flows = {"factory": factory_flow, **STAGE_FLOWS}
    if stage not in flows:
        _fail(f"unknown flow {stage!r}; choose from: {', '.join(flows)}")
    extra = _extra_options(ctx.args)
    # the flow's parameters past config/warehouse/parent_run_id are its options: refuse others here,
    # not in a Prefect ParameterBindError traceback
    accepted = [n for n in inspect.signature(flows[stage].fn).parameters
                if n not in ("config", "warehouse", "parent_run_id")]
    unknown = [k for k in extra if k not in accepted]
    if unknown:
        listed = ", ".join(f"--{n.replace('_', '-')}" for n in accepted) or "none"
        _fail(f"flow {stage!r} has no option --{unknown[0].replace('_', '-')} (its options: {listed})")
    summary = flows[stage](str(config), warehouse, **extra)
    console.print_json(json.dumps(summary, ensure_ascii=False, default=str))


@app.command()
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

    path = Path(warehouse or f"libra-demo-{datetime.now():%Y%m%d-%H%M%S}.duckdb").resolve()
    config = Path(str(resources.files("libra.configs").joinpath("demo.yaml")))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.gettempdir()) / f"libra-stub-{port}.log"
    cmd = [sys.executable, "-m", "libra.stubllm", "--port", str(port), "--latency-ms", str(latency_ms),
           "--fault-429", str(fault_429), "--fault-500", str(fault_500), "--fault-timeout", str(fault_timeout),
           "--timeout-sleep-s", "15"]
    console.print(f"[bold]libra demo[/]: stub LLM server on {url}; warehouse {path}")
    with start_server(cmd, url, log_path=log, timeout_s=60):
        os.environ["LIBRA_STUB_URL"] = url
        from libra.flows.factory import factory_flow

        factory_flow(str(config), str(path))
    wh = Warehouse(path, create=False)
    _print_status(wh)
    console.print("\n[bold]Try these[/] (read-only, also while a flow is running):")
    for title, sql in EXAMPLE_SQL:
        console.print(f"  # {title}\n  libra sql --warehouse {path.name} \"{sql}\"", highlight=False, soft_wrap=True)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run read-only, e.g. \"SELECT * FROM v_dataset LIMIT 5\".")],
    warehouse: WarehouseOpt = None,
    config: ReaderConfigOpt = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
) -> None:
    """Run one read-only SQL query against the warehouse (it answers while a flow is writing).

    One SELECT (or DESCRIBE, SHOW, SUMMARIZE, VALUES) per call; COPY, EXPORT, ATTACH, INSTALL/LOAD,
    SET/PRAGMA, CALL and every write are refused, and the query can read no file but the warehouse.
    """
    wh = _open_reader(warehouse, config)
    try:
        frame = wh.read_only_query(query)
    except WarehouseError as e:
        _fail(str(e))
        raise
    print_frame(frame, fmt)


def _print_status(wh: Warehouse) -> None:
    print_frame(wh.query("SELECT stage, n FROM v_stage_counts"), title="Counts per stage")
    print_frame(
        wh.query(
            "SELECT scenario, count(DISTINCT query_id) AS queries, count(*) AS responses, "
            "count(*) FILTER (WHERE final_label = '不安全') AS unsafe, "
            "count(*) FILTER (WHERE final_label = '安全') AS safe, "
            "count(*) FILTER (WHERE vote_status = 'hard') AS hard "
            "FROM v_dataset GROUP BY scenario ORDER BY scenario"
        ),
        title="Labelled responses per scenario",
    )
    print_frame(wh.query("SELECT * FROM v_token_cost ORDER BY model"), title="Tokens per model")
    print_frame(  # endpoint prices from the config (Endpoint.price); currency NULL = calls without a price
        wh.query("SELECT currency, calls, cost, cost_per_settled_label, cost_per_training_example "
                 "FROM v_cost_per_label ORDER BY currency NULLS LAST"),
        title="LLM cost per currency (more: v_cost_by_run, _stage, _endpoint, _judge)",
    )
    print_frame(
        wh.query("SELECT run_id, flow, status, started_at, finished_at FROM runs "
                 "WHERE parent_run_id IS NULL ORDER BY started_at DESC LIMIT 5"),
        title="Latest runs",
    )
    down = wh.query(sql_text("queries/endpoints_down.sql"), {"runs": 5})
    if not down.is_empty():  # their samples stay pending until a run reaches them (docs/reliability.md)
        print_frame(down, title="Endpoints declared down in the latest runs: their samples are pending")


@app.command()
def status(warehouse: WarehouseOpt = None, config: ReaderConfigOpt = None) -> None:
    """Counts per stage, per scenario and label, tokens per model, LLM cost (per settled label and training
    example), latest runs."""
    _print_status(_open_reader(warehouse, config))


@app.command("check-config")
def check_config(config: Annotated[Path, typer.Argument(help="Factory config YAML.")]) -> None:
    """Validate a factory config without running anything."""
    try:
        cfg = load_config(config)
    except ConfigError as e:
        _fail(str(e))
        raise
    console.print(f"{config}: ok — {len(cfg.endpoints)} endpoints, judges {cfg.roles.judges}, "
                  f"responders {cfg.roles.responders}")


def main() -> None:
    # The temporary Prefect server would try to phone home; this machine may have no network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server starts in ~10 s here, but on a loaded 2-core machine 20 s (the default) is short.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    try:
        app()
    except (InputError, WarehouseError) as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)


# Commands of the other areas register themselves on `app` when imported.
from libra.flows.cli import (  # noqa: E402,F401
    annotation,
    data,
    dedup,
    deploy,
    review,
    synthesis,
    training,
)

if __name__ == "__main__":
    main()
