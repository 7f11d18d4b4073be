"""JSON Lines parsing, line by line: each non-blank line parsed on its own, a broken line carrying its
error so that each reader decides whether it fails the file or collects the line as bad. Files are read
by tasks/data/read.py (formats, encodings), which uses this for JSON Lines; streams that are not files
(dedup input on stdin, verdict and training-export files read line by line) use it directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JsonLine:
    lineno: int  # 1-based, counting blank lines
    value: Any  # the parsed value; None when `error` is set
    error: str | None  # "not valid JSON (<reason>: column <n>)"
    text: str  # the line as read, without its line break


def json_lines(lines: Iterable[str]) -> Iterator[JsonLine]:
    """Every non-blank line, parsed (a file object streams; a text's splitlines() works too)."""
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")  # a file object keeps the newline; an error column counts within the line
        if not line.strip():
            continue
        try:
            yield JsonLine(lineno, json.loads(line), None, line)
        except json.JSONDecodeError as e:
            yield JsonLine(lineno, None, f"not valid JSON ({e.msg}: column {e.colno})", line)
