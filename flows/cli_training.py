"""`libra` commands for training, evaluation and scoring."""

from __future__ import annotations

from libra.flows.cli import app  # noqa: F401  (commands register on it)
