"""Cost views (warehouse/views/45_cost.sql): prices from each run's stored config, per run, stage,
endpoint, judge, settled label and training example; unpriced calls are never free."""

import json
from datetime import datetime

import polars as pl
import pytest

from libra.tasks.core.config import Endpoint, Price
from libra.warehouse import Warehouse

PRICES = {"judge-a": (2.0, 8.0, "USD"), "judge-b": (1.0, 2.0, "CNY"), "responder": (0.5, 1.5, "USD")}


def config(prices: dict[str, tuple[float, float, str] | None]) -> str:
    endpoints = [Endpoint(name=name, base_url="http://127.0.0.1:9/v1", model=f"m-{name}",
                          price=None if p is None else Price(input_per_1m=p[0], output_per_1m=p[1], currency=p[2]))
                 for name, p in prices.items()]
    return json.dumps({"endpoints": [e.model_dump(mode="json") for e in endpoints],
                       "roles": {"judges": ["judge-a", "judge-b"]}})


def add_run(wh: Warehouse, run_id: str, flow: str, prices: dict, parent: str | None = "factory-1") -> None:
    wh.insert("runs", pl.DataFrame([{"run_id": run_id, "flow": flow, "parent_run_id": parent, "config": config(prices),
                                     "started_at": datetime(2026, 1, 1), "status": "completed"}]))


def add_calls(wh: Warehouse, run_id: str, rows: list[tuple[str, str, int, int]]) -> None:
    """(call_key, endpoint, prompt_tokens, completion_tokens)"""
    wh.insert("llm_calls", pl.DataFrame([
        {"call_key": k, "run_id": run_id, "endpoint": e, "model": f"m-{e}", "status": "ok", "attempts": 1,
         "prompt_tokens": p, "completion_tokens": c} for k, e, p, c in rows]))


def cost(endpoint: str, prompt: int, completion: int) -> float:
    i, o, _ = PRICES[endpoint]
    return (prompt * i + completion * o) / 1e6


