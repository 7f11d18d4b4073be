"""The synthesis coverage report: what the warehouse holds per scenario x subcategory x task type x
method against the plan's targets, the rejection reasons of a run, and a diversity figure per
subcategory (distinct-2: distinct jieba-token bigrams over all bigrams of its queries; 1.0 = no bigram
repeats, near 0 = the same phrasing over and over). The seed texts are read in keyset pages and kept as
hashes of their distinct bigrams, not as texts."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from libra.tasks.llm.step import PendingQuery, pages
from libra.tasks.reports.tables import markdown_table
from libra.warehouse import Warehouse, sql_text

# A subcategory is "on target" when its harmful seed count is within this share of its target.
TOLERANCE = 0.2
_WORD = re.compile(r"\w")


def tokens(texts: Iterable[str]) -> list[list[str]]:
    """jieba word tokens of each text, punctuation and spaces dropped."""
    with warnings.catch_warnings():  # jieba imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        import jieba  # lazily: it loads its dictionary on first use (about a second)
    jieba.setLogLevel(60)
    return [[t for t in jieba.lcut(text, HMM=True) if _WORD.search(t)] for text in texts]


def ngram_hashes(tokenised: Iterable[list[str]], n: int = 2) -> np.ndarray:
    """A 64-bit hash of every n-gram of the texts (n-grams do not cross texts): what distinct-n counts,
    held as 8 bytes an n-gram rather than a tuple of strings (the hashes are this process's: compare
    them within one report only)."""
    return np.fromiter((hash(tuple(toks[i:i + n])) for toks in tokenised for i in range(len(toks) - n + 1)),
                       dtype=np.int64)


def distinct_n(tokenised: Iterable[list[str]], n: int = 2) -> float | None:
    """Distinct n-grams / all n-grams over the texts (n-grams do not cross texts); None without any."""
    hashes = ngram_hashes(tokenised, n)
    return round(len(np.unique(hashes)) / len(hashes), 4) if len(hashes) else None


SEED_TEXTS = PendingQuery("queries/coverage_seed_texts.sql", (("subcategory", ""), ("query_id", "")))
SEED_PAGE = 20_000


def diversity(pages: Iterable[pl.DataFrame], n: int = 2) -> tuple[pl.DataFrame, float | None]:
    """distinct-n per subcategory of (subcategory, text) pages, and over all of them. Each text is
    tokenised once; of a subcategory only its distinct n-gram hashes are kept (np.unique), so what this
    holds grows with the distinct phrasings, not with the texts."""
    queries: dict[str, int] = {}
    grams: dict[str, int] = {}
    distinct: dict[str, np.ndarray] = {}  # per subcategory, its distinct n-gram hashes so far
    for page in pages:
        for (sub,), part in page.group_by("subcategory", maintain_order=True):
            hashes = ngram_hashes(tokens(part["text"]), n)
            queries[sub] = queries.get(sub, 0) + part.height
            grams[sub] = grams.get(sub, 0) + len(hashes)
            distinct[sub] = np.unique(np.concatenate([distinct.get(sub, hashes[:0]), hashes]))
    rows = [{"subcategory": sub, "queries": queries[sub],
             f"distinct_{n}": round(len(distinct[sub]) / grams[sub], 4) if grams[sub] else None}
            for sub in queries]
    total = sum(grams.values())
    overall = (round(len(np.unique(np.concatenate(list(distinct.values())))) / total, 4)
               if total else None)
    frame = pl.DataFrame(rows, schema={"subcategory": pl.String, "queries": pl.Int64, f"distinct_{n}": pl.Float64})
    return frame, overall


@dataclass
class CoverageReport:
    subcategories: pl.DataFrame      # v_coverage_subcategory + distinct_2
    cells: pl.DataFrame              # v_coverage: scenario x subcategory x task type x method x label
    rejections: dict[str, int]       # this run's rejected items by reason
    headline: dict[str, Any] = field(default_factory=dict)

    def markdown(self, title: str) -> str:
        h = self.headline
        lines = [f"# {title}", ""]
        lines += [f"- **{k.replace('_', ' ')}**: {v}" for k, v in h.items()]
        lines += ["", "## Rejected generated items (this run)", ""]
        if self.rejections:
            ranked = sorted(self.rejections.items(), key=lambda kv: -kv[1])
            lines.append(markdown_table(pl.DataFrame(ranked, schema={"reason": pl.String, "items": pl.Int64},
                                                     orient="row")))
        else:
            lines.append("none")
        off = self.subcategories.filter(~pl.col("on_target"))
        if off.height:
            lines += ["", f"## Subcategories off target (±{TOLERANCE:.0%})", ""]
            lines += [f"- {r['scenario']}/{r['subcategory']}: {r['harmful']} of {r['harmful_target']}"
                      for r in off.iter_rows(named=True)]
        return "\n".join(lines)


def coverage_report(wh: Warehouse, run_id: str | None = None) -> CoverageReport:
    """The coverage of the whole warehouse now, with the rejections of `run_id` (all runs when None)."""
    subs = wh.query(sql_text("queries/coverage_subcategories.sql"))
    div, all_d2 = diversity(pages(wh, SEED_TEXTS, SEED_PAGE))
    div = div.select("subcategory", "distinct_2")
    subs = subs.join(div, on="subcategory", how="left").with_columns(
        on_target=(pl.col("deviation").abs() <= TOLERANCE).fill_null(pl.col("harmful_target") == 0)
    )
    cells = wh.query(sql_text("queries/coverage_cells.sql"))
    rej = wh.query(sql_text("queries/coverage_rejections.sql"), {"run_id": run_id})
    harmful = int(subs["harmful"].sum() or 0)
    benign = int(subs["benign"].sum() or 0)
    planned, reached = wh.query(sql_text("queries/coverage_targets_reached.sql")).row(0)
    headline = {
        "scenarios": subs["scenario"].n_unique(), "subcategories": subs.height,
        "subcategories_on_target": f"{int(subs['on_target'].sum())}/{subs.height} (±{TOLERANCE:.0%})",
        "harmful_seeds": harmful, "benign_look_alikes": benign,
        "benign_ratio": round(benign / harmful, 3) if harmful else None,
        "planned_cells_reached": f"{reached}/{planned}",
        "augmented_children": int(subs["augmented"].sum() or 0),
        "distinct_2_overall": all_d2,
        "distinct_2_lowest": subs["distinct_2"].min(),
    }
    return CoverageReport(subcategories=subs, cells=cells,
                          rejections=dict(zip(rej["reason"].to_list(), rej["n"].to_list(), strict=True)),
                          headline=headline)
