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
hard pool holds, and the pool's size.

Then the same two worlds served (skip with --no-served): the stub LLM server's judges (stubllm/behaviours.py
JUDGES: stub-judge-a/b/c, and the biased world's stub-judge-lenient/strict/twin-1/twin-2, whose blind spot is
truth.in_blind_spot) label the demo factory's responses through the real flows (`libra run factory` with
`vote.method: dawid_skene`); the stored votes of every settled response are scored by the same rules against
stubllm.truth.true_label of the texts the judges saw, with a random 2% as the known labels.
Last line: `dawid_skene/majority error ratio (biased world): X.XX`, from the served biased world when it
runs, else from the simulated one.

    python bench/labels.py [--items 20000] [--seed 0] [--min-confidence 0.9] [--no-served] [--queries-scale 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from libra.stubllm.behaviours import JUDGES
from libra.stubllm.truth import true_label
from libra.tasks.annotation.dawid_skene import correlated_judges, dawid_skene, judge_groups, vote_pages
from libra.tasks.llm.servers import free_port, start_server
from libra.warehouse import Warehouse, sql_text

SAFE, UNSAFE = "安全", "不安全"
MIN_MARGIN = 0.6  # tasks/core/config.py: Vote.min_margin default
P_UNSAFE = 0.4
KNOWN_SHARE = 0.02  # responses whose label is known (human labels, adjudications): Dawid–Skene's anchors


def stub_world(truth: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """judge -> labels (1 unsafe, 0 safe, -1 abstention) as today's stub judges answer."""
    out = {}
    for model in ("stub-judge-a", "stub-judge-b", "stub-judge-c"):
        profile = JUDGES[model]
        said = truth ^ (rng.random(len(truth)) < np.where(truth, profile.miss_unsafe, profile.flag_safe))
        out[model] = np.where(rng.random(len(truth)) < profile.malformed, -1, said.astype(int))
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


SERVED_WORLDS = {
    "stub": {"judge-a": "stub-judge-a", "judge-b": "stub-judge-b", "judge-c": "stub-judge-c"},
    "biased": {"judge-lenient": "stub-judge-lenient", "judge-strict": "stub-judge-strict",
               "judge-twin-1": "stub-judge-twin-1", "judge-twin-2": "stub-judge-twin-2"},
}


def served_config(judges: dict[str, str], min_confidence: float, scale: float, path: Path) -> Path:
    """The demo config with these judge endpoints (name -> stub model) and vote.method dawid_skene."""
    cfg = yaml.safe_load(resources.files("libra.configs").joinpath("demo.yaml").read_text(encoding="utf-8"))
    template = next(e for e in cfg["endpoints"] if e["name"] == cfg["roles"]["judges"][0])
    keep = {e["name"] for e in cfg["endpoints"]} - set(cfg["roles"]["judges"]) - set(judges) | {cfg["roles"]["adjudicator"]}
    others = [e for e in cfg["endpoints"] if e["name"] in keep and e["name"] not in judges]
    cfg["endpoints"] = others + [{**template, "name": name, "model": model} for name, model in judges.items()]
    cfg["roles"]["judges"] = list(judges)
    cfg["vote"] = {**cfg.get("vote", {}), "method": "dawid_skene", "min_confidence": min_confidence}
    if scale != 1:
        sizes = cfg["sizes"]
        sizes["calls_per_subcategory"] = max(1, round(sizes.get("calls_per_subcategory", 1) * scale))
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def served_report(name: str, judges: dict[str, str], min_confidence: float, scale: float, workdir: Path,
                  rng: np.random.Generator) -> dict[str, float]:
    config = served_config(judges, min_confidence, scale, workdir / f"{name}.yaml")
    warehouse = workdir / f"{name}.duckdb"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    with start_server([sys.executable, "-m", "libra.stubllm", "--port", str(port), "--latency-ms", "2"], url,
                      log_path=workdir / f"{name}-stub.log", timeout_s=60):
        subprocess.run(["libra", "run", "factory", "--config", str(config), "--warehouse", str(warehouse)],
                       env={**os.environ, "LIBRA_STUB_URL": url}, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    wh = Warehouse(warehouse, create=False)
    items = wh.query(sql_text("queries/label_truth_items.sql"))
    stored = pl.concat(list(vote_pages(wh)))
    truth = np.array([true_label(q, r) == UNSAFE for q, r in zip(items["query_text"], items["response_text"], strict=True)])
    # The served votes as the simulated worlds hold them (judge -> 1 unsafe, 0 safe, -1 abstention), so the
    # same rules score them; the flow's own posterior (fitted before any known label existed) is shown too.
    index = {item: i for i, item in enumerate(items["item_id"].to_list())}
    labels = {}
    for judge in stored["judge"].unique().sort().to_list():
        said = np.full(len(items), -1)
        mine = stored.filter(pl.col("judge") == judge)
        said[np.array([index[i] for i in mine["item_id"].to_list()], dtype=int)] = (mine["label"] == UNSAFE).to_numpy()
        labels[judge] = said
    order = rng.permutation(len(items))  # the known labels are a random share, as human labels would be
    truth, labels = truth[order], {j: said[order] for j, said in labels.items()}
    posterior = items["p_unsafe"].to_numpy()[order].astype(float)
    flow_ds = np.where(np.isnan(posterior), -1, (posterior > 0.5).astype(int))
    print(f"\nserved {name} world: the demo factory on the stub (`libra run factory`, vote.method dawid_skene), "
          f"{len(items)} settled responses, {seconds:.0f} s; the flow's stored posterior (no known labels yet): "
          f"error {float((flow_ds != truth).mean()):.4f}")
    return report(f"served {name}", truth, labels, min_confidence, rng)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-confidence", type=float, default=0.9)
    ap.add_argument("--no-served", action="store_true", help="Only the simulated worlds (no stub server, no flows).")
    ap.add_argument("--queries-scale", type=float, default=3.0,
                    help="Served worlds: the demo's calls_per_subcategory times this (more responses to score).")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    results = {}
    for name, world in (("stub", stub_world), ("biased", biased_world)):
        truth = rng.random(args.items) < P_UNSAFE
        results[name] = report(name, truth, world(truth, rng), args.min_confidence, rng)
    stub, biased = results["stub"], results["biased"]
    print(f"\nsimulated: stub world: dawid_skene {stub['dawid_skene']:.4f} vs majority {stub['majority']:.4f}; biased world: "
          f"dawid_skene {biased['dawid_skene']:.4f} vs majority {biased['majority']:.4f} vs best judge {biased['best']:.4f}"
          f" (without anchors and groups: {biased['plain']:.4f})")
    if not args.no_served:
        with tempfile.TemporaryDirectory(prefix="libra-bench-labels-") as tmp:
            served = {name: served_report(name, judges, args.min_confidence, args.queries_scale, Path(tmp), rng)
                      for name, judges in SERVED_WORLDS.items()}
        stub, biased = served["stub"], served["biased"]
        print(f"\nserved: stub world: dawid_skene {stub['dawid_skene']:.4f} vs majority {stub['majority']:.4f}; "
              f"biased world: dawid_skene {biased['dawid_skene']:.4f} vs majority {biased['majority']:.4f} "
              f"vs best judge {biased['best']:.4f} (without anchors and groups: {biased['plain']:.4f})")
    print(f"dawid_skene/majority error ratio (biased world): {biased['dawid_skene'] / biased['majority']:.2f}")


if __name__ == "__main__":
    main()