@pytest.fixture
def wh(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    add_run(wh, "respond-1", "respond", PRICES)
    add_run(wh, "annotate-1", "annotate", PRICES)
    # a later run whose config has no price for judge-a: its calls are unpriced, not free
    add_run(wh, "annotate-2", "annotate", {**PRICES, "judge-a": None}, parent=None)
    add_calls(wh, "respond-1", [("r1", "responder", 100, 400), ("r2", "responder", 120, 380)])
    add_calls(wh, "annotate-1", [("a1", "judge-a", 900, 60), ("a2", "judge-a", 950, 70),
                                 ("b1", "judge-b", 800, 50), ("b2", "judge-b", 820, 40)])
    add_calls(wh, "annotate-2", [("a3", "judge-a", 1000, 80)])
    # two labelled responses (both judges agree), one in a training split, one held out for eval
    wh.insert("queries", pl.DataFrame({"query_id": ["q1", "q2"], "text": ["问一", "问二"], "source": "synthetic",
                                       "method": "seed", "run_id": "x"}))
    wh.insert("responses", pl.DataFrame({"response_id": ["s1", "s2"], "query_id": ["q1", "q2"],
                                         "responder": "responder", "model": "m-responder", "sample_index": 0,
                                         "text": ["答一", "答二"], "status": "ok", "run_id": "respond-1"}))
    wh.insert("votes", pl.DataFrame({
        "vote_id": ["v1", "v2", "v3", "v4"], "response_id": ["s1", "s2", "s1", "s2"],
        "judge": ["judge-a", "judge-a", "judge-b", "judge-b"], "model": ["m-judge-a"] * 2 + ["m-judge-b"] * 2,
        "label": ["安全", "不安全", "安全", "不安全"], "status": "ok", "call_key": ["a1", "a2", "b1", "b2"],
        "run_id": "annotate-1"}))
    wh.insert("splits", pl.DataFrame({"query_id": ["q1", "q2"], "split": ["pretrain", "eval"], "seed": 0,
                                      "run_id": "split-1"}))
    return wh


def test_endpoint_prices_are_optional_and_checked():
    assert Endpoint(name="x", base_url="http://h/v1", model="m").price is None
    assert Price(input_per_1m=1, output_per_1m=2).currency == "USD"
    with pytest.raises(ValueError, match="currency"):
        Price(input_per_1m=1, output_per_1m=2, currency="dollars")
    with pytest.raises(ValueError, match="input_per_1m"):
        Price(input_per_1m=-1, output_per_1m=2)


def test_cost_per_run_stage_and_endpoint_use_each_runs_prices(wh):
    by_run = {(r["run_id"], r["currency"]): r for r in wh.query("SELECT * FROM v_cost_by_run").iter_rows(named=True)}
    assert by_run[("respond-1", "USD")]["cost"] == pytest.approx(cost("responder", 100, 400) + cost("responder", 120, 380))
    assert by_run[("annotate-1", "USD")]["cost"] == pytest.approx(cost("judge-a", 900, 60) + cost("judge-a", 950, 70))
    assert by_run[("annotate-1", "CNY")]["cost"] == pytest.approx(cost("judge-b", 800, 50) + cost("judge-b", 820, 40))
    unpriced = by_run[("annotate-2", None)]
    assert (unpriced["calls"], unpriced["cost"], unpriced["prompt_tokens"]) == (1, None, 1000)
    assert by_run[("respond-1", "USD")]["top_run_id"] == "factory-1"
    stages = {(r["stage"], r["currency"]): r["cost"] for r in wh.query("SELECT * FROM v_cost_by_stage").iter_rows(named=True)}
    assert stages[("annotate", "USD")] == pytest.approx(by_run[("annotate-1", "USD")]["cost"])
    assert stages[("annotate", None)] is None
    endpoints = {(r["endpoint"], r["currency"]): (r["calls"], r["cost"])
                 for r in wh.query("SELECT * FROM v_cost_by_endpoint").iter_rows(named=True)}
    assert endpoints[("judge-a", "USD")] == (2, pytest.approx(by_run[("annotate-1", "USD")]["cost"]))
    assert endpoints[("judge-a", None)] == (1, None)


def test_cost_per_judge_vote_settled_label_and_training_example(wh):
    judges = {(r["judge"], r["currency"]): r for r in wh.query("SELECT * FROM v_cost_by_judge").iter_rows(named=True)}
    a = judges[("judge-a", "USD")]
    assert (a["calls"], a["votes"]) == (2, 2)
    assert a["cost_per_vote"] == pytest.approx(a["cost"] / 2)
    assert ("judge-a", None) not in judges  # the unpriced call a3 named by no vote
    per_label = {r["currency"]: r for r in wh.query("SELECT * FROM v_cost_per_label").iter_rows(named=True)}
    usd = per_label["USD"]
    total_usd = cost("responder", 100, 400) + cost("responder", 120, 380) + cost("judge-a", 900, 60) + cost(
        "judge-a", 950, 70)
    assert (usd["settled_labels"], usd["training_examples"]) == (2, 1)
    assert usd["cost_per_settled_label"] == pytest.approx(total_usd / 2, rel=1e-6)
    assert usd["cost_per_training_example"] == pytest.approx(total_usd, rel=1e-6)
    assert usd["labelling_cost"] == pytest.approx(cost("judge-a", 900, 60) + cost("judge-a", 950, 70), rel=1e-6)
    assert per_label["CNY"]["cost_per_settled_label"] == pytest.approx(
        (cost("judge-b", 800, 50) + cost("judge-b", 820, 40)) / 2, rel=1e-6)
    assert per_label[None]["calls"] == 1 and per_label[None]["cost"] is None


def test_libra_status_prints_the_cost_per_settled_label(wh):
    from typer.testing import CliRunner

    from libra.flows.cli.main import app

    out = CliRunner().invoke(app, ["status", "--warehouse", str(wh.path)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "LLM cost" in out.output
    usd = wh.query("SELECT * FROM v_cost_per_label WHERE currency = 'USD'").row(0, named=True)
    line = next(line for line in out.output.splitlines() if "USD" in line)
    assert f"{usd['cost_per_settled_label']:g}" in line.replace(" ", "") or str(usd["cost_per_settled_label"]) in line
