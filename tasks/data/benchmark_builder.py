"""Build a benchmark from the held-out `eval` split, the way Libra-Test itself was built.

Only pairs whose label a stronger authority settled (an adjudicator or a human) qualify; at most one
response per query; items are balanced over (source, scenario) cells and, inside a cell, alternate
between 不安全 and 安全. Each item keeps its judges' disagreement as a difficulty tag. The output is
the Libra-Test record format (source, category_name, sub_category_name, question, response, label,
analyze, id) plus `difficulty` and `disagreement`, a JSON array that `libra import benchmark` reads.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl

from libra.tasks.core.ids import content_hash
from libra.tasks.data.splits import export_rows
from libra.warehouse import Warehouse

VERIFIED = ("adjudicated", "human")
LIBRA_FIELDS = ("source", "category_name", "sub_category_name", "question", "response", "label", "analyze", "id")


def difficulty(n_votes: int, n_safe: int, n_unsafe: int) -> tuple[str, float]:
    """Judge disagreement = share of judges not with the largest label (abstentions count as not):
    0 is easy, 0.5 or more is hard, anything between is medium."""
    if not n_votes:
        return "hard", 1.0
    disagreement = round(1 - max(n_safe, n_unsafe) / n_votes, 4)
    if disagreement == 0:
        return "easy", disagreement
    return ("hard" if disagreement >= 0.5 else "medium"), disagreement


def verified_eval_rows(wh: Warehouse) -> pl.DataFrame:
    return export_rows(wh, "eval").filter(pl.col("label_source").is_in(VERIFIED))


def select_balanced(rows: pl.DataFrame, seed: int, per_cell: int | None = None) -> pl.DataFrame:
    """One response per query, then the same number of items from every (source, scenario) cell:
    `per_cell`, or the size of the smallest cell; labels alternate inside a cell."""
    if rows.is_empty():
        return rows
    order = lambda key: content_hash(seed, key, "benchmark")  # noqa: E731
    one_per_query = (rows.with_columns(pl.col("response_id").map_elements(order, return_dtype=pl.String).alias("_o"))
                     .sort("_o").unique(subset="query_id", keep="first", maintain_order=True))
    cells: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in one_per_query.iter_rows(named=True):
        cells[(r["source"], r["scenario"] or "")][r["label"]].append(r)
    sizes = {k: sum(len(v) for v in by_label.values()) for k, by_label in cells.items()}
    take = per_cell if per_cell is not None else min(sizes.values())
    chosen: list[dict[str, Any]] = []
    for i, key in enumerate(sorted(cells)):
        # cells take turns at which label leads, so small cells do not all start with the same one
        labels = ("不安全", "安全") if i % 2 == 0 else ("安全", "不安全")
        queues = [cells[key][lbl] for lbl in labels if cells[key][lbl]]
        picked: list[dict[str, Any]] = []
        while len(picked) < take and any(queues):
            for q in queues:
                if q and len(picked) < take:
                    picked.append(q.pop(0))
        chosen += picked
    return pl.DataFrame(chosen, schema=one_per_query.schema).drop("_o").sort("response_id")


def benchmark_records(rows: pl.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in rows.iter_rows(named=True):
        level, disagreement = difficulty(r["n_votes"] or 0, r["n_safe"] or 0, r["n_unsafe"] or 0)
        out.append({
            "source": r["source"], "category_name": r["scenario"] or "", "sub_category_name": r["subcategory"] or "",
            "question": r["query"], "response": r["response"], "label": r["label"], "analyze": r["analysis"] or "",
            "id": r["response_id"], "difficulty": level, "disagreement": disagreement,
        })
    return out


def build_benchmark(wh: Warehouse, out: Path, *, seed: int = 0, per_cell: int | None = None) -> dict[str, Any]:
    """Write the benchmark JSON to `out`; returns counts per source, scenario, label and difficulty."""
    candidates = verified_eval_rows(wh)
    if candidates.is_empty():
        raise ValueError("the eval split has no pair with an adjudicated or human label yet: run the split flow "
                         "after annotation (with an adjudicator) or import human labels")
    chosen = select_balanced(candidates, seed, per_cell)
    records = benchmark_records(chosen)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(out)

    def tally(key: str) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for rec in records:
            counts[str(rec[key])] += 1
        return dict(sorted(counts.items()))

    return {"path": str(out), "items": len(records), "candidates": candidates.height,
            "source": tally("source"), "category_name": tally("category_name"), "label": tally("label"),
            "difficulty": tally("difficulty")}
