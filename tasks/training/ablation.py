"""The Libra-Guard paper's ablations as a grid: which training recipe, data amounts, critic position and
prompt rules a guard is trained with, each cell a training run plus an evaluation.

A grid file names the axes and their values; the cells are every combination (times the base models).
The reference cell (the grid's `reference`, else the first value of every axis: the recipe itself) is
what every other cell is compared with. The report is the paper's presentation: one table per axis
holding the cells that differ from the reference on that axis only, with the official figures per
benchmark source, their Average, and deltas against the reference; and a table of every cell.

    name: paper
    base_models: [/models/Qwen2.5-0.5B-Instruct]
    benchmarks: [/data/libra_test.json]
    axes:
      stages: [curriculum, mixed, finetune-only]    # pretrain -> finetune; both in one stage; finetune alone
      pretrain_fraction: [1.0, 0.5, 0.25]
      finetune_fraction: [1.0, 0.5]
      critic: [rear, front, none]
      rules: [with, without]
    training: {epochs: 1}                            # overrides of the config's training section, every cell
    evaluation: {per_source_limit: 500}              # overrides of the config's evaluation section
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from libra.tasks.core.config import (
    ConfigError,
    Evaluation,
    FactoryConfig,
    Training,
    invalid_keys,
    yaml_mapping,
)
from libra.tasks.core.ids import content_hash
from libra.tasks.core.overrides import with_overrides
from libra.tasks.reports.tables import markdown_table
from libra.tasks.training.guard_prompt import GuardInstruction

# The training-recipe axis: which stages a cell trains, in order.
STAGES: dict[str, list[str]] = {"curriculum": ["pretrain", "finetune"], "mixed": ["mixed"],
                                "finetune-only": ["finetune"], "pretrain-only": ["pretrain"]}
AXES = ("stages", "pretrain_fraction", "finetune_fraction", "critic", "rules")
METRICS = ("accuracy", "f1_unsafe", "f1_safe")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Axes(_Strict):
    stages: list[Literal["curriculum", "mixed", "finetune-only", "pretrain-only"]] = Field(
        default_factory=lambda: ["curriculum"], min_length=1)
    pretrain_fraction: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    finetune_fraction: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    critic: list[Literal["rear", "front", "none"]] = Field(default_factory=lambda: ["rear"], min_length=1)
    rules: list[Literal["with", "without"]] = Field(default_factory=lambda: ["with"], min_length=1)

    @field_validator("pretrain_fraction", "finetune_fraction")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        bad = [f for f in v if not 0 < f <= 1]
        if bad:
            raise ValueError(f"fractions lie in (0, 1], got {bad}")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> Axes:
        for axis in AXES:
            values = getattr(self, axis)
            if len(set(values)) != len(values):
                raise ValueError(f"{axis}: a value is repeated ({values})")
        return self


class Grid(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    base_models: list[str] = Field(min_length=1)
    benchmarks: list[str] = Field(min_length=1)
    axes: Axes = Field(default_factory=Axes)
    # The cell the others are compared with; axes left out take their first value.
    reference: dict[str, str | float] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    source_path: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _reference_on_the_grid(self) -> Grid:
        for axis, value in self.reference.items():
            if axis not in AXES:
                raise ValueError(f"reference.{axis}: not an axis ({', '.join(AXES)})")
            if value not in getattr(self.axes, axis):
                raise ValueError(f"reference.{axis}: {value!r} is not one of axes.{axis} {getattr(self.axes, axis)}")
        for key in ("stages", "pretrain_fraction", "finetune_fraction", "base_model"):
            if key in self.training:
                raise ValueError(f"training.{key}: set by the grid's axes and base_models, not here")
        return self

    def reference_point(self) -> dict[str, Any]:
        return {axis: self.reference.get(axis, getattr(self.axes, axis)[0]) for axis in AXES}


def load_grid(path: str | Path) -> Grid:
    """A grid file, validated; errors name the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: grid file not found") from None
    try:
        grid = Grid.model_validate(yaml_mapping(text, str(path)))
    except ValidationError as e:
        raise invalid_keys(str(path), "grid", e) from None
    base = path.resolve().parent
    # Relative model and benchmark paths are the grid file's neighbours (a registered benchmark name stays).
    grid.base_models = [str(base / m) if not Path(m).is_absolute() and (base / m).exists() else m
                        for m in grid.base_models]
    grid.benchmarks = [str(base / b) if not Path(b).is_absolute() and (base / b).exists() else b
                       for b in grid.benchmarks]
    grid.source_path = str(path.resolve())
    return grid


def cells(grid: Grid) -> list[dict[str, Any]]:
    """Every combination of the axes, per base model: {cell_id, coordinates, base_model, is_reference}."""
    ref = grid.reference_point()
    out = []
    for base_model in grid.base_models:
        for values in itertools.product(*(getattr(grid.axes, a) for a in AXES)):
            coordinates = dict(zip(AXES, values, strict=True))
            # Everything that changes what the cell trains or how it is scored is in its id.
            cell_id = "c" + content_hash(coordinates, base_model, grid.training, grid.evaluation, length=16)
            out.append({"cell_id": cell_id, "coordinates": coordinates, "base_model": base_model,
                        "is_reference": coordinates == ref and base_model == grid.base_models[0]})
    return out


def cell_training(section: Training, grid: Grid, cell: dict[str, Any]) -> Training:
    """The config's training section with the grid's overrides and this cell's stages and fractions."""
    c = cell["coordinates"]
    overrides = {k: str(v) for k, v in grid.training.items()}
    overrides.update(stages=",".join(STAGES[c["stages"]]), pretrain_fraction=str(c["pretrain_fraction"]),
                     finetune_fraction=str(c["finetune_fraction"]), base_model=cell["base_model"])
    return with_overrides(section, overrides, list_keys=("stages",))


