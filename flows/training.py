"""Training flows: supervised fine-tuning of the guard, the Libra curriculum by default.

`libra run train --config C [--stages pretrain,finetune|finetune|pretrain|mixed] [--export latest|ID]
[--base-model DIR] [--method full|lora] [--epochs N] [--max-steps N] [--learning-rate X]
[--finetune-learning-rate X] [--pretrain-fraction F] [--finetune-fraction F] [--max-length N]
[--batch-size N] [--grad-accum N] [--bf16 true|false|auto] [--gradient-checkpointing true|false]
[--lr-scheduler NAME] [--warmup-ratio F] [--weight-decay F] [--logging-steps N] [--seed N]
[--output-dir DIR]` — each option overrides the config's `training` section (LoRA's r/alpha/dropout/
target_modules are set in the config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow

from libra.flows.common import stage_run
from libra.tasks.core.config import ConfigError
from libra.tasks.core.overrides import with_overrides
from libra.tasks.training import stage_tasks, trainer


@flow(name="train", log_prints=True)
def train_flow(
    config: Path, warehouse: Path | None = None, parent_run_id: str | None = None, *,
    stages: str | None = None, export: str | None = None, base_model: str | None = None,
    method: Literal["full", "lora"] | None = None, epochs: float | None = None, max_steps: int | None = None,
    learning_rate: float | None = None, finetune_learning_rate: float | Literal["auto"] | None = None,
    pretrain_fraction: float | None = None, finetune_fraction: float | None = None, max_length: int | None = None,
    batch_size: int | None = None, grad_accum: int | None = None, bf16: bool | Literal["auto"] | None = None,
    gradient_checkpointing: bool | None = None, lr_scheduler: str | None = None, warmup_ratio: float | None = None,
    weight_decay: float | None = None, logging_steps: int | None = None, seed: int | None = None,
    output_dir: str | None = None,
) -> dict:
    """Train the guard on the latest export: stage 1 on pretrain, stage 2 on finetune from stage 1.

    Each option overrides the config's `training` key of the same name (None: the config's); stages is
    comma-separated (pretrain,finetune | finetune | pretrain | mixed); `auto` clears finetune_learning_rate
    (= learning_rate) and bf16 (= when the GPU supports it)."""
    overrides = {k: v for k, v in locals().items() if k not in ("config", "warehouse", "parent_run_id")}
    with stage_run("train", config, warehouse, parent_run_id) as (fx, summary):
        t = with_overrides(fx.cfg.training, overrides, list_keys=("stages",))
        if not t.base_model:
            raise ConfigError("no base model: set trainer.base_model in the config or pass --base-model DIR")
        export = trainer.resolve_export(fx.warehouse, fx.cfg, t.export)
        out_root = Path(t.output_dir) if Path(t.output_dir).is_absolute() else fx.warehouse.path.parent / t.output_dir
        summary.update(export=export.export_id, stages=[])
        base, parent = t.base_model, None
        for plan in trainer.stage_plans(t):
            stage = stage_tasks.train_stage(fx, t, plan, base, parent, export, out_root)
            summary["stages"].append(stage)
            print(f"stage {plan.name}: {stage}")
            base, parent = stage["output_path"], stage["training_run_id"]
        summary["checkpoint"] = base
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"train": train_flow}
