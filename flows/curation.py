"""Curation flows: exact and near-duplicate removal (and benchmark decontamination)."""

from __future__ import annotations

from prefect import flow

from libra.flows.common import merge, stage_run
from libra.tasks import steps
from libra.warehouse import sql_text


@flow(name="dedup", log_prints=True)
def dedup_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Exact and MinHash near-duplicate decisions for every query not decided yet."""
    with stage_run("dedup", config, warehouse, parent_run_id) as (fx, summary):
        pending = fx.warehouse.query(sql_text("queries/pending_dedup.sql"))
        summary["pending"] = pending.height
        # batches are sequential: each one sees the signatures the previous one stored
        for batch in steps.batches(pending, max(fx.cfg.sizes.batch_size, 5000)):
            merge(summary, steps.dedup_batch(fx, batch))
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"dedup": dedup_flow}
