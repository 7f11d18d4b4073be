"""Labels better than a majority: Dawid & Skene (1979), EM over per-judge confusion matrices.

Model: every item i has a true class z_i drawn from priors pi; judge j, shown an item of class k, answers
class l with probability theta_j[k, l] (its confusion matrix), independently of the other judges given
z_i. Majority vote treats a careless judge like a careful one; this model weighs each answer by what the
judge's answers are worth, and a lenient judge (misses unsafe answers more than it flags safe ones) gets
an asymmetric matrix instead of one error rate.

EM, from the soft majority vote:
    M-step  pi_k = mean_i T_ik;  theta_j[k, l] = (sum_i T_ik [j said l on i] + a) / (sum_i T_ik [j voted on i] + K a)
    E-step  T_ik ∝ pi_k prod_{j voted on i} theta_j[k, l_ij]
until the posteriors move by less than `tol`. `a` (smoothing) is a small Dirichlet pseudo-count so that a
judge never seen to err is not taken as infallible. Anchors (items whose class is known: human labels,
adjudications, benchmark items) keep T fixed to their class throughout, so they pin the confusion
matrices (and the label names: EM alone can converge to the swapped solution when most judges are
worse than chance).

Cost: O(votes x K) per iteration, all numpy. Abstentions are not votes: leave them out of the frame.
bench/labels.py measures it on simulated worlds.

In the factory (vote.method dawid_skene, docs/labels.md): the annotate flow, once the votes are stored,
calls store_label_model: EM over the complete votes (warehouse/queries/label_model_votes.sql), anchored
on human labels and decisive adjudications, judges whose errors are correlated on the anchors grouped;
it replaces label_posteriors, label_model_judges and label_model_confusion, which the vote views read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from libra.warehouse import Warehouse, sql_text

CLASSES = ("安全", "不安全")
METHOD = "dawid_skene"


@dataclass
class DawidSkene:
    posterior: pl.DataFrame  # item_id, label (the most probable class), confidence, p_<class> per class
    confusion: pl.DataFrame  # judge, true_label, judge_label, probability, expected_count
    judges: pl.DataFrame     # judge, votes, accuracy (sum_k pi_k theta[k, k]), recall_<class> = theta[k, k]
    priors: dict[str, float]
    iterations: int
    converged: bool


def dawid_skene(votes: pl.DataFrame, classes: Sequence[str] = CLASSES, anchors: pl.DataFrame | None = None,
                groups: Sequence[Sequence[str]] = (), max_iter: int = 200, tol: float = 1e-6,
                smoothing: float = 0.01) -> DawidSkene:
    """votes: item_id, judge, label (one of `classes`; one vote per judge and item); anchors: item_id,
    label — known classes (items without any vote are ignored); groups: judges whose errors are not
    independent (see correlated_judges), each modelled as one judge whose answer is the tuple of its
    members' answers ("安全|-|不安全", "-" = no vote), so their agreement is not counted as independent
    evidence. Raises ValueError naming a bad label, judge or group."""
    classes = list(classes)
    k = len(classes)
    if votes.is_empty():
        raise ValueError("dawid_skene: no votes")
    for frame, name in ((votes, "votes"), (anchors, "anchors")):
        if frame is None:
            continue
        bad = frame.filter(~pl.col("label").is_in(classes))["label"].unique().to_list()
        if bad:
            raise ValueError(f"dawid_skene: {name} has labels outside {classes}: {bad[:5]}")
    if votes.select("item_id", "judge").is_duplicated().any():
        raise ValueError("dawid_skene: more than one vote per (item_id, judge)")

    items = votes["item_id"].unique(maintain_order=True)
    item_idx = {v: i for i, v in enumerate(items.to_list())}
    class_idx = {v: c for c, v in enumerate(classes)}
    n = len(items)
    # start: the soft majority vote of the single votes
    post = np.zeros((n, k))
    np.add.at(post, (_index(votes["item_id"], item_idx), _index(votes["label"], class_idx)), 1.0)
    post /= post.sum(axis=1, keepdims=True)

    answers = _group_votes(votes, groups)
    units = answers["judge"].unique().sort()
    vocabulary = classes + sorted(set(answers["answer"].unique().to_list()) - set(classes))
    unit_idx = {v: j for j, v in enumerate(units.to_list())}
    answer_idx = {v: a for a, v in enumerate(vocabulary)}
    vi, vj, vl = (_index(answers["item_id"], item_idx), _index(answers["judge"], unit_idx),
                  _index(answers["answer"], answer_idx))
    m = len(units)
    # the answers each unit can give: the classes for a judge, the tuples seen for a group
    can_answer = np.zeros((m, len(vocabulary)), dtype=bool)
    can_answer[vj, vl] = True
    can_answer[:, :k] |= ~np.isin(units.to_numpy(), ["+".join(g) for g in groups])[:, None]

    fixed = np.zeros(n, dtype=bool)
    fixed_post = np.zeros((n, k))
    if anchors is not None and anchors.height:
        known = anchors.filter(pl.col("item_id").is_in(items.implode()))
        ai, al = _index(known["item_id"], item_idx), _index(known["label"], class_idx)
        fixed[ai] = True
        fixed_post[ai, al] = 1.0
        post[fixed] = fixed_post[fixed]

    converged, iterations = False, 0
    while iterations < max_iter and not converged:
        iterations += 1
        priors, theta = _m_step(post, vi, vj, vl, can_answer, smoothing)
        new = _e_step(priors, theta, vi, vj, vl, n)
        new[fixed] = fixed_post[fixed]
        converged = float(np.abs(new - post).max()) < tol
        post = new
    priors, theta = _m_step(post, vi, vj, vl, can_answer, smoothing)
    return _result(post, priors, theta, can_answer, items, units, classes, vocabulary, vi, vj, iterations,
                   converged)


def _index(values: pl.Series, index: dict[str, int]) -> np.ndarray:
    return np.fromiter((index[v] for v in values.to_list()), dtype=np.int64, count=len(values))


def _group_votes(votes: pl.DataFrame, groups: Sequence[Sequence[str]]) -> pl.DataFrame:
    """item_id, judge (a judge, or a group named by its members joined with '+'), answer."""
    known = set(votes["judge"].unique().to_list())
    grouped: list[str] = [j for g in groups for j in g]
    if len(grouped) != len(set(grouped)) or any(len(g) < 2 for g in groups):
        raise ValueError(f"dawid_skene: groups must be disjoint, of 2 judges or more: {list(map(list, groups))}")
    unknown = sorted(set(grouped) - known)
    if unknown:
        raise ValueError(f"dawid_skene: groups name judges without votes: {unknown}")
    parts = [votes.filter(~pl.col("judge").is_in(grouped)).select("item_id", "judge", answer="label")]
    for group in groups:
        wide = (votes.filter(pl.col("judge").is_in(list(group)))
                .pivot(on="judge", index="item_id", values="label"))
        parts.append(wide.select("item_id", judge=pl.lit("+".join(group)), answer=pl.concat_str(
            [pl.col(j).fill_null("-") for j in group], separator="|")))
    return pl.concat(parts)


def _m_step(post: np.ndarray, vi: np.ndarray, vj: np.ndarray, vl: np.ndarray, can_answer: np.ndarray,
            smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    priors = post.mean(axis=0)
    m, n_answers = can_answer.shape
    k = post.shape[1]
    counts = np.where(can_answer[:, None, :], smoothing, 0.0) * np.ones((m, k, n_answers))
    for answer in range(n_answers):  # counts[j, true, answer] += T[i, true] over the votes giving it
        said = vl == answer
        if said.any():
            np.add.at(counts[:, :, answer], vj[said], post[vi[said]])
    theta = counts / counts.sum(axis=2, keepdims=True)
    return priors, theta


def _e_step(priors: np.ndarray, theta: np.ndarray, vi: np.ndarray, vj: np.ndarray, vl: np.ndarray,
            n: int) -> np.ndarray:
    log_post = np.tile(np.log(np.maximum(priors, 1e-300)), (n, 1))
    np.add.at(log_post, vi, np.log(theta[vj, :, vl]))  # theta[j, :, l]: P(answer l | each true class)
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    return post / post.sum(axis=1, keepdims=True)


def correlated_judges(votes: pl.DataFrame, reference: pl.DataFrame, min_ratio: float = 2.0,
                      min_both_wrong: int = 5) -> pl.DataFrame:
    """Judge pairs whose errors fall on the same items more than independence allows, measured on items
    whose class is known (reference: item_id, label — human labels, adjudications, benchmark items).
    Per pair: items both judged, both_wrong, expected_both_wrong = sum over classes of n_k x P(a wrong |
    k) x P(b wrong | k), ratio; only pairs with ratio >= min_ratio and both_wrong >= min_both_wrong."""
    judged = votes.join(reference.select("item_id", truth="label"), on="item_id").with_columns(
        wrong=pl.col("label") != pl.col("truth"))
    pairs = judged.join(judged.select("item_id", judge_b="judge", wrong_b="wrong"), on="item_id").filter(
        pl.col("judge") < pl.col("judge_b"))
    per_class = pairs.group_by("judge", "judge_b", "truth").agg(
        n=pl.len(), both=(pl.col("wrong") & pl.col("wrong_b")).sum(), ea=pl.col("wrong").mean(),
        eb=pl.col("wrong_b").mean())
    out = per_class.group_by("judge", "judge_b").agg(
        items=pl.col("n").sum(), both_wrong=pl.col("both").sum(),
        expected_both_wrong=(pl.col("n") * pl.col("ea") * pl.col("eb")).sum())
    return (out.with_columns(ratio=pl.col("both_wrong") / pl.col("expected_both_wrong"))
            .filter((pl.col("ratio") >= min_ratio) & (pl.col("both_wrong") >= min_both_wrong))
            .rename({"judge": "judge_a"}).sort("ratio", descending=True))


def judge_groups(pairs: pl.DataFrame) -> list[list[str]]:
    """Connected judges of correlated pairs (judge_a, judge_b) as disjoint groups, for dawid_skene:
    the connected components of the pair graph (scipy), each group's judges sorted, groups in the
    order of their first judge."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = pairs.select("judge_a", "judge_b").rows()
    judges = sorted({j for edge in edges for j in edge})
    if not judges:
        return []
    index = {j: i for i, j in enumerate(judges)}
    graph = coo_matrix(([1] * len(edges), ([index[a] for a, _ in edges], [index[b] for _, b in edges])),
                       shape=(len(judges), len(judges)))
    _, component = connected_components(graph, directed=False)
    groups: dict[int, list[str]] = {}
    for judge, c in zip(judges, component, strict=True):
        groups.setdefault(int(c), []).append(judge)
    return [g for g in groups.values() if len(g) > 1]


