"""Charts of the reports (PNG through matplotlib, imported only when a chart is drawn: it costs about
half a second of start-up)."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def comparison_chart(frame: pl.DataFrame, benchmark: str, path: Path) -> Path:
    """Grouped bars: accuracy, F1-unsafe, F1-safe (macro averages) per guard."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    guards = frame["guard"].to_list()
    metrics = [("accuracy", "Accuracy"), ("f1_unsafe", "F1-unsafe"), ("f1_safe", "F1-safe")]
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(guards) + 2), 4.5))
    for i, (col, title) in enumerate(metrics):
        xs = [g + (i - 1) * width for g in range(len(guards))]
        bars = ax.bar(xs, frame[col].to_list(), width, label=title)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(guards)), [g if len(g) <= 28 else g[:25] + "…" for g in guards], rotation=15, ha="right")
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("macro average over sources")
    ax.set_title(f"Guards on {benchmark}")
    ax.legend(loc="upper center", ncol=len(metrics), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
