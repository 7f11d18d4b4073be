"""Training flows (two-stage curriculum SFT)."""

from __future__ import annotations

# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS: dict = {}
