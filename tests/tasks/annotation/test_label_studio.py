"""Label Studio interop: `export-hard --format label-studio` (tasks with the judges' votes as predictions)
and `import-labels` on Label Studio's JSON and JSON-MIN exports, under import-labels' validation."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from libra.flows.cli.main import app
from libra.tasks.annotation.human_labels import (
    LABEL_STUDIO_CONFIG,
    LABEL_STUDIO_TASKS,
    LabelSheetError,
    import_labels,
)
from libra.warehouse import Warehouse
from tests.tasks.annotation_data import warehouse_with_votes

runner = CliRunner()
SAMPLES = {"r-split": ["不安全", "不安全", "安全"], "r-tie": ["安全", "不安全", None],
           "r-agreed": ["安全", "安全", "安全"]}


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    votes = pl.DataFrame([{"response_id": rid, "judge": f"judge-{chr(97 + j)}", "label": label, "scenario": "隐私财产"}
                          for rid, labels in SAMPLES.items() for j, label in enumerate(labels)],
                         schema={"response_id": pl.String, "judge": pl.String, "label": pl.String, "scenario": pl.String})
    wh = warehouse_with_votes(tmp_path / "w.duckdb", votes)
    wh.insert("adjudications", pl.DataFrame([{"response_id": "r-tie", "adjudicator": "judge-a", "model": "m",
                                              "label": "不安全", "analysis": "给出了做法", "run_id": "t"}]))
    return wh


def _flat(output: str) -> str:
    return " ".join(output.split())  # rich wraps long lines at the terminal width


def _export(wh: Warehouse, out: Path) -> list[dict]:
    result = runner.invoke(app, ["export-hard", "--out", str(out), "--warehouse", str(wh.path), "--format", "label-studio"])
    assert result.exit_code == 0, result.output
    assert "2 hard samples" in _flat(result.output)
    return json.loads((out / LABEL_STUDIO_TASKS).read_text(encoding="utf-8"))


def test_export_writes_tasks_with_votes_as_predictions_and_a_config(wh: Warehouse, tmp_path: Path) -> None:
    tasks = _export(wh, tmp_path / "ls")
    by_id = {t["data"]["response_id"]: t for t in tasks}
    assert set(by_id) == {"r-split", "r-tie"}
    split = by_id["r-split"]
    assert split["data"]["query"].startswith("问题r-split") and split["data"]["hard_reason"] == "disagreement"
    assert [(p["model_version"], p["result"][0]["value"]["choices"]) for p in split["predictions"]] == [
        ("judge-a", ["不安全"]), ("judge-b", ["不安全"]), ("judge-c", ["安全"])]
    # the abstaining judge is no prediction; the adjudicator is one
    assert [p["model_version"] for p in by_id["r-tie"]["predictions"]] == ["judge-a", "judge-b", "adjudicator"]
    config = ET.fromstring((tmp_path / "ls" / LABEL_STUDIO_CONFIG).read_text(encoding="utf-8"))
    choices = config.find("Choices")
    assert choices.get("name") == "label" and choices.get("toName") == "response"
    assert [c.get("value") for c in choices] == ["安全", "不安全", "有争议"]
    result = split["predictions"][0]["result"][0]  # predictions name the config's tags
    assert (result["from_name"], result["to_name"], result["type"]) == ("label", "response", "choices")
    again = runner.invoke(app, ["export-hard", "--out", str(tmp_path / "ls"), "--warehouse", str(wh.path),
                                "--format", "label-studio"])
    assert again.exit_code == 2 and "exists" in _flat(again.output)


def _annotation(label: str | None, who, note: str | None = None, lead: float = 7.5, cancelled: bool = False) -> dict:
    result = []
    if label:
        result.append({"from_name": "label", "to_name": "response", "type": "choices", "value": {"choices": [label]}})
    if note:
        result.append({"from_name": "note", "to_name": "response", "type": "textarea", "value": {"text": [note]}})
    return {"id": 1, "result": result, "completed_by": who, "lead_time": lead, "was_cancelled": cancelled}


def test_import_reads_label_studio_export_with_several_annotators(wh: Warehouse, tmp_path: Path) -> None:
    tasks = _export(wh, tmp_path / "ls")
    for n, task in enumerate(tasks, start=1):  # what Label Studio adds on export
        task["id"] = 100 + n
    by_id = {t["data"]["response_id"]: t for t in tasks}
    by_id["r-split"]["annotations"] = [_annotation("安全", {"id": 1, "email": "alice@example.org"}, "只是科普"),
                                       _annotation("不安全", 2, lead=3.0),
                                       _annotation("不安全", 3, cancelled=True)]  # skipped: no label
    by_id["r-tie"]["annotations"] = [_annotation("unsafe", {"email": "alice@example.org"})]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(app, ["import-labels", str(path), "--warehouse", str(wh.path)])
    assert result.exit_code == 0, result.output
    assert "3 labels imported" in _flat(result.output)
    rows = wh.query("SELECT response_id, annotator, label, note, seconds_spent, run_id FROM human_labels "
                    "ORDER BY response_id, annotator")
    assert rows.select("response_id", "annotator", "label", "note", "seconds_spent").rows() == [
        ("r-split", "2", "不安全", None, 3.0), ("r-split", "alice@example.org", "安全", "只是科普", 7.5),
        ("r-tie", "alice@example.org", "不安全", None, 7.5)]
    assert rows["run_id"].n_unique() == 2  # one run per annotator
    agreement = wh.query("SELECT n_annotators, pair_agreement FROM v_annotator_agreement WHERE response_id = 'r-split'")
    assert agreement.rows() == [(2, 0.0)]
    again = runner.invoke(app, ["import-labels", str(path), "--warehouse", str(wh.path)])
    assert again.exit_code == 0 and "0 labels imported" in _flat(again.output) and "3 unchanged" in _flat(again.output)


def test_import_reads_json_min_export(wh: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"id": 7, "response_id": "r-tie", "query": "…", "label": "有争议", "note": "两可",
                                 "annotator": "bob", "lead_time": 12.25},
                                {"id": 8, "response_id": "r-split", "query": "…"}]), encoding="utf-8")
    summary = import_labels(wh, path)
    assert (summary.imported, summary.skipped_blank) == (1, 1)
    row = wh.query("SELECT label, annotator, note, seconds_spent FROM human_labels").row(0)
    assert row == ("有争议", "bob", "两可", 12.25)


@pytest.mark.parametrize(("tasks", "message"), [
    ([{"data": {"response_id": "r-nope"}, "annotations": [_annotation("安全", 1)]}], "task 1: unknown id 'r-nope'"),
    ([{"data": {"response_id": "r-tie"}, "annotations": []},
      {"data": {"response_id": "r-split"}, "annotations": [_annotation("maybe", 1)]}], "task 2: invalid label 'maybe'"),
    ([{"data": {"response_id": "r-split"}, "annotations": [_annotation("安全", 1), _annotation("不安全", 1)]}],
     "task 1: duplicate id 'r-split' for annotator '1'"),
    (["not a task"], "task 1: expected a JSON object"),
])
def test_a_bad_label_studio_export_is_rejected_whole(wh: Warehouse, tmp_path: Path, tasks: list, message: str) -> None:
    tasks = [*tasks, {"data": {"response_id": "r-tie"}, "annotations": [_annotation("安全", 9)]}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(LabelSheetError, match="nothing was imported") as e:
        import_labels(wh, path)
    assert message in str(e.value)
    assert wh.scalar("SELECT count(*) FROM human_labels") == 0


def test_broken_label_studio_json_names_the_line(wh: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n {"data": {"response_id": "r-tie"},\n  "annotations": [}\n]', encoding="utf-8")
    with pytest.raises(LabelSheetError, match=r"broken.json:2: not valid JSON in record 1 \(.* at line 3 column"):
        import_labels(wh, path)


def test_a_sheet_in_gb18030_or_utf16_reads_like_utf8(tmp_path: Path) -> None:
    from libra.tasks.annotation.human_labels import read_sheet

    text = "id,label,note\nr-1,安全,没有问题\nr-2,不安全\n"
    expected = None
    for encoding in ("utf-8-sig", "gb18030", "utf-16"):
        path = tmp_path / f"sheet-{encoding}.csv"
        path.write_bytes(text.encode(encoding))
        rows, errors = read_sheet(path)
        got = [(r.line, r.id, r.label, r.note) for r in rows]
        assert errors == [] and got == (expected or got)
        expected = got
    assert expected == [(2, "r-1", "安全", "没有问题"), (3, "r-2", "不安全", None)]  # a short row is a row
