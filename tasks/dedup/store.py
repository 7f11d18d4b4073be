"""The dedup stage and benchmark decontamination against the warehouse.

The indexes here are tasks/dedup/near.py's DedupIndex/MatchIndex over SQL: stored queries (`dedup`,
`minhash_signatures`, `minhash_buckets`) and registered benchmark questions (`benchmark_sketches`,
`benchmark_buckets`). Every function that decides something reads and writes inside one writer
transaction, so its decisions are consistent with what is stored, and a failure stores nothing.

Decontamination runs in both directions, so neither order of events leaks:
- each dedup batch matches its new queries against every sketched benchmark question;
- a benchmark registered later (or not yet sketched under the current method) is sketched and matched
  against every stored query by `sketch_benchmarks`, which `libra import benchmark` and the start of
  every dedup run call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
from prefect import task

from libra.tasks.core.prefect_tasks import RETRIED
from libra.tasks.core.runs import Factory
from libra.tasks.dedup.near import (
    DedupParams,
    Sketch,
    Tokenizer,
    bucket_frame,
    dedup_batch,
    match_references,
    signature_bytes,
    sketch_texts,
)
from libra.warehouse import Warehouse, sql_text

PARAMS_SETTING = "dedup.params"  # the parameters of the latest dedup run, for `libra import benchmark`


class QueryIndex:
    """Decided queries (a DedupIndex). Use inside `warehouse.writer()`. kept_only: LSH candidates are
    the kept queries only (the dedup stage); else every stored text (decontamination)."""

    def __init__(self, wh: Warehouse, params: DedupParams, kept_only: bool = True):
        self.wh, self.method = wh, {"method": params.method}
        self.bucket_sql = "queries/dedup_kept_bucket_matches.sql" if kept_only else "queries/dedup_bucket_matches.sql"

    def hash_matches(self, hashes: pl.DataFrame) -> pl.DataFrame:
        return self.wh.query(sql_text("queries/dedup_hash_matches.sql"), frames={"hashes": hashes})

    def bucket_matches(self, buckets: pl.DataFrame) -> pl.DataFrame:
        return self.wh.query(sql_text(self.bucket_sql), self.method, frames={"buckets": buckets})

    def references(self, ref_ids: pl.DataFrame) -> pl.DataFrame:
        return self.wh.query(sql_text("queries/dedup_references.sql"), self.method, frames={"refs": ref_ids})


class BenchmarkIndex:
    """Sketched benchmark questions (a MatchIndex); ref_id = benchmark, unit separator, item_id."""

    def __init__(self, wh: Warehouse, params: DedupParams):
        self.wh, self.method = wh, {"method": params.method}

    def hash_matches(self, hashes: pl.DataFrame) -> pl.DataFrame:
        return self.wh.query(sql_text("queries/benchmark_hash_matches.sql"), self.method, frames={"hashes": hashes})

    def bucket_matches(self, buckets: pl.DataFrame) -> pl.DataFrame:
        return self.wh.query(sql_text("queries/benchmark_bucket_matches.sql"), self.method,
                             frames={"buckets": buckets})

    def references(self, ref_ids: pl.DataFrame) -> pl.DataFrame:
        return self.wh.query(sql_text("queries/benchmark_references.sql"), self.method, frames={"refs": ref_ids})


def _append(wh: Warehouse, query_file: str, frame: pl.DataFrame) -> None:
    """A plain INSERT of `frame` (registered as `_rows`) for the bucket tables: they have no key to be
    idempotent on, and callers insert each row once."""
    if frame.is_empty():
        return
    with wh.writer() as con:
        con.register("_rows", frame.to_arrow())
        try:
            con.execute(sql_text(query_file))
        finally:
            con.unregister("_rows")


def _store_query_sketches(wh: Warehouse, ids: list[str], sketch: Sketch, positions: np.ndarray,
                          params: DedupParams, run_id: str) -> None:
    """Signatures and LSH buckets of the texts at `positions` (one query per distinct text)."""
    if not len(positions):
        return
    chosen = [ids[p] for p in positions.tolist()]
    wh.insert("minhash_signatures", pl.DataFrame({
        "query_id": chosen, "method": params.method, "signature": signature_bytes(sketch.signatures[positions]),
        "run_id": run_id}, schema={"query_id": pl.String, "method": pl.String, "signature": pl.Binary,
                                   "run_id": pl.String}))
    buckets = bucket_frame(sketch, positions)
    _append(wh, "queries/append_minhash_buckets.sql", buckets.select(
        method=pl.lit(params.method), bucket="bucket",
        query_id=pl.Series([ids[p] for p in buckets["pos"].to_list()], dtype=pl.String)))


def _one_per_text(sketch: Sketch) -> np.ndarray:
    _, first = np.unique(np.asarray(sketch.norm_hashes, dtype=object), return_index=True)
    return np.sort(first).astype(np.int64)


def dedup_pending(wh: Warehouse, batch: pl.DataFrame, params: DedupParams, run_id: str,
                  tok: Tokenizer | None = None, sketch: Sketch | None = None) -> dict[str, int]:
    """Decide a batch of undecided queries (query_id, text, seq) against everything stored, store the
    decisions, signatures and buckets, and the benchmark questions the new queries leak.
    sketch: sketch_texts(batch["text"]) when a worker made it already (the stage's sketch task)."""
    new = batch.select(item_id="query_id", text="text", seq="seq")
    ids = new["item_id"].to_list()
    if sketch is None:
        sketch = sketch_texts(new["text"].to_list(), params, tok)  # outside the lock: the costly part
    if len(sketch) != new.height:
        raise ValueError(f"sketch of {len(sketch)} texts for a batch of {new.height}")
    with wh.writer():
        result = dedup_batch(new, sketch, QueryIndex(wh, params), params, tok)
        leaks = match_references(sketch, _one_per_text(sketch), BenchmarkIndex(wh, params), params, tok)
        meta = {"method": pl.lit(params.method), "run_id": pl.lit(run_id)}
        inserted = wh.insert("dedup", result.decisions.rename({"item_id": "query_id"}).with_columns(**meta))
        _store_query_sketches(wh, ids, sketch, result.new_texts, params, run_id)
        contaminated = _leak_rows(leaks, sketch, ids, run_id)
        wh.insert("decontamination", contaminated)
    counts = result.decisions.group_by("reason").len()
    return {"decided": inserted, **dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True)),
            "contaminated": contaminated["query_id"].n_unique()}


