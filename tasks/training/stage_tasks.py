"""Thin Prefect tasks for training and evaluation: a training stage, an export variant, a guard's offline
inference (not retried: tasks/core/prefect_tasks.py). A guard on an endpoint is the step
GUARD_ENDPOINT (tasks/evaluation/guard.py), run by the one batch task of tasks/llm/step.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from libra.tasks.core.config import Evaluation, Training
from libra.tasks.core.prefect_tasks import ONCE
from libra.tasks.core.runs import Factory
from libra.tasks.evaluation import guard as guards
from libra.tasks.training import trainer
from libra.tasks.training.guard_prompt import GuardInstruction


@task(name="train-stage", **ONCE)
def train_stage(fx: Factory, t: Training, plan: trainer.StagePlan, base_model: str, parent: str | None,
                export: trainer.ExportRef, out_root: Path) -> dict[str, Any]:
    return trainer.run_stage(fx.warehouse, t, plan, base_model, parent, export, out_root, fx.run_id)


@task(name="export-variant", **ONCE)
def export_variant(fx: Factory, critic: str, instruction: GuardInstruction) -> trainer.ExportRef:
    """The stored splits exported with this assistant target and guard prompt (an ablation cell's data);
    the same variant exported twice is one folder."""
    from libra.tasks.data import splits

    params = fx.cfg.split.model_copy(update={"critic": critic})
    done = splits.export_dataset(fx.warehouse, params, instruction, fx.cfg.resolve(fx.cfg.export_dir), fx.run_id,
                                 fx.cfg.public_dict())
    return trainer.resolve_export(fx.warehouse, fx.cfg, done["export_id"])


@task(name="guard-offline", **ONCE)
def guard_offline(fx: Factory, guard: guards.Guard, benchmark: str, items: Any, ev: Evaluation,
                  instruction: GuardInstruction, workdir: Path) -> dict[str, Any]:
    assert guard.checkpoint is not None
    answers = guards.run_offline(guard.checkpoint, items, instruction, ev.vllm, ev.max_tokens, ev.structured, workdir)
    rows = guards.prediction_rows(guard, benchmark, items["item_id"].to_list(), answers,
                                  guards.answer_version(instruction, ev.max_tokens), fx.run_id)
    fx.warehouse.insert("predictions", rows, on_conflict="replace")
    return guards.prediction_counts(rows)
