"""What every flow shares: opening a stage run (config, warehouse, run lineage, LLM pool), summaries
merged across batches, and the Prefect artifacts each run leaves (summary table, LLM usage, report)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from libra.tasks.annotation.judge import vote_settings
from libra.tasks.core.config import FactoryConfig, load_config
from libra.tasks.core.executor import ray_session
from libra.tasks.core.runs import Factory, finish_run, mark_interrupted_runs, start_run
from libra.tasks.llm.step import merge  # summaries merged across batches; flows import it from here
from libra.warehouse import Warehouse

__all__ = ["merge", "stage_run", "warehouse_path"]


def warehouse_path(cfg: FactoryConfig, override: str | None) -> Path:
    """--warehouse beats $LIBRA_WAREHOUSE beats the config's `warehouse` (relative to the working dir)."""
    return Path(override or os.environ.get("LIBRA_WAREHOUSE") or cfg.warehouse).expanduser().resolve()


@contextmanager
def stage_run(name: str, config: str, warehouse: str | None, parent_run_id: str | None) -> Iterator[tuple[Factory, dict]]:
    cfg = load_config(config)
    wh = Warehouse(warehouse_path(cfg, warehouse))
    # The run record names the warehouse written, whichever of --warehouse, $LIBRA_WAREHOUSE or the
    # config's key chose it.
    cfg.warehouse = str(wh.path)
    # Relative export folders live beside the warehouse they were exported from.
    if not Path(cfg.export_dir).is_absolute():
        cfg.export_dir = str(wh.path.parent / cfg.export_dir)
    wh.set_settings(vote_settings(cfg))  # the judges a response needs: a failed vote leaves it pending
    # ray_session: on runner ray, one Ray for the run (an outer flow's, e.g. the factory's, is reused),
    # started inside the flow run so its workers get this run's Prefect API
    with wh.stage_lock(name), ray_session(cfg):
        interrupted = mark_interrupted_runs(wh, name)  # we hold the lock: a `running` one is dead
        run_id = start_run(wh, name, cfg, parent_run_id)
        fx = Factory.open(cfg, wh, run_id)
        summary: dict[str, Any] = {"run_id": run_id}
        if interrupted:
            summary["earlier_runs_interrupted"] = interrupted
        try:
            yield fx, summary
        except BaseException as e:
            summary["error"] = f"{type(e).__name__}: {e}"
            finish_run(wh, run_id, "failed", summary)
            raise
        summary["llm"] = fx.summary_rows()
        down = fx.down_endpoints()
        for part in summary.values():  # a parent flow (the factory) reports what its stages found down
            if isinstance(part, dict):
                down.update(part.get("endpoints_down") or {})
        summary["endpoints_down"] = down
        finish_run(wh, run_id, "completed", summary)
    _artifacts(name, summary)


def _artifacts(name: str, summary: dict[str, Any]) -> None:
    flat = [{"key": k, "value": str(v)} for k, v in summary.items() if k not in ("llm",)]
    create_table_artifact(table=flat, key=f"{name}-summary", description=f"libra {name}: run summary")
    if summary.get("llm"):
        create_table_artifact(table=summary["llm"], key=f"{name}-llm-usage",
                              description=f"libra {name}: LLM calls per endpoint")
    lines = [f"# libra {name}", "", f"run `{summary['run_id']}`", ""]
    lines += [f"- **{k}**: {v}" for k, v in summary.items() if k not in ("run_id", "llm")]
    if summary.get("endpoints_down"):
        lines += ["", "## Endpoints declared down", ""]
        lines += [f"- `{n}`: {why}" for n, why in summary["endpoints_down"].items()]
    create_markdown_artifact(markdown="\n".join(lines), key=f"{name}-report", description=f"libra {name} report")
