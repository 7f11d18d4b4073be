"""Prefect flows: each stage is a flow of its own, and `factory` runs them in order.

Flows compose tasks and decide nothing themselves: what is pending comes from the warehouse, what to
do with it from tasks/. Every flow records a `runs` row and leaves two Prefect artifacts (a summary
table and a markdown report).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from libra.tasks import steps, synthesize
from libra.tasks.config import FactoryConfig, load_config
from libra.tasks.runs import Factory, finish_run, start_run
from libra.warehouse import Warehouse, sql_text

STAGES = ("synthesize", "augment", "dedup", "respond", "annotate", "split")


def warehouse_path(cfg: FactoryConfig, override: str | None) -> Path:
    """--warehouse beats $LIBRA_WAREHOUSE beats the config's `warehouse` (relative to the working dir)."""
    return Path(override or os.environ.get("LIBRA_WAREHOUSE") or cfg.warehouse).expanduser().resolve()


@contextmanager
def stage_run(name: str, config: str, warehouse: str | None, parent_run_id: str | None) -> Iterator[tuple[Factory, dict]]:
    cfg = load_config(config)
    wh = Warehouse(warehouse_path(cfg, warehouse))
    # Relative export folders live beside the warehouse they were exported from.
    if not Path(cfg.export_dir).is_absolute():
        cfg.export_dir = str(wh.path.parent / cfg.export_dir)
    wh.set_settings({"vote.min_margin": cfg.vote.min_margin, "vote.max_abstentions": cfg.vote.max_abstentions})
    run_id = start_run(wh, name, cfg, parent_run_id)
    fx = Factory.open(cfg, wh, run_id)
    summary: dict[str, Any] = {"run_id": run_id}
    try:
        yield fx, summary
    except BaseException as e:
        summary["error"] = f"{type(e).__name__}: {e}"
        finish_run(wh, run_id, "failed", summary)
        raise
    summary["llm"] = fx.pool.summary_rows()
    summary["endpoints_down"] = fx.pool.down_endpoints()
    finish_run(wh, run_id, "completed", summary)
    _artifacts(name, summary)


def _artifacts(name: str, summary: dict[str, Any]) -> None:
    flat = [{"key": k, "value": str(v)} for k, v in summary.items() if k not in ("llm",)]
    create_table_artifact(table=flat, key=f"{name}-summary", description=f"libra {name}: run summary")
    if summary.get("llm"):
        create_table_artifact(table=summary["llm"], key=f"{name}-llm-usage",
                              description=f"libra {name}: LLM calls per endpoint")
    lines = [f"# libra {name}", "", f"run `{summary['run_id']}`", ""]
    lines += [f"- **{k}**: {v}" for k, v in summary.items() if k not in ("run_id", "llm")]
    if summary.get("endpoints_down"):
        lines += ["", "## Endpoints declared down", ""]
        lines += [f"- `{n}`: {why}" for n, why in summary["endpoints_down"].items()]
    create_markdown_artifact(markdown="\n".join(lines), key=f"{name}-report", description=f"libra {name} report")


def _merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    for k, v in part.items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            total[k] = total.get(k, 0) + v
        elif isinstance(v, dict):
            _merge(total.setdefault(k, {}), v)
        else:
            total[k] = v


@flow(name="synthesize", log_prints=True)
def synthesize_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Ask the synthesizer for harmful queries and benign look-alikes over the taxonomy."""
    with stage_run("synthesize", config, warehouse, parent_run_id) as (fx, summary):
        plan = synthesize.plan_synthesis(fx.taxonomy, fx.cfg.sizes, fx.cfg.split.seed)
        summary["planned_calls"] = plan.height
        for batch in steps.batches(plan, fx.cfg.sizes.batch_size):
            _merge(summary, steps.synthesize_batch(fx, batch))
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
            _merge(summary, steps.augment_batch(fx, batch))
    return summary


@flow(name="dedup", log_prints=True)
def dedup_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Exact and MinHash near-duplicate decisions for every query not decided yet."""
    with stage_run("dedup", config, warehouse, parent_run_id) as (fx, summary):
        pending = fx.warehouse.query(sql_text("queries/pending_dedup.sql"))
        summary["pending"] = pending.height
        # batches are sequential: each one sees the signatures the previous one stored
        for batch in steps.batches(pending, max(fx.cfg.sizes.batch_size, 5000)):
            _merge(summary, steps.dedup_batch(fx, batch))
    return summary


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
            _merge(summary, steps.respond_batch(fx, batch))
    return summary


@flow(name="annotate", log_prints=True)
def annotate_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Every judge votes on every response; hard samples then go to the adjudicator."""
    with stage_run("annotate", config, warehouse, parent_run_id) as (fx, summary):
        judges = pl.DataFrame(fx.endpoint_pairs(fx.cfg.roles.judges), schema=["judge", "model"], orient="row")
        pending = fx.warehouse.query(sql_text("queries/pending_votes.sql"), frames={"judges": judges})
        summary["pending_votes"] = pending.height
        for batch in steps.batches(pending, fx.cfg.sizes.batch_size):
            _merge(summary, {"votes": steps.judge_batch(fx, batch)})
        if fx.cfg.roles.adjudicator:
            hard = fx.warehouse.query(
                sql_text("queries/pending_adjudications.sql"), {"n_judges": len(fx.cfg.roles.judges)}
            )
            summary["pending_adjudications"] = hard.height
            for batch in steps.batches(hard, fx.cfg.sizes.batch_size):
                _merge(summary, {"adjudications": steps.adjudicate_batch(fx, batch)})
    return summary


@flow(name="split", log_prints=True)
def split_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
    """Assign pretrain/finetune/eval splits to settled queries and export every split."""
    with stage_run("split", config, warehouse, parent_run_id) as (fx, summary):
        _merge(summary, {"splits": steps.assign_splits(fx)})
        _merge(summary, {"export": steps.export_splits(fx)})
    return summary


STAGE_FLOWS = {
    "synthesize": synthesize_flow, "augment": augment_flow, "dedup": dedup_flow,
    "respond": respond_flow, "annotate": annotate_flow, "split": split_flow,
}


@flow(name="factory", log_prints=True)
def factory_flow(config: str, warehouse: str | None = None) -> dict:
    """The whole stage-1 factory: synthesize -> augment -> dedup -> respond -> annotate -> split/export."""
    with stage_run("factory", config, warehouse, None) as (fx, summary):
        target = str(fx.warehouse.path)
        for name in STAGES:
            summary[name] = STAGE_FLOWS[name](config, target, fx.run_id)
        counts = fx.warehouse.query("SELECT stage, n FROM v_stage_counts")
        summary["counts"] = dict(zip(counts["stage"].to_list(), counts["n"].to_list(), strict=True))
    return summary
