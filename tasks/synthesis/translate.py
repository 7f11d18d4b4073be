"""Stage 2, step 7 (translated source): English safety data translated into Chinese through the pool.

Input files are read by the generic import reader (`libra.tasks.data.imports`: JSON, JSONL, CSV, Parquet;
encodings and BOMs detected), optionally with an import config (configs/imports/*.yaml) for the dataset
name, the columns and a taxonomy mapping. Every distinct English text (query or response) is translated
once into `translations`; a record whose texts are all translated becomes

* a `queries` row: source = 'translated', method = 'translate', original_text = the English query,
  provenance = {dataset, file, row, original_id}, scenario/subcategory from the mapping when there is one;
* a `responses` row when the record has a response: responder = model = 'translated:<dataset>', so the
  annotate stage votes on the translated pair like any other (sample_index tells apart several
  responses to one query, in file order); its English original is in `translations`;
* a `translated_pairs` row linking the two with the dataset's own label (`v_translations` shows the
  English beside the Chinese).

Rerunnable: records already paired plan nothing; a text the translator refused is asked again with the
next sample index, at most `sizes.top_up_rounds` times in all.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from libra.tasks.core.config import FactoryConfig
from libra.tasks.core.ids import content_hash, query_id, response_id
from libra.tasks.core.prompts import Taxonomy, frame_nonce, load_taxonomy, load_template
from libra.tasks.data.imports import (
    BadRow,
    ImportFailure,
    ImportSpec,
    category_value,
    load_import_spec,
    load_mapping,
    read_records,
)
from libra.tasks.llm.pool import LLMRequest, LLMResult
from libra.tasks.llm.step import LLMStep, StepOutput, Write
from libra.tasks.synthesis.generation_calls import Attempts, CallOutcome, call_row
from libra.tasks.synthesis.synthesize import QUERY_COLUMNS
from libra.warehouse import sql_text

if TYPE_CHECKING:  # the flow's run context, only annotated here
    from libra.tasks.core.runs import Factory
from libra.tasks.synthesis.text_lists import parse_translation
from libra.warehouse.schemas import schema

# The query column is found by name when neither --text-column nor the import config names it.
QUERY_COLUMN_NAMES = ("query", "prompt", "question", "en", "text")
MAX_CHARS = {"query": 4000, "response": 12000}
INPUT_COLUMNS = {
    "dataset": pl.String, "source_file": pl.String, "source_row": pl.Int64, "original_id": pl.String,
    "query_en": pl.String, "response_en": pl.String, "label": pl.String, "scenario": pl.String,
    "subcategory": pl.String, "intended_label": pl.String, "pair_id": pl.String, "query_tid": pl.String,
    "response_tid": pl.String, "response_index": pl.Int64,
}
TRANSLATION_COLUMNS = schema("translations")
PAIR_COLUMNS = schema("translated_pairs")
RESPONSE_COLUMNS = schema("responses")
TEXT_CELL = ("subject", "method")  # translate attempts are counted per text (translation_id) and kind


class TranslateInputError(ImportFailure):
    """Input that cannot be translated as asked; the message names the file and what to change."""


def translation_id(kind: str, original: str) -> str:
    return "t" + content_hash(kind, original)


@dataclass
class EnglishInput:
    records: pl.DataFrame                      # INPUT_COLUMNS, one row per distinct (query, response)
    skipped: Counter[str] = field(default_factory=Counter)  # records not taken, by reason


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _column(columns: list[str], wanted: str | None, fallbacks: tuple[str, ...], path: Path, role: str,
            option: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise TranslateInputError(f"{path}: column {wanted!r} ({role}) not found; columns are: "
                                      f"{', '.join(columns) or 'none'} (set {option})")
        return wanted
    by_name = {c.strip().casefold(): c for c in columns}
    return next((by_name[n] for n in fallbacks if n in by_name), None)


def read_english(path: str | Path, spec: ImportSpec | None = None, *, text_column: str | None = None,
                 response_column: str | None = None, label_column: str | None = None,
                 dataset: str | None = None, taxonomy: Taxonomy | None = None,
                 limit: int | None = None) -> EnglishInput:
    """The records of one English file: query (and response, label) per distinct pair, in file order."""
    path = Path(path).resolve()
    spec = spec or ImportSpec(language="en")
    bad: list[BadRow] = []
    try:
        records, columns, _ = read_records(path, spec, bad)
    except ImportFailure as e:
        raise TranslateInputError(str(e)) from None
    if limit is not None:
        records = records[:limit]
    text_col = _column(columns, text_column or spec.columns.text, QUERY_COLUMN_NAMES, path, "query",
                       "--text-column")
    if text_col is None:
        raise TranslateInputError(f"{path}: no query column: none of {', '.join(QUERY_COLUMN_NAMES)} among the "
                                  f"columns ({', '.join(columns) or 'none'}); pass --text-column")
    resp_col = _column(columns, response_column, ("response",), path, "response", "--response-column")
    label_col = _column(columns, label_column or spec.columns.label, ("label",), path, "label", "--label-column")
    id_col = _column(columns, spec.columns.id, ("id",), path, "id", "columns.id in the import config")
    mapping = load_mapping(spec.mapping, taxonomy, spec) if spec.mapping and spec.columns.category else None
    name = dataset or spec.dataset or path.stem
    skipped: Counter[str] = Counter({"unreadable_record": len(bad)} if bad else {})
    rows: list[dict[str, Any]] = []
    seen_pairs: set[str] = set()
    responses_per_query: Counter[str] = Counter()
    for rec in records:
        query = _text(rec.fields.get(text_col))
        if query is None:
            skipped["empty_query"] += 1
            continue
        response = _text(rec.fields.get(resp_col)) if resp_col else None
        pair = "p" + content_hash(name, query, response)
        if pair in seen_pairs:
            skipped["duplicate_record"] += 1
            continue
        seen_pairs.add(pair)
        scenario = sub = None
        if mapping is not None:
            try:
                scenario, sub = mapping.target(category_value(rec.fields.get(spec.columns.category)),
                                               _text(rec.fields.get(spec.columns.subcategory))
                                               if spec.columns.subcategory else None)
            except LookupError:
                skipped["unmapped_category"] += 1  # kept, without a scenario
        index = responses_per_query[query] if response is not None else 0
        if response is not None:
            responses_per_query[query] += 1
        rows.append({
            "dataset": name, "source_file": str(path), "source_row": rec.row,
            "original_id": _text(rec.fields.get(id_col)) if id_col else None,
            "query_en": query, "response_en": response,
            "label": _text(rec.fields.get(label_col)) if label_col else None,
            "scenario": scenario, "subcategory": sub, "intended_label": spec.default_label,
            "pair_id": pair, "query_tid": translation_id("query", query),
            "response_tid": translation_id("response", response) if response is not None else None,
            "response_index": index,
        })
    return EnglishInput(pl.DataFrame(rows, schema=INPUT_COLUMNS), skipped)


def read_input(cfg: FactoryConfig, input: str | Path | None, import_config: str | None, *, limit: int | None,
               **columns: str | None) -> EnglishInput:
    """The translate flow's input, read and checked before its run starts (a bad file, column or
    limit stores nothing); import_config: a path or a packaged spec name."""
    if not input:
        raise TranslateInputError("translate needs an input file: --input FILE")
    if limit is not None and (isinstance(limit, bool) or not str(limit).isdigit()):
        raise TranslateInputError(f"--limit must be a whole number, got {limit!r}")
    return read_english(input, load_import_spec(import_config) if import_config else None,
                        taxonomy=load_taxonomy(cfg.resolve(cfg.taxonomy)), limit=int(limit) if limit is not None else None,
                        **columns)


def texts_to_translate(pending: pl.DataFrame, translated: set[str], attempts: dict[tuple, Attempts],
                       max_attempts: int) -> tuple[pl.DataFrame, int]:
    """Distinct (translation_id, kind, original) still untranslated, with the next sample index; and how
    many texts were given up on after `max_attempts` unusable answers."""
    wanted: dict[str, dict[str, Any]] = {}
    for r in pending.iter_rows(named=True):
        wanted.setdefault(r["query_tid"], {"translation_id": r["query_tid"], "kind": "query",
                                           "original_text": r["query_en"]})
        if r["response_tid"] is not None:
            wanted.setdefault(r["response_tid"], {"translation_id": r["response_tid"], "kind": "response",
                                                  "original_text": r["response_en"]})
    rows, gave_up = [], 0
    for tid, row in wanted.items():
        if tid in translated:
            continue
        tried = attempts.get((tid, row["kind"]), Attempts(0, 0))
        if tried.attempts >= max_attempts:
            gave_up += 1
            continue
        rows.append({**row, "sample_index": tried.next_index})
    schema = {"translation_id": pl.String, "kind": pl.String, "original_text": pl.String, "sample_index": pl.Int64}
    return pl.DataFrame(rows, schema=schema), gave_up


def translation_requests(texts: pl.DataFrame, endpoint: str) -> list[LLMRequest]:
    tpl = load_template("translate.txt")
    return [
        LLMRequest.chat(endpoint, tpl.render(kind=r["kind"], text=r["original_text"], nonce=frame_nonce(r["original_text"])),
                        template_version=tpl.version, sample_index=r["sample_index"])
        for r in texts.iter_rows(named=True)
    ]


def parse_translations(texts: pl.DataFrame, results: list[LLMResult],
                       run_id: str) -> tuple[pl.DataFrame, list[dict[str, Any]], Counter[str]]:
    """Translator answers -> `translations` rows, one generation-call record each, rejections by reason."""
    rows: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    for t, res in zip(texts.iter_rows(named=True), results, strict=True):
        outcome = CallOutcome(requested=1)
        if not res.ok:
            outcome.rejected["call_failed"] += 1
        else:
            parsed = parse_translation(res.text, t["original_text"], max_chars=MAX_CHARS[t["kind"]])
            if parsed.text is None:
                outcome.rejected[parsed.reason or "no_translation_found"] += 1
            else:
                outcome.accepted = outcome.stored = 1
                rows.append({"translation_id": t["translation_id"], "kind": t["kind"],
                             "original_text": t["original_text"], "text": parsed.text,
                             "prompt_version": res.request.template_version, "generator": res.model,
                             "call_key": res.call_key, "run_id": run_id})
        rejected.update(outcome.rejected)
        calls.append(call_row(res, run_id, "translate", outcome, method=t["kind"], subject=t["translation_id"]))
    return pl.DataFrame(rows, schema=TRANSLATION_COLUMNS), calls, rejected


def pair_rows(pending: pl.DataFrame, translations: pl.DataFrame,
              run_id: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(queries, responses, translated_pairs) rows for the pending records whose texts are all translated.

    translations: (translation_id, text, prompt_version, generator, call_key) of the stored ones.
    """
    by_id = {r["translation_id"]: r for r in translations.iter_rows(named=True)}
    queries: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    for r in pending.iter_rows(named=True):
        tq = by_id.get(r["query_tid"])
        tr = by_id.get(r["response_tid"]) if r["response_tid"] is not None else None
        if tq is None or (r["response_tid"] is not None and tr is None):
            continue
        qid = query_id(tq["text"])
        provenance = {"dataset": r["dataset"], "file": r["source_file"], "row": r["source_row"],
                      "original_id": r["original_id"], "translation_id": r["query_tid"]}
        queries.append({
            "query_id": qid, "text": tq["text"], "source": "translated", "method": "translate", "parent_id": None,
            "scenario": r["scenario"], "subcategory": r["subcategory"], "task_type": None,
            "intended_label": r["intended_label"], "elements": None, "original_text": r["query_en"],
            "provenance": json.dumps(provenance, ensure_ascii=False), "generator": tq["generator"],
            "prompt_version": tq["prompt_version"], "call_key": tq["call_key"], "run_id": run_id,
        })
        rid = None
        if tr is not None:
            responder = f"translated:{r['dataset']}"
            rid = response_id(qid, responder, r["response_index"])
            responses.append({"response_id": rid, "query_id": qid, "responder": responder, "model": responder,
                              "sample_index": r["response_index"], "text": tr["text"], "status": "ok",
                              "error": None, "call_key": tr["call_key"], "run_id": run_id})
        pairs.append({"pair_id": r["pair_id"], "dataset": r["dataset"], "source_file": r["source_file"],
                      "source_row": r["source_row"], "query_translation_id": r["query_tid"],
                      "response_translation_id": r["response_tid"], "query_id": qid, "response_id": rid,
                      "label": r["label"], "run_id": run_id})
    return (pl.DataFrame(queries, schema=QUERY_COLUMNS).unique("query_id", keep="first", maintain_order=True),
            pl.DataFrame(responses, schema=RESPONSE_COLUMNS).unique("response_id", keep="first", maintain_order=True),
            pl.DataFrame(pairs, schema=PAIR_COLUMNS))


