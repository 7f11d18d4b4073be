"""Run lineage: every flow run gets a `runs` row (config without secrets, code version, status, summary),
and everything it writes carries its run_id. `Factory` bundles what a stage needs: config, warehouse,
taxonomy, run id and the LLM usage the run's batch tasks reported."""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from libra.tasks.core.config import FactoryConfig
from libra.tasks.core.prompts import Taxonomy, load_taxonomy
from libra.warehouse import Warehouse, sql_text

if TYPE_CHECKING:  # the pool imports openai (about 1 s): only flows that call an LLM pay for it
    from libra.tasks.llm.pool import EndpointStats


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


def start_run(wh: Warehouse, flow: str, cfg: FactoryConfig | None, parent_run_id: str | None = None, *,
              config: dict[str, Any] | None = None) -> str:
    """A `running` row for a new run; `config` stands for the factory config of a run that has none
    (an import stores its import spec)."""
    run_id = new_run_id(flow)
    wh.insert("runs", pl.DataFrame([{
        "run_id": run_id, "flow": flow, "parent_run_id": parent_run_id,
        "prefect_flow_run_id": _prefect_flow_run_id(),
        "config": json.dumps(cfg.public_dict() if cfg else config, ensure_ascii=False) if cfg or config else None,
        "code_version": code_version(), "started_at": datetime.now(UTC).replace(tzinfo=None),
        "finished_at": None, "status": "running", "summary": None,
    }]).with_columns(pl.col("finished_at").cast(pl.Datetime("us")), pl.col("summary").cast(pl.String)))
    return run_id


def mark_interrupted_runs(wh: Warehouse, flow: str) -> int:
    """Runs of `flow` still marked `running` when a new run of it holds the stage lock: the process
    that ran them died (kill -9, OOM, a lost machine) before it could finish them. They become
    `interrupted`; what they stored stays, and the new run resumes from it. Returns how many."""
    n = wh.scalar(sql_text("queries/running_runs_count.sql"), [flow]) or 0
    if n:
        wh.execute(
            sql_text("queries/mark_runs_interrupted.sql"), [datetime.now(UTC).replace(tzinfo=None), flow],
        )
    return int(n)


def finish_run(wh: Warehouse, run_id: str, status: str, summary: dict[str, Any]) -> None:
    wh.execute(
        sql_text("queries/finish_run.sql"), [status, datetime.now(UTC).replace(tzinfo=None), json.dumps(summary, ensure_ascii=False, default=str), run_id],
    )


@dataclass
class Factory:
    """What a flow's steps share in the flow process: config, warehouse, taxonomy, run id, and the LLM
    usage merged from the batch tasks (per endpoint stats, and the health the next batch starts from).
    It holds the warehouse: never pass it to a submitted task (tasks/llm/step.py)."""

    cfg: FactoryConfig
    warehouse: Warehouse
    taxonomy: Taxonomy
    run_id: str
    usage: dict[str, EndpointStats] = field(default_factory=dict)
    health: dict[str, tuple[int, str | None]] = field(default_factory=dict)

    @staticmethod
    def open(cfg: FactoryConfig, warehouse: Warehouse, run_id: str) -> Factory:
        return Factory(cfg=cfg, warehouse=warehouse, taxonomy=load_taxonomy(cfg.resolve(cfg.taxonomy)), run_id=run_id)

    def endpoint_pairs(self, names: list[str]) -> list[tuple[str, str]]:
        return [(n, self.cfg.endpoint(n).model) for n in names]

    def add_usage(self, stats: dict[str, EndpointStats], health: dict[str, tuple[int, str | None]]) -> None:
        """Merge a stored batch's endpoint stats; its health (the latest stored) is what the next batch starts from."""
        from libra.tasks.llm.pool import EndpointStats

        for name, s in stats.items():
            total = self.usage.setdefault(name, EndpointStats())
            for attr in ("sent", "ok", "failed", "cached", "retries", "skipped", "prompt_tokens", "completion_tokens"):
                setattr(total, attr, getattr(total, attr) + getattr(s, attr))
            if s.down and not total.down:
                total.down, total.down_reason = True, s.down_reason
            for kind, n in s.errors.items():
                total.errors[kind] = total.errors.get(kind, 0) + n
        for name, (failures, reason) in health.items():
            known = self.health.get(name, (0, None))[1]
            self.health[name] = (failures, known or reason)

    def summary_rows(self) -> list[dict[str, Any]]:
        """LLM calls per endpoint over the run (the usage artifact), as LLMPool.summary_rows gave them."""
        return [s.as_row(name) for name, s in self.usage.items() if s.sent or s.cached or s.failed or s.skipped]

    def down_endpoints(self) -> dict[str, str]:
        return {name: s.down_reason or "" for name, s in self.usage.items() if s.down}
