"""`libra run mine` through the LLM pool against the stub (no vLLM needed): a lenient guard (the stub's
stub-judge-lenient, which misses 45% of unsafe answers, as a weak stage-1 guard would) scores the demo's
settled pretrain pool; where it disagrees with the judges the samples
become hard, the adjudicator settles them, and the split flow moves their queries to finetune, so the
next export's finetune data holds them. Eval never moves; a rerun asks nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml

from libra.tasks.evaluation.guard import GuardError
from libra.warehouse import Warehouse
from tests.conftest import copy_of_factory

pytestmark = pytest.mark.slow
GUARD = "endpoint:guard:stub-judge-lenient"


@pytest.fixture(scope="module")
def mined(stub, demo_factory, tmp_path_factory) -> dict:
    from libra.flows.curriculum import mine_flow
    from libra.flows.importing import split_flow

    tmp = tmp_path_factory.mktemp("mine")
    config = copy_of_factory(demo_factory, stub.url, tmp)  # the finished factory, then the guard endpoint
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg["endpoints"].append({"name": "guard", "base_url": stub.url + "/v1", "model": "stub-judge-lenient",
                             "timeout_s": 5})
    cfg["evaluation"] = {"max_tokens": 128}
    config.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    warehouse = tmp / "test.duckdb"
    wh = Warehouse(warehouse)
    splits_before = wh.query("SELECT query_id, split FROM splits")
    pool = wh.scalar("SELECT count(*) FROM v_dataset WHERE split = 'pretrain' AND final_label IN ('安全', '不安全')")
    # an eval sample a guard disagrees with and an adjudicator settles: it must stay in eval
    eval_row = wh.query("SELECT response_id, final_label FROM v_dataset WHERE split = 'eval' "
                        "AND final_label IN ('安全', '不安全') ORDER BY response_id LIMIT 1").row(0, named=True)
    flipped = "安全" if eval_row["final_label"] == "不安全" else "不安全"
    wh.insert("predictions", pl.DataFrame([{"guard": "other-guard", "benchmark": "warehouse",
                                            "item_id": eval_row["response_id"], "label": flipped, "status": "ok",
                                            "prompt_version": "p", "run_id": "test"}]))
    first = mine_flow(str(config), str(warehouse), guard="guard")
    calls = wh.scalar("SELECT count(*) FROM llm_calls")
    split = split_flow(str(config), str(warehouse))
    again = mine_flow(str(config), str(warehouse), guard="guard")
    return {"wh": wh, "config": config, "first": first, "split": split, "again": again, "pool": pool,
            "splits_before": splits_before, "calls": calls, "eval_response": eval_row["response_id"]}


def test_the_guard_scores_the_whole_settled_pretrain_pool(mined) -> None:
    wh = mined["wh"]
    assert mined["first"]["guard"] == GUARD
    assert mined["pool"] > 50
    scored = wh.scalar("SELECT count(*) FROM predictions WHERE guard = ? AND benchmark = 'warehouse' AND status = 'ok'",
                       [GUARD])
    assert scored == mined["pool"] == mined["first"]["found"]["scored"]
    # nothing outside the pretrain split (as it was when mining ran) was asked
    asked = wh.query("SELECT DISTINCT r.query_id FROM predictions p JOIN responses r ON r.response_id = p.item_id "
                     "WHERE p.guard = ?", [GUARD])["query_id"]
    before = dict(mined["splits_before"].iter_rows())
    assert {before[q] for q in asked} == {"pretrain"}


def test_disagreements_become_hard_samples_and_are_adjudicated(mined) -> None:
    wh = mined["wh"]
    found = mined["first"]["found"]
    assert found["disagreements"] > 0, found
    # a lenient guard's disagreements are misses: it says 安全 where the judges settled 不安全
    assert found["guard_missed_unsafe"] > found["guard_flagged_safe"]
    hard = wh.query("SELECT f.response_id, f.vote_status, f.disagreeing_guards, f.label_source FROM v_final_labels f "
                    "JOIN v_guard_disagreements g USING (response_id) WHERE g.guard = ?", [GUARD])
    assert hard.height == found["disagreements"]
    assert set(hard["vote_status"]) == {"hard"}
    assert all(GUARD in g for g in hard["disagreeing_guards"])
    # the stub adjudicator answers every one: each is settled, and mining reported them so
    assert set(hard["label_source"]) <= {"adjudicated", "human"}
    assert found["settled"] == found["disagreements"]
    assert mined["first"]["pending_adjudications"] >= found["disagreements"]


def test_settled_disagreements_move_their_queries_to_finetune(mined) -> None:
    wh = mined["wh"]
    moved = wh.query("SELECT * FROM split_moves")
    assert moved.height == mined["split"]["splits"]["moved_to_finetune"] > 0
    assert set(moved["from_split"]) == {"pretrain"} and set(moved["to_split"]) == {"finetune"}
    disagreeing = set(wh.query("SELECT DISTINCT r.query_id FROM v_guard_disagreements g "
                               "JOIN responses r USING (response_id) WHERE g.guard = ?", [GUARD])["query_id"])
    assert disagreeing <= set(moved["query_id"])
    now = dict(wh.query("SELECT query_id, split FROM splits").iter_rows())
    before = dict(mined["splits_before"].iter_rows())
    changed = {q for q, s in before.items() if now[q] != s}
    assert changed == set(moved["query_id"])
    assert all(before[q] == "pretrain" and now[q] == "finetune" for q in changed)
    # a cluster never spans two splits
    spans = wh.scalar("SELECT count(*) FROM (SELECT d.cluster_id FROM splits s JOIN dedup d USING (query_id) "
                      "GROUP BY d.cluster_id HAVING count(DISTINCT s.split) > 1)")
    assert spans == 0


def test_eval_never_moves(mined) -> None:
    wh = mined["wh"]
    split = wh.scalar("SELECT s.split FROM responses r JOIN splits s USING (query_id) WHERE r.response_id = ?",
                      [mined["eval_response"]])
    assert split == "eval"


def test_the_next_export_trains_stage_2_on_the_mined_samples(mined) -> None:
    wh = mined["wh"]
    folder = Path(wh.query("SELECT path FROM exports WHERE format = 'chat-jsonl' ORDER BY created_at DESC LIMIT 1")
                  ["path"][0]).parent
    finetune = pl.read_parquet(folder / "finetune.parquet")
    mined_ids = set(wh.query("SELECT response_id FROM v_guard_disagreements WHERE guard = ?", [GUARD])["response_id"])
    assert mined_ids & set(finetune["response_id"])
    pretrain = pl.read_parquet(folder / "pretrain.parquet")
    assert not mined_ids & set(pretrain["response_id"])


def test_a_rerun_asks_nothing(mined) -> None:
    assert mined["first"]["asked"]["answered"] == mined["pool"]
    assert mined["again"]["asked"] == {} and mined["again"]["found"] == mined["first"]["found"]
    assert mined["wh"].scalar("SELECT count(*) FROM llm_calls") == mined["calls"]


def test_mine_needs_a_known_guard(mined) -> None:
    from libra.flows.curriculum import mine_flow

    out = subprocess.run(["libra", "run", "mine", "--config", str(mined["config"]), "--warehouse", str(mined["wh"].path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "--guard" in out.stderr, out.stderr
    with pytest.raises(GuardError, match="nope"):
        mine_flow(str(mined["config"]), str(mined["wh"].path), guard="nope")
