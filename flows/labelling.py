"""Labelling flows: responder fan-out, judge votes, adjudication of hard samples."""

from __future__ import annotations

import polars as pl
from prefect import flow

from libra.flows.common import merge, stage_run
from libra.tasks import steps
from libra.warehouse import sql_text


@flow(name="respond", log_prints=True)
def respond_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Fan every kept query out to every responder."""
    with stage_run("respond", config, warehouse, parent_run_id) as (fx, summary):
        wanted = steps.respond.wanted_responses(
            fx.endpoint_pairs(fx.cfg.roles.responders), fx.cfg.sizes.samples_per_responder
        )
        pending = fx.warehouse.query(sql_text("queries/pending_responses.sql"), frames={"wanted": wanted})
        summary["pending"] = pending.height
        for batch in steps.batches(pending, fx.cfg.sizes.batch_size):
            merge(summary, steps.respond_batch(fx, batch))
    return summary


@flow(name="annotate", log_prints=True)
def annotate_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Every judge votes on every response; hard samples then go to the adjudicator."""
    with stage_run("annotate", config, warehouse, parent_run_id) as (fx, summary):
        judges = pl.DataFrame(fx.endpoint_pairs(fx.cfg.roles.judges), schema=["judge", "model"], orient="row")
        pending = fx.warehouse.query(sql_text("queries/pending_votes.sql"), frames={"judges": judges})
        summary["pending_votes"] = pending.height
        for batch in steps.batches(pending, fx.cfg.sizes.batch_size):
            merge(summary, {"votes": steps.judge_batch(fx, batch)})
        if fx.cfg.roles.adjudicator:
            hard = fx.warehouse.query(
                sql_text("queries/pending_adjudications.sql"), {"n_judges": len(fx.cfg.roles.judges)}
            )
            summary["pending_adjudications"] = hard.height
            for batch in steps.batches(hard, fx.cfg.sizes.batch_size):
                merge(summary, {"adjudications": steps.adjudicate_batch(fx, batch)})
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"respond": respond_flow, "annotate": annotate_flow}
