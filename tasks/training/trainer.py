"""Supervised fine-tuning of the guard with TRL, in the Libra curriculum: stage 1 on the `pretrain`
export (large, synthetic), stage 2 on `finetune` (small, real and hard) starting from the stage-1
checkpoint. Also one stage on `finetune` alone, or on both splits shuffled together (`mixed`), and a
fraction of each split, for the paper's ablations.

Examples are the export's chat records turned into prompt/completion pairs (the guard instruction with
the dialogue / the rear-critic JSON), so the loss falls on the assistant's tokens only whatever the base
model's chat template is. Examples longer than max_length are left out and counted, never truncated
(a cut example would lose its target). Each stage is a `training_runs` row: base, export manifest
hash, data used, hyperparameters, loss curve, output path, duration, and fingerprints of the weights it
started from and ended with (stage 2's start must equal stage 1's end). Its id is a hash of all of
that, so a rerun finds a finished stage and skips it.

torch, transformers, trl, peft and datasets are imported inside the functions that train: the rest of
the factory installs and runs without them (`pip install -e '.[train]'`).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from libra.tasks.core.config import FactoryConfig, Training
from libra.tasks.core.ids import content_hash
from libra.tasks.data.jsonl import json_lines
from libra.warehouse import Warehouse, sql_text


class TrainingError(ValueError):
    """Training cannot start: missing base model, export or data; the message says what to do."""


# -- stages ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagePlan:
    name: str  # pretrain | finetune | mixed
    splits: tuple[str, ...]
    learning_rate: float


def stage_plans(t: Training) -> list[StagePlan]:
    stage2_lr = t.finetune_learning_rate or t.learning_rate
    if t.stages == ["mixed"]:
        return [StagePlan("mixed", ("pretrain", "finetune"), t.learning_rate)]
    return [StagePlan(s, (s,), t.learning_rate if s == "pretrain" else stage2_lr) for s in t.stages]


def hyperparameters(t: Training, plan: StagePlan, bf16: bool) -> dict[str, Any]:
    hp = {"method": t.method, "epochs": t.epochs, "max_steps": t.max_steps, "learning_rate": plan.learning_rate,
          "lr_scheduler": t.lr_scheduler, "warmup_ratio": t.warmup_ratio, "weight_decay": t.weight_decay,
          "max_length": t.max_length, "batch_size": t.batch_size, "grad_accum": t.grad_accum, "bf16": bf16,
          "gradient_checkpointing": t.gradient_checkpointing, "logging_steps": t.logging_steps, "seed": t.seed}
    if t.method == "lora":
        hp["lora"] = t.lora.model_dump()
    return hp


# -- the data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRef:
    export_id: str
    folder: Path
    manifest_sha256: str
    # The guard prompt the export was written with (manifest: guard_prompt.version); the eval flow
    # warns when it asks a guard trained on it with another prompt.
    guard_prompt_version: str | None = None
    # The assistant target the export was written with (manifest: target.critic): rear, front or none.
    critic: str = "rear"


def resolve_export(wh: Warehouse, cfg: FactoryConfig, export: str) -> ExportRef:
    """`latest` (the newest chat export of the config's variant: its critic and guard prompt, so an
    ablation's front-critic export is never "latest" for the nightly training) or an export id (a
    folder under export_dir)."""
    if export == "latest":
        from libra.tasks.training.guard_prompt import GuardInstruction

        rows = wh.query(sql_text("queries/latest_export.sql"),
                        {"critic": cfg.split.critic, "prompt": GuardInstruction.from_config(cfg).version})
        if rows.is_empty():
            raise TrainingError("no export in the warehouse yet: run the split flow (or the factory) first")
        folder = Path(rows["path"][0]).parent
    else:
        folder = cfg.resolve(cfg.export_dir) / export
    manifest = folder / "manifest.json"
    if not manifest.exists():
        raise TrainingError(f"export {export!r}: {manifest} not found")
    raw = manifest.read_bytes()
    try:
        data = json.loads(raw)
        prompt = (data.get("guard_prompt") or {}).get("version")
        critic = (data.get("target") or {}).get("critic") or "rear"  # exports before the variants: rear
    except (json.JSONDecodeError, AttributeError) as e:
        raise TrainingError(f"export {export!r}: {manifest} is not a manifest ({e})") from None
    return ExportRef(folder.name, folder, hashlib.sha256(raw).hexdigest(), prompt, critic)


def load_chat_split(folder: Path, split: str) -> list[dict[str, Any]]:
    """The export's <split>.jsonl as prompt/completion examples: prompt = every message before the last,
    completion = the last (the assistant's rear-critic answer)."""
    path = folder / f"{split}.jsonl"
    if not path.exists():
        raise TrainingError(f"{path}: no {split} export in this folder")
    out = []
    for jl in json_lines(path.read_text(encoding="utf-8").splitlines()):
        lineno, rec = jl.lineno, jl.value
        if jl.error:
            raise TrainingError(f"{path}:{lineno}: {jl.error}")
        messages = rec.get("messages") if isinstance(rec, dict) else None
        if not isinstance(messages, list):
            raise TrainingError(f"{path}:{lineno}: not a chat record (an object with a 'messages' list)")
        if len(messages) < 2 or not all(isinstance(m, dict) for m in messages) \
                or messages[-1].get("role") != "assistant":
            raise TrainingError(f"{path}:{lineno}: the last message must be the assistant's answer")
        out.append({"id": str(rec.get("id") or content_hash(messages)), "split": split,
                    "prompt": messages[:-1], "completion": messages[-1:]})
    return out


def take_fraction(examples: list[dict[str, Any]], fraction: float, seed: int) -> list[dict[str, Any]]:
    """A deterministic share of the examples (the first by a hash of seed and id), in that hash order."""
    ranked = sorted(examples, key=lambda e: content_hash(seed, e["id"]))
    return ranked[: max(1, round(fraction * len(ranked)))] if ranked else []


def stage_examples(export: ExportRef, plan: StagePlan, t: Training) -> list[dict[str, Any]]:
    fractions = {"pretrain": t.pretrain_fraction, "finetune": t.finetune_fraction}
    examples: list[dict[str, Any]] = []
    for split in plan.splits:
        examples += take_fraction(load_chat_split(export.folder, split), fractions[split], t.seed)
    if not examples:
        raise TrainingError(f"stage {plan.name}: the export {export.export_id} has no {'/'.join(plan.splits)} rows")
    # mixed: both splits interleaved by hash (the trainer shuffles again every epoch)
    return sorted(examples, key=lambda e: content_hash(t.seed, "order", e["id"]))


def training_run_id(plan: StagePlan, base: dict[str, Any], export: ExportRef, data: dict[str, Any],
                    hp: dict[str, Any]) -> str:
    return "t" + content_hash(plan.name, base, export.manifest_sha256, data, hp)


# -- training -------------------------------------------------------------------------------------


@dataclass
class StageResult:
    output_path: Path
    loss_curve: list[dict[str, Any]]
    init_fingerprint: str
    final_fingerprint: str
    n_examples: int
    n_too_long: int
    duration_s: float
    device: str
    steps: int

    @property
    def final_loss(self) -> float | None:
        return self.loss_curve[-1]["loss"] if self.loss_curve else None


def weights_fingerprint(model: Any) -> str:
    """A hash of the model's weights: every tensor's name, shape and a strided sample of up to 65,536
    of its values (bit-exact, so a single changed step shows; cheap even for a 7B model)."""
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 65536)
            sample = flat[::step][:65536].to(torch.float32).cpu().numpy()
            h.update(f"{name}:{tuple(tensor.shape)}:".encode())
            h.update(sample.tobytes())
    return h.hexdigest()[:16]


