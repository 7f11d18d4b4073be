"""The columns of the tables Python code builds frames for, declared once (the migrations create the
tables; tests/warehouse/test_schemas.py fails when a declaration here and its DuckDB table differ).

A frame built with `schema(table)` has every column the table takes from Python, in polars types;
`created_at` is left out everywhere (DuckDB fills it). JSON columns are strings here.
"""

from __future__ import annotations

import polars as pl

S, I32, I64, F64, B = pl.String, pl.Int32, pl.Int64, pl.Float64, pl.Boolean

TABLES: dict[str, dict[str, pl.DataType]] = {
    "queries": {
        "query_id": S, "text": S, "source": S, "method": S, "parent_id": S, "scenario": S, "subcategory": S,
        "task_type": S, "intended_label": S, "elements": S, "original_text": S, "provenance": S,
        "generator": S, "prompt_version": S, "call_key": S, "run_id": S,
    },
    "responses": {
        "response_id": S, "query_id": S, "responder": S, "model": S, "sample_index": I32, "text": S,
        "status": S, "error": S, "call_key": S, "run_id": S,
    },
    "votes": {
        "vote_id": S, "response_id": S, "judge": S, "model": S, "label": S, "category": S, "analysis": S,
        "raw_text": S, "status": S, "error": S, "prompt_version": S, "call_key": S, "run_id": S,
        "is_refusal": B,
    },
    "prompt_labels": {
        "vote_id": S, "query_id": S, "response_id": S, "judge": S, "model": S, "label": S,
        "prompt_version": S, "run_id": S,
    },
    "adjudications": {
        "response_id": S, "adjudicator": S, "model": S, "label": S, "analysis": S, "raw_text": S,
        "prompt_version": S, "call_key": S, "run_id": S,
    },
    "llm_calls": {
        "call_key": S, "run_id": S, "endpoint": S, "model": S, "template_version": S, "request": S,
        "response_text": S, "status": S, "error": S, "attempts": I32, "prompt_tokens": I32,
        "completion_tokens": I32, "latency_ms": F64,
    },
    "generation_calls": {
        "call_key": S, "run_id": S, "stage": S, "scenario": S, "subcategory": S, "task_type": S, "intent": S,
        "method": S, "subject": S, "sample_index": I32, "requested": I32, "accepted": I32, "stored": I32,
        "status": S, "error": S, "rejected": S, "prompt_version": S, "model": S,
    },
    "elements": {
        "element_id": S, "scenario": S, "subcategory": S, "kind": S, "text": S, "prompt_version": S,
        "generator": S, "call_key": S, "run_id": S,
    },
    "translations": {
        "translation_id": S, "kind": S, "original_text": S, "text": S, "prompt_version": S, "generator": S,
        "call_key": S, "run_id": S,
    },
    "translated_pairs": {
        "pair_id": S, "dataset": S, "source_file": S, "source_row": I32, "query_translation_id": S,
        "response_translation_id": S, "query_id": S, "response_id": S, "label": S, "run_id": S,
    },
    "predictions": {
        "guard": S, "benchmark": S, "item_id": S, "raw_text": S, "label": S, "how": S, "status": S, "error": S,
        "prompt_version": S, "call_key": S, "run_id": S,
    },
    "splits": {"query_id": S, "split": S, "seed": I32, "run_id": S},
    "split_moves": {"query_id": S, "from_split": S, "to_split": S, "reason": S, "run_id": S},
    "curricula": {
        "curriculum_id": S, "settings_key": S, "status": S, "stage1_export_id": S, "stage1_training_run_id": S,
        "guard": S, "stage2_export_id": S, "stage2_training_run_id": S, "benchmark": S, "summary": S, "run_id": S,
    },
}


def schema(table: str, *columns: str) -> dict[str, pl.DataType]:
    """The declared polars schema of `table`, or of the named columns of it (in that order)."""
    try:
        declared = TABLES[table]
    except KeyError:
        raise KeyError(f"warehouse/schemas.py declares no table {table!r} (declared: {sorted(TABLES)})") from None
    if not columns:
        return dict(declared)
    unknown = [c for c in columns if c not in declared]
    if unknown:
        raise KeyError(f"warehouse/schemas.py: table {table!r} has no columns {unknown}")
    return {c: declared[c] for c in columns}
