"""Mining the pretrain pool with a guard: Libra's stage 2 learns from what stage 1 gets wrong.

A guard (a stage-1 checkpoint, any checkpoint folder, or an endpoint) scores every settled response of
the pretrain split it has not scored under this prompt; its answers are stored as `predictions` with
benchmark 'warehouse' and item_id = response_id. Where it disagrees with the judges, v_guard_disagreements
makes the sample hard (hard_reason guard_disagreement:<guard>): the adjudicator and the review page take
it from there, and once settled the split flow moves its query to finetune (tasks/data/splits.py:
move_verified_hard), so the next stage-2 training learns from it.

The pool is read in keyset pages of `POOL_PAGE` responses: a checkpoint guard starts vLLM once per page
(large pages: the engine start is paid once per 20k answers), an endpoint guard asks page by page in
the flow's usual batches; nothing holds the whole pool in the flow process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl

from libra.tasks.core.config import Evaluation, FactoryConfig
from libra.tasks.core.overrides import with_overrides
from libra.tasks.llm.step import PendingQuery, pages
from libra.warehouse import Warehouse, sql_text

BENCHMARK = "warehouse"  # predictions.benchmark of mined samples (read by v_guard_disagreements)
POOL = PendingQuery("queries/mine_pool.sql", (("item_id", ""),))
POOL_PAGE = 20_000


def mining_settings(cfg: FactoryConfig, *, max_tokens: int | None, structured: str | None) -> Evaluation:
    """The config's `evaluation` section (vLLM engine, max_tokens, structured) with the flow's options on top."""
    return with_overrides(cfg.evaluation, {"max_tokens": max_tokens, "structured": structured})


def pool_pages(wh: Warehouse, guard_id: str, version: str, limit: int | None,
               page_size: int = POOL_PAGE) -> Iterator[pl.DataFrame]:
    """The unscored pretrain pool in pages (item_id, question, response); at most `limit` rows in all."""
    left = limit
    for page in pages(wh, POOL, page_size if left is None else min(page_size, left),
                      {"guard": guard_id, "prompt": version}):
        if left is not None:
            page = page.head(left)
            left -= page.height
        yield page
        if left is not None and left <= 0:
            return


def disagreements(wh: Warehouse, guard_id: str) -> pl.DataFrame:
    """Per scenario: scored, unreadable, disagreements (misses and over-flags) and how many are settled."""
    return wh.query(sql_text("queries/mine_disagreements.sql"), {"guard": guard_id})


def totals(table: pl.DataFrame) -> dict[str, Any]:
    """The per-scenario table summed, for the run summary."""
    if table.is_empty():
        return {"scored": 0, "disagreements": 0}
    return {c: int(table[c].sum()) for c in table.columns if c != "scenario"}