def _result(post: np.ndarray, priors: np.ndarray, theta: np.ndarray, can_answer: np.ndarray, items: pl.Series,
            units: pl.Series, classes: list[str], vocabulary: list[str], vi: np.ndarray, vj: np.ndarray,
            iterations: int, converged: bool) -> DawidSkene:
    best = post.argmax(axis=1)
    posterior = pl.DataFrame({
        "item_id": items, "label": [classes[c] for c in best.tolist()], "confidence": post.max(axis=1),
        **{f"p_{c}": post[:, i] for i, c in enumerate(classes)}})
    k = len(classes)
    expected = np.zeros((len(units), k))  # expected number of items of each true class a judge saw
    np.add.at(expected, vj, post[vi])
    confusion = pl.DataFrame([
        {"judge": units[j], "true_label": classes[a], "judge_label": vocabulary[b],
         "probability": float(theta[j, a, b]), "expected_count": float(expected[j, a] * theta[j, a, b])}
        for j in range(len(units)) for a in range(k) for b in np.flatnonzero(can_answer[j]).tolist()])
    single = can_answer[:, k:].sum(axis=1) == 0  # groups answer tuples: no accuracy of their own
    diag = theta[:, np.arange(k), np.arange(k)]
    judge_rows = pl.DataFrame({
        "judge": units, "votes": np.bincount(vj, minlength=len(units)),
        "accuracy": np.where(single, (diag * priors[None, :]).sum(axis=1), np.nan),
        **{f"recall_{c}": np.where(single, diag[:, i], np.nan) for i, c in enumerate(classes)}}).fill_nan(None)
    return DawidSkene(posterior, confusion, judge_rows, {c: float(p) for c, p in zip(classes, priors, strict=True)},
                      iterations, converged)


