"""`libra` commands for annotation: verdict parsing, the human labelling loop."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer

from libra.flows.cli.common import WarehouseOpt, echo, fail, open_reader


class SheetFormat(StrEnum):
    sheet = "sheet"
    label_studio = "label-studio"


def _parse_lines(source: TextIO, out: TextIO) -> tuple[int, int]:
    """One output line per non-blank input line; a broken input line gets an `error` and label null."""
    from libra.tasks.annotation.verdicts import parse_verdict
    from libra.tasks.data.jsonl import json_lines

    seen = bad = 0
    for jl in json_lines(source):
        n, obj = jl.lineno, jl.value
        seen += 1
        record: dict[str, object] = {"line": n}
        if jl.error:
            record["error"] = f"line {n}: {jl.error}"
        if obj is not None and not (isinstance(obj, dict) and isinstance(obj.get("text"), str | None)):
            obj, record["error"] = None, f"line {n}: expected an object with a string 'text' field"
        if obj is not None and "id" in obj:
            record["id"] = obj["id"]
        verdict = parse_verdict(obj.get("text") if obj is not None else None)
        if "error" in record:
            bad += 1
            record.update(label=None, category=None, analysis=None, how=None, prompt_label=None, is_refusal=None)
        else:
            record.update(verdict.as_dict())
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return seen, bad


def parse_verdicts(
    file: Annotated[Path | None, typer.Argument(help="JSONL with a `text` field per line (default: stdin).")] = None,
) -> None:
    """Parse judge/guard outputs with the factory's verdict parser, for debugging a judge.

    Writes one JSONL line per input line: `label` (安全 / 不安全 / 有争议, or null = abstention),
    `category`, `analysis`, `how` (json, repaired_json, line, prose, ambiguous, unparseable, empty),
    `prompt_label`, and the input's `id` when it has one.
    """
    if file is None:
        seen, bad = _parse_lines(sys.stdin, sys.stdout)
    else:
        if not file.is_file():
            fail(f"{file}: no such file")
        with file.open(encoding="utf-8-sig") as f:
            seen, bad = _parse_lines(f, sys.stdout)
    if bad:
        sys.stderr.write(f"{bad} of {seen} input lines could not be read (see their `error`)\n")


def export_hard(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the sheet (hard-samples.csv / .jsonl).")],
    warehouse: WarehouseOpt = None,
    include_labelled: Annotated[bool, typer.Option(help="Also samples a human already labelled.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many samples.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing sheet in --out.")] = False,
    fmt: Annotated[SheetFormat, typer.Option(
        "--format", "-f", help="sheet: CSV + JSONL; label-studio: Label Studio tasks JSON (the judges' votes as "
                               "predictions) + its labelling config.")] = SheetFormat.sheet,
) -> None:
    """Write the hard samples as a labelling sheet (CSV and JSONL) with a blank `label` column.

    Each row: id, query, response, scenario, why it is hard, every judge's vote and analysis, the
    adjudication. Fill `label` with 安全, 不安全 or 有争议 (optionally `note`), then `libra import-labels`.
    With --format label-studio: hard-samples.label-studio.json (import it into a Label Studio project
    made with label-studio-config.xml), then `libra import-labels` on Label Studio's JSON export.
    """
    from libra.tasks.annotation import human_labels

    wh = open_reader(warehouse)
    try:
        sheet = human_labels.export_hard(wh, out, include_labelled=include_labelled, limit=limit, overwrite=force,
                                         fmt=fmt.value)
    except FileExistsError as e:
        fail(str(e))
    echo(f"{sheet.rows} hard samples -> {' and '.join(str(p) for p in sheet.files)}")


def import_labels(
    file: Annotated[Path, typer.Argument(
        help="A filled sheet from export-hard (.csv or .jsonl), or Label Studio's JSON export (.json).")],
    warehouse: WarehouseOpt = None,
    annotator: Annotated[str | None, typer.Option(help="Annotator name for rows without an `annotator` column.")] = None,
) -> None:
    """Import human labels; the whole file is validated first and a file with any bad row is rejected.

    Unknown ids, invalid labels and duplicated ids are reported with their line numbers (Label Studio:
    task numbers). Rows with a blank label are skipped. Final labels then follow human > adjudicated > majority.
    """
    from libra.tasks.annotation import human_labels

    wh = open_reader(warehouse)
    try:
        summary = human_labels.import_labels(wh, file, annotator=annotator)
    except human_labels.LabelSheetError as e:
        fail(str(e))
    echo(
        f"{file}: {summary.imported} labels imported {summary.labels or ''} "
        f"({summary.unchanged} unchanged, {summary.skipped_blank} rows without a label)"
        + (f"; run {', '.join(summary.run_ids)}" if summary.run_ids else "")
    )
