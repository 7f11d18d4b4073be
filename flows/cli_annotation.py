"""`libra` commands for annotation (verdict parsing, the human labelling loop)."""

from __future__ import annotations

from libra.flows.cli import app  # noqa: F401  (commands register on it)
