"""Thin Prefect tasks of the split stage: assign settled queries to splits, export them. (The LLM stages
are steps run by the one batch task of tasks/llm/step.py.)"""

from __future__ import annotations

from typing import Any

from prefect import task

from libra.tasks.annotation import respond
from libra.tasks.core.prefect_tasks import RETRIED
from libra.tasks.core.runs import Factory
from libra.tasks.data import splits
from libra.tasks.training.guard_prompt import GuardInstruction


@task(name="assign-splits", **RETRIED)
def assign_splits(fx: Factory) -> dict[str, Any]:
    # a query missing a wanted response or a judge's vote is not settled yet: split when a run completes it
    wanted = respond.wanted_responses(fx.endpoint_pairs(fx.cfg.roles.responders), fx.cfg.sizes.samples_per_responder)
    return splits.assign_and_store(fx.warehouse, fx.cfg.split, n_judges=len(fx.cfg.voting_judges),
                                   needs_adjudication=fx.cfg.roles.adjudicator is not None, run_id=fx.run_id,
                                   wanted=wanted)


@task(name="export-splits", **RETRIED)
def export_splits(fx: Factory) -> dict[str, Any]:
    """Every split as chat JSONL, Parquet and ShareGPT in a versioned folder, with manifest and card."""
    return splits.export_dataset(fx.warehouse, fx.cfg.split, GuardInstruction.from_config(fx.cfg),
                                 fx.cfg.resolve(fx.cfg.export_dir), fx.run_id, fx.cfg.public_dict())
