"""The guard in the loop: mine the pretrain pool with a guard, and the whole Libra curriculum as one flow.

`libra run mine --config C --guard G [--limit N] [--max-tokens N] [--structured none|choice]` — score the
settled pretrain pool with guard G (training:<id> / training:latest / a checkpoint folder: vLLM offline;
an endpoint of the config: the LLM pool), store its predictions, and have the adjudicator settle the
samples where it disagrees with the judges (they are hard samples: review page, hard sheet).

`libra run curriculum --config C [--base-model DIR] [--export latest|ID] [--max-steps N]
[--learning-rate X] [--finetune-learning-rate X] [--mine-limit N] [--structured none|choice]
[--benchmark FILE|NAME] [--per-source-limit N]` — stage-1 train on pretrain → mine with the stage-1
guard → adjudicate → split (the settled disagreements move to finetune) and export → stage-2 train on
finetune from the stage-1 checkpoint → eval on the benchmark (evaluation.benchmark; none: no eval).
A rerun resumes where the last one stopped (tasks/training/curriculum.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.artifacts import create_table_artifact

from libra.flows.common import merge, stage_run
from libra.flows.evaluation import ask_guard, eval_flow
from libra.flows.importing import split_flow
from libra.flows.labelling import adjudicate_hard_samples
from libra.tasks.annotation import judge
from libra.tasks.core.config import ConfigError
from libra.tasks.core.overrides import with_overrides
from libra.tasks.evaluation import guard as guards
from libra.tasks.evaluation import mining
from libra.tasks.training import curriculum, stage_tasks, trainer
from libra.tasks.training.guard_prompt import GuardInstruction


@flow(name="mine", log_prints=True)
def mine_flow(
    config: Path, warehouse: Path | None = None, parent_run_id: str | None = None, *,
    guard: str, limit: int | None = None, max_tokens: int | None = None,
    structured: Literal["none", "choice"] | None = None,
) -> dict:
    """Score the settled pretrain pool with a guard; its disagreements with the judges become hard samples,
    which the adjudicator settles.

    guard: training:latest | training:<id> | a checkpoint folder (vLLM offline) | an endpoint of the config.
    limit: at most this many samples this run (default: the whole pool).
    max_tokens: default: evaluation.max_tokens.
    structured: choice constrains the answer to 安全/不安全 (default: evaluation.structured)."""
    with stage_run("mine", config, warehouse, parent_run_id) as (fx, summary):
        wh = fx.warehouse
        setup = judge.JudgeSetup.from_config(fx.cfg, fx.taxonomy)  # a bad rules file fails before any call
        ev = mining.mining_settings(fx.cfg, max_tokens=max_tokens, structured=structured)
        instruction = GuardInstruction.from_config(fx.cfg)
        g = guards.resolve_guard(guard, fx.cfg, wh, ev.structured)
        wh.insert("guards", guards.guard_frame([g], fx.run_id))
        summary["guard"] = g.guard_id
        warning = guards.prompt_mismatch(wh, g, instruction)
        if warning:
            print(f"warning: {warning}")
            summary["warning"] = warning
        version = guards.answer_version(instruction, ev.max_tokens)
        merge(summary, {"asked": ask_guard(fx, g, mining.BENCHMARK, mining.pool_pages(wh, g.guard_id, version, limit),
                                           ev, instruction)})
        merge(summary, adjudicate_hard_samples(fx, setup))
        table = mining.disagreements(wh, g.guard_id)
        summary["found"] = mining.totals(table)
        print(f"{g.guard_id}: {summary['found']}")
        if table.height:
            create_table_artifact(table=table.to_dicts(), key="mine-disagreements",
                                  description=f"libra mine: where {g.guard_id} disagrees with the judges, per scenario")
    return summary


@flow(name="curriculum", log_prints=True)
def curriculum_flow(
    config: Path, warehouse: Path | None = None, parent_run_id: str | None = None, *,
    base_model: str | None = None, export: str | None = None, max_steps: int | None = None,
    learning_rate: float | None = None, finetune_learning_rate: float | Literal["auto"] | None = None,
    mine_limit: int | None = None, structured: Literal["none", "choice"] | None = None,
    benchmark: str | None = None, per_source_limit: int | Literal["auto"] | None = None,
) -> dict:
    """Stage-1 train -> mine with the stage-1 guard -> adjudicate -> split/export -> stage-2 train -> eval,
    resuming an unfinished curriculum of the same settings. Training options override the config's
    `training` section, mining and eval options its `evaluation` section.

    mine_limit: at most this many pretrain samples mined (default: the whole pool).
    structured: choice constrains the guards' answers to 安全/不安全 (default: evaluation.structured).
    benchmark: the stage-2 guard's benchmark, a file or a registered name (default: evaluation.benchmark;
    none: no eval)."""
    with stage_run("curriculum", config, warehouse, parent_run_id) as (fx, summary):
        wh, target = fx.warehouse, str(fx.warehouse.path)
        t = with_overrides(fx.cfg.training, {
            "base_model": base_model, "export": export, "max_steps": max_steps, "learning_rate": learning_rate,
            "finetune_learning_rate": finetune_learning_rate})
        if not t.base_model:
            raise ConfigError("no base model: set training.base_model in the config or pass --base-model DIR")
        ev = mining.mining_settings(fx.cfg, max_tokens=None, structured=structured)
        bench = benchmark or fx.cfg.evaluation.benchmark
        key = curriculum.settings_key(t, {"limit": mine_limit, "structured": ev.structured})
        latest = trainer.resolve_export(wh, fx.cfg, t.export)
        record = curriculum.find(wh, key, latest.export_id) or curriculum.new(key, latest.export_id, fx.run_id)
        record = {**record, "run_id": fx.run_id}
        summary.update(curriculum=record["curriculum_id"], resumed_from=record["status"])
        if record["status"] == "completed":
            print(f"curriculum {record['curriculum_id']} is complete and no export is newer: nothing to do")
            summary["nothing_to_do"] = True
            return summary
        record = curriculum.save(wh, record, record["status"])
        out_root = Path(t.output_dir) if Path(t.output_dir).is_absolute() else wh.path.parent / t.output_dir
        plans = {p.name: p for p in trainer.stage_plans(t.model_copy(update={"stages": ["pretrain", "finetune"]}))}

        stage1_export = trainer.resolve_export(wh, fx.cfg, record["stage1_export_id"])
        summary["stage1"] = stage_tasks.train_stage(fx, t, plans["pretrain"], t.base_model, None, stage1_export, out_root)
        stage1_id = summary["stage1"]["training_run_id"]
        record = curriculum.save(wh, {**record, "stage1_training_run_id": stage1_id}, "stage1", summary)

        guard = f"training:{stage1_id}"
        if not curriculum.done(record, "mined"):
            summary["mine"] = mine_flow(str(config), target, fx.run_id, guard=guard, limit=mine_limit,
                                        structured=ev.structured)
            record = curriculum.save(wh, {**record, "guard": summary["mine"]["guard"]}, "mined", summary)
        if not curriculum.done(record, "split"):
            summary["split"] = split_flow(str(config), target, fx.run_id)
            export_id = summary["split"]["export"]["export_id"]
            record = curriculum.save(wh, {**record, "stage2_export_id": export_id}, "split", summary)

        stage2_export = trainer.resolve_export(wh, fx.cfg, record["stage2_export_id"])
        summary["stage2"] = stage_tasks.train_stage(fx, t, plans["finetune"], summary["stage1"]["output_path"],
                                                    stage1_id, stage2_export, out_root)
        stage2_id = summary["stage2"]["training_run_id"]
        record = curriculum.save(wh, {**record, "stage2_training_run_id": stage2_id}, "stage2", summary)
        summary["checkpoint"] = summary["stage2"]["output_path"]

        if bench:
            summary["eval"] = eval_flow(str(config), target, fx.run_id, guard=f"training:{stage2_id}",
                                        benchmark=bench, per_source_limit=per_source_limit, structured=ev.structured)
        else:
            print("no benchmark (--benchmark or evaluation.benchmark): the stage-2 guard is not evaluated")
        curriculum.save(wh, {**record, "benchmark": bench}, "completed", summary)
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"mine": mine_flow, "curriculum": curriculum_flow}
