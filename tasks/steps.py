"""Thin Prefect tasks: read pending work from the warehouse, call the plain functions, write the result.

A task handles one batch (hundreds of LLM requests driven concurrently by the pool): the batch is the
unit of retry. Everything is idempotent (content-hash IDs, the LLM cache), so a retried or rerun task
redoes nothing that is stored.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NONE

from libra.tasks import annotate, dedup, respond, splits, synthesize
from libra.tasks.runs import Factory
from libra.warehouse import sql_text

# Inputs are live objects (pool, warehouse): Prefect must not try to hash or persist them.
_TASK = {"cache_policy": NONE, "persist_result": False, "retries": 2, "retry_delay_seconds": 5}


def batches(frame: pl.DataFrame, size: int) -> list[pl.DataFrame]:
    return [frame.slice(i, size) for i in range(0, frame.height, size)] if frame.height else []


def _pool_summary(fx: Factory) -> dict[str, Any]:
    return {"endpoints_down": fx.pool.down_endpoints()}


@task(name="synthesize-batch", **_TASK)
def synthesize_batch(fx: Factory, plan: pl.DataFrame) -> dict[str, Any]:
    requests = synthesize.synthesis_requests(plan, fx.taxonomy, fx.cfg.roles.synthesizer)
    results = fx.pool.run(requests, desc="synthesize")
    rows, rejected = synthesize.parse_synthesis(plan, results, fx.run_id)
    inserted = fx.warehouse.insert("queries", rows)
    return {"calls": len(requests), "queries_parsed": rows.height, "queries_new": inserted,
            "rejected": dict(rejected)}


@task(name="augment-batch", **_TASK)
def augment_batch(fx: Factory, chosen: pl.DataFrame) -> dict[str, Any]:
    requests = synthesize.augmentation_requests(chosen, fx.cfg.roles.synthesizer)
    results = fx.pool.run(requests, desc="augment")
    rows, rejected = synthesize.parse_augmentations(chosen, results, fx.run_id)
    inserted = fx.warehouse.insert("queries", rows)
    return {"calls": len(requests), "queries_parsed": rows.height, "queries_new": inserted,
            "rejected": dict(rejected), "methods": dict(Counter(chosen["aug_method"].to_list()))}


@task(name="dedup-batch", **_TASK)
def dedup_batch(fx: Factory, new: pl.DataFrame) -> dict[str, Any]:
    params = dedup.DedupParams(**fx.cfg.dedup.model_dump())
    stored = fx.warehouse.query(sql_text("queries/kept_signatures.sql"), {"method": params.method})
    rows, sigs = dedup.dedup_batch(new, stored, params, fx.run_id)
    with fx.warehouse.writer():  # one transaction: decisions and signatures land together
        fx.warehouse.insert("minhash_signatures", sigs)
        inserted = fx.warehouse.insert("dedup", rows)
    return {"decided": inserted, **{k: int(v) for k, v in Counter(rows["reason"].to_list()).items()}}


@task(name="respond-batch", **_TASK)
def respond_batch(fx: Factory, pending: pl.DataFrame) -> dict[str, Any]:
    results = fx.pool.run(respond.respond_requests(pending), desc="respond")
    rows = respond.response_rows(pending, results, fx.run_id)
    # replace: a response that failed in an earlier run and succeeded now overwrites its failure
    fx.warehouse.insert("responses", rows, on_conflict="replace")
    counts = Counter(rows["status"].to_list())
    return {"requests": len(results), "ok": counts.get("ok", 0), "failed": counts.get("failed", 0),
            "cached": sum(r.cached for r in results)}


@task(name="judge-batch", **_TASK)
def judge_batch(fx: Factory, pending: pl.DataFrame) -> dict[str, Any]:
    results = fx.pool.run(annotate.judge_requests(pending, fx.taxonomy.scenario_names), desc="annotate")
    rows = annotate.vote_rows(pending, results, fx.run_id)
    fx.warehouse.insert("votes", rows, on_conflict="replace")
    counts = Counter(rows["status"].to_list())
    return {"requests": len(results), "ok": counts.get("ok", 0), "abstain": counts.get("abstain", 0),
            "failed": counts.get("failed", 0)}


@task(name="adjudicate-batch", **_TASK)
def adjudicate_batch(fx: Factory, pending: pl.DataFrame) -> dict[str, Any]:
    adjudicator = fx.cfg.roles.adjudicator
    assert adjudicator is not None
    results = fx.pool.run(
        annotate.adjudication_requests(pending, adjudicator, fx.taxonomy.scenario_names), desc="adjudicate"
    )
    rows = annotate.adjudication_rows(pending, results, adjudicator, fx.run_id)
    inserted = fx.warehouse.insert("adjudications", rows)
    return {"requests": len(results), "adjudicated": inserted, "failed": sum(not r.ok for r in results)}


@task(name="assign-splits", **_TASK)
def assign_splits(fx: Factory) -> dict[str, Any]:
    candidates = fx.warehouse.query(
        sql_text("queries/split_candidates.sql"),
        {"n_judges": len(fx.cfg.roles.judges), "needs_adjudication": fx.cfg.roles.adjudicator is not None},
    )
    rows = splits.assign_splits(candidates, fx.cfg.split.seed, fx.cfg.split.eval_fraction, fx.run_id)
    inserted = fx.warehouse.insert("splits", rows)
    return {"assigned": inserted, **{k: int(v) for k, v in Counter(rows["split"].to_list()).items()}}


@task(name="export-splits", **_TASK)
def export_splits(fx: Factory) -> dict[str, Any]:
    """Write every split as chat JSONL + Parquet into a versioned folder named by its content hash."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from libra.tasks.ids import content_hash

    root = fx.cfg.resolve(fx.cfg.export_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    files: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for split in splits.SPLITS:
        rows = fx.warehouse.query(sql_text("queries/export_rows.sql"), {"split": split})
        counts[split] = rows.height
        files += splits.write_split_export(rows, split, staging)
    export_id = content_hash(sorted(f["sha256"] for f in files), length=12)
    final = root / export_id
    if final.exists():  # the same data was exported before: keep that folder
        shutil.rmtree(staging)
    else:
        staging.rename(final)
    for f in files:
        f["path"] = str(final / Path(f["path"]).name)
    source_runs = fx.warehouse.query("SELECT DISTINCT run_id FROM responses ORDER BY 1")["run_id"].to_list()
    manifest = {"export_id": export_id, "counts": counts, "files": files, "source_run_ids": source_runs,
                "config": fx.cfg.public_dict(), "run_id": fx.run_id}
    (final / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    fx.warehouse.insert("exports", pl.DataFrame([
        {"export_id": f"{export_id}-{f['split']}-{f['format']}", "split": f["split"], "format": f["format"],
         "path": f["path"], "n_rows": f["n_rows"], "sha256": f["sha256"],
         "manifest": json.dumps({"export": export_id}), "run_id": fx.run_id}
        for f in files
    ]))
    return {"export_id": export_id, "path": str(final), **counts}
