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
Not wired into the vote views (issue 16 part 2 does that); bench/labels.py measures it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

CLASSES = ("安全", "不安全")


@dataclass
class DawidSkene:
    posterior: pl.DataFrame  # item_id, label (the most probable class), confidence, p_<class> per class
    confusion: pl.DataFrame  # judge, true_label, judge_label, probability, expected_count
    judges: pl.DataFrame     # judge, votes, accuracy (sum_k pi_k theta[k, k]), recall_<class> = theta[k, k]
    priors: dict[str, float]
    iterations: int
    converged: bool


def dawid_skene(votes: pl.DataFrame, classes: Sequence[str] = CLASSES, anchors: pl.DataFrame | None = None,
                max_iter: int = 200, tol: float = 1e-6, smoothing: float = 0.01) -> DawidSkene:
    """votes: item_id, judge, label (one of `classes`; one vote per judge and item); anchors: item_id,
    label — known classes (items without any vote are ignored). Raises ValueError naming a bad label."""
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
    judges = votes["judge"].unique(maintain_order=True).sort()
    item_idx = {v: i for i, v in enumerate(items.to_list())}
    judge_idx = {v: j for j, v in enumerate(judges.to_list())}
    class_idx = {v: c for c, v in enumerate(classes)}
    vi = np.fromiter((item_idx[v] for v in votes["item_id"].to_list()), dtype=np.int64, count=votes.height)
    vj = np.fromiter((judge_idx[v] for v in votes["judge"].to_list()), dtype=np.int64, count=votes.height)
    vl = np.fromiter((class_idx[v] for v in votes["label"].to_list()), dtype=np.int64, count=votes.height)
    n, m = len(items), len(judges)

    # start: the soft majority vote
    post = np.zeros((n, k))
    np.add.at(post, (vi, vl), 1.0)
    post /= post.sum(axis=1, keepdims=True)
    fixed = np.zeros(n, dtype=bool)
    fixed_post = np.zeros((n, k))
    if anchors is not None and anchors.height:
        known = anchors.filter(pl.col("item_id").is_in(items.implode()))
        ai = np.fromiter((item_idx[v] for v in known["item_id"].to_list()), dtype=np.int64, count=known.height)
        al = np.fromiter((class_idx[v] for v in known["label"].to_list()), dtype=np.int64, count=known.height)
        fixed[ai] = True
        fixed_post[ai, al] = 1.0
        post[fixed] = fixed_post[fixed]

    converged, iterations = False, 0
    while iterations < max_iter and not converged:
        iterations += 1
        priors, theta = _m_step(post, vi, vj, vl, m, k, smoothing)
        new = _e_step(priors, theta, vi, vj, vl, n)
        new[fixed] = fixed_post[fixed]
        converged = float(np.abs(new - post).max()) < tol
        post = new
    priors, theta = _m_step(post, vi, vj, vl, m, k, smoothing)
    return _result(post, priors, theta, items, judges, classes, vi, vj, iterations, converged)


def _m_step(post: np.ndarray, vi: np.ndarray, vj: np.ndarray, vl: np.ndarray, m: int, k: int,
            smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    priors = post.mean(axis=0)
    counts = np.full((m, k, k), smoothing)
    for label in range(k):  # counts[j, true, said] += T[i, true] over the votes saying `label`
        said = vl == label
        np.add.at(counts[:, :, label], vj[said], post[vi[said]])
    theta = counts / counts.sum(axis=2, keepdims=True)
    return priors, theta


def _e_step(priors: np.ndarray, theta: np.ndarray, vi: np.ndarray, vj: np.ndarray, vl: np.ndarray,
            n: int) -> np.ndarray:
    log_post = np.tile(np.log(np.maximum(priors, 1e-300)), (n, 1))
    np.add.at(log_post, vi, np.log(theta[vj, :, vl]))  # theta[j, :, l]: P(said l | each true class)
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    return post / post.sum(axis=1, keepdims=True)


def _result(post: np.ndarray, priors: np.ndarray, theta: np.ndarray, items: pl.Series, judges: pl.Series,
            classes: list[str], vi: np.ndarray, vj: np.ndarray, iterations: int, converged: bool) -> DawidSkene:
    best = post.argmax(axis=1)
    posterior = pl.DataFrame({
        "item_id": items, "label": [classes[c] for c in best.tolist()], "confidence": post.max(axis=1),
        **{f"p_{c}": post[:, i] for i, c in enumerate(classes)}})
    k = len(classes)
    expected = np.zeros((len(judges), k))  # expected number of items of each true class a judge saw
    np.add.at(expected, vj, post[vi])
    confusion = pl.DataFrame([
        {"judge": judges[j], "true_label": classes[a], "judge_label": classes[b],
         "probability": float(theta[j, a, b]), "expected_count": float(expected[j, a] * theta[j, a, b])}
        for j in range(len(judges)) for a in range(k) for b in range(k)])
    votes_per_judge = np.bincount(vj, minlength=len(judges))
    judge_rows = pl.DataFrame({
        "judge": judges, "votes": votes_per_judge,
        "accuracy": (theta[:, np.arange(k), np.arange(k)] * priors[None, :]).sum(axis=1),
        **{f"recall_{c}": theta[:, i, i] for i, c in enumerate(classes)}})
    return DawidSkene(posterior, confusion, judge_rows, {c: float(p) for c, p in zip(classes, priors, strict=True)},
                      iterations, converged)
