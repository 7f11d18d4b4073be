"""The Libra curriculum as one resumable flow (flows/curriculum.py): stage-1 train on pretrain -> mine the
pretrain pool with the stage-1 guard -> adjudicate its disagreements -> split (the settled ones move to
finetune) and export -> stage-2 train on finetune from the stage-1 checkpoint -> eval.

A `curricula` row records how far one curriculum got. Every step is idempotent on its own (a finished
training stage is found by its id, mined and adjudicated samples are not asked again, an unchanged
export is the same folder), so what the row adds is the pin: the stage-1 export. A rerun after a crash
resumes the open curriculum with that export, even though its own split step has written a newer one
since; a rerun after it completed, with no new export since, does nothing.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from libra.tasks.core.config import Training
from libra.tasks.core.ids import content_hash
from libra.warehouse import Warehouse, sql_text
from libra.warehouse.schemas import schema

STEPS = ("started", "stage1", "mined", "split", "stage2", "completed")


def settings_key(t: Training, mining: dict[str, Any]) -> str:
    """What makes two curricula the same recipe: the base model, every training setting but the export
    choice, and the mining settings."""
    return content_hash(t.model_dump(exclude={"export"}), mining)


def find(wh: Warehouse, key: str, export_id: str) -> dict[str, Any] | None:
    """The curriculum a run with these settings continues (queries/curriculum_for.sql), or None."""
    rows = wh.query(sql_text("queries/curriculum_for.sql"), {"settings_key": key, "export": export_id})
    return rows.row(0, named=True) if rows.height else None


def new(key: str, export_id: str, run_id: str) -> dict[str, Any]:
    return {"curriculum_id": "c" + content_hash(key, export_id), "settings_key": key, "status": "started",
            "stage1_export_id": export_id, "stage1_training_run_id": None, "guard": None, "stage2_export_id": None,
            "stage2_training_run_id": None, "benchmark": None, "summary": None, "run_id": run_id}


def save(wh: Warehouse, record: dict[str, Any], status: str, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record that `status` is done (and the summary so far); returns the updated record. A step redone
    on resume (a training stage found finished) never moves the status back."""
    assert status in STEPS, status
    record = {**record, "status": max(status, record["status"], key=STEPS.index)}
    if summary is not None:
        record["summary"] = json.dumps(summary, ensure_ascii=False, default=str)
    wh.insert("curricula", pl.DataFrame([record], schema=schema("curricula")), on_conflict="replace")
    return record


def done(record: dict[str, Any], status: str) -> bool:
    """Whether the record has got past `status` already."""
    return STEPS.index(record["status"]) >= STEPS.index(status)
