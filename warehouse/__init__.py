"""The warehouse: numbered migrations, views, and the one module that opens DuckDB (`store`)."""

from libra.warehouse.store import Warehouse, WarehouseError, sql_text

__all__ = ["Warehouse", "WarehouseError", "sql_text"]
