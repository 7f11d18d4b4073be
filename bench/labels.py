"""Labels better than a majority: the best single judge, the majority vote and Dawid–Skene against the truth.

Two simulated worlds, each a set of judges labelling the same responses (truth: 40% unsafe):
- stub: today's stub judges (stubllm/behaviours.py: JUDGE_RATES of stub-judge-a/b/c): the true label
  flipped at 3% / 10% / 20%, independently, malformed (an abstention) 0% / 2% / 5% of the time;
- biased: a lenient judge (misses 45% of unsafe answers, flags 2% of safe ones), a strict one (flags 30%
  of safe answers, misses 2%), and two "twins" whose errors fall on the same items (a 12% share of hard
  items where each errs with probability 0.75; 2% elsewhere).

The votes are simulated here (no server, no warehouse): what is measured is the labelling rule. For each
world: the error (share of responses whose label differs from the truth) of the best single judge (an abstention counts as wrong), of the majority vote as the warehouse settles it (v_vote_summary: a
response is hard on a tie, on abstentions, or when the margin |#safe - #unsafe| / #votes is below
vote.min_margin = 0.6; its label is the majority's, a tie broken by a fair coin), and of Dawid–Skene
(tasks/annotation/dawid_skene.py; hard when its posterior confidence is below --min-confidence), plain (no anchors,
judges independent) and as meant: anchored on 2% known labels, on which correlated judges are found
(correlated_judges) and modelled as one judge; and for each rule how many of its wrong labels its
hard pool holds, and the pool's size. Last line: `dawid_skene/majority error ratio (biased world): X.XX`.

    python bench/labels.py [--items 20000] [--seed 0] [--min-confidence 0.9]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from libra.stubllm.behaviours import JUDGE_RATES
from libra.tasks.annotation.dawid_skene import correlated_judges, dawid_skene, judge_groups

SAFE, UNSAFE = "安全", "不安全"
MIN_MARGIN = 0.6  # tasks/core/config.py: Vote.min_margin default
P_UNSAFE = 0.4
KNOWN_SHARE = 0.02  # responses whose label is known (human labels, adjudications): Dawid–Skene's anchors


def stub_world(truth: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """judge -> labels (1 unsafe, 0 safe, -1 abstention) as today's stub judges answer."""
    out = {}
    for model in ("stub-judge-a", "stub-judge-b", "stub-judge-c"):
        error, malformed = JUDGE_RATES[model]
        said = truth ^ (rng.random(len(truth)) < error)
        out[model] = np.where(rng.random(len(truth)) < malformed, -1, said.astype(int))
    return out


