"""The dedup stage and decontamination against a real warehouse file (no Prefect, no LLM)."""

import itertools
from datetime import datetime, timedelta

import polars as pl
import pytest

from libra.tasks.data.benchmarks import register_benchmark
from libra.tasks.dedup.near import DedupParams, dedup_stream, sketch_texts
from libra.tasks.dedup.store import (
    backfill_signatures,
    dedup_pending,
    largest_clusters,
    pending_pages,
    sketch_benchmarks,
)
from libra.warehouse import Warehouse
from tests.tasks.dedup.test_dedup import BASE, _jaccard, _variants, templated_corpus

T0 = datetime(2026, 1, 1)


def add_queries(wh: Warehouse, texts: list[str], start: int = 0, prefix: str = "q") -> list[str]:
    """Insert queries directly, created one second apart in list order (the canonical order)."""
    ids = [f"{prefix}{start + i:04d}" for i in range(len(texts))]
    wh.insert("queries", pl.DataFrame({
        "query_id": ids, "text": texts, "source": "real", "method": "import", "run_id": "test",
        "created_at": [T0 + timedelta(seconds=start + i) for i in range(len(texts))]}))
    return ids


def run_dedup(wh: Warehouse, params: DedupParams, batch_size: int = 10_000) -> None:
    backfill_signatures(wh, params, "test")
    sketch_benchmarks(wh, params, "test")
    for page in pending_pages(wh, batch_size):
        dedup_pending(wh, page, params, "test")


def decisions(wh: Warehouse) -> pl.DataFrame:
    return wh.query("SELECT query_id, cluster_id, kept, reason FROM dedup ORDER BY query_id")


