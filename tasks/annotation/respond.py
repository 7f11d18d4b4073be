"""Step 5: fan every kept query out to every responder (refusals and harmful completions both appear)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from libra.tasks.core.ids import response_id
from libra.tasks.llm.pool import LLMRequest, LLMResult
from libra.tasks.llm.step import LLMStep, PendingQuery, StepOutput, Write
from libra.warehouse.schemas import schema

RESPONSE_SCHEMA = schema("responses")


def wanted_responses(responders: list[tuple[str, str]], samples: int) -> pl.DataFrame:
    """The (responder, model, sample_index) grid each kept query should have a response for."""
    rows = [(name, model, i) for name, model in responders for i in range(samples)]
    return pl.DataFrame(rows, schema={"responder": pl.String, "model": pl.String, "sample_index": pl.Int32},
                        orient="row")


def respond_requests(pending: pl.DataFrame) -> list[LLMRequest]:
    # The responder sees the query exactly as a user would send it: no system prompt, no framing.
    return [
        LLMRequest.chat(r["responder"], r["text"], sample_index=r["sample_index"])
        for r in pending.iter_rows(named=True)
    ]


def response_rows(pending: pl.DataFrame, results: list[LLMResult], run_id: str) -> pl.DataFrame:
    rows = []
    for p, res in zip(pending.iter_rows(named=True), results, strict=True):
        rows.append({
            "response_id": response_id(p["query_id"], p["model"], p["sample_index"]),
            "query_id": p["query_id"], "responder": p["responder"], "model": p["model"],
            "sample_index": p["sample_index"], "text": res.text, "status": "ok" if res.ok else "failed",
            "error": res.error, "call_key": res.call_key, "run_id": run_id,
        })
    return pl.DataFrame(rows, schema=RESPONSE_SCHEMA)


def respond_output(pending: pl.DataFrame, results: list[LLMResult], _context: Any, run_id: str,
                   _stored: set[str]) -> StepOutput:
    rows = response_rows(pending, results, run_id)
    counts = Counter(rows["status"].to_list())
    return StepOutput(tables={"responses": rows}, counts={
        "requests": len(results), "ok": counts.get("ok", 0), "failed": counts.get("failed", 0),
        "cached": sum(r.cached for r in results)})


def _requests(pending: pl.DataFrame, _context: Any) -> list[LLMRequest]:
    return respond_requests(pending)


# Reads queries/pending_responses.sql with the registered frame `wanted` (wanted_responses).
RESPOND = LLMStep(
    name="respond", requests=_requests, rows=respond_output,
    # replace: a response that failed in an earlier run and succeeded now overwrites its failure
    writes=(Write("responses", on_conflict="replace"),),
    pending=PendingQuery("queries/pending_responses.sql",
                         key=(("query_id", ""), ("responder", ""), ("sample_index", -1))),
)