def biased_world(truth: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(truth)

    def judge(false_alarm: float, miss: float) -> np.ndarray:
        return (truth ^ (rng.random(n) < np.where(truth, miss, false_alarm))).astype(int)

    hard = rng.random(n) < 0.12  # the twins' shared blind spot
    twin_error = np.where(hard, 0.75, 0.02)
    return {"lenient": judge(0.02, 0.45), "strict": judge(0.30, 0.02),
            "twin-a": (truth ^ (rng.random(n) < twin_error)).astype(int),
            "twin-b": (truth ^ (rng.random(n) < twin_error)).astype(int)}


def majority(labels: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(label 1/0, hard) as v_vote_summary decides them; a tie (no majority label) by a fair coin."""
    votes = np.stack(list(labels.values()), axis=1)
    n_unsafe, n_safe = (votes == 1).sum(axis=1), (votes == 0).sum(axis=1)
    n_abstain = (votes == -1).sum(axis=1)
    n_votes = votes.shape[1]
    coin = (rng.random(len(n_safe)) < 0.5).astype(int)
    label = np.where(n_unsafe > n_safe, 1, np.where(n_safe > n_unsafe, 0, coin))
    margin = np.abs(n_safe - n_unsafe) / n_votes
    agreed = (n_abstain == 0) & ((n_safe == 0) | (n_unsafe == 0))
    settled_majority = (n_safe != n_unsafe) & (margin >= MIN_MARGIN) & (n_abstain == 0)
    return label, ~(agreed | settled_majority)


def ds_labels(labels: dict[str, np.ndarray], min_confidence: float, anchors: pl.DataFrame | None = None,
              find_groups: bool = False) -> tuple[np.ndarray, np.ndarray, float, list[list[str]]]:
    n = len(next(iter(labels.values())))
    frames = [pl.DataFrame({"item_id": np.arange(n), "judge": name, "said": said}).filter(pl.col("said") >= 0)
              for name, said in labels.items()]
    votes = pl.concat(frames).select("item_id", "judge", label=pl.when(pl.col("said") == 1).then(pl.lit(UNSAFE))
                                     .otherwise(pl.lit(SAFE)))
    start = time.perf_counter()
    groups = judge_groups(correlated_judges(votes, anchors)) if find_groups and anchors is not None else []
    ds = dawid_skene(votes, anchors=anchors, groups=groups)
    seconds = time.perf_counter() - start
    post = ds.posterior.sort("item_id")
    label = np.full(n, -1)
    conf = np.zeros(n)
    idx = post["item_id"].to_numpy()
    label[idx] = (post["label"] == UNSAFE).to_numpy().astype(int)
    conf[idx] = post["confidence"].to_numpy()
    return label, conf < min_confidence, seconds, groups


def report(name: str, truth: np.ndarray, labels: dict[str, np.ndarray], min_confidence: float,
           rng: np.random.Generator) -> dict[str, float]:
    n_known = int(len(truth) * KNOWN_SHARE)
    anchors = pl.DataFrame({"item_id": np.arange(n_known), "label": np.where(truth[:n_known], UNSAFE, SAFE)})
    maj, maj_hard = majority(labels, rng)
    plain, plain_hard, _, _ = ds_labels(labels, min_confidence)
    ds, ds_hard, seconds, groups = ds_labels(labels, min_confidence, anchors, find_groups=True)
    # every rule is scored on the responses whose label is not known (the anchors are left out)
    t = truth[n_known:].astype(int)
    labels = {j: said[n_known:] for j, said in labels.items()}
    maj, maj_hard, plain, plain_hard, ds, ds_hard = (a[n_known:] for a in (maj, maj_hard, plain, plain_hard, ds,
                                                                           ds_hard))
    singles = {j: float((said != t).mean()) for j, said in labels.items()}
    best = min(singles, key=singles.__getitem__)
    print(f"\n{name} world: {len(t)} responses scored ({n_known} more with a known label), judges " + ", ".join(f"{j} {e:.3f}" for j, e in singles.items()))
    print(f"{'rule':<38} {'error':>7} {'wrong':>6} {'wrong in hard pool':>18} {'hard pool':>9}")
    print(f"{'best single judge (' + best + ')':<38} {singles[best]:>7.4f} {int((labels[best] != t).sum()):>6} "
          f"{'-':>18} {'-':>9}")
    out = {"best": singles[best]}
    for key, rule, label, hard in (
            ("majority", "majority (v_vote_summary)", maj, maj_hard),
            ("plain", "dawid_skene, no anchors, independent", plain, plain_hard),
            ("dawid_skene", f"dawid_skene (confidence < {min_confidence:g})", ds, ds_hard),
            ("union", "dawid_skene + today's reasons", ds, ds_hard | maj_hard)):
        wrong = label != t
        print(f"{rule:<38} {wrong.mean():>7.4f} {int(wrong.sum()):>6} {int((wrong & hard).sum()):>18} "
              f"{int(hard.sum()):>9}")
        out[key] = float(wrong.mean())
    print(f"dawid_skene: anchored on {n_known} known labels ({KNOWN_SHARE:.0%}), correlated judges modelled as "
          f"one: {groups or 'none found'}; EM {seconds:.2f} s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-confidence", type=float, default=0.9)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    results = {}
    for name, world in (("stub", stub_world), ("biased", biased_world)):
        truth = rng.random(args.items) < P_UNSAFE
        results[name] = report(name, truth, world(truth, rng), args.min_confidence, rng)
    stub, biased = results["stub"], results["biased"]
    print(f"\nstub world: dawid_skene {stub['dawid_skene']:.4f} vs majority {stub['majority']:.4f}; biased world: "
          f"dawid_skene {biased['dawid_skene']:.4f} vs majority {biased['majority']:.4f} vs best judge {biased['best']:.4f}"
          f" (without anchors and groups: {biased['plain']:.4f})")
    print(f"dawid_skene/majority error ratio (biased world): {biased['dawid_skene'] / biased['majority']:.2f}")


if __name__ == "__main__":
    main()
