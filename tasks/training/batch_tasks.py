"""Thin Prefect tasks for training and evaluation (see tasks/annotation/batch_tasks.py for the pattern).

Training stages and offline inference are not retried: they fail the same way twice (a model that
does not load, data that does not fit) and cost minutes each. Endpoint batches are retried like every
other LLM batch; the LLM cache makes a retry pay only for what failed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from libra.tasks.core.config import Evaluation, Training
from libra.tasks.core.runs import Factory
from libra.tasks.evaluation import guard as guards
from libra.tasks.training import trainer
from libra.tasks.training.guard_prompt import GuardInstruction

_ONCE = {"cache_policy": NONE, "persist_result": False, "retries": 0}
_BATCH = {"cache_policy": NONE, "persist_result": False, "retries": 2, "retry_delay_seconds": 5}


@task(name="train-stage", **_ONCE)
def train_stage(fx: Factory, t: Training, plan: trainer.StagePlan, base_model: str, parent: str | None,
                export: trainer.ExportRef, out_root: Path) -> dict[str, Any]:
    return trainer.run_stage(fx.warehouse, t, plan, base_model, parent, export, out_root, fx.run_id)


@task(name="export-variant", **_ONCE)
def export_variant(fx: Factory, critic: str, instruction: GuardInstruction) -> trainer.ExportRef:
    """The stored splits exported with this assistant target and guard prompt (an ablation cell's data);
    the same variant exported twice is one folder."""
    from libra.tasks.data import splits

    params = fx.cfg.split.model_copy(update={"critic": critic})
    done = splits.export_dataset(fx.warehouse, params, instruction, fx.cfg.resolve(fx.cfg.export_dir), fx.run_id,
                                 fx.cfg.public_dict())
    return trainer.resolve_export(fx.warehouse, fx.cfg, done["export_id"])


def _counts(rows: Any) -> dict[str, Any]:
    status = Counter(rows["status"].to_list())
    return {"answered": status.get("ok", 0), "failed": status.get("failed", 0),
            "unparsed": int(rows.filter(rows["label"].is_null() & (rows["status"] == "ok")).height)}


@task(name="guard-offline", **_ONCE)
def guard_offline(fx: Factory, guard: guards.Guard, benchmark: str, items: Any, ev: Evaluation,
                  instruction: GuardInstruction, workdir: Path) -> dict[str, Any]:
    assert guard.checkpoint is not None
    answers = guards.run_offline(guard.checkpoint, items, instruction, ev.vllm, ev.max_tokens, ev.structured, workdir)
    rows = guards.prediction_rows(guard, benchmark, items["item_id"].to_list(), answers,
                                  guards.answer_version(instruction, ev.max_tokens), fx.run_id)
    fx.warehouse.insert("predictions", rows, on_conflict="replace")
    return _counts(rows)


@task(name="guard-endpoint-batch", **_BATCH)
def guard_endpoint_batch(fx: Factory, guard: guards.Guard, benchmark: str, items: Any, ev: Evaluation,
                         instruction: GuardInstruction) -> dict[str, Any]:
    results = fx.pool.run(guards.endpoint_requests(guard, items, instruction, ev.max_tokens, ev.structured),
                          desc=f"eval {guard.model}")  # no colons: rich reads :name: as an emoji
    rows = guards.prediction_rows(guard, benchmark, items["item_id"].to_list(), guards.endpoint_answers(results),
                                  guards.answer_version(instruction, ev.max_tokens), fx.run_id)
    fx.warehouse.insert("predictions", rows, on_conflict="replace")
    return {**_counts(rows), "cached": sum(r.cached for r in results)}
