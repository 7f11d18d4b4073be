"""Thin Prefect tasks of stage-1 synthesis and translation: read what they need from the warehouse, call
the plain functions (tasks/synthesis/elements.py, synthesize.py, translate.py), write rows and generation-call
records in one transaction. A task handles one batch; everything is idempotent (content-hash IDs, the
LLM cache), so a retried task redoes nothing that is stored."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NONE

from libra.tasks.core.runs import Factory
from libra.tasks.synthesis import elements, synthesize, translate
from libra.tasks.synthesis.generation_calls import call_frame
from libra.warehouse import Warehouse

# As in tasks/annotation/batch_tasks.py: inputs are live objects (pool, warehouse) that Prefect must not hash or persist.
_TASK = {"cache_policy": NONE, "persist_result": False, "retries": 2, "retry_delay_seconds": 5}


def existing_ids(wh: Warehouse, table: str, column: str, ids: list[str]) -> set[str]:
    """Which of `ids` are stored in `table.column` already."""
    if not ids:
        return set()
    found = wh.query(f'SELECT t."{column}" AS id FROM "{table}" t SEMI JOIN _ids i ON t."{column}" = i.id',
                     frames={"_ids": pl.DataFrame({"id": sorted(set(ids))}, schema={"id": pl.String})})
    return set(found["id"].to_list())


def _store(fx: Factory, table: str, rows: pl.DataFrame, calls: list[dict[str, Any]]) -> int:
    with fx.warehouse.writer():  # one transaction: the rows and the records of the calls that made them
        new = fx.warehouse.insert(table, rows)
        fx.warehouse.insert("generation_calls", call_frame(calls))
    return new


@task(name="elements-batch", **_TASK)
def elements_batch(fx: Factory, plan: pl.DataFrame, library: pl.DataFrame) -> dict[str, Any]:
    """library: the stored elements (element_id, subcategory, kind, text)."""
    existing: dict[tuple[str, str], list[str]] = {}
    for r in library.iter_rows(named=True):
        existing.setdefault((r["subcategory"], r["kind"]), []).append(r["text"])
    results = fx.pool.run(elements.element_requests(plan, existing, fx.cfg.roles.synthesizer), desc="elements")
    rows, calls, rejected = elements.parse_elements(plan, results, set(library["element_id"].to_list()), fx.run_id)
    new = _store(fx, "elements", rows, calls)
    return {"calls": len(results), "elements_new": new, "rejected": dict(rejected)}


def _store_new_queries(fx: Factory, parse: Callable[..., Any], asked: pl.DataFrame,
                       results: list[Any]) -> tuple[pl.DataFrame, int, Counter[str]]:
    """Parse the answers twice: once to learn which query ids they make, then against the ones of
    those already stored (so a stored text counts as `duplicate_of_earlier`, not as new)."""
    candidates, _, _ = parse(asked, results, set(), fx.run_id)
    stored = existing_ids(fx.warehouse, "queries", "query_id", candidates["query_id"].to_list())
    rows, calls, rejected = parse(asked, results, stored, fx.run_id)
    return rows, _store(fx, "queries", rows, calls), rejected


@task(name="synthesize-batch", **_TASK)
def synthesize_batch(fx: Factory, plan: pl.DataFrame) -> dict[str, Any]:
    results = fx.pool.run(synthesize.synthesis_requests(plan, fx.cfg.roles.synthesizer), desc="synthesize")
    rows, new, rejected = _store_new_queries(fx, synthesize.parse_synthesis, plan, results)
    return {"calls": len(results), "queries_new": new, "rejected": dict(rejected),
            "new_by_intent": dict(Counter(rows["intended_label"].to_list()))}


@task(name="augment-batch", **_TASK)
def augment_batch(fx: Factory, pending: pl.DataFrame) -> dict[str, Any]:
    results = fx.pool.run(synthesize.augmentation_requests(pending, fx.cfg.roles.synthesizer), desc="augment")
    _, new, rejected = _store_new_queries(fx, synthesize.parse_augmentations, pending, results)
    return {"calls": len(results), "queries_new": new, "rejected": dict(rejected),
            "methods": dict(Counter(pending["aug_method"].to_list()))}


@task(name="translate-batch", **_TASK)
def translate_batch(fx: Factory, texts: pl.DataFrame) -> dict[str, Any]:
    results = fx.pool.run(translate.translation_requests(texts, fx.cfg.roles.synthesizer), desc="translate")
    rows, calls, rejected = translate.parse_translations(texts, results, fx.run_id)
    new = _store(fx, "translations", rows, calls)
    return {"calls": len(results), "translations_new": new, "rejected": dict(rejected)}


@task(name="store-translated-pairs", **_TASK)
def store_translated_pairs(fx: Factory, pending: pl.DataFrame) -> dict[str, Any]:
    """Queries, responses and pair rows for the pending records whose texts are all translated now."""
    tids = [t for t in pending["query_tid"].to_list() + pending["response_tid"].to_list() if t is not None]
    stored = fx.warehouse.query(
        "SELECT t.translation_id, t.text, t.prompt_version, t.generator, t.call_key "
        "FROM translations t SEMI JOIN _ids i ON t.translation_id = i.id",
        frames={"_ids": pl.DataFrame({"id": sorted(set(tids))}, schema={"id": pl.String})},
    )
    queries, responses, pairs = translate.pair_rows(pending, stored, fx.run_id)
    with fx.warehouse.writer():
        new_queries = fx.warehouse.insert("queries", queries)
        new_responses = fx.warehouse.insert("responses", responses)
        new_pairs = fx.warehouse.insert("translated_pairs", pairs)
    return {"pairs_new": new_pairs, "queries_new": new_queries, "responses_new": new_responses}
