"""Human re-annotation of hard samples (step 9): export a sheet, import the labels back.

The sheet comes as CSV (UTF-8 with BOM, so spreadsheet programs show the Chinese) and JSONL, with
the same rows: id (the response_id), query, response, scenario, why the sample is hard, every judge's
vote and analysis, the adjudication, and blank `label` / `note` columns for the annotator.

Importing validates the whole file before anything is written: an unknown id, a label other than
安全 / 不安全 / 有争议 (or safe / unsafe / controversial), a duplicated id, a broken line — every
problem is reported with its line number and nothing is applied. Rows with a blank label are not
labelled yet and are skipped. A valid file lands in `human_labels` in one transaction, under a run
of its own; the final label then follows human > adjudicated > majority (v_final_labels).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from libra.tasks.errors import InputError
from libra.tasks.jsonl import json_lines
from libra.tasks.runs import finish_run, start_run
from libra.warehouse import Warehouse, sql_text

SHEET_NAME = "hard-samples"
CSV_COLUMNS = ("id", "query", "response", "scenario", "subcategory", "hard_reason", "majority_label",
               "adjudicated_label", "adjudication_analysis", "votes", "label", "note")
HUMAN_LABELS = {"安全": "安全", "不安全": "不安全", "有争议": "有争议",
                "safe": "安全", "unsafe": "不安全", "controversial": "有争议"}
MAX_ERRORS_SHOWN = 20


class LabelSheetError(InputError):
    """A label sheet that cannot be imported; the message names the file and every bad line."""


@dataclass(frozen=True)
class ExportedSheet:
    csv_path: Path
    jsonl_path: Path
    rows: int


@dataclass
class ImportSummary:
    path: Path
    run_id: str | None = None
    rows: int = 0
    labelled: int = 0
    skipped_blank: int = 0
    unchanged: int = 0
    imported: int = 0
    labels: dict[str, int] = field(default_factory=dict)


# -- export ------------------------------------------------------------------------------------------

def hard_sheet(wh: Warehouse, include_labelled: bool = False, limit: int | None = None) -> pl.DataFrame:
    rows = wh.query(sql_text("queries/hard_sheet.sql"), {"include_labelled": include_labelled})
    return rows.head(limit) if limit is not None else rows


def _votes_text(votes: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['judge']}: {v['label'] or '弃权'} — {v['analysis'] or ''}".rstrip(" —") for v in votes)


def write_sheet(rows: pl.DataFrame, out_dir: Path, *, overwrite: bool = False) -> ExportedSheet:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, jsonl_path = out_dir / f"{SHEET_NAME}.csv", out_dir / f"{SHEET_NAME}.jsonl"
    existing = [p for p in (csv_path, jsonl_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (someone may be labelling it); choose another --out "
                              "or pass --force to replace it")
    records = []
    for r in rows.iter_rows(named=True):
        records.append({
            "id": r["id"], "query": r["query"], "response": r["response"], "scenario": r["scenario"],
            "subcategory": r["subcategory"], "hard_reason": r["hard_reason"],
            "majority_label": r["majority_label"], "adjudicated_label": r["adjudicated_label"],
            "adjudication_analysis": r["adjudication_analysis"], "votes": r["votes"],
            "label": r["human_label"] or "", "note": "",
        })
    with csv_path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for rec in records:
            writer.writerow({**{k: "" if rec[k] is None else rec[k] for k in CSV_COLUMNS},
                             "votes": _votes_text(rec["votes"])})
    with jsonl_path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return ExportedSheet(csv_path, jsonl_path, len(records))


def export_hard(wh: Warehouse, out_dir: Path, *, include_labelled: bool = False, limit: int | None = None,
                overwrite: bool = False) -> ExportedSheet:
    return write_sheet(hard_sheet(wh, include_labelled, limit), out_dir, overwrite=overwrite)


# -- import ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SheetRow:
    line: int  # where the record starts in the file (1-based; a CSV cell may span several lines)
    id: str
    label: str  # as written; validated later
    note: str | None
    annotator: str | None
    row: int | None = None  # CSV: the spreadsheet row (the header is row 1)

    @property
    def where(self) -> str:
        return f"line {self.line}" + (f" (row {self.row})" if self.row is not None and self.row != self.line else "")


def _cell(value: object) -> str:
    return "" if value is None else str(value).strip()


def _read_csv(path: Path, errors: list[str]) -> list[SheetRow]:
    rows: list[SheetRow] = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise LabelSheetError(f"{path}: the file is empty") from None
        except csv.Error as e:
            raise LabelSheetError(f"{path}: line 1: not a CSV header: {e}") from None
        if "id" not in header and "response_id" in header:
            header[header.index("response_id")] = "id"
        missing = [c for c in ("id", "label") if c not in header]
        if missing:
            raise LabelSheetError(f"{path}: line 1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
        pos = {name: header.index(name) for name in ("id", "label", "note", "annotator") if name in header}
        previous, row = reader.line_num, 1
        while True:
            start = previous + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                errors.append(f"line {start}: broken CSV record: {e}")
                break  # the reader cannot resynchronise reliably after a broken quote
            previous = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            row += 1
            if len(record) > len(header):
                errors.append(f"line {start} (row {row}): {len(record)} fields but the header has {len(header)}")
                continue
            get = {name: _cell(record[i]) if i < len(record) else "" for name, i in pos.items()}
            rows.append(SheetRow(start, get["id"], get["label"], get.get("note") or None,
                                 get.get("annotator") or None, row=row))
    return rows


def _read_jsonl(path: Path, errors: list[str]) -> list[SheetRow]:
    rows: list[SheetRow] = []
    with path.open(encoding="utf-8-sig") as f:
        for jl in json_lines(f):
            n, obj = jl.lineno, jl.value
            if jl.error:
                errors.append(f"line {n}: {jl.error}")
                continue
            if not isinstance(obj, dict):
                errors.append(f"line {n}: expected a JSON object, got {type(obj).__name__}")
                continue
            rid = obj.get("id", obj.get("response_id"))
            if "label" not in obj:
                errors.append(f"line {n}: no 'label' key")
                continue
            rows.append(SheetRow(n, _cell(rid), _cell(obj.get("label")), _cell(obj.get("note")) or None,
                                 _cell(obj.get("annotator")) or None))
    return rows


def read_sheet(path: Path) -> tuple[list[SheetRow], list[str]]:
    """Rows of a CSV or JSONL sheet, and the problems found while reading (line-numbered)."""
    if not path.is_file():
        raise LabelSheetError(f"{path}: no such file")
    errors: list[str] = []
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv(path, errors)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        rows = _read_jsonl(path, errors)
    else:
        raise LabelSheetError(f"{path}: unknown sheet format {suffix!r} (use .csv or .jsonl)")
    return rows, errors


def validate_rows(rows: list[SheetRow], known_ids: set[str]) -> list[str]:
    errors: list[str] = []
    first: dict[str, str] = {}
    for row in rows:
        if not row.id:
            errors.append(f"{row.where}: the id is empty")
            continue
        if row.id in first:
            errors.append(f"{row.where}: duplicate id {row.id!r} (first on {first[row.id]})")
            continue
        first[row.id] = row.where
        if row.id not in known_ids:
            errors.append(f"{row.where}: unknown id {row.id!r} (no voted response has it)")
        if row.label and row.label.lower() not in HUMAN_LABELS:
            errors.append(f"{row.where}: invalid label {row.label!r} (use 安全, 不安全 or 有争议)")
    return errors


def import_labels(wh: Warehouse, path: Path, *, annotator: str | None = None) -> ImportSummary:
    """Validate the whole sheet, then store its labels in one transaction; raises LabelSheetError."""
    path = path.resolve()
    rows, errors = read_sheet(path)
    ids = {r.id for r in rows if r.id}
    known = set()
    if ids:
        frame = pl.DataFrame({"response_id": sorted(ids)})
        known = set(wh.query("SELECT f.response_id FROM v_final_labels f SEMI JOIN wanted w USING (response_id)",
                             frames={"wanted": frame})["response_id"].to_list())
    errors += validate_rows(rows, known)
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f"\n  … and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        raise LabelSheetError(f"{path}: {len(errors)} problem(s); nothing was imported\n  "
                              + "\n  ".join(shown) + more)
    summary = ImportSummary(path=path, rows=len(rows))
    labelled = [r for r in rows if r.label]
    summary.labelled, summary.skipped_blank = len(labelled), len(rows) - len(labelled)
    current = wh.query(
        "SELECT response_id, arg_max(label, created_at) AS label, arg_max(note, created_at) AS note "
        "FROM human_labels GROUP BY response_id"
    )
    latest = {r["response_id"]: (r["label"], r["note"]) for r in current.iter_rows(named=True)}
    new = [r for r in labelled if latest.get(r.id) != (HUMAN_LABELS[r.label.lower()], r.note)]
    summary.unchanged = len(labelled) - len(new)
    if not new:
        return summary
    with wh.writer():  # the run row and every label land together, or nothing does
        run_id = start_run(wh, "import-labels", None)
        frame = pl.DataFrame([{
            "response_id": r.id, "label": HUMAN_LABELS[r.label.lower()], "annotator": r.annotator or annotator,
            "note": r.note, "source_file": str(path), "source_line": r.line, "run_id": run_id,
        } for r in new], schema={"response_id": pl.String, "label": pl.String, "annotator": pl.String,
                                 "note": pl.String, "source_file": pl.String, "source_line": pl.Int32,
                                 "run_id": pl.String})
        summary.imported = wh.insert("human_labels", frame)
        summary.labels = dict(frame.group_by("label").len().iter_rows())
        summary.run_id = run_id
        finish_run(wh, run_id, "completed", {"file": str(path), "imported": summary.imported,
                                             "unchanged": summary.unchanged, "labels": summary.labels})
    return summary
