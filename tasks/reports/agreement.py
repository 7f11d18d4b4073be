"""How far the judges' labels can be trusted: agreement figures over a vote table.

Input is a vote table, one row per (response, judge): `response_id`, `judge`, `label` (安全 / 不安全 /
有争议, None = abstention) and optionally `scenario`. Every figure is given for the whole table
(scenario '(all)') and per scenario:

* per judge: agreement with the final label (abstentions count against the judge);
* per judge pair: Cohen's kappa over the responses both labelled, and the confusion of their labels
  (an abstention is the label '(弃权)' there);
* all judges: Fleiss' kappa over the responses every rater labelled.

The same figures exist as warehouse views (warehouse/views/60_annotation.sql); the annotate flow
publishes this module's report as run artifacts. Tests hold both to scikit-learn and statsmodels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from libra.tasks.reports.tables import markdown_table

ALL = "(all)"
NO_SCENARIO = "(none)"
ABSTAIN = "(弃权)"


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when undefined (chance agreement 1)."""
    if len(a) != len(b):
        raise ValueError(f"rater label lists differ in length: {len(a)} vs {len(b)}")
    if not a:
        return None
    categories = sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(categories)}
    ia = np.fromiter((index[x] for x in a), dtype=np.int64, count=len(a))
    ib = np.fromiter((index[x] for x in b), dtype=np.int64, count=len(b))
    observed = float(np.mean(ia == ib))
    pa = np.bincount(ia, minlength=len(categories)) / len(a)
    pb = np.bincount(ib, minlength=len(categories)) / len(b)
    expected = float(pa @ pb)
    return None if expected >= 1.0 else (observed - expected) / (1.0 - expected)


def fleiss_kappa(table: np.ndarray) -> float | None:
    """Fleiss' kappa of an items x categories count table with the same number of raters per item."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] == 0:
        return None
    raters = table.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every item")
    n = raters[0]
    p_items = (np.square(table).sum(axis=1) - n) / (n * (n - 1))
    p_categories = table.sum(axis=0) / table.sum()
    p_bar, p_e = float(p_items.mean()), float(np.square(p_categories).sum())
    return None if p_e >= 1.0 else (p_bar - p_e) / (1.0 - p_e)


def _with_scopes(votes: pl.DataFrame) -> pl.DataFrame:
    """Each row once for '(all)' and once for its own scenario."""
    if "scenario" not in votes.columns:
        votes = votes.with_columns(pl.lit(NO_SCENARIO).alias("scenario"))
    votes = votes.with_columns(pl.col("scenario").fill_null(NO_SCENARIO).cast(pl.String))
    return pl.concat([votes.with_columns(pl.lit(ALL).alias("scenario")), votes])


def _pairs(votes: pl.DataFrame) -> pl.DataFrame:
    """One row per response and judge pair (judge_a < judge_b) with both labels, per scope."""
    keep = ["response_id", "judge", "label", *(["scenario"] if "scenario" in votes.columns else [])]
    scoped = _with_scopes(votes.select(keep))
    left = scoped.rename({"judge": "judge_a", "label": "label_a"})
    right = scoped.select("response_id", "scenario", pl.col("judge").alias("judge_b"), pl.col("label").alias("label_b"))
    return left.join(right, on=["response_id", "scenario"]).filter(pl.col("judge_a") < pl.col("judge_b"))


def judge_agreement(votes: pl.DataFrame, final: pl.DataFrame) -> pl.DataFrame:
    """Per scope and judge: votes on finally-labelled responses, agreements, abstentions, agreement share."""
    joined = _with_scopes(votes).join(
        final.select("response_id", "final_label").filter(pl.col("final_label").is_not_null()), on="response_id"
    )
    return (
        joined.group_by("scenario", "judge")
        .agg(
            pl.len().alias("n"),
            (pl.col("label") == pl.col("final_label")).fill_null(False).sum().alias("n_agree"),
            pl.col("label").is_null().sum().alias("n_abstain"),
        )
        .with_columns((pl.col("n_agree") / pl.col("n")).alias("agreement"))
        .sort("scenario", "judge")
    )


def pair_confusion(votes: pl.DataFrame) -> pl.DataFrame:
    """Per scope and judge pair: counts of (label_a, label_b), abstentions as '(弃权)'."""
    return (
        _pairs(votes)
        .with_columns(pl.col("label_a").fill_null(ABSTAIN), pl.col("label_b").fill_null(ABSTAIN))
        .group_by("scenario", "judge_a", "judge_b", "label_a", "label_b")
        .agg(pl.len().alias("n"))
        .sort("scenario", "judge_a", "judge_b", "label_a", "label_b")
    )


def pairwise_kappa(votes: pl.DataFrame) -> pl.DataFrame:
    """Per scope and judge pair: Cohen's kappa over the responses both judges labelled."""
    both = _pairs(votes).filter(pl.col("label_a").is_not_null() & pl.col("label_b").is_not_null())
    rows = []
    for (scenario, judge_a, judge_b), group in both.group_by("scenario", "judge_a", "judge_b"):
        a, b = group["label_a"].to_list(), group["label_b"].to_list()
        observed = float(np.mean([x == y for x, y in zip(a, b, strict=True)]))
        rows.append({"scenario": scenario, "judge_a": judge_a, "judge_b": judge_b, "n": len(a),
                     "observed": observed, "kappa": cohen_kappa(a, b)})
    schema = {"scenario": pl.String, "judge_a": pl.String, "judge_b": pl.String, "n": pl.Int64,
              "observed": pl.Float64, "kappa": pl.Float64}
    return pl.DataFrame(rows, schema=schema).sort("scenario", "judge_a", "judge_b")


