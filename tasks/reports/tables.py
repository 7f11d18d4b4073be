"""Markdown tables for every report (guard comparison, ablation, coverage, dataset card, agreement),
drawn by polars' own MARKDOWN table formatting rather than by hand in each report."""

from __future__ import annotations

import polars as pl

_MARKDOWN = {
    "tbl_formatting": "MARKDOWN", "tbl_hide_column_data_types": True, "tbl_hide_dataframe_shape": True,
    "tbl_rows": -1, "tbl_cols": -1, "tbl_width_chars": 65535, "fmt_str_lengths": 10_000,
    "tbl_cell_numeric_alignment": "RIGHT",
}


def markdown_table(frame: pl.DataFrame, empty: str = "_(none)_") -> str:
    """The frame as a GitHub markdown table: every row and column, cells in full, nulls empty and `|`
    escaped (a cell with a pipe would split its column). An empty frame is the text `empty`."""
    if frame.is_empty():
        return empty
    cells = frame.select(
        pl.col(c).cast(pl.String).fill_null("").str.replace_all("|", r"\|", literal=True) for c in frame.columns
    )
    with pl.Config(**_MARKDOWN):  # type: ignore[arg-type]
        return str(cells)