def benchmark(items: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame([{"item_id": i, "question": q, "label": "不安全", "source": "test", "category_name": None,
                          "sub_category_name": None, "response": None, "analyze": None} for i, q in items])


@pytest.mark.parametrize("params", [DedupParams(), DedupParams(verify_jaccard=False)])
def test_runs_against_the_warehouse_equal_one_run_over_everything(tmp_path, params):
    texts = _variants(seed=5, n_originals=80)
    texts += [texts[3] + "！", texts[7]]  # exact duplicates of stored texts, in the later run
    together = Warehouse(tmp_path / "once.duckdb")
    add_queries(together, texts)
    run_dedup(together, params)
    apart = Warehouse(tmp_path / "apart.duckdb")
    half = len(texts) // 2
    add_queries(apart, texts[:half])
    run_dedup(apart, params)
    add_queries(apart, texts[half:], start=half)  # a later run: decided against what is stored
    run_dedup(apart, params, batch_size=17)
    assert decisions(apart).equals(decisions(together))
    assert together.scalar("SELECT count(*) FROM dedup WHERE reason = 'near'") > 10
    # the stage and `libra dedup FILE` share the code path: same clusters
    ids = [f"q{i:04d}" for i in range(len(texts))]
    outside = dedup_stream(zip(ids, texts, strict=True), params).sort("item_id")
    assert outside.select(query_id="item_id", cluster_id="cluster_id", kept="kept", reason="reason").equals(
        decisions(together))
    # one signature and one set of buckets per distinct text, never recomputed
    distinct = together.scalar("SELECT count(DISTINCT norm_hash) FROM dedup")
    assert together.scalar("SELECT count(*) FROM minhash_signatures") == distinct
    assert together.scalar("SELECT count(*) FROM minhash_buckets") == distinct * params.bands[0]


def test_a_query_near_two_stored_kept_ones_changes_no_stored_decision(tmp_path):
    params = DedupParams(ngram=2, threshold=0.6)
    x, y, z = "甲乙丙", "一二三四五六七八", "子丑寅"
    wh = Warehouse(tmp_path / "w.duckdb")
    a0, a1 = add_queries(wh, [x + y, y + z])
    run_dedup(wh, params)
    assert decisions(wh)["kept"].to_list() == [True, True]
    (b,) = add_queries(wh, [x + y + z], start=2)
    run_dedup(wh, params)
    assert decisions(wh).rows() == [(a0, a0, True, "canonical"), (a1, a1, True, "canonical"), (b, a0, False, "near")]
    assert wh.scalar("SELECT similarity FROM dedup WHERE query_id = ?", [b]) == pytest.approx(10 / 13)


def test_templated_runs_keep_no_near_pair_and_name_their_largest_clusters(tmp_path):
    params = DedupParams()
    texts = templated_corpus(300, seed=3)
    wh = Warehouse(tmp_path / "w.duckdb")
    add_queries(wh, texts[:150])
    run_dedup(wh, params, batch_size=40)
    first = decisions(wh)
    add_queries(wh, texts[150:], start=150)
    run_dedup(wh, params, batch_size=64)
    # the later run changed no stored decision, and its result is the one of deciding all at once
    assert decisions(wh).join(first, on="query_id").filter(pl.col("kept") != pl.col("kept_right")).is_empty()
    ids = [f"q{i:04d}" for i in range(len(texts))]
    once = dedup_stream(zip(ids, texts, strict=True), params).sort("item_id")
    assert once.select(query_id="item_id", cluster_id="cluster_id", kept="kept", reason="reason").equals(
        decisions(wh))
    # kept texts: no pair at or above the threshold (exact check over all pairs)
    kept = wh.query("SELECT q.text FROM dedup JOIN queries q USING (query_id) WHERE kept")["text"].to_list()
    sketch = sketch_texts(kept, params)
    assert max(_jaccard(sketch, i, j) for i, j in itertools.combinations(range(len(kept)), 2)) < params.threshold
    # only one stored text per exact copy set is sketched; the dropped ones too (for decontamination)
    distinct = wh.scalar("SELECT count(DISTINCT norm_hash) FROM dedup")
    assert wh.scalar("SELECT count(*) FROM minhash_signatures") == distinct
    top = largest_clusters(wh, limit=3)
    sizes = wh.query("SELECT cluster_id, count(*) AS n FROM dedup GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3")
    assert [(r["cluster_id"], r["members"]) for r in top] == sizes.rows()
    assert all(r["min_similarity"] >= params.threshold and r["exact"] + r["near"] == r["members"] - 1 for r in top)


def test_changed_parameters_resketch_stored_texts_and_keep_old_decisions(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    add_queries(wh, BASE)
    run_dedup(wh, DedupParams(ngram=5, threshold=0.7))
    before = decisions(wh)
    new = DedupParams(ngram=3, threshold=0.5)
    assert backfill_signatures(wh, new, "test") == len(BASE)
    assert backfill_signatures(wh, new, "test") == 0
    (q,) = add_queries(wh, ["请问" + BASE[2]], start=10)
    run_dedup(wh, new)
    assert decisions(wh).filter(pl.col("query_id") != q).equals(before)
    assert decisions(wh).filter(pl.col("query_id") == q).rows() == [(q, "q0002", False, "near")]


def test_queries_leaking_a_benchmark_are_recorded_whichever_comes_first(tmp_path):
    params = DedupParams()
    leak_exact, leak_near, clean = BASE[0], BASE[1], BASE[3]
    items = benchmark([("b1", leak_exact + "？！"), ("b2", BASE[1].replace("贵重物品", "值钱的物品")),
                       ("b3", "完全无关的一个问题：今天天气怎么样，适合出去跑步吗")])
    # benchmark first, queries deduped later
    first = Warehouse(tmp_path / "first.duckdb")
    register_benchmark(first, "bench", items, "test")
    ids = add_queries(first, [leak_exact, leak_near, clean, leak_exact + "。"])
    run_dedup(first, params)
    # queries deduped first, benchmark registered later
    later = Warehouse(tmp_path / "later.duckdb")
    add_queries(later, [leak_exact, leak_near, clean, leak_exact + "。"])
    run_dedup(later, params)
    register_benchmark(later, "bench", items, "test")
    assert sketch_benchmarks(later, params, "test")["contaminated_found"] == 3
    for wh in (first, later):
        rows = wh.query("SELECT query_id, benchmark, item_id, reason FROM decontamination ORDER BY 1, 3").rows()
        assert rows == [(ids[0], "bench", "b1", "exact"), (ids[1], "bench", "b2", "near"),
                        (ids[3], "bench", "b1", "exact")]
        assert wh.query("SELECT query_id FROM v_contaminated ORDER BY 1")["query_id"].to_list() == [
            ids[0], ids[1], ids[3]]
    assert sketch_benchmarks(later, params, "test")["benchmark_items_sketched"] == 0  # done once
    assert later.query("SELECT * EXCLUDE (benchmark) FROM v_benchmark_leakage").row(0, named=True) == {
        "items": 3, "leaked_items": 2, "contaminated_queries": 3, "exact_queries": 2, "near_queries": 1}
    assert later.query("SELECT cluster_id, members, exact, near FROM v_dedup_clusters").rows() == [(ids[0], 2, 1, 0)]


def test_an_exact_match_without_a_stored_signature_is_fine_for_estimated_similarity(tmp_path):
    # only one query per distinct text has a signature; "a0002" (an exact duplicate) has none, and the
    # lowest id wins the exact match while the same batch also has LSH candidates to estimate
    params = DedupParams(verify_jaccard=False)
    wh = Warehouse(tmp_path / "w.duckdb")
    add_queries(wh, [BASE[0], BASE[1]])
    run_dedup(wh, params)
    add_queries(wh, [BASE[0] + "！"], start=2, prefix="a")
    run_dedup(wh, params)
    add_queries(wh, [BASE[0] + "。", "请问" + BASE[1]], start=3)
    run_dedup(wh, params)
    assert decisions(wh).rows() == [("a0002", "q0000", False, "exact"), ("q0000", "q0000", True, "canonical"),
                                    ("q0001", "q0001", True, "canonical"), ("q0003", "q0000", False, "exact"),
                                    ("q0004", "q0001", False, "near")]
