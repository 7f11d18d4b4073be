"""The step contract (tasks/llm/step.py): a batch computes from plain inputs without the warehouse, its
result pickles (a Ray worker hands it back), pending work is read in keyset pages, and the flow-side
store counts a stored text as duplicate_of_earlier as a parse against the stored set does."""

from __future__ import annotations

import json
import pickle
from collections import Counter

import polars as pl

from libra.tasks.annotation import respond
from libra.tasks.core.config import load_config
from libra.tasks.core.runs import Factory
from libra.tasks.llm import step
from libra.tasks.llm.pool import LLMResult, call_key
from libra.tasks.synthesis import synthesize
from libra.warehouse import Warehouse
from libra.warehouse.schemas import schema
from tests.conftest import small_config

# No server listens here: a request that is not answered from the cache fails with a connection error.
DEAD_URL = "http://127.0.0.1:9"


def _pending(n: int) -> pl.DataFrame:
    return pl.DataFrame({"query_id": [f"q{i}" for i in range(n)], "text": [f"问题 {i}" for i in range(n)],
                         "responder": ["resp-a"] * n, "model": ["stub-resp-a"] * n, "sample_index": [0] * n},
                        schema_overrides={"sample_index": pl.Int32})


def test_a_batch_answered_from_the_cached_answers_calls_no_endpoint_and_pickles(tmp_path):
    cfg = load_config(small_config(DEAD_URL, tmp_path))
    pending = _pending(3)
    endpoint = {e.name: e for e in cfg.endpoints}["resp-a"]
    keys = [call_key(endpoint, r) for r in respond.respond_requests(pending)]
    cached = {keys[0]: "回答 0", keys[1]: "回答 1"}  # the third is not cached: it goes to the (dead) endpoint
    done = step.compute_batch(respond.RESPOND, cfg, "run-1", pending, None, cached, show_progress=False)
    rows = done.output.tables["responses"]
    assert rows["text"].to_list()[:2] == ["回答 0", "回答 1"] and rows["status"].to_list() == ["ok", "ok", "failed"]
    assert done.output.counts == {"requests": 3, "ok": 2, "failed": 1, "cached": 2}
    # only the call that went to the network is in the call log rows the flow will store
    assert [r["call_key"] for r in done.llm_calls] == [keys[2]] and done.llm_calls[0]["status"] == "failed"
    assert done.stats["resp-a"].cached == 2 and done.stats["resp-a"].failed == 1
    back = pickle.loads(pickle.dumps(done))
    assert back.output.tables["responses"].equals(rows) and back.health == done.health


def test_a_down_endpoint_stays_down_in_the_next_batch(tmp_path):
    cfg = load_config(small_config(DEAD_URL, tmp_path))
    health = {"resp-a": (5, "5 consecutive requests failed")}
    done = step.compute_batch(respond.RESPOND, cfg, "run-1", _pending(2), None, {}, health, show_progress=False)
    assert done.llm_calls == []  # nothing sent
    assert done.stats["resp-a"].skipped == 2 and done.health["resp-a"][1] == "5 consecutive requests failed"


def _stored_queries(wh: Warehouse, ids: list[str]) -> None:
    wh.insert("queries", pl.DataFrame([{"query_id": q, "text": f"t {q}", "source": "s", "method": "seed", "run_id": "r"} for q in ids]))
    wh.insert("dedup", pl.DataFrame([{"query_id": q, "norm_hash": q, "cluster_id": q, "kept": True, "reason": "canonical",
                                       "method": "m", "run_id": "r"} for q in ids]))