def label_model_rows(fit: DawidSkene, run_id: str) -> dict[str, pl.DataFrame]:
    """The fit as rows of label_posteriors, label_model_judges and label_model_confusion."""
    safe, unsafe = CLASSES
    tag = {"method": pl.lit(METHOD), "run_id": pl.lit(run_id)}
    return {
        "label_posteriors": fit.posterior.select(
            response_id="item_id", p_unsafe=pl.col(f"p_{unsafe}"), **tag),
        "label_model_judges": fit.judges.select(
            "judge", votes=pl.col("votes").cast(pl.Int32), accuracy="accuracy",
            recall_safe=f"recall_{safe}", recall_unsafe=f"recall_{unsafe}", **tag),
        "label_model_confusion": fit.confusion.select(
            "judge", "true_label", "judge_label", "probability", "expected_count", **tag),
    }


def fit_label_model(votes: pl.DataFrame, anchors: pl.DataFrame) -> DawidSkene:
    """Dawid-Skene over the factory's votes (item_id, judge, label), anchored on known labels; judges
    whose errors coincide on the anchors (correlated_judges) are modelled as one."""
    known = anchors.filter(pl.col("item_id").is_in(votes["item_id"].implode()))
    groups = judge_groups(correlated_judges(votes, known)) if known.height else []
    return dawid_skene(votes, anchors=known, groups=groups)


