"""Stage 1, steps 2 and 3: synthesize harmful queries and benign look-alikes, then augment them.

The plan is a deterministic function of (taxonomy, sizes, seed): a rerun asks the same questions, which
the LLM cache answers for free, so rerunning a finished synthesis calls no LLM and inserts nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import polars as pl

from libra.tasks.config import Sizes
from libra.tasks.ids import content_hash, query_id
from libra.tasks.llm_pool import LLMRequest, LLMResult
from libra.tasks.prompts import Taxonomy, frame_nonce, load_template
from libra.tasks.textgen import parse_text_list

QUERY_COLUMNS = {
    "query_id": pl.String, "text": pl.String, "source": pl.String, "method": pl.String,
    "parent_id": pl.String, "scenario": pl.String, "subcategory": pl.String, "task_type": pl.String,
    "intended_label": pl.String, "elements": pl.String, "original_text": pl.String, "provenance": pl.String,
    "generator": pl.String, "prompt_version": pl.String, "call_key": pl.String, "run_id": pl.String,
}


def _pick(options: list[str], *key: object) -> str:
    return options[int(content_hash(*key), 16) % len(options)]


def plan_synthesis(taxonomy: Taxonomy, sizes: Sizes, seed: int = 0) -> pl.DataFrame:
    """One row per synthesizer call: which subcategory, task type, region and intent it asks for.

    Harmful calls: `calls_per_subcategory` per subcategory, task types rotating so every
    subcategory x task type pair is reached as the count grows. Benign look-alike calls:
    round(harmful calls * benign_ratio) in all, spread round-robin over the subcategories.
    """
    subs = taxonomy.subcategories()
    rows: list[dict[str, Any]] = []
    for s_index, (scenario, sub) in enumerate(subs):
        for k in range(sizes.calls_per_subcategory):
            rows.append({"scenario": scenario, "subcategory": sub, "intent": "harmful", "call_index": k,
                         "task_type": taxonomy.task_types[(s_index + k) % len(taxonomy.task_types)]})
    n_benign = round(len(rows) * sizes.benign_ratio)
    for b in range(n_benign):
        scenario, sub = subs[b % len(subs)]
        k = b // len(subs)
        rows.append({"scenario": scenario, "subcategory": sub, "intent": "benign", "call_index": k,
                     "task_type": taxonomy.task_types[(b + k) % len(taxonomy.task_types)]})
    for row in rows:
        row["region"] = _pick(taxonomy.regions, seed, row["subcategory"], row["intent"], row["call_index"], "region")
        row["elements"] = json.dumps([row["subcategory"], row["task_type"], row["region"]], ensure_ascii=False)
        row["n"] = sizes.queries_per_call
    return pl.DataFrame(rows)


def synthesis_requests(plan: pl.DataFrame, taxonomy: Taxonomy, endpoint: str) -> list[LLMRequest]:
    tpl = load_template("synthesize_queries.txt")
    return [
        LLMRequest.chat(
            endpoint,
            tpl.render(scenario=r["scenario"], subcategory=r["subcategory"], task_type=r["task_type"],
                       region=r["region"], elements=json.loads(r["elements"]), intent=r["intent"], n=r["n"]),
            template_version=tpl.version,
            sample_index=r["call_index"],
        )
        for r in plan.iter_rows(named=True)
    ]


def parse_synthesis(plan: pl.DataFrame, results: list[LLMResult], run_id: str) -> tuple[pl.DataFrame, Counter]:
    """Synthesizer answers -> query rows, and rejection counts by reason (failed calls included)."""
    rows: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    for plan_row, res in zip(plan.iter_rows(named=True), results, strict=True):
        if not res.ok:
            rejected["call_failed"] += 1
            continue
        parsed = parse_text_list(res.text)
        rejected.update(parsed.rejected)
        for text in parsed.items:
            rows.append({
                "query_id": query_id(text), "text": text, "source": "synthetic",
                "method": "seed" if plan_row["intent"] == "harmful" else "benign", "parent_id": None,
                "scenario": plan_row["scenario"], "subcategory": plan_row["subcategory"],
                "task_type": plan_row["task_type"], "intended_label": plan_row["intent"],
                "elements": plan_row["elements"], "original_text": None, "provenance": None,
                "generator": res.model, "prompt_version": res.request.template_version,
                "call_key": res.call_key, "run_id": run_id,
            })
    frame = pl.DataFrame(rows, schema=QUERY_COLUMNS).unique("query_id", keep="first", maintain_order=True)
    return frame, rejected


def choose_augmentations(seeds: pl.DataFrame, methods: list[str], fraction: float, seed: int = 0) -> pl.DataFrame:
    """Deterministically pick `fraction` of the seed queries and one augmentation method for each."""
    if seeds.is_empty() or not methods or fraction <= 0:
        return seeds.head(0).with_columns(pl.lit(None, pl.String).alias("aug_method"))
    picked = [
        (int(content_hash(seed, qid, "augment"), 16) % 10_000) < fraction * 10_000 for qid in seeds["query_id"]
    ]
    out = seeds.filter(pl.Series(picked, dtype=pl.Boolean))
    return out.with_columns(
        pl.Series("aug_method", [_pick(methods, seed, qid, "method") for qid in out["query_id"]], dtype=pl.String)
    )


def augmentation_requests(chosen: pl.DataFrame, endpoint: str, n: int = 1) -> list[LLMRequest]:
    tpl = load_template("augment.txt")
    requests = []
    for r in chosen.iter_rows(named=True):
        tactic = load_template(f"tactics/{r['aug_method']}.txt")
        requests.append(LLMRequest.chat(
            endpoint,
            tpl.render(method=r["aug_method"], tactic=tactic.text.strip(), n=n, query=r["text"],
                       nonce=frame_nonce(r["text"])),
            template_version=f"{tpl.version}+{tactic.version}",
        ))
    return requests


def parse_augmentations(chosen: pl.DataFrame, results: list[LLMResult], run_id: str) -> tuple[pl.DataFrame, Counter]:
    """Augmenter answers -> child query rows that keep parent_id and method and inherit the labels."""
    rows: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    for parent, res in zip(chosen.iter_rows(named=True), results, strict=True):
        if not res.ok:
            rejected["call_failed"] += 1
            continue
        parsed = parse_text_list(res.text, max_chars=1200)
        rejected.update(parsed.rejected)
        for text in parsed.items:
            qid = query_id(text)
            if qid == parent["query_id"]:
                rejected["unchanged"] += 1
                continue
            rows.append({
                "query_id": qid, "text": text, "source": parent["source"], "method": parent["aug_method"],
                "parent_id": parent["query_id"], "scenario": parent["scenario"],
                "subcategory": parent["subcategory"], "task_type": parent["task_type"],
                "intended_label": parent["intended_label"], "elements": parent["elements"],
                "original_text": None, "provenance": None, "generator": res.model,
                "prompt_version": res.request.template_version, "call_key": res.call_key, "run_id": run_id,
            })
    frame = pl.DataFrame(rows, schema=QUERY_COLUMNS).unique("query_id", keep="first", maintain_order=True)
    return frame, rejected
