"""How far the judges' labels can be trusted: the agreement figures of the warehouse views, as a report.

Every figure is computed once, in SQL (warehouse/views/60_annotation.sql), for the whole warehouse
(scenario '(all)') and per scenario:

* per judge: agreement with the final label (abstentions count against the judge), v_judge_agreement_by_scenario;
* per judge pair: Cohen's kappa over the responses both labelled (v_judge_kappa) and the confusion of their
  labels (v_judge_confusion; an abstention is the label '(弃权)' there);
* all judges: Fleiss' kappa over the responses every rater labelled (v_fleiss_kappa).

This module reads them and lays them out for the annotate flow's artifacts and run summary; the views
round to 4 places. tests/tasks/reports/test_agreement.py holds the views to scikit-learn and statsmodels.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from libra.tasks.reports.tables import markdown_table
from libra.warehouse import Warehouse, sql_text

ALL = "(all)"
ABSTAIN = "(弃权)"


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


def agreement_report(wh: Warehouse) -> AgreementReport:
    """The agreement views as they stand; empty frames when nothing is voted yet."""
    return AgreementReport(
        per_judge=wh.query(sql_text("queries/agreement_per_judge.sql")),
        kappa=wh.query(sql_text("queries/agreement_pair_kappa.sql")),
        confusion=wh.query(sql_text("queries/agreement_pair_confusion.sql")),
        fleiss=wh.query(sql_text("queries/agreement_fleiss.sql")),
    )
