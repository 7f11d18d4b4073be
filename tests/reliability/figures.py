"""The reliability suite's table of figures: each check records what it measured next to what the
fault-free run (or the rule) says; conftest.py prints the table at the end of the session and writes it
to $LIBRA_RELIABILITY_TABLE when set (docs/reliability.md quotes one such run)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    area: str      # faults | outage | kill | bad input | secrets | concurrency
    check: str     # what was done
    measured: str  # what came out
    expected: str  # the fault-free run, or the rule
    ok: bool


FIGURES: list[Figure] = []


def record(area: str, check: str, measured: object, expected: object, ok: bool | None = None) -> None:
    FIGURES.append(Figure(area, check, str(measured), str(expected),
                          (str(measured) == str(expected)) if ok is None else ok))


def table() -> str:
    """A Markdown table of every figure recorded so far."""
    lines = ["| area | check | measured | expected | ok |", "|---|---|---|---|---|"]
    for f in FIGURES:
        lines.append(f"| {f.area} | {f.check} | {f.measured} | {f.expected} | {'yes' if f.ok else 'NO'} |")
    return "\n".join(lines)