def rating_table(votes: pl.DataFrame) -> tuple[np.ndarray, list[str], int, int]:
    """(items x categories counts, categories, raters, items left out) over the responses every rater
    labelled; raters = the most labels any response has."""
    labelled = votes.filter(pl.col("label").is_not_null())
    per_item = votes.group_by("response_id").agg(pl.col("label").is_not_null().sum().alias("k"))
    raters = int(per_item["k"].max() or 0)
    complete = per_item.filter(pl.col("k") == raters).select("response_id")
    excluded = per_item.height - complete.height
    rows = labelled.join(complete, on="response_id", how="semi")
    categories = sorted(rows["label"].unique().to_list())
    if rows.is_empty():
        return np.zeros((0, 0)), categories, raters, excluded
    wide = (rows.group_by("response_id", "label").agg(pl.len().alias("c"))
            .pivot(on="label", index="response_id", values="c").fill_null(0).sort("response_id"))
    return wide.select(categories).to_numpy(), categories, raters, excluded


def fleiss_by_scenario(votes: pl.DataFrame) -> pl.DataFrame:
    """Per scope: Fleiss' kappa over the responses every rater labelled, and how many were left out."""
    scoped = _with_scopes(votes)
    rows = []
    for (scenario,), group in scoped.group_by("scenario"):
        table, _categories, raters, excluded = rating_table(group)
        kappa = fleiss_kappa(table) if raters >= 2 and table.shape[0] else None
        rows.append({"scenario": scenario, "n_items": int(table.shape[0]), "n_excluded": excluded,
                     "raters": raters, "fleiss_kappa": kappa})
    schema = {"scenario": pl.String, "n_items": pl.Int64, "n_excluded": pl.Int64, "raters": pl.Int64,
              "fleiss_kappa": pl.Float64}
    return pl.DataFrame(rows, schema=schema).sort("scenario")


@dataclass(frozen=True)
class AgreementReport:
    per_judge: pl.DataFrame
    kappa: pl.DataFrame
    confusion: pl.DataFrame
    fleiss: pl.DataFrame

    def overall(self) -> dict[str, object]:
        """The '(all)' figures, for a run summary."""
        fleiss = self.fleiss.filter(pl.col("scenario") == ALL)
        return {
            "fleiss_kappa": fleiss["fleiss_kappa"][0] if fleiss.height else None,
            "judge_agreement": {r["judge"]: round(r["agreement"], 4) for r in
                                self.per_judge.filter(pl.col("scenario") == ALL).iter_rows(named=True)},
            "pair_kappa": {f"{r['judge_a']}~{r['judge_b']}": None if r["kappa"] is None else round(r["kappa"], 4)
                           for r in self.kappa.filter(pl.col("scenario") == ALL).iter_rows(named=True)},
        }

    def markdown(self) -> str:
        def fmt(v: object) -> str:
            return "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

        def table(rows: list[list[object]], header: list[str]) -> str:
            return markdown_table(pl.DataFrame([[fmt(v) for v in row] for row in rows],
                                               schema=dict.fromkeys(header, pl.String), orient="row"), empty="")

        fleiss = table([[r["scenario"], r["n_items"], r["n_excluded"], r["raters"], r["fleiss_kappa"]]
                        for r in self.fleiss.iter_rows(named=True)],
                       ["scope", "items", "left out", "raters", "Fleiss' kappa"])
        kappa = table([[r["scenario"], f"{r['judge_a']} ~ {r['judge_b']}", r["n"], r["observed"], r["kappa"]]
                       for r in self.kappa.iter_rows(named=True)],
                      ["scope", "judge pair", "n", "observed", "Cohen's kappa"])
        judges = table([[r["scenario"], r["judge"], r["n"], r["n_agree"], r["n_abstain"], r["agreement"]]
                        for r in self.per_judge.iter_rows(named=True)],
                       ["scope", "judge", "n", "agree", "abstain", "agreement with final label"])
        return "\n".join(["# Judge agreement", "", fleiss, "", kappa, "", judges])


def agreement_report(votes: pl.DataFrame, final: pl.DataFrame) -> AgreementReport:
    return AgreementReport(
        per_judge=judge_agreement(votes, final),
        kappa=pairwise_kappa(votes),
        confusion=pair_confusion(votes),
        fleiss=fleiss_by_scenario(votes),
    )

