"""The review page's logic (`libra review`): which items an annotator sees, what each shows, progress,
and label writes — plain functions over the warehouse, no web code (flows/review_app.py serves them).

Reads go through the warehouse's reader path (a shared lock for milliseconds), so the page answers
while a flow writes. A label is one row of `human_labels`, written in its own short transaction with
the same validation as `libra import-labels` (a voted response, 安全 / 不安全 / 有争议) and the same
precedence afterwards (human > adjudicated > majority, v_final_labels). Each annotator of a page
session gets one `runs` row (flow 'review'); relabelling an item in the session replaces that
annotator's row, and undo deletes it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import polars as pl

from libra.tasks.annotation.human_labels import known_response_ids, label_problem, normalise_label
from libra.tasks.core.errors import InputError
from libra.tasks.core.runs import finish_run, start_run
from libra.warehouse import Warehouse, WarehouseError, sql_text

SOURCE_FILE = "libra review"
MAX_NOTE_CHARS = 4000
MAX_SECONDS = 24 * 3600.0
ANNOTATOR_NAME = re.compile(r"^[\w.@+-]{1,64}$")
# A Dawid–Skene posterior shows on the page when the warehouse has this relation (response_id, p_unsafe).
POSTERIOR_RELATION = "v_label_posteriors"


class ReviewError(InputError):
    """A page request that cannot be honoured (unknown item, bad label or annotator); nothing is stored."""


@dataclass(frozen=True)
class ReviewFilter:
    """What the page lists: hard samples (scope 'hard') or every labelled response (scope 'all'), narrowed
    by scenario, subcategory, hard reason (its kind: 'disagreement', 'guard_disagreement', …), query
    source and final label. None matches everything."""

    scope: str = "hard"
    scenario: str | None = None
    subcategory: str | None = None
    hard_reason: str | None = None
    source: str | None = None
    label: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, str], default_scope: str = "hard") -> ReviewFilter:
        values = {f.name: (params.get(f.name) or None) for f in fields(cls)}
        values["scope"] = values["scope"] or default_scope
        if values["scope"] not in ("hard", "all"):
            raise ReviewError(f"scope {values['scope']!r}: use hard or all")
        return cls(**values)

    def sql_params(self, annotator: str) -> dict[str, Any]:
        return {"annotator": annotator, "hard_only": self.scope == "hard", "scenario": self.scenario,
                "subcategory": self.subcategory, "hard_reason": self.hard_reason, "source": self.source,
                "label": self.label}


def check_annotator(name: str | None) -> str:
    if not name or not ANNOTATOR_NAME.match(name):
        raise ReviewError(f"annotator {name!r}: 1-64 letters, digits or . _ @ + -")
    return name


def where_sql(where: str) -> str:
    """The query of a `--where` predicate over v_dataset's columns: the ids it keeps."""
    return sql_text("queries/review_where.sql").format(where=where)


def check_where(wh: Warehouse, where: str) -> int:
    """Run a `--where` predicate once as a user's SQL (one SELECT on the locked-down connection that
    `libra sql` uses: no files, no extensions, no settings); returns how many responses it keeps."""
    try:
        return wh.read_only_query(where_sql(where)).height
    except WarehouseError as e:
        raise ReviewError(f"--where {where!r}: {e}") from None


def review_items(wh: Warehouse, filt: ReviewFilter, annotator: str, where: str | None = None) -> pl.DataFrame:
    """The listed items in page order: id, scenario, subcategory, hard_reason, source, final_label,
    label_source, n_annotators, pair_agreement, my_label. `where`: a predicate over v_dataset that
    `check_where` accepted (the operator's, from the command line; never from the page)."""
    items = wh.query(sql_text("queries/review_items.sql"), filt.sql_params(annotator))
    if where:
        keep = wh.query(where_sql(where))["response_id"]
        items = items.filter(pl.col("id").is_in(keep.implode()))
    return items


def needs_label(items: pl.DataFrame, per_item: int) -> pl.Series:
    """Items still waiting for this annotator: not labelled by them, and fewer than `per_item` annotators."""
    return (items["my_label"].is_null() & (items["n_annotators"] < per_item)).alias("needs_me")


def progress(items: pl.DataFrame, per_item: int) -> dict[str, Any]:
    """Counts for the progress bar; agreement is over the complete items with two or more annotators."""
    complete = items.filter(pl.col("n_annotators") >= per_item)
    rated = complete.filter(pl.col("pair_agreement").is_not_null())
    return {
        "total": items.height,
        "complete": complete.height,
        "mine": int(items["my_label"].is_not_null().sum()),
        "waiting_for_me": int(needs_label(items, per_item).sum()),
        "per_item": per_item,
        "agreement": round(float(rated["pair_agreement"].mean()), 4) if rated.height else None,
        "agreement_items": rated.height,
    }


