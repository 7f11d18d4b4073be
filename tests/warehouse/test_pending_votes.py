"""A failed or missing judge vote leaves its sample pending: not settled, not hard, not adjudicated, not
split (warehouse/views/20_votes.sql, queries/pending_adjudications.sql, queries/split_candidates.sql)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from libra.tasks.annotation.judge import vote_settings
from libra.tasks.core.config import FactoryConfig, load_config
from libra.tasks.data import splits
from libra.warehouse import Warehouse, sql_text
from tests.tasks.annotation_data import votes_from_table, warehouse_with_votes

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
JUDGES = ["model-judge-a", "model-judge-b", "model-judge-c"]


def _fail_vote(wh: Warehouse, response_id: str, judge: str) -> None:
    wh.execute("UPDATE votes SET status = 'failed', label = NULL, error = 'connection error' "
               "WHERE response_id = ? AND judge = ?", [response_id, judge])


def _final(wh: Warehouse) -> dict[str, dict]:
    return {r["response_id"]: r for r in wh.query("SELECT * FROM v_final_labels").iter_rows(named=True)}


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    wh = warehouse_with_votes(tmp_path / "w.duckdb", votes_from_table({
        "r-ok": ["不安全", "不安全", "不安全"],
        "r-failed": ["不安全", "不安全", "不安全"],   # judge-c's call failed
        "r-missing": ["安全", "安全"],                # judge-c never voted (a killed run)
        "r-all-failed": ["安全", "安全", "安全"],
    }))
    wh.set_settings({"vote.judges": json.dumps(JUDGES)})
    _fail_vote(wh, "r-failed", "judge-c")
    for judge in ("judge-a", "judge-b", "judge-c"):
        _fail_vote(wh, "r-all-failed", judge)
    wh.insert("dedup", wh.query("SELECT query_id, 'h' || query_id AS norm_hash, query_id AS cluster_id, true AS kept, "
                                "'canonical' AS reason, 'exact' AS method, 'test-run' AS run_id "
                                "FROM queries"))
    return wh


def test_a_failed_or_missing_vote_is_pending_not_an_abstention(wh: Warehouse):
    f = _final(wh)
    assert f["r-ok"]["vote_status"] == "agreed" and f["r-ok"]["final_label"] == "不安全"
    for rid in ("r-failed", "r-missing", "r-all-failed"):
        assert (f[rid]["vote_status"], f[rid]["final_label"], f[rid]["label_source"], f[rid]["hard_reason"]) == (
            "pending", None, "pending", None), rid
    assert f["r-failed"]["n_abstain"] == 0 and f["r-failed"]["n_failed"] == 1
    assert wh.scalar("SELECT count(*) FROM v_hard_samples") == 0
    counts = dict(wh.query("SELECT stage, n FROM v_stage_counts").iter_rows())
    assert counts["pending samples (a vote missing)"] == 3 and counts["hard samples"] == 0


def test_pending_samples_are_neither_adjudicated_nor_split(wh: Warehouse):
    hard = wh.query(sql_text("queries/pending_adjudications.sql"), {"n_judges": 3, "after_response_id": "", "page_size": 100})
    assert hard.is_empty()
    settled = splits.settled_queries(wh, 3, needs_adjudication=True)
    assert settled["query_id"].to_list() == ["qr-ok"]


def test_the_vote_arriving_later_settles_the_sample(wh: Warehouse):
    wh.execute("UPDATE votes SET status = 'ok', label = '不安全' WHERE response_id = 'r-failed'")
    f = _final(wh)
    assert (f["r-failed"]["vote_status"], f["r-failed"]["final_label"]) == ("agreed", "不安全")
    assert "qr-failed" in splits.settled_queries(wh, 3, needs_adjudication=True)["query_id"].to_list()


def test_dropping_a_judge_is_explicit_and_ignores_its_votes(wh: Warehouse):
    wh.set_settings({"vote.judges": json.dumps(JUDGES[:2])})  # what vote.drop_judges: [judge-c] writes
    f = _final(wh)
    assert f["r-failed"]["vote_status"] == "agreed" and f["r-failed"]["n_votes"] == 2
    assert f["r-missing"]["vote_status"] == "agreed" and f["r-missing"]["final_label"] == "安全"
    assert f["r-all-failed"]["vote_status"] == "pending"  # its remaining judges failed too


def test_a_human_label_settles_even_a_pending_sample(wh: Warehouse):
    wh.insert("human_labels", pl.DataFrame([{"response_id": "r-failed", "label": "安全", "annotator": "ann",
                                             "run_id": "test-run"}]))
    f = _final(wh)["r-failed"]
    assert (f["final_label"], f["label_source"]) == ("安全", "human")


def test_a_missing_response_keeps_its_query_unsplit(wh: Warehouse):
    wanted = pl.DataFrame({"responder": ["resp-a", "resp-b"], "model": ["stub-resp-a", "stub-resp-b"],
                           "sample_index": [0, 0]}, schema_overrides={"sample_index": pl.Int32})
    assert splits.settled_queries(wh, 3, True, wanted).is_empty()  # resp-b has answered nothing yet


def test_vote_settings_name_the_voting_judges_and_drop_is_validated(tmp_path: Path):
    cfg = load_config(DEMO)
    models = json.loads(str(vote_settings(cfg)["vote.judges"]))
    assert models == [cfg.endpoint(j).model for j in cfg.roles.judges]
    data = cfg.model_dump(mode="json")
    data["vote"]["drop_judges"] = [cfg.roles.judges[-1]]
    dropped = FactoryConfig.model_validate(data)
    assert json.loads(str(vote_settings(dropped)["vote.judges"])) == models[:-1]
    data["vote"]["drop_judges"] = ["nobody"]
    with pytest.raises(ValueError, match="vote.drop_judges"):
        FactoryConfig.model_validate(data)
