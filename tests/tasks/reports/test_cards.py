"""The dataset card: tables from the exported rows, PNG charts, the font fallback."""

from __future__ import annotations

import re

import polars as pl
import pytest

from libra.tasks.reports import cards
from libra.warehouse import Warehouse

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def frames() -> dict[str, pl.DataFrame]:
    def rows(split: str, n: int, scenario_of) -> pl.DataFrame:
        return pl.DataFrame([{
            "response_id": f"{split}-{i}", "split": split, "scenario": scenario_of(i),
            "label": "不安全" if i % 3 else "安全", "source": "real" if i % 4 == 0 else "synthetic",
            "vote_status": "hard" if i % 5 == 0 else "agreed",
            "label_source": "adjudicated" if i % 5 == 0 else "majority",
        } for i in range(n)])

    return {"pretrain": rows("pretrain", 60, lambda i: ["违法犯罪", "偏见歧视"][i % 2]),
            "finetune": rows("finetune", 20, lambda i: "身心健康"),
            "eval": rows("eval", 10, lambda i: None if i == 0 else "违法犯罪")}


MANIFEST = {"export_id": "abc123", "run_id": "split-x", "created_at": "2026-01-01T00:00:00+00:00",
            "code_version": "0.1.0", "counts": {"pretrain": 60, "finetune": 20, "eval": 10},
            "balance_dropped": {"pretrain": 7, "finetune": 0}, "split": {"balance_max_ratio": 1.5},
            "excluded_contaminated": 3, "source_run_ids": ["r1", "r2"]}


@pytest.mark.filterwarnings("ignore:Glyph")  # the stand-in font has no Chinese glyphs
@pytest.mark.parametrize("font", [None, "DejaVu Sans"])
def test_card_has_the_counts_and_two_png_charts(tmp_path, monkeypatch, font):
    monkeypatch.setattr(cards, "cjk_font", lambda: font)
    wh = Warehouse(tmp_path / "w.duckdb")
    path = cards.write_card(tmp_path, MANIFEST, frames(), wh)
    text = path.read_text(encoding="utf-8")
    text = re.sub(r" {2,}", " ", text)  # table rows without the padding that aligns their columns
    assert "| eval | 10 | 6 | 4 | 20.0 | 20.0 | 0.0 |" in text  # rows, unsafe, safe, hard %, adjudicated %, human %
    assert "| finetune | 身心健康 | 不安全 | synthetic | 10 |" in text
    assert "| eval | (none) | 安全 | real | 1 |" in text  # a row without scenario is counted, not dropped
    assert "dropped: pretrain 7, finetune 0 rows" in text and "benchmark question and are kept out" in text
    for name in ("scenario_distribution.png", "label_balance.png"):
        assert f"(charts/{name})" in text
        assert (tmp_path / "charts" / name).read_bytes().startswith(PNG_MAGIC)
    assert ("English taxonomy names" in text) == (font is None)


def test_card_of_an_empty_export_still_renders(tmp_path, monkeypatch):
    monkeypatch.setattr(cards, "cjk_font", lambda: None)
    empty = {s: f.clear() for s, f in frames().items()}
    path = cards.write_card(tmp_path, {**MANIFEST, "counts": {"pretrain": 0, "finetune": 0, "eval": 0}}, empty,
                            Warehouse(tmp_path / "w.duckdb"))
    assert "_(none)_" in path.read_text(encoding="utf-8")
    assert (tmp_path / "charts" / "label_balance.png").read_bytes().startswith(PNG_MAGIC)
