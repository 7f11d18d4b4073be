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
calls store_label_model: EM over the complete votes (v_label_model_votes, read in keyset pages of whole
items and held as integer codes: code_votes), anchored on human labels and decisive adjudications, judges
whose errors are correlated on the anchors grouped; it replaces label_posteriors, label_model_judges and
label_model_confusion, which the vote views read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
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
    return fit_coded(code_votes([votes], classes, groups), anchors, max_iter, tol, smoothing)


@dataclass
class CodedVotes:
    """Votes as small integer arrays, read page by page: what the EM holds (8 bytes a vote, and the
    item ids) instead of the votes' text columns. A grouped judge's votes are one answer (the tuple)."""

    classes: list[str]
    items: pl.Series          # item ids; an item's code is its position
    units: list[str]          # judges and groups ("a+b"), sorted
    vocabulary: list[str]     # the classes, then the group tuples seen, sorted
    vi: np.ndarray            # per answer: item code
    vj: np.ndarray            # per answer: unit code
    vl: np.ndarray            # per answer: answer code
    start: np.ndarray         # items x classes: the soft majority vote of the single votes
    groups: list[str]         # the groups' unit names


class NoVotes(ValueError):
    """Nothing to fit."""


class _Codes(dict):
    """value -> code, in the order values are first seen (judges, answers: a few dozen values)."""

    def of(self, values: pl.Series) -> np.ndarray:
        for value in values.unique(maintain_order=True).to_list():
            self.setdefault(value, len(self))
        return values.replace_strict(dict(self), return_dtype=pl.Int64).to_numpy()

    def sorted_codes(self, first: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
        """The values in order (`first`, then the rest sorted) and old code -> new code."""
        order = list(first) + sorted(set(self) - set(first))
        remap = np.zeros(max(len(self), 1), dtype=np.int64)
        for new, value in enumerate(order):
            if value in self:
                remap[self[value]] = new
        return order, remap


def code_votes(pages: Iterable[pl.DataFrame], classes: Sequence[str] = CLASSES,
               groups: Sequence[Sequence[str]] = ()) -> CodedVotes:
    """Votes (item_id, judge, label) as integer arrays, one page at a time. Each page holds whole items
    (every vote of an item in one page), in the order the items are to be coded. Raises ValueError
    naming a bad label, a repeated vote, or a bad group."""
    classes = list(classes)
    class_idx = {c: i for i, c in enumerate(classes)}
    grouped: list[str] = [j for g in groups for j in g]
    if len(grouped) != len(set(grouped)) or any(len(g) < 2 for g in groups):
        raise ValueError(f"dawid_skene: groups must be disjoint, of 2 judges or more: {list(map(list, groups))}")
    units, answers = _Codes(), _Codes()
    judges: set[str] = set()
    items: list[pl.Series] = []
    vi: list[np.ndarray] = []
    vj: list[np.ndarray] = []
    vl: list[np.ndarray] = []
    start: list[np.ndarray] = []
    n = 0
    for page in pages:
        if page.is_empty():
            continue
        bad = page.filter(~pl.col("label").is_in(classes))["label"].unique().to_list()
        if bad:
            raise ValueError(f"dawid_skene: votes has labels outside {classes}: {bad[:5]}")
        if page.select("item_id", "judge").is_duplicated().any():
            raise ValueError("dawid_skene: more than one vote per (item_id, judge)")
        judges.update(page["judge"].unique().to_list())
        page_items = page["item_id"].unique(maintain_order=True)
        codes = pl.DataFrame({"item_id": page_items, "code": np.arange(n, n + len(page_items), dtype=np.int64)})
        majority = np.zeros((len(page_items), len(classes)))
        local = page.join(codes, on="item_id", how="left", maintain_order="left")["code"].to_numpy() - n
        np.add.at(majority, (local, page["label"].replace_strict(class_idx, return_dtype=pl.Int64).to_numpy()), 1.0)
        said = _group_votes(page, groups).join(codes, on="item_id", how="left", maintain_order="left")
        vi.append(said["code"].to_numpy())
        vj.append(units.of(said["judge"]))
        vl.append(answers.of(said["answer"]))
        items.append(page_items)
        start.append(majority)
        n += len(page_items)
    if not n:
        raise NoVotes("dawid_skene: no votes")
    unknown = sorted(set(grouped) - judges)
    if unknown:
        raise ValueError(f"dawid_skene: groups name judges without votes: {unknown}")
    unit_names, unit_remap = units.sorted_codes()
    vocabulary, answer_remap = answers.sorted_codes(classes)
    first = np.concatenate(start)
    # int32 items, int16 judges and answers (a few dozen): 8 bytes a vote
    return CodedVotes(classes, pl.concat(items), unit_names, vocabulary, np.concatenate(vi).astype(np.int32),
                      unit_remap[np.concatenate(vj)].astype(np.int16), answer_remap[np.concatenate(vl)].astype(np.int16),
                      first / first.sum(axis=1, keepdims=True), ["+".join(g) for g in groups])


def fit_coded(coded: CodedVotes, anchors: pl.DataFrame | None = None, max_iter: int = 200, tol: float = 1e-6,
              smoothing: float = 0.01) -> DawidSkene:
    """EM from the soft majority vote of coded votes, anchored items held to their class."""
    classes, k = coded.classes, len(coded.classes)
    if anchors is not None:
        bad = anchors.filter(~pl.col("label").is_in(classes))["label"].unique().to_list()
        if bad:
            raise ValueError(f"dawid_skene: anchors has labels outside {classes}: {bad[:5]}")
    n, m = len(coded.items), len(coded.units)
    vi, vj, vl = coded.vi, coded.vj, coded.vl
    post = coded.start.copy()
    # the answers each unit can give: the classes for a judge, the tuples seen for a group
    can_answer = np.zeros((m, len(coded.vocabulary)), dtype=bool)
    can_answer[vj, vl] = True
    can_answer[:, :k] |= ~np.isin(np.array(coded.units), coded.groups)[:, None]

    fixed = np.zeros(n, dtype=bool)
    fixed_post = np.zeros((n, k))
    if anchors is not None and anchors.height:
        codes = pl.DataFrame({"item_id": coded.items, "code": np.arange(n, dtype=np.int64)})
        known = anchors.join(codes, on="item_id")
        ai = known["code"].to_numpy()
        al = known["label"].replace_strict({c: i for i, c in enumerate(classes)}, return_dtype=pl.Int64).to_numpy()
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
    return _result(post, priors, theta, can_answer, coded.items, pl.Series(coded.units, dtype=pl.String), classes,
                   coded.vocabulary, vi, vj, iterations, converged)


def _group_votes(votes: pl.DataFrame, groups: Sequence[Sequence[str]]) -> pl.DataFrame:
    """item_id, judge (a judge, or a group named by its members joined with '+'), answer."""
    grouped: list[str] = [j for g in groups for j in g]
    parts = [votes.filter(~pl.col("judge").is_in(grouped)).select("item_id", "judge", answer="label")]
    for group in groups:
        members = votes.filter(pl.col("judge").is_in(list(group)))
        if members.is_empty():
            continue
        wide = members.pivot(on="judge", index="item_id", values="label")
        # a page may hold no vote of one member
        wide = wide.with_columns(pl.lit(None, pl.String).alias(j) for j in group if j not in wide.columns)
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


VOTE_PAGE = 200_000  # votes read at once; what the fit holds of them is CodedVotes' arrays


def vote_pages(wh: Warehouse, page_size: int = VOTE_PAGE) -> Iterator[pl.DataFrame]:
    """The label model's votes in keyset pages of whole items: a page that fills up ends with an item
    that may go on in the next page, so it is dropped and the next page starts at it."""
    sql = sql_text("queries/label_model_votes.sql")
    after = ""
    while True:
        page = wh.query(sql, {"after_item_id": after, "page_size": page_size})
        if page.height < page_size:
            if page.height:
                yield page
            return
        last = page["item_id"][-1]
        whole = page.filter(pl.col("item_id") != last)
        if whole.is_empty():
            raise ValueError(f"label model: item {last} has {page_size} votes or more (one page)")
        yield whole
        after = whole["item_id"][-1]


def store_label_model(wh: Warehouse, run_id: str, min_confidence: float, page_size: int = VOTE_PAGE) -> dict[str, Any]:
    """Fit the label model over the warehouse's complete votes and store it (replacing the last fit);
    returns the summary figures. Nothing to fit (no complete vote yet): stores nothing.

    Anchored on human labels and decisive adjudications; judges whose errors coincide on the anchors
    (correlated_judges, over the anchored items' votes only) are modelled as one. The votes are read in
    pages and held as integer codes (code_votes), not as a table."""
    anchors = wh.query(sql_text("queries/label_model_anchors.sql"))
    anchored = wh.query(sql_text("queries/label_model_anchor_votes.sql"), frames={"anchors": anchors})
    groups = judge_groups(correlated_judges(anchored, anchors)) if anchored.height else []
    try:
        coded = code_votes(vote_pages(wh, page_size), CLASSES, groups)
    except NoVotes:
        return {"items": 0}
    known = anchors.join(anchored.select("item_id").unique(), on="item_id", how="semi")
    fit = fit_coded(coded, known)
    rows = label_model_rows(fit, run_id)
    with wh.writer():  # one fit replaces the last one as a whole
        wh.execute(sql_text("queries/clear_label_model.sql"))
        for table, frame in rows.items():
            wh.insert(table, frame)
    judges = {r["judge"]: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "judge"}
              for r in fit.judges.iter_rows(named=True)}
    return {
        "items": fit.posterior.height, "anchors": known.height,
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
