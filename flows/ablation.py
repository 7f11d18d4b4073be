"""The ablation flow: the paper's claims checked on your data and base model.

`libra run ablation --config C --grid FILE` trains and evaluates every cell of the grid (tasks/training/ablation.py
describes the file): per cell the export variant (critic, rules) of the stored splits, the training
stages (curriculum, mixed, finetune-only) on the chosen fractions, and an offline vLLM evaluation of
the final checkpoint on every benchmark. Cells already done are skipped, so a rerun resumes and, once
every cell is done, trains nothing. Cells run one after another: on one machine they share its GPU
(or CPU); see docs/ablations.md for running the paper's grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from libra.flows.common import stage_run
from libra.flows.evaluation import evaluate_guard
from libra.tasks.evaluation import guard as guards
from libra.tasks.training import ablation, stage_tasks, trainer
from libra.warehouse import sql_text


@flow(name="ablation", log_prints=True)
def ablation_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None, *,
                  grid: Path | None = None) -> dict:
    """Train and evaluate every cell of the grid that is not done yet; report per axis against the reference."""
    if not grid:
        raise ablation.ConfigError("ablation needs a grid file: --grid FILE")
    g = ablation.load_grid(grid)
    with stage_run("ablation", config, warehouse, parent_run_id) as (fx, summary):
        wh = fx.warehouse
        ev = ablation.cell_evaluation(fx.cfg.evaluation, g)
        benchmarks = [guards.register_benchmark(wh, b, None, fx.run_id)[0] for b in g.benchmarks]
        done = set(wh.query(sql_text("queries/ablation_done.sql"), {"grid": g.name})["cell_id"].to_list())
        grid_cells = ablation.cells(g)
        summary.update(grid=g.name, cells=len(grid_cells), skipped=0, trained=0, benchmarks=benchmarks)
        out_root = Path(fx.cfg.training.output_dir)
        out_root = out_root if out_root.is_absolute() else wh.path.parent / out_root
        exports: dict[tuple[str, str], trainer.ExportRef] = {}
        for cell in grid_cells:
            if cell["cell_id"] in done:
                summary["skipped"] += 1
                continue
            c = cell["coordinates"]
            print(f"cell {cell['cell_id']}: {c}")
            instruction = ablation.instruction_for(fx.cfg, c["rules"])
            variant = (c["critic"], c["rules"])
            if variant not in exports:
                exports[variant] = stage_tasks.export_variant(fx, c["critic"], instruction)
            export = exports[variant]
            t = ablation.cell_training(fx.cfg.training, g, cell)
            base, parent = cell["base_model"], None
            for plan in trainer.stage_plans(t):
                stage = stage_tasks.train_stage(fx, t, plan, base, parent, export, out_root)
                base, parent = stage["output_path"], stage["training_run_id"]
            assert parent is not None
            guard = guards.resolve_guard(f"training:{parent}", fx.cfg, wh, ev.structured)
            wh.insert("guards", guards.guard_frame([guard], fx.run_id))
            for name in benchmarks:
                evaluate_guard(fx, guard, name, ev, instruction)
            wh.insert("ablation_cells", pl.DataFrame([{
                "cell_id": cell["cell_id"], "grid": g.name, "coordinates": json.dumps(c),
                "is_reference": cell["is_reference"], "base_model": cell["base_model"], "export_id": export.export_id,
                "training_run_id": parent, "guard": guard.guard_id, "benchmarks": json.dumps(benchmarks),
                "status": "completed", "run_id": fx.run_id,
            }]))
            summary["trained"] += 1
        frame = ablation.with_deltas(ablation.results_frame(wh.query(sql_text("queries/ablation_results.sql"),
                                                                     {"grid": g.name})))
        report_dir = Path(ev.report_dir)
        report_dir = (report_dir if report_dir.is_absolute() else wh.path.parent / report_dir) / "ablation" / g.name
        if frame.height:
            report = ablation.write_report(frame, g, report_dir)
            summary["report_dir"] = report["dir"]
            print(report["markdown"])
            averages = frame.filter(pl.col("source") == "Average")
            create_table_artifact(table=averages.select("cell", "benchmark", "n", *ablation.METRICS,
                                                        *(f"delta_{m}" for m in ablation.METRICS)).to_dicts(),
                                  key=f"ablation-{g.name}", description=f"libra ablation {g.name}: every cell")
            create_markdown_artifact(markdown=report["markdown"], key=f"ablation-{g.name}-report",
                                     description=f"libra ablation {g.name}: per axis against the reference")
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"ablation": ablation_flow}
