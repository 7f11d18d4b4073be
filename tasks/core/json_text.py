"""JSON inside free text: the one scanner both LLM-output parsers use (verdicts, generated text lists).

An LLM wraps its JSON in prose, code fences and reasoning, so the scanner tries every position where a
value may start and decodes from there, ignoring what follows. Strings may hold literal newlines
(`strict=False`): LLMs write them, and refusing them would lose the whole answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_DECODER = json.JSONDecoder(strict=False)


def json_value_at(text: str, pos: int) -> tuple[Any, int] | None:
    """(value, end) of the JSON value starting exactly at `pos`, or None when none decodes there."""
    try:
        return _DECODER.raw_decode(text, pos)
    except (ValueError, RecursionError):  # RecursionError: deeply nested brackets in hostile output
        return None


def json_starts(text: str, openers: str = "{[", limit: int | None = None) -> list[int]:
    """Positions where a JSON value may start (an opener character), in order; at most `limit`."""
    starts = [i for i, ch in enumerate(text) if ch in openers]
    return starts if limit is None else starts[:limit]


def first_json(text: str, openers: str = "{[", accept: Callable[[Any], bool] = lambda _: True,
               limit: int | None = None) -> tuple[int, Any] | None:
    """(position, value) of the first JSON value starting at one of `openers` that decodes and that
    `accept` takes; trailing prose is ignored. None when there is none."""
    for pos in json_starts(text, openers, limit):
        decoded = json_value_at(text, pos)
        if decoded is not None and accept(decoded[0]):
            return pos, decoded[0]
    return None
