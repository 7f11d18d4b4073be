"""Run lineage: every flow run gets a `runs` row (config without secrets, code version, status, summary),
and everything it writes carries its run_id. `Factory` bundles what a stage needs: config, warehouse,
taxonomy and an LLM pool whose call log is the warehouse."""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from libra.tasks.core.config import FactoryConfig
from libra.tasks.core.prompts import Taxonomy, load_taxonomy
from libra.tasks.llm.calllog import WarehouseCallLog
from libra.warehouse import Warehouse

if TYPE_CHECKING:  # the pool imports openai (about 1 s): only flows that call an LLM pay for it
    from libra.tasks.llm.pool import LLMPool


@cache
def code_version() -> str:
    """Package version plus the git commit of the checkout, when there is one."""
    try:
        version = metadata.version("libra-factory")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+{sha}" if sha else version


def _prefect_flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:  # outside a flow run there is no id; lineage then relies on run_id alone
        return None


def new_run_id(flow: str) -> str:
    return f"{flow}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def start_run(wh: Warehouse, flow: str, cfg: FactoryConfig | None, parent_run_id: str | None = None) -> str:
    run_id = new_run_id(flow)
    wh.insert("runs", pl.DataFrame([{
        "run_id": run_id, "flow": flow, "parent_run_id": parent_run_id,
        "prefect_flow_run_id": _prefect_flow_run_id(),
        "config": json.dumps(cfg.public_dict(), ensure_ascii=False) if cfg else None,
        "code_version": code_version(), "started_at": datetime.now(UTC).replace(tzinfo=None),
        "finished_at": None, "status": "running", "summary": None,
    }]).with_columns(pl.col("finished_at").cast(pl.Datetime("us")), pl.col("summary").cast(pl.String)))
    return run_id


def mark_interrupted_runs(wh: Warehouse, flow: str) -> int:
    """Runs of `flow` still marked `running` when a new run of it holds the stage lock: the process
    that ran them died (kill -9, OOM, a lost machine) before it could finish them. They become
    `interrupted`; what they stored stays, and the new run resumes from it. Returns how many."""
    n = wh.scalar("SELECT count(*) FROM runs WHERE flow = ? AND status = 'running'", [flow]) or 0
    if n:
        wh.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE flow = ? AND status = 'running'",
            [datetime.now(UTC).replace(tzinfo=None), flow],
        )
    return int(n)


def finish_run(wh: Warehouse, run_id: str, status: str, summary: dict[str, Any]) -> None:
    wh.execute(
        "UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE run_id = ?",
        [status, datetime.now(UTC).replace(tzinfo=None), json.dumps(summary, ensure_ascii=False, default=str), run_id],
    )


@dataclass
class Factory:
    cfg: FactoryConfig
    warehouse: Warehouse
    taxonomy: Taxonomy
    run_id: str
    pool: LLMPool

    @staticmethod
    def open(cfg: FactoryConfig, warehouse: Warehouse, run_id: str, show_progress: bool = True) -> Factory:
        from libra.tasks.llm.pool import LLMPool

        taxonomy = load_taxonomy(cfg.resolve(cfg.taxonomy))
        pool = LLMPool(cfg.endpoints, WarehouseCallLog(warehouse), run_id=run_id, show_progress=show_progress)
        return Factory(cfg=cfg, warehouse=warehouse, taxonomy=taxonomy, run_id=run_id, pool=pool)

    def endpoint_pairs(self, names: list[str]) -> list[tuple[str, str]]:
        return [(n, self.cfg.endpoint(n).model) for n in names]
