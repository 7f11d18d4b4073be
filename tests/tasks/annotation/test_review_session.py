"""tasks/annotation/review.py: the review page's plain functions (item list, progress, label writes, undo)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from libra.tasks.annotation.review import (
    ReviewError,
    ReviewFilter,
    ReviewSession,
    needs_label,
    progress,
    review_item,
    review_items,
)
from libra.warehouse import Warehouse
from tests.tasks.annotation_data import warehouse_with_votes

SAMPLES = {"r-split": ["不安全", "不安全", "安全"], "r-tie": ["安全", "不安全", None],
           "r-abstain": ["安全", "安全", None], "r-agreed": ["安全", "安全", "安全"]}


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    votes = pl.DataFrame([{"response_id": rid, "judge": f"judge-{chr(97 + j)}", "label": label,
                           "scenario": "身心健康" if rid == "r-tie" else "违法犯罪"}
                          for rid, labels in SAMPLES.items() for j, label in enumerate(labels)],
                         schema={"response_id": pl.String, "judge": pl.String, "label": pl.String, "scenario": pl.String})
    return warehouse_with_votes(tmp_path / "w.duckdb", votes)


def test_progress_and_needs_label_on_a_frame() -> None:
    items = pl.DataFrame({"id": ["a", "b", "c", "d"], "n_annotators": [0, 1, 2, 3],
                          "pair_agreement": [None, None, 1.0, 1 / 3], "my_label": [None, "安全", None, "安全"]})
    assert needs_label(items, 2).to_list() == [True, False, False, False]
    assert needs_label(items, 3).to_list() == [True, False, True, False]
    assert progress(items, 2) == {"total": 4, "complete": 2, "mine": 2, "waiting_for_me": 1, "per_item": 2,
                                  "agreement": round((1 + 1 / 3) / 2, 4), "agreement_items": 2}
    assert progress(items.head(0), 1)["agreement"] is None


def test_filters_scope_and_order(wh: Warehouse) -> None:
    # by scenario (身心健康 sorts before 违法犯罪), then id
    assert review_items(wh, ReviewFilter(), "a")["id"].to_list() == ["r-tie", "r-abstain", "r-split"]
    assert review_items(wh, ReviewFilter(scenario="身心健康"), "a")["id"].to_list() == ["r-tie"]
    assert review_items(wh, ReviewFilter(hard_reason="abstentions"), "a")["id"].to_list() == ["r-abstain"]
    assert review_items(wh, ReviewFilter(label="不安全"), "a")["id"].to_list() == ["r-split"]
    assert set(review_items(wh, ReviewFilter(scope="all"), "a")["id"]) == set(SAMPLES)
    assert ReviewFilter.from_params({"scope": "", "source": "synthetic"}, "all") == ReviewFilter("all", source="synthetic")
    with pytest.raises(ReviewError, match="scope 'some'"):
        ReviewFilter.from_params({"scope": "some"})


def test_session_writes_replaces_and_undoes_its_own_rows(wh: Warehouse) -> None:
    session = ReviewSession(wh)
    wh.insert("human_labels", pl.DataFrame([{"response_id": "r-tie", "label": "安全", "annotator": "alice",
                                             "run_id": "earlier-import"}]))
    assert session.save_label("r-split", "safe", "alice", note="  ", seconds=-4) == "安全"
    assert session.save_label("r-split", "不安全", "alice", note="改了", seconds=1e9) == "不安全"  # replaces
    assert session.save_label("r-tie", "有争议", "alice", seconds=2.5) == "有争议"
    assert session.save_label("r-tie", "有争议", "alice", note="两可") == "有争议"  # a note keeps the time
    rows = wh.query("SELECT response_id, label, note, seconds_spent FROM human_labels WHERE run_id <> 'earlier-import' "
                    "ORDER BY response_id").rows()
    assert rows == [("r-split", "不安全", "改了", 86400.0), ("r-tie", "有争议", "两可", 2.5)]
    item = review_item(wh, "r-tie", "alice", per_item=1)
    assert item["my_label"] == "有争议" and [v["judge"] for v in item["votes"]] == ["judge-a", "judge-b", "judge-c"]
    # undo removes this session's row only: the earlier import's label stands again
    assert session.undo("r-tie", "alice") and not session.undo("r-tie", "alice")
    assert session.label_now("r-tie", "alice") == "安全"
    assert not session.undo("r-split", "bob")  # bob wrote nothing in this session
    assert review_item(wh, "r-tie", "alice", per_item=1)["my_label"] == "安全"
    session.close()
    status, summary = wh.query("SELECT status, summary FROM runs WHERE flow = 'review'").row(0)
    assert status == "completed" and '"labels": 1' in summary and '"writes": 4' in summary


@pytest.mark.parametrize(("args", "message"), [
    (("r-nope", "安全", "alice"), "unknown id 'r-nope'"),
    (("r-split", "", "alice"), "invalid label ''"),
    (("r-split", "安全", ""), "annotator ''"),
    (("r-split", "安全", "<script>"), "annotator '<script>'"),
])
def test_session_refuses_bad_writes(wh: Warehouse, args: tuple, message: str) -> None:
    with pytest.raises(ReviewError, match=message.replace("(", r"\(")):
        ReviewSession(wh).save_label(*args)
    assert wh.scalar("SELECT count(*) FROM human_labels") == 0


def test_item_shows_a_posterior_when_the_warehouse_has_one(wh: Warehouse) -> None:
    assert review_item(wh, "r-split", "a", 1)["p_unsafe"] is None
    wh.insert("label_posteriors", pl.DataFrame([{"response_id": "r-split", "p_unsafe": 0.8125,
                                                 "method": "dawid_skene", "run_id": "fit"}]))
    assert review_item(wh, "r-split", "a", 1)["p_unsafe"] == 0.8125
    with pytest.raises(ReviewError, match="unknown item"):
        review_item(wh, "r-nope", "a", 1)


def test_item_shows_guard_disagreements_and_their_samples_join_the_hard_list(wh: Warehouse) -> None:
    assert "r-agreed" not in review_items(wh, ReviewFilter(), "a")["id"].to_list()
    wh.insert("predictions", pl.DataFrame([{"guard": "stage1-guard", "benchmark": "warehouse", "item_id": "r-agreed",
                                            "raw_text": "{}", "label": "不安全", "run_id": "eval"}]))
    items = review_items(wh, ReviewFilter(hard_reason="guard_disagreement"), "a")
    assert items["id"].to_list() == ["r-agreed"]
    item = review_item(wh, "r-agreed", "a", 1)
    assert item["guards"] == [{"guard": "stage1-guard", "label": "不安全"}]
    assert item["hard_reason"] == "guard_disagreement:stage1-guard"
