"""vote.method dawid_skene in the vote views (warehouse/views/20_votes.sql) and the stored label model
(tasks/annotation/dawid_skene.py: store_label_model)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from libra.tasks.annotation.dawid_skene import store_label_model
from libra.warehouse import Warehouse
from tests.tasks.annotation_data import generated_votes, votes_from_table, warehouse_with_votes

JUDGES = ["model-judge-a", "model-judge-b", "model-judge-c"]


def _final(wh: Warehouse) -> dict[str, dict]:
    return {r["response_id"]: r for r in wh.query("SELECT * FROM v_final_labels").iter_rows(named=True)}


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    wh = warehouse_with_votes(tmp_path / "w.duckdb", votes_from_table({
        "r-sure": ["不安全", "不安全", "不安全"],
        "r-unsure": ["不安全", "不安全", "不安全"],
        "r-flip": ["安全", "安全", "不安全"],      # a 2:1 majority the posterior overturns
        "r-abstain": ["安全", "不安全", None],     # hard by count: stays hard whatever the posterior
        "r-missing": ["安全", "安全"],             # judge-c never voted: pending
        "r-human": ["不安全", "不安全", "不安全"],
    }))
    wh.set_settings({"vote.judges": json.dumps(JUDGES), "vote.min_margin": 0.3, "vote.min_confidence": 0.9})
    wh.insert("label_posteriors", pl.DataFrame({
        "response_id": ["r-sure", "r-unsure", "r-flip", "r-abstain", "r-missing", "r-human"],
        "p_unsafe": [0.999, 0.6, 0.95, 0.99, 0.99, 0.99], "method": "dawid_skene", "run_id": "test-run"}))
    wh.insert("human_labels", pl.DataFrame({"response_id": ["r-human"], "label": ["安全"], "run_id": ["test-run"]}))
    return wh


def test_majority_ignores_stored_posteriors(wh: Warehouse):
    f = _final(wh)
    assert (f["r-unsure"]["vote_status"], f["r-unsure"]["label_source"], f["r-unsure"]["p_unsafe"]) == (
        "agreed", "majority", None)
    assert (f["r-flip"]["vote_status"], f["r-flip"]["final_label"], f["r-flip"]["label_source"]) == (
        "majority", "安全", "majority")
    wh.set_settings({"vote.method": "majority"})
    assert _final(wh) == f


def test_dawid_skene_labels_and_low_confidence(wh: Warehouse):
    wh.set_settings({"vote.method": "dawid_skene"})
    f = _final(wh)
    assert (f["r-sure"]["vote_status"], f["r-sure"]["final_label"], f["r-sure"]["label_source"]) == (
        "agreed", "不安全", "posterior")
    assert f["r-sure"]["p_unsafe"] == pytest.approx(0.999)
    # confident votes, unsure posterior: hard, for the adjudicator, the vote's label kept
    assert (f["r-unsure"]["vote_status"], f["r-unsure"]["hard_reason"], f["r-unsure"]["majority_label"]) == (
        "hard", "low_confidence", "不安全")
    assert (f["r-flip"]["vote_status"], f["r-flip"]["final_label"], f["r-flip"]["label_source"]) == (
        "majority", "不安全", "posterior")
    assert (f["r-abstain"]["vote_status"], f["r-abstain"]["hard_reason"], f["r-abstain"]["majority_label"]) == (
        "hard", "tie", None)
    assert (f["r-missing"]["vote_status"], f["r-missing"]["final_label"]) == ("pending", None)
    assert (f["r-human"]["final_label"], f["r-human"]["label_source"]) == ("安全", "human")
    hard = set(wh.query("SELECT response_id FROM v_hard_samples")["response_id"])
    assert hard == {"r-unsure", "r-abstain"}
    wh.set_settings({"vote.min_confidence": 0.5})
    assert _final(wh)["r-unsure"]["vote_status"] == "agreed"
    assert wh.scalar("SELECT count(*) FROM v_label_posteriors") == 6


def test_store_label_model_fits_the_complete_votes(tmp_path: Path):
    votes = generated_votes(n_items=300, error_rates=(0.05, 0.15, 0.35), abstain_rate=0.0, controversial_rate=0.0)
    wh = warehouse_with_votes(tmp_path / "w.duckdb", votes.drop("truth"))
    wh.set_settings({"vote.judges": json.dumps(JUDGES), "vote.method": "dawid_skene"})
    known = votes.unique("response_id").sort("response_id").head(20)
    wh.insert("human_labels", known.select("response_id", label="truth", run_id=pl.lit("test-run")))
    wh.execute("UPDATE votes SET status = 'failed', label = NULL WHERE response_id = 'r0299' AND judge = 'judge-c'")
    figures = store_label_model(wh, "run-1", min_confidence=0.9)
    assert figures["items"] == 299 and figures["anchors"] == 20  # the pending response is not fitted
    posteriors = wh.query("SELECT * FROM v_label_posteriors").join(
        votes.unique("response_id").select("response_id", "truth"), on="response_id")
    assert posteriors.height == 299
    # anchors keep their known class
    anchored = posteriors.filter(pl.col("response_id").is_in(known["response_id"].implode()))
    assert (anchored["posterior_label"] == anchored["truth"]).all()
    assert (posteriors["posterior_label"] == posteriors["truth"]).mean() > 0.93
    judges = wh.query("SELECT * FROM v_label_model_judges")
    accuracy = dict(zip(judges["judge"], judges["accuracy"], strict=True))
    assert accuracy["judge-a"] > accuracy["judge-b"] > accuracy["judge-c"]
    assert accuracy["judge-c"] == pytest.approx(0.65, abs=0.07)
    assert wh.scalar("SELECT count(*) FROM v_label_model_confusion") == 3 * 2 * 2
    assert figures["judges"]["judge-a"]["accuracy"] == pytest.approx(accuracy["judge-a"], abs=1e-4)
    store_label_model(wh, "run-2", min_confidence=0.9)  # a new fit replaces the last one
    assert wh.scalar("SELECT count(*) FROM label_posteriors") == 299
    assert wh.scalar("SELECT count(DISTINCT run_id) FROM v_label_model_confusion") == 1
    # every settled label of a vote that is not hard comes from the posterior; hard ones keep the majority
    sources = dict(wh.query("SELECT label_source || '/' || vote_status, count(*) FROM v_final_labels "
                            "GROUP BY 1").iter_rows())
    assert sources["posterior/agreed"] > 100 and sources["majority/hard"] > 100 and sources["pending/pending"] == 1
    assert not any(k.startswith("majority/") and k != "majority/hard" for k in sources)


def test_the_label_model_read_in_pages_that_end_inside_an_item_fits_as_one_page(tmp_path: Path):
    votes = generated_votes(n_items=120, error_rates=(0.05, 0.15, 0.35), abstain_rate=0.0, controversial_rate=0.0)
    wh = warehouse_with_votes(tmp_path / "w.duckdb", votes.drop("truth"))
    wh.set_settings({"vote.judges": json.dumps(JUDGES), "vote.method": "dawid_skene"})
    one_page = store_label_model(wh, "run-1", min_confidence=0.9)
    whole = wh.query("SELECT response_id, p_unsafe FROM label_posteriors ORDER BY response_id")
    # 3 votes an item: pages of 4 votes end inside the second item, which the next page starts with
    paged = store_label_model(wh, "run-2", min_confidence=0.9, page_size=4)
    assert paged["items"] == one_page["items"] == 120 and paged["iterations"] == one_page["iterations"]
    assert wh.query("SELECT response_id, p_unsafe FROM label_posteriors ORDER BY response_id").equals(whole)
    with pytest.raises(ValueError, match="3 votes or more"):
        store_label_model(wh, "run-3", min_confidence=0.9, page_size=3)  # a page would hold no whole item
    assert wh.scalar("SELECT count(DISTINCT run_id) FROM label_posteriors") == 1  # run-2's fit stands


def test_store_label_model_without_votes_stores_nothing(tmp_path: Path):
    wh = Warehouse(tmp_path / "w.duckdb")
    assert store_label_model(wh, "run-1", min_confidence=0.9) == {"items": 0}
    assert wh.scalar("SELECT count(*) FROM label_posteriors") == 0


def test_judge_chart_is_a_png_of_the_fitted_judges(tmp_path: Path):
    from libra.tasks.annotation.dawid_skene import judge_chart

    votes = generated_votes(n_items=120, abstain_rate=0.0, controversial_rate=0.0)
    wh = warehouse_with_votes(tmp_path / "w.duckdb", votes.drop("truth"))
    store_label_model(wh, "run-1", min_confidence=0.9)
    path = judge_chart(wh.query("SELECT * FROM v_label_model_judges"), tmp_path / "reports" / "judges.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_v_dataset_carries_the_judges_majority_on_refusal(tmp_path: Path):
    wh = warehouse_with_votes(tmp_path / "w.duckdb", votes_from_table({
        "r-refused": ["安全", "安全", "安全"], "r-complied": ["不安全", "不安全", "不安全"],
        "r-tie": ["安全", "安全", "安全"], "r-unsaid": ["安全", "安全", "安全"]}))
    said = {("r-refused", "judge-a"): True, ("r-refused", "judge-b"): True, ("r-refused", "judge-c"): False,
            ("r-complied", "judge-a"): False, ("r-tie", "judge-a"): True, ("r-tie", "judge-b"): False}
    for (rid, judge), value in said.items():
        wh.execute("UPDATE votes SET is_refusal = ? WHERE response_id = ? AND judge = ?", [value, rid, judge])
    wh.execute("UPDATE votes SET status = 'failed' WHERE response_id = 'r-complied' AND judge = 'judge-b'")
    got = dict(wh.query("SELECT response_id, is_refusal FROM v_dataset").iter_rows())
    assert got == {"r-refused": True, "r-complied": False, "r-tie": None, "r-unsaid": None}