def pending_pages(wh: Warehouse, page_size: int) -> Iterator[pl.DataFrame]:
    """The undecided queries (query_id, text, seq) in decision order, one page at a time. Each page is
    read after the caller has decided the one before (keyset cursor: a page never repeats)."""
    after_seq, after_id = -(1 << 62), ""
    while True:
        page = wh.query(sql_text("queries/pending_dedup.sql"),
                        {"after_seq": after_seq, "after_id": after_id, "page_size": page_size})
        if page.is_empty():
            return
        yield page
        after_seq, after_id = page["seq"][-1], page["query_id"][-1]


def largest_clusters(wh: Warehouse, limit: int = 5) -> list[dict[str, Any]]:
    """The largest dedup clusters (v_dedup_clusters), for the run summary."""
    rows = wh.query(sql_text("queries/dedup_largest_clusters.sql"), {"limit": limit})
    return rows.to_dicts()


DECONTAM_SCHEMA = {"query_id": pl.String, "benchmark": pl.String, "item_id": pl.String, "reason": pl.String,
                   "similarity": pl.Float64, "run_id": pl.String}


def _leak_rows(leaks: pl.DataFrame, sketch: Sketch, ids: list[str], run_id: str) -> pl.DataFrame:
    """Matches of one text per distinct text -> decontamination rows for every batch query with it."""
    if leaks.is_empty():
        return pl.DataFrame(schema=DECONTAM_SCHEMA)
    batch = pl.DataFrame({"query_id": ids, "norm_hash": sketch.norm_hashes})
    matched = leaks.with_columns(norm_hash=pl.Series([sketch.norm_hashes[p] for p in leaks["pos"].to_list()],
                                                     dtype=pl.String))
    return (matched.join(batch, on="norm_hash")
            .select("query_id", "benchmark", "item_id", "reason", "similarity", run_id=pl.lit(run_id))
            .unique(["query_id", "benchmark", "item_id"]).cast(DECONTAM_SCHEMA))  # type: ignore[arg-type]