def store_label_model(wh: Warehouse, run_id: str, min_confidence: float) -> dict[str, Any]:
    """Fit the label model over the warehouse's complete votes and store it (replacing the last fit);
    returns the summary figures. Nothing to fit (no complete vote yet): stores nothing."""
    votes = wh.query(sql_text("queries/label_model_votes.sql"))
    if votes.is_empty():
        return {"items": 0}
    anchors = wh.query(sql_text("queries/label_model_anchors.sql"))
    fit = fit_label_model(votes, anchors)
    rows = label_model_rows(fit, run_id)
    with wh.writer():  # one fit replaces the last one as a whole
        wh.execute(sql_text("queries/clear_label_model.sql"))
        for table, frame in rows.items():
            wh.insert(table, frame)
    judges = {r["judge"]: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "judge"}
              for r in fit.judges.iter_rows(named=True)}
    return {
        "items": fit.posterior.height, "anchors": int(anchors["item_id"].is_in(votes["item_id"].implode()).sum()),
        "iterations": fit.iterations, "converged": fit.converged,
        "priors": {c: round(p, 4) for c, p in fit.priors.items()},
        "low_confidence": int((fit.posterior["confidence"] < min_confidence).sum()),
        "judges": judges,
    }


def judge_chart(judges: pl.DataFrame, path: Path) -> Path:
    """A PNG of the label model's estimate of each judge (rows of v_label_model_judges): accuracy and the
    two diagonal entries of its confusion matrix. A lenient judge shows a low P(不安全 | 不安全) bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = judges.filter(pl.col("accuracy").is_not_null()).sort("judge")  # groups have no accuracy
    bars = (("accuracy", "accuracy"), ("recall_safe", "P(says safe | safe)"),
            ("recall_unsafe", "P(says unsafe | unsafe)"))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 * data.height), 4.0))
    width = 0.27
    xs = list(range(data.height))
    for i, (column, name) in enumerate(bars):
        ax.bar([x + (i - 1) * width for x in xs], data[column].to_list(), width, label=name)
    ax.set_xticks(xs, data["judge"].to_list())
    ax.set_ylim(0, 1)
    ax.set_title("judges as the label model (Dawid-Skene) estimates them")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
