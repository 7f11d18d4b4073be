"""A run left `running` by a killed process is marked `interrupted` by the next run of its flow (which
holds the stage lock, so the old one cannot be alive); other flows' runs are left alone."""

from __future__ import annotations

from libra.tasks.core.runs import finish_run, mark_interrupted_runs, start_run
from libra.warehouse import Warehouse


def test_the_next_run_marks_a_dead_running_run_interrupted(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    dead = start_run(wh, "annotate", None)           # its process was killed: never finished
    other = start_run(wh, "respond", None)           # another flow, maybe alive: not ours to judge
    done = start_run(wh, "annotate", None)
    finish_run(wh, done, "completed", {})
    assert mark_interrupted_runs(wh, "annotate") == 1
    status = dict(wh.query("SELECT run_id, status FROM runs").iter_rows())
    assert status == {dead: "interrupted", other: "running", done: "completed"}
    assert wh.scalar("SELECT finished_at IS NOT NULL FROM runs WHERE run_id = ?", [dead])
    assert mark_interrupted_runs(wh, "annotate") == 0
