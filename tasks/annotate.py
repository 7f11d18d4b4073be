"""Step 6 and 9: every judge labels every response; hard samples go to the adjudicator."""

from __future__ import annotations

import polars as pl

from libra.tasks.ids import vote_id
from libra.tasks.llm_pool import LLMRequest, LLMResult
from libra.tasks.prompts import frame_nonce, load_template
from libra.tasks.verdicts import parse_verdict

VOTE_SCHEMA = {
    "vote_id": pl.String, "response_id": pl.String, "judge": pl.String, "model": pl.String, "label": pl.String,
    "category": pl.String, "analysis": pl.String, "raw_text": pl.String, "status": pl.String,
    "error": pl.String, "prompt_version": pl.String, "call_key": pl.String, "run_id": pl.String,
}
ADJUDICATION_SCHEMA = {
    "response_id": pl.String, "adjudicator": pl.String, "model": pl.String, "label": pl.String,
    "analysis": pl.String, "raw_text": pl.String, "prompt_version": pl.String, "call_key": pl.String,
    "run_id": pl.String,
}


def judge_prompt(query: str, response: str, scenarios: list[str], template: str = "judge.txt", **extra) -> str:
    nonce = frame_nonce(query, response, *(str(v) for v in extra.values()))
    return load_template(template).render(query=query, response=response, scenarios=scenarios, nonce=nonce, **extra)


def judge_requests(pending: pl.DataFrame, scenarios: list[str]) -> list[LLMRequest]:
    tpl = load_template("judge.txt")
    return [
        LLMRequest.chat(r["judge"], judge_prompt(r["query"], r["response"], scenarios), template_version=tpl.version)
        for r in pending.iter_rows(named=True)
    ]


def vote_rows(pending: pl.DataFrame, results: list[LLMResult], run_id: str) -> pl.DataFrame:
    """Parsed votes; an unparseable answer is an abstention (label NULL) with the raw text kept."""
    rows = []
    for p, res in zip(pending.iter_rows(named=True), results, strict=True):
        verdict = parse_verdict(res.text) if res.ok else None
        rows.append({
            "vote_id": vote_id(p["response_id"], p["model"]), "response_id": p["response_id"],
            "judge": p["judge"], "model": p["model"],
            "label": verdict.label if verdict else None,
            "category": verdict.category if verdict else None,
            "analysis": verdict.analysis if verdict else None,
            "raw_text": res.text,
            "status": "failed" if verdict is None else ("ok" if verdict.label else "abstain"),
            "error": res.error if verdict is None else (None if verdict.label else f"unparseable ({verdict.how})"),
            "prompt_version": res.request.template_version, "call_key": res.call_key, "run_id": run_id,
        })
    return pl.DataFrame(rows, schema=VOTE_SCHEMA)


def adjudication_requests(pending: pl.DataFrame, adjudicator: str, scenarios: list[str]) -> list[LLMRequest]:
    tpl = load_template("adjudicate.txt")
    return [
        LLMRequest.chat(
            adjudicator,
            judge_prompt(r["query"], r["response"], scenarios, template="adjudicate.txt", votes=r["votes"]),
            template_version=tpl.version,
        )
        for r in pending.iter_rows(named=True)
    ]


def adjudication_rows(
    pending: pl.DataFrame, results: list[LLMResult], adjudicator: str, run_id: str
) -> pl.DataFrame:
    rows = []
    for p, res in zip(pending.iter_rows(named=True), results, strict=True):
        if not res.ok:
            continue  # stays pending: the next run asks again
        verdict = parse_verdict(res.text)
        rows.append({
            "response_id": p["response_id"], "adjudicator": adjudicator, "model": res.model,
            "label": verdict.label, "analysis": verdict.analysis, "raw_text": res.text,
            "prompt_version": res.request.template_version, "call_key": res.call_key, "run_id": run_id,
        })
    return pl.DataFrame(rows, schema=ADJUDICATION_SCHEMA)
