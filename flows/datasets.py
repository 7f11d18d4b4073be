"""Dataset flows: splits and exports."""

from __future__ import annotations

from prefect import flow

from libra.flows.common import merge, stage_run
from libra.tasks import steps


@flow(name="split", log_prints=True)
def split_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Assign pretrain/finetune/eval splits to settled queries and export every split."""
    with stage_run("split", config, warehouse, parent_run_id) as (fx, summary):
        merge(summary, {"splits": steps.assign_splits(fx)})
        merge(summary, {"export": steps.export_splits(fx)})
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"split": split_flow}