def bf16_default(value: bool | None) -> bool:
    import torch

    if value is not None:
        return value
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def device_name(bf16: bool) -> str:
    import torch

    where = f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
    return f"{where} {'bf16' if bf16 else 'fp32'}"


def _fits(tokenizer: Any, examples: list[dict[str, Any]], max_length: int) -> tuple[list[dict[str, Any]], int]:
    texts = [tokenizer.apply_chat_template(e["prompt"] + e["completion"], tokenize=False) for e in examples]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    kept = [e for e, n in zip(examples, lengths, strict=True) if n <= max_length]
    return kept, len(examples) - len(kept)


def train_stage(base_model: str, examples: list[dict[str, Any]], t: Training, plan: StagePlan, bf16: bool,
                output: Path) -> StageResult:
    """Fine-tune `base_model` on the examples and save the (merged) model and tokenizer at `output`."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.chat_template is None:
        raise TrainingError(f"{base_model}: the tokenizer has no chat template (the guard is a chat model)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kept, too_long = _fits(tokenizer, examples, t.max_length)
    if not kept:
        raise TrainingError(f"stage {plan.name}: all {len(examples)} examples are longer than max_length={t.max_length}")
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.bfloat16 if bf16 else torch.float32)
    init_fp = weights_fingerprint(model)

    curve: list[dict[str, Any]] = []

    class LossCurve(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                curve.append({"step": state.global_step, "loss": float(logs["loss"]),
                              "learning_rate": float(logs.get("learning_rate", 0.0)),
                              "epoch": float(logs.get("epoch", 0.0))})

    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    args = SFTConfig(
        output_dir=str(staging / "trainer"), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
        learning_rate=plan.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, logging_steps=t.logging_steps, logging_first_step=True,
        save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(), bf16=bf16,
        gradient_checkpointing=t.gradient_checkpointing, max_length=t.max_length, seed=t.seed,
        data_seed=t.seed, disable_tqdm=True, completion_only_loss=True, dataloader_num_workers=0,
    )
    peft_config = None
    if t.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                                 target_modules=t.lora.target_modules, task_type="CAUSAL_LM")
    try:
        dataset = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in kept])
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[LossCurve()])
        trainer.train()
        trained = trainer.model
        if t.method == "lora":  # merged, so stage 2 and vLLM load a plain model folder
            trained = trained.merge_and_unload()
        final_fp = weights_fingerprint(trained)
        trained.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(staging / "trainer", ignore_errors=True)
        shutil.rmtree(output, ignore_errors=True)
        staging.rename(output)  # a checkpoint folder exists only once it is complete
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # no half-written checkpoint stays
        raise
    return StageResult(output_path=output, loss_curve=curve, init_fingerprint=init_fp, final_fingerprint=final_fp,
                       n_examples=len(kept), n_too_long=too_long, duration_s=time.monotonic() - started,
                       device=device_name(bf16), steps=int(trainer.state.global_step))


def base_reference(base_model: str, parent_training_run_id: str | None) -> dict[str, Any]:
    """What a stage starts from, for its id: the parent stage, or the base model (and its files)."""
    if parent_training_run_id:
        return {"parent": parent_training_run_id}
    folder = Path(base_model)
    if folder.is_dir():
        stat = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
        return {"model": str(folder.resolve()), "files": content_hash(stat)}
    return {"model": base_model}


def training_row(tid: str, plan: StagePlan, base_model: str, parent: str | None, export: ExportRef,
                 data: dict[str, Any], hp: dict[str, Any], run_id: str, result: StageResult | None,
                 error: str | None = None) -> pl.DataFrame:
    return pl.DataFrame([{
        "training_run_id": tid, "stage": plan.name, "base_model": base_model, "parent_training_run_id": parent,
        "export_manifest_hash": export.manifest_sha256, "export_id": export.export_id,
        "hyperparameters": json.dumps(hp, ensure_ascii=False), "data": json.dumps(data, ensure_ascii=False),
        "loss_curve": json.dumps(result.loss_curve) if result else None,
        "output_path": str(result.output_path) if result else None,
        "duration_s": result.duration_s if result else None,
        "init_fingerprint": result.init_fingerprint if result else None,
        "final_fingerprint": result.final_fingerprint if result else None,
        "final_loss": result.final_loss if result else None, "device": result.device if result else None,
        "status": "completed" if result else "failed", "error": error, "run_id": run_id,
    }], schema_overrides={"loss_curve": pl.String, "output_path": pl.String, "duration_s": pl.Float64,
                          "init_fingerprint": pl.String, "final_fingerprint": pl.String, "final_loss": pl.Float64,
                          "device": pl.String, "error": pl.String, "parent_training_run_id": pl.String})


def completed_stage(wh: Warehouse, tid: str) -> dict[str, Any] | None:
    rows = wh.query(sql_text("queries/completed_training_run.sql"), [tid])
    if rows.is_empty() or not (Path(rows["output_path"][0]) / "config.json").exists():
        return None
    return rows.row(0, named=True)


def run_stage(wh: Warehouse, t: Training, plan: StagePlan, base_model: str, parent: str | None,
              export: ExportRef, out_root: Path, run_id: str) -> dict[str, Any]:
    """One stage end to end: data, id, skip when done, train, record. Returns the stage's summary."""
    bf16 = bf16_default(t.bf16)
    hp = hyperparameters(t, plan, bf16)
    examples = stage_examples(export, plan, t)
    data = {"splits": list(plan.splits), "pretrain_fraction": t.pretrain_fraction,
            "finetune_fraction": t.finetune_fraction, "examples_selected": len(examples)}
    tid = training_run_id(plan, base_reference(base_model, parent), export, data, hp)
    data["guard_prompt_version"] = export.guard_prompt_version
    data["critic"] = export.critic
    done = completed_stage(wh, tid)
    if done is not None:
        return {"training_run_id": tid, "stage": plan.name, "skipped": "already trained",
                "output_path": done["output_path"], "final_loss": done["final_loss"]}
    try:
        result = train_stage(base_model, examples, t, plan, bf16, out_root / tid)
    except Exception as e:
        wh.insert("training_runs", training_row(tid, plan, base_model, parent, export, data, hp, run_id, None,
                                                f"{type(e).__name__}: {e}"), on_conflict="replace")
        raise
    data.update(examples_used=result.n_examples, examples_too_long=result.n_too_long, steps=result.steps)
    wh.insert("training_runs", training_row(tid, plan, base_model, parent, export, data, hp, run_id, result),
              on_conflict="replace")
    first = result.loss_curve[0]["loss"] if result.loss_curve else math.nan
    return {"training_run_id": tid, "stage": plan.name, "examples": result.n_examples,
            "too_long": result.n_too_long, "steps": result.steps, "first_loss": first,
            "final_loss": result.final_loss, "duration_s": round(result.duration_s, 1),
            "device": result.device, "output_path": str(result.output_path)}
