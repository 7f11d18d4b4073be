"""The factory flow: every stage flow in order. Each stage is also a flow of its own (`libra run <stage>`).

Flows compose tasks and decide nothing themselves: what is pending comes from the warehouse, what to
do with it from tasks/. Every flow records a `runs` row and leaves Prefect artifacts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from libra.flows import ablation, curation, curriculum, evaluation, importing, labelling, synthesis, training
from libra.flows.common import stage_run
from libra.warehouse import sql_text

# The stage-1 factory, in order. Later stages read what earlier ones stored, nothing else.
STAGES = ("elements", "synthesize", "augment", "dedup", "respond", "annotate", "split")

# Every flow `libra run <name>` can start: the stages and whatever the other flow modules offer.
STAGE_FLOWS = {**synthesis.FLOWS, **curation.FLOWS, **labelling.FLOWS, **importing.FLOWS, **training.FLOWS,
               **evaluation.FLOWS, **ablation.FLOWS, **curriculum.FLOWS}


@flow(name="factory", log_prints=True)
def factory_flow(config: Path, warehouse: Path | None = None) -> dict:
    """The whole stage-1 factory: elements -> synthesize -> augment -> dedup -> respond -> annotate -> split/export."""
    with stage_run("factory", config, warehouse, None) as (fx, summary):
        target = str(fx.warehouse.path)
        for name in STAGES:
            summary[name] = STAGE_FLOWS[name](str(config), target, fx.run_id)
        counts = fx.warehouse.query(sql_text("queries/status_stage_counts.sql"))
        summary["counts"] = dict(zip(counts["stage"].to_list(), counts["n"].to_list(), strict=True))
    return summary
