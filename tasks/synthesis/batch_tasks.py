"""Flow-side writes of translation that call no LLM. The LLM stages of synthesis (elements, synthesize,
augment, translate) are steps run by the one batch task of tasks/llm/step.py; their declarations live
in elements.py, synthesize.py and translate.py."""

from __future__ import annotations

from typing import Any

import polars as pl

from libra.tasks.core.runs import Factory
from libra.tasks.synthesis import translate
from libra.warehouse import sql_text


def store_translated_pairs(fx: Factory, pending: pl.DataFrame) -> dict[str, Any]:
    """Queries, responses and pair rows for the pending records whose texts are all translated now
    (in the flow process: it reads the stored translations and writes, one transaction)."""
    tids = [t for t in pending["query_tid"].to_list() + pending["response_tid"].to_list() if t is not None]
    stored = fx.warehouse.query(sql_text("queries/translations_by_id.sql"),
                                frames={"wanted_ids": pl.DataFrame({"id": sorted(set(tids))}, schema={"id": pl.String})})
    queries, responses, pairs = translate.pair_rows(pending, stored, fx.run_id)
    with fx.warehouse.writer():
        new_queries = fx.warehouse.insert("queries", queries)
        new_responses = fx.warehouse.insert("responses", responses)
        new_pairs = fx.warehouse.insert("translated_pairs", pairs)
    return {"pairs_new": new_pairs, "queries_new": new_queries, "responses_new": new_responses}
