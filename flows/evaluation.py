"""Evaluation flows: guards on a Libra-Test-format benchmark, scored as the official Libra metric.

`libra run eval --config C --guard G[,G…] --benchmark FILE|NAME [--benchmark-name NAME]
[--per-source-limit N] [--max-tokens N] [--structured none|choice]` — a guard is an endpoint of the
config (a *managed* one is served by this flow for the duration), a checkpoint folder, or
training:<id> / training:latest (both run offline through vLLM). Options override the config's
`evaluation` section.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import polars as pl
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from libra.flows.common import merge, stage_run
from libra.tasks.core.config import Evaluation
from libra.tasks.core.runs import Factory
from libra.tasks.evaluation import guard as guards
from libra.tasks.evaluation import metrics
from libra.tasks.evaluation.guard import write_comparison  # libra compare writes the same report
from libra.tasks.llm.step import run_step, slices
from libra.tasks.training import stage_tasks
from libra.tasks.training.guard_prompt import GuardInstruction


def evaluate_guard(fx: Factory, g: guards.Guard, benchmark: str, ev: Evaluation,
                   instruction: GuardInstruction) -> dict[str, Any]:
    """Ask one guard every benchmark item it has no answer for under this prompt; store the predictions."""
    wh = fx.warehouse
    items = guards.pending_items(wh, g, benchmark, ev.per_source_limit, guards.answer_version(instruction, ev.max_tokens))
    done: dict[str, Any] = {"pending": items.height}
    warning = guards.prompt_mismatch(wh, g, instruction)
    if warning:
        print(f"warning: {warning}")
        done["warning"] = warning
    merge(done, ask_guard(fx, g, benchmark, [items], ev, instruction))
    return done


def ask_guard(fx: Factory, g: guards.Guard, benchmark: str, pages: Iterable[pl.DataFrame], ev: Evaluation,
              instruction: GuardInstruction) -> dict[str, Any]:
    """Ask a guard about items (item_id, question, response), page by page, and store its predictions
    under `benchmark` ('warehouse' for the mine flow's samples): a checkpoint through vLLM offline (one
    engine start per page), an endpoint through the LLM pool (served for the duration when managed)."""
    done: dict[str, Any] = {}
    served = False
    with ExitStack() as stack:
        for n, items in enumerate(pages):
            if items.is_empty():
                continue
            if g.kind == "checkpoint":
                workdir = fx.warehouse.path.parent / "eval-work" / fx.run_id / g.guard_id.replace(":", "-") / str(n)
                merge(done, stage_tasks.guard_offline(fx, g, benchmark, items, ev, instruction, workdir))
                continue
            assert g.endpoint is not None
            if not served:  # a managed server starts with the first page that needs it, once
                stack.enter_context(guards.managed_endpoints([g.endpoint], fx.cfg, fx.warehouse.path.parent / "logs"))
                served = True
            context = guards.GuardContext(g, benchmark, instruction, ev.max_tokens, ev.structured)
            merge(done, run_step(fx, guards.GUARD_ENDPOINT, slices(items, fx.cfg.sizes.batch_size), context)[0])
    return done


@flow(name="eval", log_prints=True)
def eval_flow(
    config: Path, warehouse: Path | None = None, parent_run_id: str | None = None, *,
    guard: str | None = None, benchmark: str | None = None, benchmark_name: str | None = None,
    per_source_limit: int | Literal["auto"] | None = None, max_tokens: int | None = None,
    structured: Literal["none", "choice"] | None = None,
) -> dict:
    """Run each guard over the benchmark items it has not answered, store the predictions, report. Options
    not given come from the config's `evaluation` section.

    guard: comma-separated guards: endpoints of the config, training:<id> / training:latest, checkpoint
    folders (default: evaluation.guards)."""
    with stage_run("eval", config, warehouse, parent_run_id) as (fx, summary):
        ev = guards.evaluation_settings(fx.cfg, guard=guard, benchmark=benchmark, per_source_limit=per_source_limit,
                                        max_tokens=max_tokens, structured=structured)
        wh = fx.warehouse
        instruction = GuardInstruction.from_config(fx.cfg)
        name, new_items = guards.register_benchmark(wh, ev.benchmark, benchmark_name, fx.run_id)
        chosen = guards.register_guards(wh, fx.cfg, ev, fx.run_id)
        summary.update(benchmark=name, benchmark_items_new=new_items, guard_prompt=instruction.version, guards={})
        for g in chosen:
            summary["guards"][g.guard_id] = evaluate_guard(fx, g, name, ev, instruction)
        ids = [g.guard_id for g in chosen]
        per_source = guards.score_guards(wh, name, ids, summary["guards"])
        report = guards.write_comparison(wh, name, guards.report_dir(ev, wh, name))
        summary["report_dir"] = report.get("dir")
        for g in ids:
            rows = per_source.filter(pl.col("guard") == g)
            print(f"{g}\n{metrics.official_block(rows, summary['guards'][g]) if rows.height else '(no answers)'}")
        if per_source.height:
            create_table_artifact(table=per_source.to_dicts(), key="eval-per-source",
                                  description=f"libra eval on {name}: official figures per guard and source")
        if report.get("guards"):
            create_table_artifact(table=report["rows"], key="eval-comparison",
                                  description=f"libra eval: every guard evaluated on {name}")
            create_markdown_artifact(markdown=report["markdown"], key="eval-comparison-report",
                                     description=f"libra eval: guards on {name}")
    return summary


__all__ = ["FLOWS", "eval_flow", "evaluate_guard", "write_comparison"]

# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"eval": eval_flow}
