"""Stage 1, steps 2 and 3: synthesize harmful queries and benign look-alikes, then augment them.

Coverage plan: every subcategory has a harmful target (`sizes.harmful_target`) and a benign target
(the benign ratio of it, spread evenly), each split over the task types so that subcategory x task
type cells are balanced and, summed over the taxonomy, every task type gets its share. The plan is
computed from what is stored: a cell asks only for what it lacks, with the next unused sample index,
so a rerun of a finished synthesis plans nothing (no call, no row) and a raised target tops up.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import polars as pl

from libra.tasks.core.config import Sizes
from libra.tasks.core.ids import content_hash, query_id
from libra.tasks.core.prompts import Taxonomy, frame_nonce, load_template
from libra.tasks.llm.pool import LLMRequest, LLMResult
from libra.tasks.llm.step import LLMStep, PendingQuery, StepOutput, Write
from libra.tasks.synthesis.elements import subcategory_descriptions
from libra.tasks.synthesis.generation_calls import Attempts, call_row, new_items
from libra.warehouse.schemas import schema

QUERY_COLUMNS = schema("queries")
TARGET_COLUMNS = {"scenario": pl.String, "subcategory": pl.String, "task_type": pl.String, "intent": pl.String,
                  "target": pl.Int64}
PLAN_COLUMNS = {
    "scenario": pl.String, "subcategory": pl.String, "task_type": pl.String, "intent": pl.String,
    "n": pl.Int64, "sample_index": pl.Int64, "region": pl.String, "behaviours": pl.List(pl.String),
    "event": pl.String, "elements": pl.String, "description": pl.String,
}
INTENT_METHOD = {"harmful": "seed", "benign": "benign"}
# Cells of the synthesize stage in generation_calls (for the next sample index of a top-up).
SYNTHESIS_CELL = ("scenario", "subcategory", "task_type", "intent")
AUGMENT_CELL = ("subject", "method")


def _pick(options: list[str], *key: object) -> str:
    return options[int(content_hash(*key), 16) % len(options)]


def _spread(total: int, slots: int, cursor: int) -> tuple[list[int], int]:
    """`total` split over `slots` as evenly as possible; the remainder goes to the slots from `cursor`
    on (wrapping), and the cursor moves past them, so successive calls even out across slots."""
    per, rem = divmod(total, slots)
    counts = [per] * slots
    for j in range(rem):
        counts[(cursor + j) % slots] += 1
    return counts, (cursor + rem) % slots


def benign_per_subcategory(n_subs: int, harmful_target: int, ratio: float) -> list[int]:
    """round(harmful x subcategories x ratio) benign look-alikes, spread evenly (extras evenly spaced)."""
    total = round(harmful_target * n_subs * ratio)
    return [(total * (i + 1)) // n_subs - (total * i) // n_subs for i in range(n_subs)]


def synthesis_targets(taxonomy: Taxonomy, sizes: Sizes) -> pl.DataFrame:
    """Target per scenario x subcategory x task type x intent (cells with a target above 0)."""
    subs = taxonomy.subcategories()
    types = taxonomy.task_types
    benign = benign_per_subcategory(len(subs), sizes.harmful_target, sizes.benign_ratio)
    rows: list[dict[str, Any]] = []
    cursors = {"harmful": 0, "benign": 0}
    for i, (scenario, sub) in enumerate(subs):
        for intent, total in (("harmful", sizes.harmful_target), ("benign", benign[i])):
            counts, cursors[intent] = _spread(total, len(types), cursors[intent])
            rows += [{"scenario": scenario, "subcategory": sub, "task_type": t, "intent": intent, "target": c}
                     for t, c in zip(types, counts, strict=True) if c > 0]
    return pl.DataFrame(rows, schema=TARGET_COLUMNS)


def _choose(frame: pl.DataFrame, k: int, *key: object) -> list[dict[str, Any]]:
    """k rows of `frame`, a stable draw per key (the order of a hash of key and element id)."""
    ranked = sorted(frame.iter_rows(named=True), key=lambda r: content_hash(*key, r["element_id"]))
    return ranked[:k]


def plan_synthesis(targets: pl.DataFrame, stored: pl.DataFrame, attempts: dict[tuple, Attempts],
                   elements: pl.DataFrame, taxonomy: Taxonomy, sizes: Sizes, seed: int = 0) -> pl.DataFrame:
    """One row per synthesizer call still needed to bring every cell up to its target.

    stored: (scenario, subcategory, task_type, intent, n) counts of stored seed/benign queries;
    attempts: by SYNTHESIS_CELL; elements: (element_id, subcategory, kind, text) of the library.
    Each call combines `elements_per_query` behaviours and one event of its subcategory (a stable draw
    per call) with a region; without a library the prompt names the subcategory alone.
    """
    have = {tuple(r[c] for c in SYNTHESIS_CELL): r["n"] for r in stored.iter_rows(named=True)}
    descriptions = subcategory_descriptions(taxonomy)
    by_sub = elements.partition_by("subcategory", "kind", as_dict=True) if not elements.is_empty() else {}
    empty = elements.head(0)
    rows: list[dict[str, Any]] = []
    for t in targets.iter_rows(named=True):
        cell = tuple(t[c] for c in SYNTHESIS_CELL)
        deficit = t["target"] - have.get(cell, 0)
        if deficit <= 0:
            continue
        first = attempts.get(cell, Attempts(0, 0)).next_index
        behaviours = by_sub.get((t["subcategory"], "behaviour"), empty)
        events = by_sub.get((t["subcategory"], "event"), empty)
        for k in range(math.ceil(deficit / sizes.queries_per_call)):
            index = first + k
            key = (seed, t["subcategory"], t["intent"], t["task_type"], index)
            chosen = _choose(behaviours, sizes.elements_per_query, *key, "behaviours")
            event = _choose(events, 1, *key, "event")
            region = _pick(taxonomy.regions, *key, "region")
            picked = {"behaviours": [b["text"] for b in chosen], "event": event[0]["text"] if event else None,
                      "region": region, "element_ids": [e["element_id"] for e in chosen + event]}
            rows.append({
                "scenario": t["scenario"], "subcategory": t["subcategory"], "task_type": t["task_type"],
                "intent": t["intent"], "n": min(sizes.queries_per_call, deficit - k * sizes.queries_per_call),
                "sample_index": index, "region": region, "behaviours": picked["behaviours"],
                "event": picked["event"], "elements": json.dumps(picked, ensure_ascii=False),
                "description": descriptions.get(t["subcategory"], ""),
            })
    return pl.DataFrame(rows, schema=PLAN_COLUMNS)


def synthesis_requests(plan: pl.DataFrame, endpoint: str) -> list[LLMRequest]:
    tpl = load_template("synthesize_queries.txt")
    return [
        LLMRequest.chat(
            endpoint,
            tpl.render(scenario=r["scenario"], subcategory=r["subcategory"], task_type=r["task_type"],
                       region=r["region"], behaviours=r["behaviours"], event=r["event"], intent=r["intent"],
                       n=r["n"], description=r["description"]),
            template_version=tpl.version,
            sample_index=r["sample_index"],
        )
        for r in plan.iter_rows(named=True)
    ]


def parse_synthesis(plan: pl.DataFrame, results: list[LLMResult], stored_ids: set[str],
                    run_id: str) -> tuple[pl.DataFrame, list[dict[str, Any]], Counter[str]]:
    """Synthesizer answers -> new query rows, one generation-call record per call, rejections by reason.

    A call's items past the count it asked for are dropped (`beyond_requested`) so cells stay balanced;
    a text already stored, or written by an earlier call of the batch, is `duplicate_of_earlier`.
    """
    rows: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    seen = set(stored_ids)
    for p, res in zip(plan.iter_rows(named=True), results, strict=True):
        outcome, taken = new_items(res, p["n"], seen, query_id)
        rows += [{
            "query_id": qid, "text": text, "source": "synthetic", "method": INTENT_METHOD[p["intent"]],
            "parent_id": None, "scenario": p["scenario"], "subcategory": p["subcategory"],
            "task_type": p["task_type"], "intended_label": p["intent"], "elements": p["elements"],
            "original_text": None, "provenance": None, "generator": res.model,
            "prompt_version": res.request.template_version, "call_key": res.call_key, "run_id": run_id,
        } for qid, text in taken]
        rejected.update(outcome.rejected)
        calls.append(call_row(res, run_id, "synthesize", outcome, scenario=p["scenario"],
                              subcategory=p["subcategory"], task_type=p["task_type"], intent=p["intent"],
                              method=INTENT_METHOD[p["intent"]]))
    return pl.DataFrame(rows, schema=QUERY_COLUMNS), calls, rejected


AUGMENT_SEEDS = PendingQuery("queries/seeds_for_augmentation.sql", (("query_id", ""),))
AUGMENT_SEED_PAGE = 20_000  # seeds (with their texts) the augment flow reads at once


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


def pending_augmentations(chosen: pl.DataFrame, children: pl.DataFrame, attempts: dict[tuple, Attempts],
                          max_attempts: int) -> tuple[pl.DataFrame, int]:
    """The chosen (seed, method) pairs without a stored child, each with its next sample index; and how
    many were given up on (`max_attempts` answers, none usable)."""
    done = {(r["parent_id"], r["method"]) for r in children.iter_rows(named=True)}
    rows, gave_up = [], 0
    for r in chosen.iter_rows(named=True):
        key = (r["query_id"], r["aug_method"])
        if key in done:
            continue
        tried = attempts.get(key, Attempts(0, 0))
        if tried.attempts >= max_attempts:
            gave_up += 1
            continue
        rows.append({**r, "sample_index": tried.next_index})
    schema = {**chosen.schema, "sample_index": pl.Int64}
    return pl.DataFrame(rows, schema=schema), gave_up


def augmentation_requests(pending: pl.DataFrame, endpoint: str, n: int = 1) -> list[LLMRequest]:
    tpl = load_template("augment.txt")
    requests = []
    for r in pending.iter_rows(named=True):
        tactic = load_template(f"tactics/{r['aug_method']}.txt")
        requests.append(LLMRequest.chat(
            endpoint,
            tpl.render(method=r["aug_method"], tactic=tactic.text.strip(), n=n, query=r["text"],
                       nonce=frame_nonce(r["text"])),
            template_version=f"{tpl.version}+{tactic.version}",
            sample_index=r["sample_index"],
        ))
    return requests


def parse_augmentations(pending: pl.DataFrame, results: list[LLMResult], stored_ids: set[str], run_id: str,
                        n: int = 1) -> tuple[pl.DataFrame, list[dict[str, Any]], Counter[str]]:
    """Augmenter answers -> child query rows that keep parent_id and method and inherit the labels."""
    rows: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    seen = set(stored_ids)
    for parent, res in zip(pending.iter_rows(named=True), results, strict=True):
        outcome, taken = new_items(res, n, seen, query_id, unchanged_id=parent["query_id"], max_chars=1200)
        rows += [{
            "query_id": qid, "text": text, "source": parent["source"], "method": parent["aug_method"],
            "parent_id": parent["query_id"], "scenario": parent["scenario"],
            "subcategory": parent["subcategory"], "task_type": parent["task_type"],
            "intended_label": parent["intended_label"], "elements": parent["elements"],
            "original_text": None, "provenance": None, "generator": res.model,
            "prompt_version": res.request.template_version, "call_key": res.call_key, "run_id": run_id,
        } for qid, text in taken]
        rejected.update(outcome.rejected)
        calls.append(call_row(res, run_id, "augment", outcome, scenario=parent["scenario"],
                              subcategory=parent["subcategory"], task_type=parent["task_type"],
                              intent=parent["intended_label"], method=parent["aug_method"],
                              subject=parent["query_id"]))
    return pl.DataFrame(rows, schema=QUERY_COLUMNS), calls, rejected


# -- the steps (tasks/llm/step.py); context: the synthesizer endpoint's name ---------------------


def synthesis_output(plan: pl.DataFrame, results: list[LLMResult], _endpoint: str, run_id: str,
                     stored: set[str]) -> StepOutput:
    rows, calls, rejected = parse_synthesis(plan, results, stored, run_id)
    return StepOutput(tables={"queries": rows}, generation_calls=calls, candidate_ids=rows["query_id"].to_list(),
                      counts={"calls": len(results), "rejected": dict(rejected),
                              "new_by_intent": dict(Counter(rows["intended_label"].to_list()))})


def augmentation_output(pending: pl.DataFrame, results: list[LLMResult], _endpoint: str, run_id: str,
                        stored: set[str]) -> StepOutput:
    rows, calls, rejected = parse_augmentations(pending, results, stored, run_id)
    return StepOutput(tables={"queries": rows}, generation_calls=calls, candidate_ids=rows["query_id"].to_list(),
                      counts={"calls": len(results), "rejected": dict(rejected),
                              "methods": dict(Counter(pending["aug_method"].to_list()))})


def _augmentation_requests(pending: pl.DataFrame, endpoint: str) -> list[LLMRequest]:
    return augmentation_requests(pending, endpoint)


SYNTHESIZE = LLMStep(name="synthesize", requests=synthesis_requests, rows=synthesis_output,
                     writes=(Write("queries", count_as="queries_new"),),
                     dedup_against="queries/stored_query_ids.sql")
AUGMENT = LLMStep(name="augment", requests=_augmentation_requests, rows=augmentation_output,
                  writes=(Write("queries", count_as="queries_new"),),
                  dedup_against="queries/stored_query_ids.sql")
