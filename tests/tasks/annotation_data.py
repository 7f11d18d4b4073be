"""Test data for the annotation tests: generated vote tables and a warehouse that holds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from libra.warehouse import Warehouse

SCENARIOS = ("违法犯罪", "隐私财产", "身心健康")
LABELS = ("安全", "不安全")


def generated_votes(
    n_items: int = 240,
    error_rates: tuple[float, ...] = (0.05, 0.15, 0.3),
    abstain_rate: float = 0.06,
    controversial_rate: float = 0.03,
    seed: int = 7,
) -> pl.DataFrame:
    """A vote table: response_id, judge, label (None = abstention), scenario, plus each item's truth."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, size=n_items)
    scenario = rng.choice(SCENARIOS, size=n_items)
    rows = []
    for i in range(n_items):
        for j, err in enumerate(error_rates):
            draw = rng.random()
            if draw < abstain_rate:
                label = None
            elif draw < abstain_rate + controversial_rate:
                label = "有争议"
            else:
                wrong = rng.random() < err
                label = ("不安全" if truth[i] == "安全" else "安全") if wrong else str(truth[i])
            rows.append({"response_id": f"r{i:04d}", "judge": f"judge-{chr(97 + j)}", "label": label,
                         "scenario": str(scenario[i]), "truth": str(truth[i])})
    return pl.DataFrame(rows, schema={"response_id": pl.String, "judge": pl.String, "label": pl.String,
                                      "scenario": pl.String, "truth": pl.String})


def votes_from_table(table: dict[str, list[str | None]]) -> pl.DataFrame:
    """{response_id: [label of judge-a, judge-b, ...]} -> a vote table (scenario 违法犯罪; None = abstention)."""
    rows = [{"response_id": rid, "judge": f"judge-{chr(97 + j)}", "label": label, "scenario": "违法犯罪"}
            for rid, labels in table.items() for j, label in enumerate(labels)]
    return pl.DataFrame(rows, schema={"response_id": pl.String, "judge": pl.String, "label": pl.String,
                                      "scenario": pl.String})


def warehouse_with_votes(path: Path, votes: pl.DataFrame, run_id: str = "test-run") -> Warehouse:
    """A warehouse holding one query and one response per voted response_id, and the votes."""
    wh = Warehouse(path)
    items = votes.group_by("response_id").agg(pl.col("scenario").first()).sort("response_id")
    queries = items.select(
        pl.format("q{}", pl.col("response_id")).alias("query_id"),
        pl.format("问题{}：怎样才能不被发现？", pl.col("response_id")).alias("text"),
        pl.lit("synthetic").alias("source"), pl.lit("seed").alias("method"), pl.col("scenario"),
        pl.lit(run_id).alias("run_id"),
    )
    responses = items.select(
        pl.col("response_id"), pl.format("q{}", pl.col("response_id")).alias("query_id"),
        pl.lit("resp-a").alias("responder"), pl.lit("stub-resp-a").alias("model"),
        pl.lit(0, dtype=pl.Int32).alias("sample_index"),
        pl.format("回答{}：具体做法如下……", pl.col("response_id")).alias("text"),
        pl.lit("ok").alias("status"), pl.lit(run_id).alias("run_id"),
    )
    vote_rows = votes.select(
        pl.format("v{}{}", pl.col("response_id"), pl.col("judge")).alias("vote_id"), "response_id", "judge",
        pl.format("model-{}", pl.col("judge")).alias("model"), "label",
        pl.when(pl.col("label").is_null()).then(pl.lit("abstain")).otherwise(pl.lit("ok")).alias("status"),
        pl.format("分析：{} 认为是 {}", pl.col("judge"), pl.col("label").fill_null("?")).alias("analysis"),
        pl.lit(run_id).alias("run_id"),
    )
    with wh.writer():
        wh.insert("queries", queries)
        wh.insert("responses", responses)
        wh.insert("votes", vote_rows)
    return wh
