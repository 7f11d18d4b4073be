"""Curation flows: exact and near-duplicate removal, and benchmark decontamination."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from libra.flows.common import merge, stage_run
from libra.tasks.core.executor import submit, task_runner
from libra.tasks.dedup import store
from libra.tasks.dedup.near import DedupParams, tokenizer
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
            # a task of the run's runner (a thread, or a Ray worker), awaited before the page is
            # decided: sketching the next page meanwhile would hold two pages' sketches (measured at
            # 36k queries: the stage's peak RSS 921 MB with it).
            with task_runner(fx.cfg) as runner:
                for batch in store.pending_pages(fx.warehouse, fx.cfg.dedup.batch_size):
                    # tok on a worker: pickled without its process pool (Tokenizer.__getstate__)
                    sketched = submit(runner, store.sketch_task, {"texts": batch["text"].to_list(),
                                                                  "params": params, "tok": tok})
                    merge(summary, store.dedup_batch_task(fx, batch, params, tok, sketched.result()))
        summary["largest_clusters"] = store.largest_clusters(fx.warehouse)
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"dedup": dedup_flow}
