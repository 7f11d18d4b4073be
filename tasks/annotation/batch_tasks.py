"""Thin Prefect tasks of the split stage. The LLM stages (respond, annotate, adjudicate) are steps
run by the one batch task of tasks/llm/step.py; their declarations live in respond.py and judge.py."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from libra.tasks.annotation import respond
from libra.tasks.core.runs import Factory
from libra.tasks.data import splits
from libra.tasks.training.guard_prompt import GuardInstruction

# Inputs are live objects (the warehouse): Prefect must not try to hash or persist them.
_TASK = {"cache_policy": NONE, "persist_result": False, "retries": 2, "retry_delay_seconds": 5}


@task(name="assign-splits", **_TASK)
def assign_splits(fx: Factory) -> dict[str, Any]:
    # a query missing a wanted response or a judge's vote is not settled yet: split when a run completes it
    wanted = respond.wanted_responses(fx.endpoint_pairs(fx.cfg.roles.responders), fx.cfg.sizes.samples_per_responder)
    return splits.assign_and_store(fx.warehouse, fx.cfg.split, n_judges=len(fx.cfg.voting_judges),
                                   needs_adjudication=fx.cfg.roles.adjudicator is not None, run_id=fx.run_id,
                                   wanted=wanted)


@task(name="export-splits", **_TASK)
def export_splits(fx: Factory) -> dict[str, Any]:
    """Every split as chat JSONL, Parquet and ShareGPT in a versioned folder, with manifest and card."""
    return splits.export_dataset(fx.warehouse, fx.cfg.split, GuardInstruction.from_config(fx.cfg),
                                 fx.cfg.resolve(fx.cfg.export_dir), fx.run_id, fx.cfg.public_dict())
