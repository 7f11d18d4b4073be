"""`libra` commands for dedup outside the warehouse and benchmark registration."""

from __future__ import annotations

from libra.flows.cli import app  # noqa: F401  (commands register on it)
