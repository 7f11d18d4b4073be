"""The dataset card of an export: card.md with the counts people ask about first (scenario x label x
source x split), judge agreement, the hard-sample and label-source shares, and PNG charts (scenario
distribution, label balance per split) — people would rather look than read.

Charts use matplotlib's Agg backend (no display). Chinese scenario names need a CJK font; when the
machine has none, the charts use the taxonomy's English names and the card says so.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from libra.tasks.core.prompts import load_taxonomy
from libra.tasks.reports.tables import markdown_table
from libra.warehouse import Warehouse, sql_text

SPLIT_ORDER = ("pretrain", "finetune", "eval")
LABELS = ("不安全", "安全")
LABEL_EN = {"不安全": "unsafe", "安全": "safe"}
LABEL_COLOR = {"不安全": "#d62728", "安全": "#2ca02c"}
# what the card reads of the exported rows (the thin columns of queries/export_index.sql, no texts)
CARD_COLUMNS = ("response_id", "split", "scenario", "label", "source", "vote_status", "label_source")


@cache
def cjk_font() -> str | None:
    """A font family that can draw Chinese, or None (fontconfig's answer for :lang=zh)."""
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    families = [line.split(",")[0].strip() for line in out.splitlines() if line.strip()]
    return families[0] if families else None


def _english_names() -> dict[str, str]:
    return {s["name"]: s.get("en", s["name"]) for s in load_taxonomy().scenarios}


def card_tables(frames: dict[str, pl.DataFrame], wh: Warehouse) -> dict[str, pl.DataFrame]:
    """The card's tables, from the exported rows of each split (CARD_COLUMNS at least)."""
    rows = [f.select(CARD_COLUMNS) for f in frames.values() if f.height]
    allrows = pl.concat(rows) if rows else pl.DataFrame(
        schema={"response_id": pl.String, "split": pl.String, "scenario": pl.String, "label": pl.String,
                "source": pl.String, "vote_status": pl.String, "label_source": pl.String})
    allrows = allrows.with_columns(pl.col("scenario").fill_null("(none)"))
    counts = (allrows.group_by("split", "scenario", "label", "source").len("n")
              .sort("split", "scenario", "label", "source"))
    per_split = (allrows.group_by("split").agg(
        pl.len().alias("rows"),
        (pl.col("label") == "不安全").sum().alias("unsafe"),
        (pl.col("label") == "安全").sum().alias("safe"),
        ((pl.col("vote_status") == "hard").mean() * 100).round(1).alias("hard_%"),
        ((pl.col("label_source") == "adjudicated").mean() * 100).round(1).alias("adjudicated_%"),
        ((pl.col("label_source") == "human").mean() * 100).round(1).alias("human_%"),
    ).sort("split"))
    agreement = wh.query(
        sql_text("queries/judge_agreement_with_export.sql"), frames={"exported": allrows.select("response_id", "label")},
    )
    return {"counts": counts, "per_split": per_split, "agreement": agreement, "rows": allrows}


def write_charts(allrows: pl.DataFrame, out_dir: Path) -> tuple[list[str], bool]:
    """scenario_distribution.png and label_balance.png; returns (file names, Chinese labels used)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = cjk_font()
    english = _english_names()
    if font:
        plt.rcParams["font.family"] = [font, "DejaVu Sans"]
    out_dir.mkdir(parents=True, exist_ok=True)
    scenarios = sorted(set(allrows["scenario"].to_list()))
    names = scenarios if font else [english.get(s, s) for s in scenarios]
    splits = [s for s in SPLIT_ORDER if s in set(allrows["split"].to_list())] or list(SPLIT_ORDER)

    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / max(len(splits), 1)
    for i, split in enumerate(splits):
        sub = allrows.filter(pl.col("split") == split)
        counts = dict(sub.group_by("scenario").len().iter_rows())
        ax.bar([x + i * width for x in range(len(scenarios))], [counts.get(s, 0) for s in scenarios],
               width=width, label=split)
    ax.set_xticks([x + width * (len(splits) - 1) / 2 for x in range(len(scenarios))], names,
                  rotation=30, ha="right")
    ax.set_ylabel("rows")
    ax.set_title("Scenario distribution per split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "scenario_distribution.png", dpi=100, metadata={"Software": None})
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    bottoms = [0] * len(splits)
    for label in LABELS:
        values = [allrows.filter((pl.col("split") == s) & (pl.col("label") == label)).height for s in splits]
        ax.bar(splits, values, bottom=bottoms, label=label if font else LABEL_EN[label], color=LABEL_COLOR[label])
        bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.set_ylabel("rows")
    ax.set_title("Label balance per split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "label_balance.png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return ["scenario_distribution.png", "label_balance.png"], bool(font)


def render_card(manifest: dict[str, Any], tables: dict[str, pl.DataFrame], charts: list[str], chinese: bool) -> str:
    counts = manifest["counts"]
    lines = [
        f"# Dataset card: libra export `{manifest['export_id']}`", "",
        f"Exported by run `{manifest['run_id']}` ({manifest['created_at']}, code {manifest['code_version']}). "
        f"Rows: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLIT_ORDER) + ".", "",
        "Each row is one (query, response) pair with its final label (human > adjudicated > judge majority). "
        "Chat files put the guard instruction with the dialogue in the user turn and the rear-critic JSON "
        '`{"答案": …, "分析": …}` in the assistant turn. Files: `<split>.jsonl` (chat messages), '
        "`<split>.parquet` (all metadata), `<split>.sharegpt.json` + `dataset_info.json` (LLaMA-Factory).", "",
        "## Rows per split", "", markdown_table(tables["per_split"]), "",
        "`hard_%`: share of rows whose judges disagreed (settled by an adjudicator or a human).", "",
        "## Charts", "",
    ]
    lines += [f"![{c.removesuffix('.png').replace('_', ' ')}](charts/{c})" for c in charts]
    if not chinese:
        lines += ["", "_No Chinese font on the machine that drew the charts: scenarios are shown by their "
                  "English taxonomy names._"]
    lines += ["", "## Judge agreement with the final label (exported rows)", "", markdown_table(tables["agreement"]), "",
              "## Rows per split x scenario x label x source", "", markdown_table(tables["counts"]), ""]
    dropped = manifest.get("balance_dropped") or {}
    if any(dropped.values()):
        lines += [f"Safe/unsafe balancing (max ratio {manifest['split'].get('balance_max_ratio')}) dropped: "
                  + ", ".join(f"{k} {v}" for k, v in dropped.items()) + " rows.", ""]
    lines += [f"Queries that leak a registered benchmark question and are kept out of training splits: "
              f"{manifest.get('excluded_contaminated', 0)}.", "",
              f"Source runs: {len(manifest.get('source_run_ids', []))} (listed in manifest.json).", ""]
    return "\n".join(lines)


def write_card(export_dir: Path, manifest: dict[str, Any], frames: dict[str, pl.DataFrame], wh: Warehouse) -> Path:
    tables = card_tables(frames, wh)
    charts, chinese = write_charts(tables["rows"], export_dir / "charts")
    path = export_dir / "card.md"
    path.write_text(render_card(manifest, tables, charts, chinese), encoding="utf-8")
    return path


def card_for_export(export_dir: Path, wh: Warehouse) -> Path:
    """Rewrite the card of an existing export folder from its manifest and Parquet files."""
    manifest_path = export_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{export_dir}: no manifest.json (not an export folder)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    frames = {s: pl.read_parquet(export_dir / f"{s}.parquet", columns=list(CARD_COLUMNS)) for s in SPLIT_ORDER
              if (export_dir / f"{s}.parquet").is_file()}
    return write_card(export_dir, manifest, frames, wh)
