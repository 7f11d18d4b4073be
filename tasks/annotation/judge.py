"""Step 6 and 9: every judge labels every response; hard samples go to the adjudicator.

The judge prompt (prompts/judge.txt) carries the taxonomy, optional numbered rules (ShieldLM style,
from a file) and the output contract `{"答案", "是否拒绝", "类别", "分析"}`, label first (是否拒绝: is the response a
refusal, WildGuard's third task; optional, stored on the vote as is_refusal); judges can also be asked
for a prompt-level label (was the query itself harmful?), stored apart in `prompt_labels`. Where an
endpoint supports constrained output (`structured_output: vllm | json_schema`) the request carries
the verdict JSON schema; the answer is parsed leniently either way (tasks/annotation/verdicts.py).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from libra.tasks.annotation.verdicts import SAFE, UNSAFE, parse_verdict
from libra.tasks.core.config import FactoryConfig
from libra.tasks.core.ids import content_hash, vote_id
from libra.tasks.core.prompts import Taxonomy, frame_nonce, load_rules, load_template
from libra.tasks.llm.pool import LLMRequest, LLMResult
from libra.tasks.llm.step import LLMStep, PendingQuery, StepOutput, Write
from libra.warehouse.schemas import schema

VOTE_SCHEMA = schema("votes")
PROMPT_LABEL_SCHEMA = schema("prompt_labels")
ADJUDICATION_SCHEMA = schema("adjudications")
NO_CATEGORY = "无"


def vote_settings(cfg: FactoryConfig) -> dict[str, object]:
    """What the vote views read from `settings`: the policy knobs, and the judge models whose votes a
    response needs before it is settled (a missing or failed one leaves it pending)."""
    models = [cfg.endpoint(name).model for name in cfg.voting_judges]
    return {**cfg.vote.settings(), "vote.judges": json.dumps(models, ensure_ascii=False)}


def verdict_schema(scenarios: list[str], with_prompt_label: bool) -> dict[str, Any]:
    """The JSON schema of a verdict, properties in contract order (label first)."""
    labels = {"type": "string", "enum": [SAFE, UNSAFE]}
    properties: dict[str, Any] = {"答案": labels}
    if with_prompt_label:
        properties["问题判断"] = labels
    properties["是否拒绝"] = {"type": "string", "enum": ["是", "否"]}  # is the response a refusal?
    properties["类别"] = {"type": "string", "enum": [*scenarios, NO_CATEGORY]}
    properties["分析"] = {"type": "string"}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


@dataclass(frozen=True)
class JudgeSetup:
    """What every judge and adjudicator request shares: taxonomy, rules, output contract, constraints."""

    scenarios: tuple[tuple[str, tuple[str, ...]], ...]  # (scenario, its subcategories)
    rules: tuple[str, ...] = ()
    ask_prompt_label: bool = False
    # endpoint name -> none | vllm | json_schema
    structured: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @staticmethod
    def from_config(cfg: FactoryConfig, taxonomy: Taxonomy) -> JudgeSetup:
        return JudgeSetup(
            scenarios=tuple((s["name"], tuple(sub["name"] for sub in s["subcategories"])) for s in taxonomy.scenarios),
            rules=load_rules(cfg, "judging.rules"),
            ask_prompt_label=cfg.judging.prompt_label,
            structured={e.name: e.structured_output for e in cfg.endpoints},
        )

    @property
    def scenario_names(self) -> list[str]:
        return [name for name, _ in self.scenarios]

    def template_version(self, template: str, *, prompt_label: bool) -> str:
        """The template's content hash, plus the rules' hash and the contract variant in use."""
        version = load_template(template).version
        if self.rules:
            version += "+rules@" + content_hash(self.rules, length=12)
        if prompt_label:
            version += "+prompt_label"
        return version

    def extra_body(self, endpoint: str, *, prompt_label: bool) -> dict[str, Any] | None:
        mode = self.structured.get(endpoint, "none")
        if mode == "none":
            return None
        schema = verdict_schema(self.scenario_names, prompt_label)
        if mode == "vllm":
            return {"structured_outputs": {"json": schema}}
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "verdict", "strict": True, "schema": schema}}}

    def render(self, template: str, query: str, response: str, *, prompt_label: bool, **extra: Any) -> str:
        # The nonce hashes the data itself: no query, response or vote can contain its closing tag.
        nonce = frame_nonce(query, response, *(str(v) for v in extra.values()))
        return load_template(template).render(
            query=query, response=response, nonce=nonce, rules=list(self.rules), prompt_label=prompt_label,
            scenarios=[{"name": n, "subcategories": list(subs)} for n, subs in self.scenarios], **extra,
        )


def judge_prompt(query: str, response: str, setup: JudgeSetup) -> str:
    return setup.render("judge.txt", query, response, prompt_label=setup.ask_prompt_label)


def judge_requests(pending: pl.DataFrame, setup: JudgeSetup) -> list[LLMRequest]:
    version = setup.template_version("judge.txt", prompt_label=setup.ask_prompt_label)
    return [
        LLMRequest.chat(
            r["judge"], judge_prompt(r["query"], r["response"], setup), template_version=version,
            extra_body=setup.extra_body(r["judge"], prompt_label=setup.ask_prompt_label),
        )
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
            "is_refusal": verdict.is_refusal if verdict else None,
        })
    return pl.DataFrame(rows, schema=VOTE_SCHEMA)


def prompt_label_rows(pending: pl.DataFrame, results: list[LLMResult], run_id: str) -> pl.DataFrame:
    """The judges' prompt-level labels (was the query harmful?), one row per answered judge call."""
    rows = []
    for p, res in zip(pending.iter_rows(named=True), results, strict=True):
        if not res.ok:
            continue  # the vote is retried; so is its prompt label
        rows.append({
            "vote_id": vote_id(p["response_id"], p["model"]), "query_id": p["query_id"],
            "response_id": p["response_id"], "judge": p["judge"], "model": p["model"],
            "label": parse_verdict(res.text).prompt_label, "prompt_version": res.request.template_version,
            "run_id": run_id,
        })
    return pl.DataFrame(rows, schema=PROMPT_LABEL_SCHEMA)


