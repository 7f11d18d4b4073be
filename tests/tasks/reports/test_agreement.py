"""The agreement views (warehouse/views/60_annotation.sql, read by tasks/reports/agreement.py) equal
scikit-learn and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from libra.tasks.reports import agreement
from tests.tasks.annotation_data import SCENARIOS, generated_votes, warehouse_with_votes

SCOPES = (agreement.ALL, *SCENARIOS)


def _scope(votes: pl.DataFrame, scope: str) -> pl.DataFrame:
    return votes if scope == agreement.ALL else votes.filter(pl.col("scenario") == scope)


def _wide(votes: pl.DataFrame) -> pl.DataFrame:
    return votes.pivot(on="judge", index="response_id", values="label").sort("response_id")


def _reference_kappa(votes: pl.DataFrame, a: str, b: str) -> tuple[int, float]:
    both = _wide(votes).filter(pl.col(a).is_not_null() & pl.col(b).is_not_null())
    return both.height, cohen_kappa_score(both[a].to_list(), both[b].to_list())


def _reference_fleiss(votes: pl.DataFrame) -> tuple[int, float]:
    wide = _wide(votes)
    judges = [c for c in wide.columns if c != "response_id"]
    complete = wide.drop_nulls(judges)
    codes = {label: i for i, label in enumerate(sorted(set(complete.select(judges).to_numpy().ravel())))}
    data = np.vectorize(codes.get)(complete.select(judges).to_numpy())
    table, _ = aggregate_raters(data, n_cat=len(codes))
    return complete.height, sm_fleiss_kappa(table, method="fleiss")


@pytest.fixture(scope="module")
def votes() -> pl.DataFrame:
    return generated_votes()


@pytest.fixture(scope="module")
def wh(votes, tmp_path_factory):
    return warehouse_with_votes(tmp_path_factory.mktemp("agreement") / "a.duckdb", votes.drop("truth"))


@pytest.mark.parametrize("scope", SCOPES)
def test_pairwise_kappa_equals_sklearn_per_scope(votes, wh, scope) -> None:
    view = wh.query("SELECT * FROM v_judge_kappa WHERE scenario = ?", [scope])
    assert view.height == 3  # three judge pairs
    for sql in view.iter_rows(named=True):
        n, ref = _reference_kappa(_scope(votes, scope), sql["judge_a"], sql["judge_b"])
        assert sql["n"] == n
        assert sql["kappa"] == pytest.approx(ref, abs=6e-5)  # the view rounds to 4 places


@pytest.mark.parametrize("scope", SCOPES)
def test_fleiss_kappa_equals_statsmodels_per_scope(votes, wh, scope) -> None:
    n, ref = _reference_fleiss(_scope(votes, scope))
    sql = wh.query("SELECT * FROM v_fleiss_kappa WHERE scenario = ?", [scope]).row(0, named=True)
    assert sql["n_items"] == n
    assert sql["raters"] == 3
    total = _scope(votes, scope)["response_id"].n_unique()
    assert sql["n_excluded"] == total - n
    assert sql["fleiss_kappa"] == pytest.approx(ref, abs=6e-5)


def test_confusion_per_pair_equals_sklearn(votes, wh) -> None:
    labels = ["不安全", "安全", "有争议", agreement.ABSTAIN]
    wide = _wide(votes).fill_null(agreement.ABSTAIN)
    view = agreement.agreement_report(wh).confusion.filter(pl.col("scenario") == agreement.ALL)
    for a, b in [("judge-a", "judge-b"), ("judge-a", "judge-c"), ("judge-b", "judge-c")]:
        ref = confusion_matrix(wide[a].to_list(), wide[b].to_list(), labels=labels)
        for frame in (view,):
            got = np.zeros_like(ref)
            for r in frame.filter((pl.col("judge_a") == a) & (pl.col("judge_b") == b)).iter_rows(named=True):
                got[labels.index(r["label_a"]), labels.index(r["label_b"])] = r["n"]
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("scope", SCOPES)
def test_judge_agreement_with_final_label(votes, wh, scope) -> None:
    final = wh.query("SELECT response_id, final_label FROM v_final_labels")
    view = wh.query("SELECT * FROM v_judge_agreement_by_scenario WHERE scenario = ?", [scope])
    joined = _scope(votes, scope).join(final.drop_nulls(), on="response_id")
    assert view.height == 3
    for sql in view.iter_rows(named=True):
        mine = joined.filter(pl.col("judge") == sql["judge"])
        ref = float(np.mean([x == y for x, y in zip(mine["label"].to_list(), mine["final_label"].to_list(), strict=True)]))
        assert sql["n"] == mine.height
        assert sql["n_abstain"] == mine["label"].null_count()
        assert sql["agreement"] == pytest.approx(ref, abs=6e-5)
    if scope == agreement.ALL:  # the unscoped view of the foundation agrees with the scoped one
        plain = wh.query("SELECT judge, agreement FROM v_judge_agreement ORDER BY judge")
        assert plain["agreement"].to_list() == view.sort("judge")["agreement"].to_list()


def test_report_summary_and_markdown(votes, wh) -> None:
    report = agreement.agreement_report(wh)
    overall = report.overall()
    assert set(overall["judge_agreement"]) == {"judge-a", "judge-b", "judge-c"}
    # the generated judge with the highest error rate (0.3) agrees least with the majority
    assert min(overall["judge_agreement"], key=overall["judge_agreement"].get) == "judge-c"
    assert not math.isnan(overall["fleiss_kappa"])
    md = report.markdown()
    assert "Fleiss' kappa" in md and "judge-a ~ judge-b" in md and "身心健康" in md
