"""The split stage's work: assign settled queries to splits (a thin task), and export them, the pages
encoded by a thin task on the run's runner. (The LLM stages are steps run by the one batch task of
tasks/llm/step.py.)"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import polars as pl
from prefect import task

from libra.tasks.annotation import respond
from libra.tasks.core.executor import results_in_order, task_runner
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


@task(name="encode-export-page", **RETRIED)
def encode_page_task(rows: pl.DataFrame, instruction: GuardInstruction, critic: str) -> splits.EncodedPage:
    # the guard prompt around every row and three encodings: the CPU-heavy part of an export, a function
    # of the page alone, so it runs on a Ray worker as well as on a thread; the flow writes the files
    return splits.encode_page(rows, instruction, critic)


def export_splits(fx: Factory) -> dict[str, Any]:
    """Every split as chat JSONL, Parquet and ShareGPT in a versioned folder, with manifest and card; the
    pages are encoded by the run's task runner (threads or Ray workers), a few in flight, and this
    process writes them. Called by the flow itself (not a task): it submits the encoding tasks."""
    instruction = GuardInstruction.from_config(fx.cfg)

    def encoder(found: Iterable[pl.DataFrame]) -> Iterator[splits.EncodedPage]:
        parameters = ({"rows": page, "instruction": instruction, "critic": fx.cfg.split.critic} for page in found)
        yield from results_in_order(runner, encode_page_task, parameters, fx.cfg.sizes.batches_in_flight)

    with task_runner(fx.cfg) as runner:
        return splits.export_dataset(fx.warehouse, fx.cfg.split, instruction, fx.cfg.resolve(fx.cfg.export_dir),
                                     fx.run_id, fx.cfg.public_dict(), encoder=encoder)
