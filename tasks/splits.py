"""Step 10: split labelled data into pretrain / finetune / eval, and export it for trainers.

A query's split is decided once and stored (table `splits`): the eval hold-out is chosen by a hash of
(seed, dedup cluster), so near-duplicates share a split; the rest goes to `finetune` when it is real
data or has a hard (disputed) response, else to `pretrain`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl

from libra.tasks.ids import content_hash
from libra.tasks.prompts import frame_nonce, load_template

SPLITS = ("pretrain", "finetune", "eval")


def assign_splits(candidates: pl.DataFrame, seed: int, eval_fraction: float, run_id: str) -> pl.DataFrame:
    rows = []
    for r in candidates.iter_rows(named=True):
        bucket = int(content_hash(seed, r["cluster_id"], "eval"), 16) % 100_000
        if bucket < eval_fraction * 100_000:
            split = "eval"
        elif r["source"] == "real" or r["has_hard"]:
            split = "finetune"
        else:
            split = "pretrain"
        rows.append({"query_id": r["query_id"], "split": split, "seed": seed, "run_id": run_id})
    return pl.DataFrame(rows, schema={"query_id": pl.String, "split": pl.String, "seed": pl.Int32, "run_id": pl.String})


def critic_target(label: str, analysis: str) -> str:
    """The rear-critic target: label first, then the analysis."""
    return json.dumps({"答案": label, "分析": analysis}, ensure_ascii=False)


def guard_prompt(query: str, response: str) -> str:
    return load_template("guard_instruction.txt").render(query=query, response=response,
                                                         nonce=frame_nonce(query, response))


def chat_records(rows: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "id": r["response_id"],
            "messages": [
                {"role": "user", "content": guard_prompt(r["query"], r["response"])},
                {"role": "assistant", "content": critic_target(r["label"], r["analysis"] or "")},
            ],
            "label": r["label"], "scenario": r["scenario"], "source": r["source"],
        }
        for r in rows.iter_rows(named=True)
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_split_export(rows: pl.DataFrame, split: str, out_dir: Path) -> list[dict[str, Any]]:
    """Write <split>.jsonl (chat messages) and <split>.parquet (all metadata); return file entries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / f"{split}.jsonl"
    with jsonl.open("w", encoding="utf-8") as f:
        for rec in chat_records(rows):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    parquet = out_dir / f"{split}.parquet"
    rows.write_parquet(parquet)
    return [
        {"split": split, "format": fmt, "path": str(p), "n_rows": rows.height, "sha256": _sha256(p)}
        for fmt, p in (("chat-jsonl", jsonl), ("parquet", parquet))
    ]
