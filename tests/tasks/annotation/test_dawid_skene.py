"""Dawid–Skene EM against simulated judges whose confusion matrices are known."""

import numpy as np
import polars as pl
import pytest

from libra.tasks.annotation.dawid_skene import (
    code_votes,
    correlated_judges,
    dawid_skene,
    fit_coded,
    judge_groups,
)

SAFE, UNSAFE = "安全", "不安全"


def simulate(n: int, judges: dict[str, tuple[float, float]], p_unsafe: float = 0.4, seed: int = 0):
    """judges: name -> (P(says unsafe | safe), P(says safe | unsafe)). Returns (truth, votes)."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < p_unsafe  # True = unsafe
    rows = []
    for name, (false_alarm, miss) in judges.items():
        flip = rng.random(n) < np.where(truth, miss, false_alarm)
        said_unsafe = truth ^ flip
        rows.append(pl.DataFrame({"item_id": [f"i{i}" for i in range(n)], "judge": name,
                                  "label": np.where(said_unsafe, UNSAFE, SAFE)}))
    return pl.Series("truth", np.where(truth, UNSAFE, SAFE)), pl.concat(rows)


def majority(votes: pl.DataFrame) -> pl.DataFrame:
    return (votes.group_by("item_id").agg((pl.col("label") == UNSAFE).mean().alias("u"))
            .select("item_id", label=pl.when(pl.col("u") > 0.5).then(pl.lit(UNSAFE)).otherwise(pl.lit(SAFE))))


def error(labels: pl.DataFrame, truth: pl.Series) -> float:
    want = pl.DataFrame({"item_id": [f"i{i}" for i in range(len(truth))], "truth": truth})
    joined = labels.join(want, on="item_id")
    return float((joined["label"] != joined["truth"]).mean())


# two lenient judges (miss unsafe answers far more than they flag safe ones) and a careless one outvote
# two careful judges on exactly the unsafe answers the lenient ones miss
BIASED = {"lenient1": (0.02, 0.45), "lenient2": (0.04, 0.40), "careless": (0.30, 0.30), "good1": (0.05, 0.05),
          "good2": (0.08, 0.08)}


def test_recovers_asymmetric_confusion_matrices_and_beats_the_majority():
    truth, votes = simulate(4000, BIASED)
    ds = dawid_skene(votes)
    assert ds.converged
    conf = {(r["judge"], r["true_label"], r["judge_label"]): r["probability"] for r in ds.confusion.iter_rows(named=True)}
    for name, (false_alarm, miss) in BIASED.items():
        assert conf[(name, SAFE, UNSAFE)] == pytest.approx(false_alarm, abs=0.03)
        assert conf[(name, UNSAFE, SAFE)] == pytest.approx(miss, abs=0.03)
    assert ds.priors[UNSAFE] == pytest.approx(0.4, abs=0.03)
    assert error(ds.posterior, truth) < 0.7 * error(majority(votes), truth)
    # posteriors are probabilities and the label is the most probable class
    post = ds.posterior
    assert np.allclose(post[f"p_{SAFE}"] + post[f"p_{UNSAFE}"], 1.0)
    assert ((post[f"p_{UNSAFE}"] > 0.5) == (post["label"] == UNSAFE)).all()
    acc = dict(ds.judges.select("judge", "accuracy").iter_rows())
    assert acc["careless"] == pytest.approx(0.70, abs=0.03) and acc["good1"] == pytest.approx(0.95, abs=0.02)


def test_on_symmetric_independent_judges_it_is_no_worse_than_the_majority():
    truth, votes = simulate(4000, {"a": (0.03, 0.03), "b": (0.10, 0.10), "c": (0.20, 0.20)}, seed=1)
    # the stub's judges (error 0.03 / 0.10 / 0.20): when the best judge is outvoted, both readings are
    # about equally likely (0.0216 vs 0.0194), so the two rules differ on a handful of items either way
    assert error(dawid_skene(votes).posterior, truth) <= error(majority(votes), truth) + 0.003


def test_anchors_stay_fixed_and_undo_a_swapped_solution():
    # two judges worse than chance outvote one good judge: EM from the majority converges to the
    # swapped labels; a few known labels pin the classes
    truth, votes = simulate(1500, {"bad1": (0.7, 0.7), "bad2": (0.7, 0.7), "good": (0.05, 0.05)}, seed=2)
    free = dawid_skene(votes)
    assert error(free.posterior, truth) > 0.5
    anchors = pl.DataFrame({"item_id": [f"i{i}" for i in range(100)], "label": truth[:100]})
    pinned = dawid_skene(votes, anchors=anchors)
    assert error(pinned.posterior, truth) < 0.1
    got = pinned.posterior.join(anchors, on="item_id", suffix="_known")
    assert (got["label"] == got["label_known"]).all() and (got["confidence"] == 1.0).all()


def test_missing_votes_and_bad_input():
    votes = pl.DataFrame({"item_id": ["x", "x", "y"], "judge": ["a", "b", "a"], "label": [SAFE, SAFE, UNSAFE]})
    ds = dawid_skene(votes)
    assert dict(ds.judges.select("judge", "votes").iter_rows()) == {"a": 2, "b": 1}
    with pytest.raises(ValueError, match="labels outside"):
        dawid_skene(votes.with_columns(label=pl.lit("unsafe")))
    with pytest.raises(ValueError, match="more than one vote"):
        dawid_skene(pl.concat([votes, votes.head(1)]))
    with pytest.raises(ValueError, match="no votes"):
        dawid_skene(votes.clear())


def twins_world(n: int, seed: int = 3):
    """A lenient and a strict judge, and two twins whose errors fall on the same 12% of the items."""
    truth, votes = simulate(n, {"lenient": (0.02, 0.45), "strict": (0.30, 0.02)}, seed=seed)
    rng = np.random.default_rng(seed + 100)
    unsafe = (truth == UNSAFE).to_numpy()
    err = np.where(rng.random(n) < 0.12, 0.75, 0.02)
    for name in ("twin-a", "twin-b"):
        said = unsafe ^ (rng.random(n) < err)
        votes = pl.concat([votes, pl.DataFrame({"item_id": [f"i{i}" for i in range(n)], "judge": name,
                                                "label": np.where(said, UNSAFE, SAFE)})])
    return truth, votes


def test_correlated_judges_are_found_on_known_labels_and_modelled_as_one():
    truth, votes = twins_world(8000)
    anchors = pl.DataFrame({"item_id": [f"i{i}" for i in range(200)], "label": truth[:200]})
    pairs = correlated_judges(votes, anchors)
    assert pairs.select("judge_a", "judge_b").rows() == [("twin-a", "twin-b")] and pairs["ratio"][0] > 3
    groups = judge_groups(pairs)
    assert groups == [["twin-a", "twin-b"]]
    # independent Dawid–Skene trusts the twins' agreement and loses to the majority; modelled as one
    # judge (answers: the pair of their labels) it wins over the majority and over every single judge
    plain, grouped = dawid_skene(votes, anchors=anchors), dawid_skene(votes, anchors=anchors, groups=groups)
    maj = error(majority(votes), truth)  # ties: the majority() helper says 安全
    best_single = min(error(votes.filter(pl.col("judge") == j).select("item_id", "label"), truth)
                      for j in votes["judge"].unique())
    assert error(plain.posterior, truth) > error(grouped.posterior, truth)
    assert error(grouped.posterior, truth) < min(maj, best_single)
    assert "twin-a+twin-b" in grouped.judges["judge"].to_list()
    assert grouped.confusion.filter(pl.col("judge") == "twin-a+twin-b")["judge_label"].unique().sort().to_list() == [
        "不安全|不安全", "不安全|安全", "安全|不安全", "安全|安全"]
    with pytest.raises(ValueError, match="without votes"):
        dawid_skene(votes, groups=[["twin-a", "nobody"]])


def test_votes_coded_page_by_page_fit_as_the_whole_frame_with_a_group_missing_from_some_pages():
    truth, votes = twins_world(3000)
    anchors = pl.DataFrame({"item_id": [f"i{i}" for i in range(200)], "label": truth[:200]})
    groups = judge_groups(correlated_judges(votes, anchors))
    # items in their order, every vote of an item in one page; one twin gives no vote in the third
    # page, which sees the group's other members only
    votes = (votes.with_columns(n=pl.col("item_id").str.slice(1).cast(pl.Int64))
             .filter(~((pl.col("judge") == "twin-b") & pl.col("n").is_between(1400, 2099))).sort("n", "judge"))
    pages = [votes.filter((pl.col("n") >= lo) & (pl.col("n") < lo + 700)).drop("n") for lo in range(0, 3000, 700)]
    whole = dawid_skene(votes.drop("n"), anchors=anchors, groups=groups)
    paged = fit_coded(code_votes(pages, groups=groups), anchors)
    assert len(pages) == 5 and any({"twin-a", "twin-b"} <= set(g) for g in groups)
    assert paged.posterior.equals(whole.posterior) and paged.judges.equals(whole.judges)
    assert paged.confusion.equals(whole.confusion) and paged.iterations == whole.iterations
    # the tuples with the twin's vote missing
    assert any("-" in answer.split("|") for answer in paged.confusion["judge_label"].to_list())