def test_pending_work_is_read_in_keyset_pages(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    _stored_queries(wh, [f"q{i:02d}" for i in range(7)])
    wanted = respond.wanted_responses([("resp-a", "m-a"), ("resp-b", "m-b")], 1)
    pages = list(step.pages(wh, respond.RESPOND.pending, 3, frames={"wanted": wanted}))
    assert [p.height for p in pages] == [3, 3, 3, 3, 2]
    keys = [(r["query_id"], r["responder"]) for p in pages for r in p.iter_rows(named=True)]
    assert keys == sorted(keys) and len(set(keys)) == 14


def test_the_page_after_a_stored_page_starts_after_its_last_key(tmp_path):
    """A row of a page that stays pending (it failed) is not read again in the same run."""
    wh = Warehouse(tmp_path / "w.duckdb")
    _stored_queries(wh, ["q1", "q2", "q3"])
    wanted = respond.wanted_responses([("resp-a", "m-a")], 1)
    seen = []
    for page in step.pages(wh, respond.RESPOND.pending, 1, frames={"wanted": wanted}):
        seen += page["query_id"].to_list()  # nothing is stored: every row stays pending
    assert seen == ["q1", "q2", "q3"]


def _synthesis_results(plan: pl.DataFrame, texts: list[str]) -> list[LLMResult]:
    reqs = synthesize.synthesis_requests(plan, "synth")
    return [LLMResult(request=reqs[0], call_key="k0", model="m", text=json.dumps(texts, ensure_ascii=False))]


def test_a_stored_text_counts_as_duplicate_of_earlier_after_the_flow_side_lookup(tmp_path):
    cfg = load_config(small_config(DEAD_URL, tmp_path))
    wh = Warehouse(tmp_path / "w.duckdb")
    plan = pl.DataFrame([{"scenario": "s", "subcategory": "sub", "task_type": "问答", "intent": "harmful", "n": 3,
                          "sample_index": 0, "region": "华东", "behaviours": ["b"], "event": "e", "elements": "[]",
                          "description": "d"}])
    texts = ["第一个足够长的问题文本", "第二个足够长的问题文本", "第三个足够长的问题文本"]
    results = _synthesis_results(plan, texts)
    first = synthesize.synthesis_output(plan, results, "synth", "run-0", set())
    assert len(first.candidate_ids) == 3
    wh.insert("queries", first.tables["queries"].head(1))  # one of them is stored already
    expected_rows, _, expected_rejected = synthesize.parse_synthesis(
        plan, results, {first.candidate_ids[0]}, "run-1")
    fx = Factory(cfg=cfg, warehouse=wh, taxonomy=None, run_id="run-1")  # type: ignore[arg-type]
    done = step.BatchResult(output=first, llm_calls=[], stats={}, health={}, results=results)
    counts = step.store_batch(fx, synthesize.SYNTHESIZE, done, plan, "synth")
    assert counts["queries_new"] == expected_rows.height == 2
    assert Counter(counts["rejected"]) == expected_rejected and counts["rejected"].get("duplicate_of_earlier") == 1
    stored = wh.query("SELECT stored FROM generation_calls")["stored"].to_list()
    assert stored == [2]


def test_merge_sums_numbers_and_merges_dicts():
    total: dict = {"a": 1, "d": {"x": 1}}
    step.merge(total, {"a": 2, "d": {"x": 1, "y": 2}, "s": "last"})
    assert total == {"a": 3, "d": {"x": 2, "y": 2}, "s": "last"}


def test_schema_of_a_frame_built_by_a_step_is_the_declared_one():
    assert schema("responses") == respond.RESPONSE_SCHEMA


def test_the_offline_guard_worker_reads_one_spec_file_and_names_what_it_lacks(tmp_path):
    import pytest

    from libra.tasks.evaluation.guard import GuardError, main, read_worker_spec

    spec = tmp_path / "worker.json"
    spec.write_text(json.dumps({"model": "m", "input": "i", "output": "o", "max_tokens": 8, "structured": "none"}))
    with pytest.raises(GuardError, match=r"worker.json: worker spec lacks \['engine'\]"):
        read_worker_spec(spec)
    spec.write_text("{not json")
    with pytest.raises(GuardError, match="worker.json: not a readable worker spec"):
        read_worker_spec(spec)
    with pytest.raises(SystemExit, match="usage"):
        main(["--model", "m"])
