"""Stage-1 synthesis flows: harmful queries and benign look-alikes, then augmentation."""

from __future__ import annotations

from prefect import flow

from libra.flows.common import merge, stage_run
from libra.tasks import steps, synthesize
from libra.warehouse import sql_text


@flow(name="synthesize", log_prints=True)
def synthesize_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Ask the synthesizer for harmful queries and benign look-alikes over the taxonomy."""
    with stage_run("synthesize", config, warehouse, parent_run_id) as (fx, summary):
        plan = synthesize.plan_synthesis(fx.taxonomy, fx.cfg.sizes, fx.cfg.split.seed)
        summary["planned_calls"] = plan.height
        for batch in steps.batches(plan, fx.cfg.sizes.batch_size):
            merge(summary, steps.synthesize_batch(fx, batch))
    return summary


@flow(name="augment", log_prints=True)
def augment_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Give a share of the seed queries a rewritten or jailbreak-wrapped child."""
    with stage_run("augment", config, warehouse, parent_run_id) as (fx, summary):
        seeds = fx.warehouse.query(sql_text("queries/seeds_for_augmentation.sql"))
        chosen = synthesize.choose_augmentations(
            seeds, fx.cfg.sizes.augment_methods, fx.cfg.sizes.augment_fraction, fx.cfg.split.seed
        )
        summary["chosen"] = chosen.height
        for batch in steps.batches(chosen, fx.cfg.sizes.batch_size):
            merge(summary, steps.augment_batch(fx, batch))
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"synthesize": synthesize_flow, "augment": augment_flow}
