"""`libra` commands for imports, exports, benchmark building, dataset cards."""

from __future__ import annotations

from libra.flows.cli import app  # noqa: F401  (commands register on it)