def filter_options(wh: Warehouse) -> dict[str, list[str]]:
    """The values each filter can take, from the whole of v_dataset."""
    frame = wh.query(sql_text("queries/review_filter_options.sql"))
    return {name: sorted(v for v in frame.filter(pl.col("name") == name)["value"].to_list() if v is not None)
            for name in ("scenario", "subcategory", "hard_reason", "source", "label")}


def review_item(wh: Warehouse, response_id: str, annotator: str, per_item: int) -> dict[str, Any]:
    """Everything the page shows about one item. Other annotators' labels stay hidden until the item has
    its `per_item` annotators (so they do not sway the next one); then they show with their agreement."""
    with wh.reader() as con:  # one open of the file for the item and its posterior
        cursor = con.execute(sql_text("queries/review_item.sql"), {"id": response_id})
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        posterior = None
        if rows and con.execute(sql_text("queries/relation_exists.sql"), [POSTERIOR_RELATION]).fetchall()[0][0]:
            posterior = con.execute(sql_text("queries/label_posterior.sql"), [response_id]).fetchall()[0][0]
    if not rows:
        raise ReviewError(f"unknown item {response_id!r} (no labelled response has it)")
    item = dict(zip(names, rows[0]))
    humans = item.pop("human_labels") or []
    item["my_label"] = next((h["label"] for h in humans if h["annotator"] == annotator), None)
    item["my_note"] = next((h["note"] for h in humans if h["annotator"] == annotator), None)
    item["n_annotators"] = len(humans)
    item["others"] = ([{"annotator": h["annotator"], "label": h["label"]} for h in humans
                       if h["annotator"] != annotator] if len(humans) >= per_item else None)
    item["p_unsafe"] = float(posterior) if posterior is not None else None
    for key in ("votes", "adjudications", "guards"):
        item[key] = item[key] or []
    return item


class ReviewSession:
    """The writes of one page session: a `runs` row per annotator, opened on their first label."""

    def __init__(self, wh: Warehouse):
        self.wh = wh
        self._runs: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def _run_id(self, annotator: str) -> str:
        with self._lock:
            if annotator not in self._runs:
                self._runs[annotator] = start_run(self.wh, "review", None)
                self._counts[annotator] = 0
            return self._runs[annotator]

    def save_label(self, response_id: str, label: str, annotator: str, note: str | None = None,
                   seconds: float | None = None) -> str:
        """Store (or, within this session, replace) the annotator's label; returns the stored label."""
        check_annotator(annotator)
        if problem := label_problem(label or ""):
            raise ReviewError(problem)
        if not known_response_ids(self.wh, {response_id}):
            raise ReviewError(f"unknown id {response_id!r} (no voted response has it)")
        note = (note or "").strip() or None
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise ReviewError(f"the note has {len(note)} characters (at most {MAX_NOTE_CHARS})")
        run_id = self._run_id(annotator)
        if seconds is not None:
            seconds = min(max(float(seconds), 0.0), MAX_SECONDS)
        else:  # a note added to a labelled item keeps the time the label took
            seconds = self.wh.scalar(sql_text("queries/session_label_seconds.sql"), [response_id, run_id])
        canonical = normalise_label(label)
        row = pl.DataFrame([{
            "response_id": response_id, "label": canonical, "annotator": annotator, "note": note,
            "source_file": SOURCE_FILE, "source_line": None, "seconds_spent": seconds,
            "run_id": run_id, "created_at": datetime.now(UTC).replace(tzinfo=None),
        }], schema={"response_id": pl.String, "label": pl.String, "annotator": pl.String, "note": pl.String,
                    "source_file": pl.String, "source_line": pl.Int32, "seconds_spent": pl.Float64,
                    "run_id": pl.String, "created_at": pl.Datetime("us")})
        self.wh.insert("human_labels", row, on_conflict="replace")
        with self._lock:
            self._counts[annotator] += 1
        return canonical

    def undo(self, response_id: str, annotator: str) -> bool:
        """Delete the annotator's label of this session for the item; False when there was none."""
        check_annotator(annotator)
        run_id = self._runs.get(annotator)
        if run_id is None:
            return False
        with self.wh.writer() as con:
            found = con.execute(sql_text("queries/session_label_count.sql"), [response_id, run_id]).fetchall()[0][0]
            con.execute(sql_text("queries/delete_session_label.sql"), [response_id, run_id])
        return bool(found)

    def label_now(self, response_id: str, annotator: str) -> str | None:
        """The annotator's label of the item from any session or import (None: not labelled by them)."""
        return self.wh.scalar(sql_text("queries/annotator_label.sql"), [response_id, annotator])

    def close(self) -> None:
        """Mark the session's runs completed, with how many labels each annotator stored."""
        for annotator, run_id in self._runs.items():
            stored = self.wh.scalar(sql_text("queries/run_label_count.sql"), [run_id])
            finish_run(self.wh, run_id, "completed", {"annotator": annotator, "labels": stored,
                                                      "writes": self._counts.get(annotator, 0)})
        self._runs.clear()
