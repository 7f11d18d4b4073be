"""Curation flows: exact and near-duplicate removal, and benchmark decontamination."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow

from libra.flows.common import merge, stage_run
from libra.tasks.core.executor import task_runner
from libra.tasks.core.runs import Factory
from libra.tasks.dedup import store
from libra.tasks.dedup.near import DedupParams, Tokenizer, tokenizer
from libra.warehouse import sql_text


@flow(name="dedup", log_prints=True)
def dedup_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None) -> dict:
    """Decide every query not decided yet (exact, then MinHash LSH near-duplicates) against everything
    stored, and record the queries that leak a registered benchmark question."""
    with stage_run("dedup", config, warehouse, parent_run_id) as (fx, summary):
        params = DedupParams.from_dict(fx.cfg.dedup.model_dump())
        fx.warehouse.set_settings({store.PARAMS_SETTING: json.dumps(params.to_dict())})
        summary["method"] = params.method
        with tokenizer(params) as tok:
            # texts decided under other parameters, and benchmarks not sketched under these, first:
            # new queries are compared with all of them, and new benchmark items with stored queries
            merge(summary, store.backfill_signatures_task(fx, params, tok))
            merge(summary, store.sketch_benchmarks_task(fx, params, tok))
            summary["pending"] = fx.warehouse.scalar(sql_text("queries/pending_dedup_count.sql"))
            # Pages are decided in order, each after the earlier ones are stored. A page's sketch is
            # a task of the run's runner (a thread, or a Ray worker): the next page is sketched while
            # this one is decided (the keyset cursor, not the decisions, moves the pages on).
            with task_runner(fx.cfg) as runner:
                ahead: deque[tuple[pl.DataFrame, Any]] = deque()
                for batch in store.pending_pages(fx.warehouse, fx.cfg.dedup.batch_size):
                    # tok on a worker: pickled without its process pool (Tokenizer.__getstate__)
                    ahead.append((batch, runner.submit(store.sketch_task, {
                        "texts": batch["text"].to_list(), "params": params, "tok": tok})))
                    if len(ahead) > 1:
                        merge(summary, _decide(fx, params, tok, *ahead.popleft()))
                while ahead:
                    merge(summary, _decide(fx, params, tok, *ahead.popleft()))
        summary["largest_clusters"] = store.largest_clusters(fx.warehouse)
    return summary


def _decide(fx: Factory, params: DedupParams, tok: Tokenizer, batch: pl.DataFrame, sketched: Any) -> dict:
    return store.dedup_batch_task(fx, batch, params, tok, sketched.result())


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"dedup": dedup_flow}