# -- the step (tasks/llm/step.py); context: the synthesizer endpoint's name ----------------------


def translation_output(texts: pl.DataFrame, results: list[LLMResult], _endpoint: str, run_id: str,
                       _stored: set[str]) -> StepOutput:
    rows, calls, rejected = parse_translations(texts, results, run_id)
    return StepOutput(tables={"translations": rows}, generation_calls=calls,
                      counts={"calls": len(results), "rejected": dict(rejected)})


TRANSLATE = LLMStep(name="translate", requests=translation_requests, rows=translation_output,
                    writes=(Write("translations", count_as="translations_new"),))


def store_translated_pairs(fx: Factory, pending: pl.DataFrame) -> dict[str, Any]:
    """Queries, responses and pair rows for the pending records whose texts are all translated now
    (in the flow process: it reads the stored translations and writes, one transaction)."""
    tids = [t for t in pending["query_tid"].to_list() + pending["response_tid"].to_list() if t is not None]
    stored = fx.warehouse.query(sql_text("queries/translations_by_id.sql"),
                                frames={"wanted_ids": pl.DataFrame({"id": sorted(set(tids))}, schema={"id": pl.String})})
    queries, responses, pairs = pair_rows(pending, stored, fx.run_id)
    with fx.warehouse.writer():
        new_queries = fx.warehouse.insert("queries", queries)
        new_responses = fx.warehouse.insert("responses", responses)
        new_pairs = fx.warehouse.insert("translated_pairs", pairs)
    return {"pairs_new": new_pairs, "queries_new": new_queries, "responses_new": new_responses}
