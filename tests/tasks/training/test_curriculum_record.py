"""The curricula row that makes `libra run curriculum` resumable (tasks/training/curriculum.py): which
curriculum a run continues, and a status that only moves forward."""

from __future__ import annotations

from pathlib import Path

from libra.tasks.core.config import Training
from libra.tasks.training import curriculum
from libra.warehouse import Warehouse


def test_a_run_continues_the_open_curriculum_of_its_settings_and_never_moves_its_status_back(tmp_path: Path):
    wh = Warehouse(tmp_path / "w.duckdb")
    key = curriculum.settings_key(Training(base_model="base"), {"limit": None, "structured": "none"})
    assert curriculum.find(wh, key, "e1") is None
    record = curriculum.save(wh, curriculum.new(key, "e1", "run-1"), "started")
    record = curriculum.save(wh, {**record, "guard": "g"}, "mined")
    # resuming redoes stage 1 (found finished): the status stays at mined
    record = curriculum.save(wh, {**record, "stage1_training_run_id": "t1"}, "stage1")
    stored = curriculum.find(wh, key, "e-newer")
    assert stored is not None and stored["status"] == "mined" and stored["stage1_training_run_id"] == "t1"
    # the open one is resumed whatever the newest export is; its stage-1 export stays pinned
    assert stored["stage1_export_id"] == "e1" and not curriculum.done(stored, "split")
    assert curriculum.done(stored, "stage1")


def test_a_completed_curriculum_is_found_only_while_no_export_is_newer(tmp_path: Path):
    wh = Warehouse(tmp_path / "w.duckdb")
    key = curriculum.settings_key(Training(base_model="base"), {"limit": None, "structured": "none"})
    record = curriculum.new(key, "e1", "run-1")
    curriculum.save(wh, {**record, "stage2_export_id": "e2"}, "completed")
    assert curriculum.find(wh, key, "e2")["status"] == "completed"  # its own stage-2 export: nothing new
    assert curriculum.find(wh, key, "e1")["status"] == "completed"
    assert curriculum.find(wh, key, "e3") is None  # a newer export: a new curriculum starts
    other = curriculum.settings_key(Training(base_model="base", max_steps=5), {"limit": None, "structured": "none"})
    assert other != key and curriculum.find(wh, other, "e2") is None
    assert curriculum.new(key, "e3", "run-2")["curriculum_id"] != record["curriculum_id"]
