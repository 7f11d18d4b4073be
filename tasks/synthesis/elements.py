"""Stage 1, step 1: the element library, harmful behaviours and concrete events per subcategory.

The plan is computed from what is stored: each (subcategory, kind) asks for what it still lacks of
its configured count, with the next unused sample index, so a rerun tops up and never repeats a call;
a finished library plans nothing. The prompt lists the elements already stored, so a real model is
asked for new ones; a repeat is rejected as `duplicate_of_earlier` all the same.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import polars as pl

from libra.tasks.core.config import Sizes
from libra.tasks.core.ids import content_hash, normalize_for_id
from libra.tasks.core.prompts import Taxonomy, load_template
from libra.tasks.llm.pool import LLMRequest, LLMResult
from libra.tasks.llm.step import LLMStep, StepOutput, Write
from libra.tasks.synthesis.generation_calls import Attempts, call_row, new_items
from libra.warehouse.schemas import schema

KINDS = ("behaviour", "event")
ELEMENT_COLUMNS = schema("elements")
# Elements are short phrases that go on one line of a synthesis prompt.
MIN_CHARS, MAX_CHARS = 2, 40
# How many stored elements a top-up prompt lists as "already have, do not repeat".
EXISTING_SHOWN = 30


def element_id(scenario: str, subcategory: str, kind: str, text: str) -> str:
    return "e" + content_hash(scenario, subcategory, kind, normalize_for_id(text))


def subcategory_descriptions(taxonomy: Taxonomy) -> dict[str, str]:
    return {sub["name"]: sub.get("desc", "") for s in taxonomy.scenarios for sub in s["subcategories"]}


def element_targets(sizes: Sizes) -> dict[str, int]:
    return {"behaviour": sizes.behaviours_per_subcategory, "event": sizes.events_per_subcategory}


def plan_elements(taxonomy: Taxonomy, sizes: Sizes, stored: pl.DataFrame,
                  attempts: dict[tuple, Attempts]) -> pl.DataFrame:
    """One row per elements call still needed: (scenario, subcategory, kind, n, sample_index).

    stored: (scenario, subcategory, kind, n) counts; attempts: by (subcategory, method=kind).
    """
    have = {(r["subcategory"], r["kind"]): r["n"] for r in stored.iter_rows(named=True)}
    descriptions = subcategory_descriptions(taxonomy)
    rows: list[dict[str, Any]] = []
    for scenario, sub in taxonomy.subcategories():
        for kind, target in element_targets(sizes).items():
            deficit = target - have.get((sub, kind), 0)
            if deficit <= 0:
                continue
            calls = math.ceil(deficit / sizes.elements_per_call)
            first = attempts.get((sub, kind), Attempts(0, 0)).next_index
            for k in range(calls):
                rows.append({"scenario": scenario, "subcategory": sub, "kind": kind,
                             "n": min(sizes.elements_per_call, deficit - k * sizes.elements_per_call),
                             "sample_index": first + k, "description": descriptions.get(sub, "")})
    return pl.DataFrame(rows, schema={"scenario": pl.String, "subcategory": pl.String, "kind": pl.String,
                                      "n": pl.Int64, "sample_index": pl.Int64, "description": pl.String})


def element_requests(plan: pl.DataFrame, existing: dict[tuple[str, str], list[str]], endpoint: str) -> list[LLMRequest]:
    tpl = load_template("elements.txt")
    return [
        LLMRequest.chat(
            endpoint,
            tpl.render(scenario=r["scenario"], subcategory=r["subcategory"], kind=r["kind"], n=r["n"],
                       description=r["description"],
                       existing=existing.get((r["subcategory"], r["kind"]), [])[:EXISTING_SHOWN]),
            template_version=tpl.version,
            sample_index=r["sample_index"],
        )
        for r in plan.iter_rows(named=True)
    ]


def parse_elements(plan: pl.DataFrame, results: list[LLMResult], stored_ids: set[str],
                   run_id: str) -> tuple[pl.DataFrame, list[dict[str, Any]], Counter[str]]:
    """Answers -> new element rows, one generation-call record per call, rejections by reason."""
    rows: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    seen = set(stored_ids)
    for p, res in zip(plan.iter_rows(named=True), results, strict=True):
        outcome, taken = new_items(res, p["n"], seen,
                                   lambda text, p=p: element_id(p["scenario"], p["subcategory"], p["kind"], text),
                                   min_chars=MIN_CHARS, max_chars=MAX_CHARS, single_line=True)
        rows += [{"element_id": eid, "scenario": p["scenario"], "subcategory": p["subcategory"], "kind": p["kind"],
                  "text": text, "prompt_version": res.request.template_version, "generator": res.model,
                  "call_key": res.call_key, "run_id": run_id} for eid, text in taken]
        rejected.update(outcome.rejected)
        calls.append(call_row(res, run_id, "elements", outcome, scenario=p["scenario"],
                              subcategory=p["subcategory"], method=p["kind"]))
    return pl.DataFrame(rows, schema=ELEMENT_COLUMNS), calls, rejected


# -- the step (tasks/llm/step.py) ----------------------------------------------------------------


@dataclass(frozen=True)
class ElementsContext:
    existing: dict[tuple[str, str], list[str]]  # (subcategory, kind) -> stored texts, listed in the prompt
    endpoint: str  # the synthesizer


def library_context(library: pl.DataFrame, endpoint: str) -> ElementsContext:
    """library: the stored elements (element_id, subcategory, kind, text)."""
    existing: dict[tuple[str, str], list[str]] = {}
    for r in library.iter_rows(named=True):
        existing.setdefault((r["subcategory"], r["kind"]), []).append(r["text"])
    return ElementsContext(existing, endpoint)


def _requests(plan: pl.DataFrame, ctx: ElementsContext) -> list[LLMRequest]:
    return element_requests(plan, ctx.existing, ctx.endpoint)


def elements_output(plan: pl.DataFrame, results: list[LLMResult], _ctx: ElementsContext, run_id: str,
                    stored: set[str]) -> StepOutput:
    rows, calls, rejected = parse_elements(plan, results, stored, run_id)
    return StepOutput(tables={"elements": rows}, generation_calls=calls, candidate_ids=rows["element_id"].to_list(),
                      counts={"calls": len(results), "rejected": dict(rejected)})


ELEMENTS = LLMStep(
    name="elements", requests=_requests, rows=elements_output,
    writes=(Write("elements", count_as="elements_new"),),
    dedup_against="queries/stored_element_ids.sql",
    in_flight=1,  # a batch's prompts list the library the batch before it stored
)
