"""The warehouse-backed call log: `llm_calls` is both the LLM cache and the audit log."""

from __future__ import annotations

from typing import Any

import polars as pl

from libra.warehouse import Warehouse, sql_text
from libra.warehouse.schemas import schema

LLM_CALL_SCHEMA = schema("llm_calls")


class WarehouseCallLog:
    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    def lookup(self, call_keys: list[str]) -> dict[str, str]:
        if not call_keys:
            return {}
        found = self.warehouse.query(
            sql_text("queries/cached_calls.sql"),
            frames={"wanted_keys": pl.DataFrame({"call_key": call_keys}, schema={"call_key": pl.String})},
        )
        return dict(zip(found["call_key"].to_list(), found["response_text"].to_list(), strict=True))

    def record(self, rows: list[dict[str, Any]]) -> None:
        # (call_key, run_id) is unique: a call repeated in one run (a retried task) updates its row.
        self.warehouse.insert("llm_calls", pl.DataFrame(rows, schema=LLM_CALL_SCHEMA), on_conflict="replace")