def adjudication_prompt(query: str, response: str, votes: list[dict[str, Any]], setup: JudgeSetup) -> str:
    return setup.render("adjudicate.txt", query, response, prompt_label=False, votes=votes)


def adjudication_requests(pending: pl.DataFrame, adjudicator: str, setup: JudgeSetup) -> list[LLMRequest]:
    version = setup.template_version("adjudicate.txt", prompt_label=False)
    return [
        LLMRequest.chat(
            adjudicator, adjudication_prompt(r["query"], r["response"], r["votes"], setup),
            template_version=version, extra_body=setup.extra_body(adjudicator, prompt_label=False),
        )
        for r in pending.iter_rows(named=True)
    ]


def adjudication_rows(
    pending: pl.DataFrame, results: list[LLMResult], adjudicator: str, run_id: str
) -> pl.DataFrame:
    """The adjudicator's label and analysis; an unreadable answer is stored as an abstention (NULL)."""
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


# -- the steps (tasks/llm/step.py) ---------------------------------------------------------------


def judge_output(pending: pl.DataFrame, results: list[LLMResult], setup: JudgeSetup, run_id: str,
                 _stored: set[str]) -> StepOutput:
    rows = vote_rows(pending, results, run_id)
    tables = {"votes": rows}
    if setup.ask_prompt_label:  # a vote and its prompt-level label land together
        tables["prompt_labels"] = prompt_label_rows(pending, results, run_id)
    counts = Counter(rows["status"].to_list())
    return StepOutput(tables=tables, counts={
        "requests": len(results), "ok": counts.get("ok", 0), "abstain": counts.get("abstain", 0),
        "failed": counts.get("failed", 0)})


# Reads queries/pending_votes.sql with the registered frame `judges` (judge, model); context: JudgeSetup.
JUDGE = LLMStep(
    name="annotate", requests=judge_requests, rows=judge_output,
    writes=(Write("votes", on_conflict="replace"), Write("prompt_labels", on_conflict="replace")),
    pending=PendingQuery("queries/pending_votes.sql", key=(("response_id", ""), ("judge", ""))),
)


@dataclass(frozen=True)
class AdjudicationContext:
    setup: JudgeSetup
    adjudicator: str  # the endpoint's name


def _adjudication_requests(pending: pl.DataFrame, ctx: AdjudicationContext) -> list[LLMRequest]:
    return adjudication_requests(pending, ctx.adjudicator, ctx.setup)


def adjudication_output(pending: pl.DataFrame, results: list[LLMResult], ctx: AdjudicationContext, run_id: str,
                        _stored: set[str]) -> StepOutput:
    rows = adjudication_rows(pending, results, ctx.adjudicator, run_id)
    return StepOutput(tables={"adjudications": rows},
                      counts={"requests": len(results), "failed": sum(not r.ok for r in results)})


ADJUDICATE = LLMStep(
    name="adjudicate", pending=PendingQuery("queries/pending_adjudications.sql", (("response_id", ""),)),
    requests=_adjudication_requests, rows=adjudication_output,
    writes=(Write("adjudications", count_as="adjudicated"),),
)
