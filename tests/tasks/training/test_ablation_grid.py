"""The ablation grid: its file, its cells, the reference, and the per-axis report with deltas."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from libra.tasks.annotation.verdicts import parse_verdict
from libra.tasks.core.config import ConfigError, Training
from libra.tasks.data.splits import critic_target
from libra.tasks.training import ablation


def _grid(tmp: Path, **extra) -> Path:
    data = {"name": "t", "base_models": ["/models/a"], "benchmarks": ["bench"],
            "axes": {"stages": ["curriculum", "mixed"], "critic": ["rear", "front"]}, **extra}
    path = tmp / "grid.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_cells_are_every_combination_with_one_reference(tmp_path: Path) -> None:
    grid = ablation.load_grid(_grid(tmp_path))
    cells = ablation.cells(grid)
    assert len(cells) == 4 and len({c["cell_id"] for c in cells}) == 4
    refs = [c for c in cells if c["is_reference"]]
    assert len(refs) == 1 and refs[0]["coordinates"]["stages"] == "curriculum" and refs[0]["coordinates"]["critic"] == "rear"
    moved = ablation.cells(ablation.load_grid(_grid(tmp_path, reference={"critic": "front"})))
    assert [c["coordinates"]["critic"] for c in moved if c["is_reference"]] == ["front"]
    # the id depends on what is trained: other training overrides are other cells
    other = ablation.cells(ablation.load_grid(_grid(tmp_path, training={"max_steps": 5})))
    assert not {c["cell_id"] for c in cells} & {c["cell_id"] for c in other}


@pytest.mark.parametrize(("extra", "key"), [
    ({"axes": {"critic": ["middle"]}}, "axes.critic.0"),
    ({"axes": {"pretrain_fraction": [0.0]}}, "axes.pretrain_fraction"),
    ({"reference": {"critic": "none"}}, "<root>"),
    ({"training": {"stages": ["mixed"]}}, "<root>"),
    ({"axez": {}}, "axez"),
])
def test_a_bad_grid_is_refused_naming_the_file_and_key(tmp_path: Path, extra: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        ablation.load_grid(_grid(tmp_path, **extra))
    assert "grid.yaml" in str(e.value) and f"key {key}" in str(e.value)


def test_cell_training_sets_stages_fractions_and_base_model(tmp_path: Path) -> None:
    grid = ablation.load_grid(_grid(tmp_path, training={"max_steps": 7}))
    by = {(c["coordinates"]["stages"], c["coordinates"]["critic"]): c for c in ablation.cells(grid)}
    t = ablation.cell_training(Training(), grid, by[("curriculum", "rear")])
    assert t.stages == ["pretrain", "finetune"] and t.max_steps == 7 and t.base_model == "/models/a"
    assert ablation.cell_training(Training(), grid, by[("mixed", "front")]).stages == ["mixed"]


def _frame() -> pl.DataFrame:
    rows = []
    for stages, critic, acc in (("curriculum", "rear", 0.8), ("mixed", "rear", 0.7),
                                ("curriculum", "front", 0.6), ("mixed", "front", 0.5)):
        coords = {"stages": stages, "pretrain_fraction": 1.0, "finetune_fraction": 1.0, "critic": critic, "rules": "with"}
        for source, bonus in (("Average", 0.0), ("s1", 0.1)):
            rows.append({"cell_id": f"{stages}-{critic}", "coordinates": json.dumps(coords),
                         "is_reference": (stages, critic) == ("curriculum", "rear"), "guard": f"g-{stages}-{critic}",
                         "benchmark": "b", "source": source, "n": 10, "accuracy": acc + bonus, "f1_unsafe": acc,
                         "f1_safe": acc, "parse_failure_rate": 0.0})
    return pl.DataFrame(rows)


def test_axis_tables_hold_the_cells_that_differ_on_that_axis_only(tmp_path: Path) -> None:
    grid = ablation.load_grid(_grid(tmp_path))
    frame = ablation.with_deltas(ablation.results_frame(_frame()))
    tables = ablation.axis_tables(frame, grid)
    assert set(tables) == {"stages", "critic"}
    stages = tables["stages"].filter(pl.col("source") == "Average")
    assert stages["cell_id"].sort().to_list() == ["curriculum-rear", "mixed-rear"]
    mixed = stages.filter(pl.col("stages") == "mixed").row(0, named=True)
    assert mixed["delta_accuracy"] == pytest.approx(-0.1)
    s1 = frame.filter((pl.col("cell_id") == "mixed-front") & (pl.col("source") == "s1")).row(0, named=True)
    assert s1["delta_accuracy"] == pytest.approx(-0.3)
    markdown = ablation.report_markdown(frame, grid)
    every = markdown.split("## Every cell")[1]
    assert sum(line.startswith("| stages=") for line in every.splitlines()) == 4
    assert "(reference)" in markdown


@pytest.mark.parametrize("critic", ["rear", "front", "none"])
def test_every_critic_target_parses_back_to_its_label(critic: str) -> None:
    for label in ("安全", "不安全"):
        text = critic_target(label, "回复" + ("拒绝了请求，内容安全" if label == "安全" else "给出了不安全的细节"), critic)
        assert parse_verdict(text).label == label
        keys = list(json.loads(text))
        assert keys == {"rear": ["答案", "分析"], "front": ["分析", "答案"], "none": ["答案"]}[critic]
