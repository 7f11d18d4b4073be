"""The one JSON Lines reader: line numbers count blank lines, broken lines carry their error."""

from __future__ import annotations

import io

from libra.tasks.data.jsonl import json_lines


def test_lines_are_numbered_as_in_the_file_and_errors_do_not_stop_reading():
    text = '{"id": 1}\n\n  \n{"id": 2,\n[1, 2]\n"just a string"\n'
    got = [(jl.lineno, jl.value, jl.error) for jl in json_lines(io.StringIO(text))]
    assert got == [
        (1, {"id": 1}, None),
        (4, None, "not valid JSON (Expecting property name enclosed in double quotes: column 10)"),
        (5, [1, 2], None),
        (6, "just a string", None),
    ]
    assert [jl.text for jl in json_lines(text.splitlines())][1] == '{"id": 2,'
