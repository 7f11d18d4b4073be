"""Generation calls: one record per generation request a run used, with what it asked for, what passed
the quality gates, what was new, and every rejected item by reason (`generation_calls`).

The same records drive top-ups: a cell that is still short asks again with the next unused sample
index (a new cache key, so a new draw) instead of repeating a call whose answer is already stored.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from libra.tasks.llm.pool import LLMResult
from libra.tasks.synthesis.text_lists import parse_text_list
from libra.warehouse import Warehouse, sql_text
from libra.warehouse.schemas import schema

GENERATION_CALL_COLUMNS = schema("generation_calls")
# The columns that name what a call was for; top-ups count attempts per combination of them.
CELL_COLUMNS = ("scenario", "subcategory", "task_type", "intent", "method", "subject")


@dataclass
class CallOutcome:
    """What one call yielded: items asked for, items through the gates, new rows, rejections by reason."""

    requested: int
    accepted: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


def new_items(res: LLMResult, requested: int, seen: set[str], item_id: Callable[[str], str],
              unchanged_id: str | None = None, **parse_options: Any) -> tuple[CallOutcome, list[tuple[str, str]]]:
    """One generation call's answer -> its outcome and the (id, text) items to store. A failed call,
    items past `requested` (so cells stay balanced), an item equal to its source (`unchanged_id`) and
    an id already in `seen` (stored, or made earlier in the batch) are counted by reason; the ids taken
    join `seen`. parse_options go to textgen.parse_text_list (its quality gates)."""
    outcome = CallOutcome(requested=requested)
    if not res.ok:
        outcome.rejected["call_failed"] += 1
        return outcome, []
    parsed = parse_text_list(res.text, **parse_options)
    outcome.rejected.update(parsed.rejected)
    outcome.accepted = len(parsed.items)
    taken: list[tuple[str, str]] = []
    for i, text in enumerate(parsed.items):
        iid = item_id(text)
        reason = ("beyond_requested" if i >= requested else "unchanged" if iid == unchanged_id
                  else "duplicate_of_earlier" if iid in seen else None)
        if reason:
            outcome.rejected[reason] += 1
            continue
        seen.add(iid)
        outcome.stored += 1
        taken.append((iid, text))
    return outcome, taken


def call_row(res: LLMResult, run_id: str, stage: str, outcome: CallOutcome, **cell: Any) -> dict[str, Any]:
    unknown = set(cell) - set(CELL_COLUMNS)
    if unknown:
        raise TypeError(f"unknown cell columns {sorted(unknown)}")
    return {
        "call_key": res.call_key, "run_id": run_id, "stage": stage,
        **{c: cell.get(c) for c in CELL_COLUMNS},
        "sample_index": res.request.sample_index, "requested": outcome.requested, "accepted": outcome.accepted,
        "stored": outcome.stored, "status": "ok" if res.ok else "failed", "error": res.error,
        "rejected": json.dumps(dict(outcome.rejected), ensure_ascii=False, sort_keys=True),
        "prompt_version": res.request.template_version, "model": res.model,
    }


def call_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=GENERATION_CALL_COLUMNS)


@dataclass(frozen=True)
class Attempts:
    next_index: int  # the first sample index no earlier call of the cell used
    attempts: int    # distinct sample indexes tried so far


def attempts_by_cell(wh: Warehouse, stage: str, cell: tuple[str, ...]) -> dict[tuple, Attempts]:
    """Per combination of the `cell` columns: the next unused sample index and the attempts so far."""
    if not set(cell) <= set(CELL_COLUMNS):
        raise ValueError(f"cell columns must be among {CELL_COLUMNS}")
    frame = wh.query(sql_text("queries/generation_attempts.sql"), {"stage": stage})
    out: dict[tuple, Attempts] = {}
    for row in frame.iter_rows(named=True):
        key = tuple(row[c] for c in cell)
        seen = out.get(key)
        # the SQL groups by every cell column; a coarser key merges its groups
        out[key] = Attempts(
            next_index=max(row["next_index"], seen.next_index if seen else 0),
            attempts=row["attempts"] + (seen.attempts if seen else 0),
        )
    return out
