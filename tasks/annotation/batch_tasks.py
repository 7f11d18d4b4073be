"""Thin Prefect tasks: read pending work from the warehouse, call the plain functions, write the result.

A task handles one batch (hundreds of LLM requests driven concurrently by the pool): the batch is the
unit of retry. Everything is idempotent (content-hash IDs, the LLM cache), so a retried or rerun task
redoes nothing that is stored.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NONE

from libra.tasks.annotation import judge, respond
from libra.tasks.core.runs import Factory
from libra.tasks.data import splits
from libra.tasks.training.guard_prompt import GuardInstruction

# Inputs are live objects (pool, warehouse): Prefect must not try to hash or persist them.
_TASK = {"cache_policy": NONE, "persist_result": False, "retries": 2, "retry_delay_seconds": 5}


def batches(frame: pl.DataFrame, size: int) -> list[pl.DataFrame]:
    return [frame.slice(i, size) for i in range(0, frame.height, size)] if frame.height else []


def _pool_summary(fx: Factory) -> dict[str, Any]:
    return {"endpoints_down": fx.pool.down_endpoints()}


@task(name="respond-batch", **_TASK)
def respond_batch(fx: Factory, pending: pl.DataFrame) -> dict[str, Any]:
    results = fx.pool.run(respond.respond_requests(pending), desc="respond")
    rows = respond.response_rows(pending, results, fx.run_id)
    # replace: a response that failed in an earlier run and succeeded now overwrites its failure
    fx.warehouse.insert("responses", rows, on_conflict="replace")
    counts = Counter(rows["status"].to_list())
    return {"requests": len(results), "ok": counts.get("ok", 0), "failed": counts.get("failed", 0),
            "cached": sum(r.cached for r in results)}


@task(name="judge-batch", **_TASK)
def judge_batch(fx: Factory, pending: pl.DataFrame, setup: judge.JudgeSetup) -> dict[str, Any]:
    results = fx.pool.run(judge.judge_requests(pending, setup), desc="annotate")
    rows = judge.vote_rows(pending, results, fx.run_id)
    with fx.warehouse.writer():  # a vote and its prompt-level label land together
        fx.warehouse.insert("votes", rows, on_conflict="replace")
        if setup.ask_prompt_label:
            fx.warehouse.insert("prompt_labels", judge.prompt_label_rows(pending, results, fx.run_id),
                                on_conflict="replace")
    counts = Counter(rows["status"].to_list())
    return {"requests": len(results), "ok": counts.get("ok", 0), "abstain": counts.get("abstain", 0),
            "failed": counts.get("failed", 0)}


@task(name="adjudicate-batch", **_TASK)
def adjudicate_batch(fx: Factory, pending: pl.DataFrame, setup: judge.JudgeSetup) -> dict[str, Any]:
    adjudicator = fx.cfg.roles.adjudicator
    assert adjudicator is not None
    results = fx.pool.run(judge.adjudication_requests(pending, adjudicator, setup), desc="adjudicate")
    rows = judge.adjudication_rows(pending, results, adjudicator, fx.run_id)
    inserted = fx.warehouse.insert("adjudications", rows)
    return {"requests": len(results), "adjudicated": inserted, "failed": sum(not r.ok for r in results)}


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
