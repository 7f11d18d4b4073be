"""Annotation commands and views: parse-verdicts, the human loop (export-hard / import-labels),
final-label precedence, vote statuses, the controversial switch and guard-disagreement mining."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from libra.flows.cli.main import app
from libra.warehouse import Warehouse
from tests.tasks.annotation_data import warehouse_with_votes

runner = CliRunner()


def _votes(table: dict[str, list[str | None]], scenario: str = "违法犯罪") -> pl.DataFrame:
    """{response_id: [label per judge]} -> a vote table."""
    rows = [{"response_id": rid, "judge": f"judge-{chr(97 + j)}", "label": label, "scenario": scenario}
            for rid, labels in table.items() for j, label in enumerate(labels)]
    return pl.DataFrame(rows, schema={"response_id": pl.String, "judge": pl.String, "label": pl.String,
                                      "scenario": pl.String})


SAMPLES = {
    "r-agreed": ["不安全", "不安全", "不安全"],
    "r-split": ["不安全", "不安全", "安全"],       # hard: disagreement (margin 1/3)
    "r-adjudicated": ["安全", "不安全", "安全"],   # hard, then adjudicated
    "r-tie": ["安全", "不安全", None],             # hard: tie
    "r-abstain": ["安全", "安全", None],           # hard: abstentions
    "r-contro": ["安全", "安全", "有争议"],         # hard: a 有争议 vote
    "r-safe": ["安全", "安全", "安全"],
}


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    wh = warehouse_with_votes(tmp_path / "w.duckdb", _votes(SAMPLES))
    wh.insert("adjudications", pl.DataFrame([{
        "response_id": "r-adjudicated", "adjudicator": "judge-a", "model": "stub-judge-a", "label": "不安全",
        "analysis": "回答给出了可执行的方法。", "raw_text": "{}", "run_id": "test-run",
    }]))
    return wh


def _final(wh: Warehouse) -> dict[str, dict]:
    return {r["response_id"]: r for r in wh.query("SELECT * FROM v_final_labels").iter_rows(named=True)}


# -- vote statuses and precedence ---------------------------------------------------------------------

def test_vote_statuses_and_hard_reasons(wh: Warehouse) -> None:
    f = _final(wh)
    assert {k: (v["vote_status"], v["hard_reason"]) for k, v in f.items()} == {
        "r-agreed": ("agreed", None), "r-safe": ("agreed", None),
        "r-split": ("hard", "disagreement"), "r-adjudicated": ("hard", "disagreement"),
        "r-tie": ("hard", "tie"), "r-abstain": ("hard", "abstentions"), "r-contro": ("hard", "controversial_vote"),
    }
    assert f["r-split"]["majority_label"] == "不安全" and f["r-split"]["margin"] == pytest.approx(1 / 3)
    assert (f["r-adjudicated"]["final_label"], f["r-adjudicated"]["label_source"]) == ("不安全", "adjudicated")
    assert (f["r-tie"]["final_label"], f["r-tie"]["label_source"]) == (None, "none")
    hard = set(wh.query("SELECT response_id FROM v_hard_samples")["response_id"])
    assert hard == {"r-split", "r-adjudicated", "r-tie", "r-abstain", "r-contro"}


def test_majority_status_with_five_judges_and_thresholds(tmp_path: Path) -> None:
    wh = warehouse_with_votes(tmp_path / "w.duckdb", _votes({
        "r41": ["不安全"] * 4 + ["安全"], "r32": ["不安全"] * 3 + ["安全"] * 2, "r4a": ["不安全"] * 4 + [None]}))
    f = _final(wh)
    assert (f["r41"]["vote_status"], f["r41"]["final_label"]) == ("majority", "不安全")  # margin 0.6
    assert (f["r32"]["vote_status"], f["r32"]["hard_reason"]) == ("hard", "disagreement")
    assert (f["r4a"]["vote_status"], f["r4a"]["hard_reason"]) == ("hard", "abstentions")
    wh.set_settings({"vote.min_margin": 0.8, "vote.max_abstentions": 1})
    f = _final(wh)
    assert (f["r41"]["vote_status"], f["r41"]["hard_reason"]) == ("hard", "disagreement")
    assert (f["r4a"]["vote_status"], f["r4a"]["hard_reason"]) == ("majority", None)


def test_controversial_switch(wh: Warehouse) -> None:
    assert _final(wh)["r-split"]["final_label"] == "不安全"
    wh.set_settings({"vote.controversial": True})
    f = _final(wh)
    for rid in ("r-split", "r-tie", "r-contro"):
        assert (f[rid]["final_label"], f[rid]["label_source"]) == ("有争议", "controversial"), rid
    assert f["r-adjudicated"]["final_label"] == "不安全"  # a decisive adjudication settles it
    assert f["r-abstain"]["final_label"] == "安全"  # abstentions alone are no disagreement
    assert f["r-agreed"]["final_label"] == "不安全"


def test_guard_disagreement_joins_the_hard_pool(wh: Warehouse) -> None:
    wh.insert("predictions", pl.DataFrame([
        {"guard": "guard-s1", "benchmark": "warehouse", "item_id": "r-agreed", "raw_text": '{"答案": "安全"}',
         "label": "安全", "run_id": "eval-1"},
        {"guard": "guard-s1", "benchmark": "warehouse", "item_id": "r-safe", "raw_text": '{"答案": "安全"}',
         "label": "安全", "run_id": "eval-1"},  # agrees: stays agreed
        {"guard": "guard-x", "benchmark": "warehouse", "item_id": "r-agreed", "raw_text": "？", "label": None,
         "run_id": "eval-1"},  # unparseable: no disagreement
        {"guard": "guard-s1", "benchmark": "libra-test", "item_id": "r-safe", "raw_text": "不安全", "label": "不安全",
         "run_id": "eval-1"},  # another benchmark's item with the same id: not a warehouse sample
        {"guard": "guard-s1", "benchmark": "warehouse", "item_id": "r-split", "raw_text": "安全", "label": "安全",
         "run_id": "eval-1"},  # already hard: keeps its vote reason, lists the guard
    ]))
    hard = {r["response_id"]: r for r in wh.query("SELECT * FROM v_hard_samples").iter_rows(named=True)}
    assert hard["r-agreed"]["hard_reason"] == "guard_disagreement:guard-s1"
    assert hard["r-agreed"]["query"] and hard["r-agreed"]["response"]
    assert "r-safe" not in hard
    assert (hard["r-split"]["hard_reason"], hard["r-split"]["disagreeing_guards"]) == ("disagreement", "guard-s1")
    # the adjudicator siding with the guard changes the final label, and the sample stays hard
    wh.insert("adjudications", pl.DataFrame([{"response_id": "r-agreed", "adjudicator": "judge-a", "model": "m",
                                              "label": "安全", "run_id": "test-run"}]))
    f = _final(wh)["r-agreed"]
    assert (f["final_label"], f["label_source"], f["vote_status"]) == ("安全", "adjudicated", "hard")
    pending = wh.query(
        (Path(__file__).parents[2] / "warehouse/queries/pending_adjudications.sql").read_text(encoding="utf-8"),
        {"n_judges": 3, "after_response_id": "", "page_size": 100})
    assert "r-agreed" not in pending["response_id"].to_list()  # adjudicated once, not again


# -- the human loop ----------------------------------------------------------------------------------------

def _export(wh: Warehouse, out: Path, *extra: str) -> None:
    result = runner.invoke(app, ["export-hard", "--warehouse", str(wh.path), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def test_human_round_trip_csv(wh: Warehouse, tmp_path: Path) -> None:
    out = tmp_path / "sheet"
    _export(wh, out)
    header, rows = _read_csv(out / "hard-samples.csv")
    assert header[:3] == ["id", "query", "response"] and "label" in header and "votes" in header
    assert {r["id"] for r in rows} == {"r-split", "r-adjudicated", "r-tie", "r-abstain", "r-contro"}
    assert all(r["label"] == "" for r in rows)
    split = next(r for r in rows if r["id"] == "r-split")
    assert "judge-c: 安全" in split["votes"] and "judge-a: 不安全" in split["votes"]
    adjudicated = next(r for r in rows if r["id"] == "r-adjudicated")
    assert adjudicated["adjudicated_label"] == "不安全" and "可执行" in adjudicated["adjudication_analysis"]
    jsonl = [json.loads(line) for line in (out / "hard-samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in jsonl] == [r["id"] for r in rows]
    assert jsonl[0]["votes"][0].keys() == {"judge", "label", "analysis"} and jsonl[0]["label"] == ""

    # the annotator labels three rows (one overrides the adjudicator), leaves the rest blank
    labels = {"r-split": "安全", "r-adjudicated": "安全", "r-tie": "unsafe"}
    for r in rows:
        r["label"] = labels.get(r["id"], "")
    rows[0]["note"] = "人工复核：回答只是科普。"
    _write_csv(out / "hard-samples.csv", header, rows)
    result = runner.invoke(app, ["import-labels", str(out / "hard-samples.csv"), "--warehouse", str(wh.path),
                                 "--annotator", "alice"])
    assert result.exit_code == 0, result.output
    assert "3 labels imported" in result.output
    f = _final(wh)
    assert (f["r-split"]["final_label"], f["r-split"]["label_source"]) == ("安全", "human")  # human > majority
    assert (f["r-adjudicated"]["final_label"], f["r-adjudicated"]["label_source"]) == ("安全", "human")  # > adjudicated
    assert (f["r-tie"]["final_label"], f["r-tie"]["label_source"]) == ("不安全", "human")
    assert (f["r-abstain"]["final_label"], f["r-abstain"]["label_source"]) == ("安全", "majority")
    stored = wh.query("SELECT response_id, annotator, source_line, run_id FROM human_labels ORDER BY source_line")
    assert set(stored["annotator"]) == {"alice"} and stored["source_line"].min() >= 2
    assert wh.scalar("SELECT status FROM runs WHERE run_id = ?", [stored["run_id"][0]]) == "completed"
    # a second import of the same file changes nothing; the labelled samples leave the next sheet
    again = runner.invoke(app, ["import-labels", str(out / "hard-samples.csv"), "--warehouse", str(wh.path)])
    assert again.exit_code == 0 and "0 labels imported" in again.output
    _export(wh, tmp_path / "next")
    _, remaining = _read_csv(tmp_path / "next" / "hard-samples.csv")
    assert {r["id"] for r in remaining} == {"r-abstain", "r-contro"}


def test_human_round_trip_jsonl_and_later_label_wins(wh: Warehouse, tmp_path: Path) -> None:
    out = tmp_path / "sheet"
    _export(wh, out)
    path = out / "hard-samples.jsonl"
    for label in ("不安全", "有争议"):
        recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for rec in recs:
            rec["label"] = label if rec["id"] == "r-contro" else None
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
        result = runner.invoke(app, ["import-labels", str(path), "--warehouse", str(wh.path)])
        assert result.exit_code == 0, result.output
        assert _final(wh)["r-contro"]["final_label"] == label


@pytest.mark.parametrize(("edit", "message"), [
    (lambda rows: rows[2].update(label="maybe"), "(row 4): invalid label 'maybe'"),
    (lambda rows: rows[1].update(id="r-nope", label="安全"), "(row 3): unknown id 'r-nope'"),
    (lambda rows: rows[3].update(id=rows[0]["id"], label="安全"), "(row 5): duplicate id 'r-abstain' (first on line 2)"),
    (lambda rows: rows[4].update(id="", label="安全"), "(row 6): the id is empty"),
])
def test_a_sheet_with_one_bad_row_is_rejected_whole(wh: Warehouse, tmp_path: Path, edit, message: str) -> None:
    out = tmp_path / "sheet"
    _export(wh, out)
    header, rows = _read_csv(out / "hard-samples.csv")
    for r in rows:
        r["label"] = "安全"
    edit(rows)
    _write_csv(out / "hard-samples.csv", header, rows)
    result = runner.invoke(app, ["import-labels", str(out / "hard-samples.csv"), "--warehouse", str(wh.path)])
    assert result.exit_code == 2
    assert "1 problem(s); nothing was imported" in result.output
    assert re.search(r"line \d+ " + re.escape(message), result.output), result.output
    assert wh.scalar("SELECT count(*) FROM human_labels") == 0
    assert wh.scalar("SELECT count(*) FROM runs WHERE flow = 'import-labels'") == 0


def test_csv_lines_count_multiline_cells(wh: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text('id,label,note\nr-split,安全,"第一行\n第二行"\nr-tie,bogus,\n', encoding="utf-8")
    result = runner.invoke(app, ["import-labels", str(path), "--warehouse", str(wh.path)])
    assert result.exit_code == 2 and "line 4 (row 3): invalid label 'bogus'" in result.output


def test_broken_jsonl_line_and_missing_columns_are_named(wh: Warehouse, tmp_path: Path) -> None:
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"id": "r-split", "label": "安全"}\n{"id": "r-tie", "label": \n', encoding="utf-8")
    result = runner.invoke(app, ["import-labels", str(bad), "--warehouse", str(wh.path)])
    assert result.exit_code == 2 and "line 2: not valid JSON" in result.output
    no_label = tmp_path / "labels.csv"
    no_label.write_text("id,verdict\nr-split,安全\n", encoding="utf-8")
    result = runner.invoke(app, ["import-labels", str(no_label), "--warehouse", str(wh.path)])
    assert result.exit_code == 2 and "missing column(s) label" in result.output
    assert wh.scalar("SELECT count(*) FROM human_labels") == 0


def test_export_refuses_to_overwrite_a_sheet(wh: Warehouse, tmp_path: Path) -> None:
    _export(wh, tmp_path)
    result = runner.invoke(app, ["export-hard", "--warehouse", str(wh.path), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--force" in result.output
    _export(wh, tmp_path, "--force", "--limit", "2")
    assert len(_read_csv(tmp_path / "hard-samples.csv")[1]) == 2


# -- parse-verdicts ----------------------------------------------------------------------------------------

def test_parse_verdicts_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "outputs.jsonl"
    lines = [{"id": 1, "text": '{"答案": "不安全", "类别": "违法犯罪", "分析": "给出了步骤，可照做。"}'},
             {"id": 2, "text": "[答案] 有争议\n[分析] 视情况而定。"}, {"id": 3, "text": "我不确定。"}]
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines) + "\nnot json\n",
                    encoding="utf-8")
    result = runner.invoke(app, ["parse-verdicts", str(path)])
    assert result.exit_code == 0
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["label"] for o in out] == ["不安全", "有争议", None, None]
    assert out[0] == {"line": 1, "id": 1, "label": "不安全", "category": "违法犯罪", "analysis": "给出了步骤，可照做。",
                      "how": "json", "prompt_label": None, "is_refusal": None}
    assert "error" in out[3] and out[3]["line"] == 5 and out[3]["is_refusal"] is None


def test_parse_verdicts_reads_stdin() -> None:
    stdin = '{"text": "该回答是不安全的。"}\n{"text": ""}\n'
    proc = subprocess.run(["libra", "parse-verdicts"], input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(o["label"], o["how"]) for o in out] == [("不安全", "prose"), (None, "empty")]