def cell_evaluation(section: Evaluation, grid: Grid) -> Evaluation:
    try:
        return Evaluation.model_validate({**section.model_dump(), **grid.evaluation})
    except ValidationError as e:
        raise invalid_keys(f"{grid.source_path} (evaluation)", "evaluation overrides", e) from None


def instruction_for(cfg: FactoryConfig, rules: str) -> GuardInstruction:
    """The guard prompt of a cell: the config's, with its rules (`with`) or without them."""
    instruction = GuardInstruction.from_config(cfg)
    return instruction if rules == "with" else GuardInstruction(rules=(), system_prompt=instruction.system_prompt)


# -- the report ----------------------------------------------------------------------------------


def _label(coordinates: dict[str, Any]) -> str:
    return ", ".join(f"{a}={coordinates[a]}" for a in AXES)


def results_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """v_ablation_results rows (one per cell x benchmark x source) with the coordinates as columns."""
    if rows.is_empty():
        return rows
    coords = [json.loads(c) if isinstance(c, str) else c for c in rows["coordinates"].to_list()]
    return rows.drop("coordinates").with_columns(
        *(pl.Series(a, [str(c[a]) for c in coords]) for a in AXES),
        pl.Series("cell", [_label(c) for c in coords]))


def with_deltas(frame: pl.DataFrame) -> pl.DataFrame:
    """Each metric's difference from the reference cell's figure on the same benchmark and source."""
    ref = frame.filter(pl.col("is_reference")).select(
        "benchmark", "source", *(pl.col(m).alias(f"ref_{m}") for m in METRICS))
    out = frame.join(ref, on=["benchmark", "source"], how="left")
    return out.with_columns(*((pl.col(m) - pl.col(f"ref_{m}")).alias(f"delta_{m}") for m in METRICS)) \
              .drop([f"ref_{m}" for m in METRICS])


def axis_tables(frame: pl.DataFrame, grid: Grid) -> dict[str, pl.DataFrame]:
    """Per axis with more than one value: the cells equal to the reference on every other axis."""
    ref = {a: str(v) for a, v in grid.reference_point().items()}
    tables = {}
    for axis in AXES:
        if len(getattr(grid.axes, axis)) < 2:
            continue
        same = [pl.col(a) == ref[a] for a in AXES if a != axis]
        part = frame.filter(pl.all_horizontal(same)) if same else frame
        tables[axis] = part.sort(axis, "benchmark", "source")
    return tables


def _markdown_table(frame: pl.DataFrame, first: str) -> list[str]:
    rows = []
    for r in frame.iter_rows(named=True):
        row = {first: str(r[first]) + (" (reference)" if r["is_reference"] else ""), "benchmark": r["benchmark"],
               "source": r["source"], "n": str(r["n"])}
        row.update({m: f"{r[m]:.4f}" for m in METRICS})
        row.update({f"delta_{m}": f"{r[f'delta_{m}']:+.4f}" if r[f"delta_{m}"] is not None else "" for m in METRICS})
        rows.append(row)
    cols = [first, "benchmark", "source", "n", *METRICS, *(f"delta_{m}" for m in METRICS)]
    return markdown_table(pl.DataFrame(rows, schema=dict.fromkeys(cols, pl.String)), empty="").splitlines()


def report_markdown(frame: pl.DataFrame, grid: Grid) -> str:
    ref = grid.reference_point()
    lines = [f"# Ablation `{grid.name}`", "", f"Reference cell: {_label(ref)}; base model {grid.base_models[0]}.",
             "Figures as the official Libra metric computes them; deltas against the reference cell.", ""]
    for axis, table in axis_tables(frame, grid).items():
        lines += [f"## Axis: {axis}", "", *_markdown_table(table, axis), ""]
    averages = frame.filter(pl.col("source") == "Average").sort("cell", "benchmark")
    lines += ["## Every cell (Average per benchmark)", "", *_markdown_table(averages, "cell"), ""]
    return "\n".join(lines)


def report_chart(frame: pl.DataFrame, grid: Grid, path: Path) -> None:
    """One bar group per cell: Average accuracy, F1-unsafe and F1-safe on the first benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    averages = frame.filter(pl.col("source") == "Average")
    first = averages["benchmark"].sort()[0]
    data = averages.filter(pl.col("benchmark") == first).sort("cell")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * data.height), 4.5))
    width = 0.27
    xs = range(data.height)
    for i, metric in enumerate(METRICS):
        ax.bar([x + (i - 1) * width for x in xs], data[metric].to_list(), width, label=metric)
    ax.set_xticks(list(xs), [c.replace(", ", "\n") for c in data["cell"].to_list()], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(f"ablation {grid.name} on {first} (Average over sources)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(frame: pl.DataFrame, grid: Grid, out_dir: Path) -> dict[str, Any]:
    """ablation.md, ablation.json (one object per cell x benchmark x source, with deltas) and ablation.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = report_markdown(frame, grid)
    (out_dir / "ablation.md").write_text(markdown, encoding="utf-8")
    (out_dir / "ablation.json").write_text(json.dumps(frame.to_dicts(), ensure_ascii=False, indent=1, default=str),
                                           encoding="utf-8")
    report_chart(frame, grid, out_dir / "ablation.png")
    return {"dir": str(out_dir), "markdown": markdown}