def sketch_benchmarks(wh: Warehouse, params: DedupParams, run_id: str, tok: Tokenizer | None = None) -> dict[str, int]:
    """Sketch the benchmark items not sketched under this method yet and record every stored query
    that duplicates one of them (exactly or nearly) in `decontamination`."""
    todo = wh.query(sql_text("queries/benchmark_unsketched.sql"), {"method": params.method})
    if todo.is_empty():
        return {"benchmark_items_sketched": 0, "contaminated_found": 0}
    sketch = sketch_texts(todo["question"].to_list(), params, tok)
    with wh.writer():
        # another process may have sketched some meanwhile: keep to what is still missing
        still = wh.query(sql_text("queries/benchmark_unsketched.sql"), {"method": params.method})
        keep = todo.with_row_index("pos").join(still.select("benchmark", "item_id"), on=["benchmark", "item_id"])
        positions = keep["pos"].cast(pl.Int64).to_numpy()
        keys = keep.select("benchmark", "item_id")
        wh.insert("benchmark_sketches", keys.with_columns(
            method=pl.lit(params.method),
            norm_hash=pl.Series([sketch.norm_hashes[p] for p in positions.tolist()], dtype=pl.String),
            signature=pl.Series(signature_bytes(sketch.signatures[positions]), dtype=pl.Binary),
            run_id=pl.lit(run_id)))
        item_of = keep.select(pos=pl.col("pos").cast(pl.Int64), benchmark="benchmark", item_id="item_id")
        _append(wh, "queries/append_benchmark_buckets.sql", bucket_frame(sketch, positions).join(item_of, on="pos")
                .select(method=pl.lit(params.method), bucket="bucket", benchmark="benchmark", item_id="item_id"))
        matches = match_references(sketch, positions, QueryIndex(wh, params, kept_only=False), params, tok)
        rows = pl.DataFrame(schema=DECONTAM_SCHEMA)
        if matches.height:
            matches = matches.join(item_of, on="pos").select("ref_id", "benchmark", "item_id", "reason", "similarity")
            rows = (wh.query(sql_text("queries/decontam_expand.sql"), frames={"matches": matches})
                    .with_columns(run_id=pl.lit(run_id)).cast(DECONTAM_SCHEMA))  # type: ignore[arg-type]
            wh.insert("decontamination", rows)
    return {"benchmark_items_sketched": len(positions), "contaminated_found": rows["query_id"].n_unique()}


def backfill_signatures(wh: Warehouse, params: DedupParams, run_id: str, tok: Tokenizer | None = None,
                        batch_size: int = 20_000) -> int:
    """Sketch stored texts that have no signature under this method (decided under other parameters),
    so new queries are compared with them too. Returns how many texts were sketched."""
    done = 0
    while True:
        todo = wh.query(sql_text("queries/dedup_unsketched.sql"), {"method": params.method, "page_size": batch_size})
        if todo.is_empty():
            return done
        sketch = sketch_texts(todo["text"].to_list(), params, tok)
        with wh.writer():
            _store_query_sketches(wh, todo["query_id"].to_list(), sketch, np.arange(todo.height), params, run_id)
        done += todo.height


def stored_params(wh: Warehouse) -> DedupParams | None:
    """The parameters of the latest dedup run on this warehouse, if any."""
    value = wh.scalar(sql_text("queries/setting_value.sql"), [PARAMS_SETTING])
    return DedupParams.from_dict(json.loads(value)) if value else None


# -- Prefect tasks ------------------------------------------------------------------------------------


@task(name="dedup-sketch", **RETRIED)
def sketch_task(texts: list[str], params: DedupParams, tok: Tokenizer | None = None) -> Sketch:
    # Normalising, shingling (jieba for word shingles), MinHash and bucket keys: the CPU-heavy part,
    # a function of the texts alone, so it runs on a Ray worker as well as on a thread. The decisions
    # need every stored kept text and stay in the flow (dedup_batch_task).
    return sketch_texts(texts, params, tok)


@task(name="dedup-batch", **RETRIED)
def dedup_batch_task(fx: Factory, batch: pl.DataFrame, params: DedupParams, tok: Tokenizer,
                     sketch: Sketch | None = None) -> dict[str, Any]:
    return dedup_pending(fx.warehouse, batch, params, fx.run_id, tok, sketch)


@task(name="sketch-benchmarks", **RETRIED)
def sketch_benchmarks_task(fx: Factory, params: DedupParams, tok: Tokenizer) -> dict[str, Any]:
    return sketch_benchmarks(fx.warehouse, params, fx.run_id, tok)


@task(name="backfill-signatures", **RETRIED)
def backfill_signatures_task(fx: Factory, params: DedupParams, tok: Tokenizer) -> dict[str, Any]:
    return {"texts_resketched": backfill_signatures(fx.warehouse, params, fx.run_id, tok)}
