"""Human re-annotation of hard samples (step 9): export a sheet, import the labels back.

The sheet comes as CSV (UTF-8 with BOM, so spreadsheet programs show the Chinese) and JSONL, with
the same rows: id (the response_id), query, response, scenario, why the sample is hard, every judge's
vote and analysis, the adjudication, and blank `label` / `note` columns for the annotator.

Importing validates the whole file before anything is written: an unknown id, a label other than
安全 / 不安全 / 有争议 (or safe / unsafe / controversial), a duplicated id, a broken line — every
problem is reported with its line number and nothing is applied. Rows with a blank label are not
labelled yet and are skipped. A valid file lands in `human_labels` in one transaction, under a run
of its own (one per annotator when the file names several); the final label then follows human >
adjudicated > majority (v_final_labels).

Label Studio speaks the same loop: `export_hard(..., fmt="label-studio")` writes its tasks JSON (the
judges' and the adjudicator's votes as predictions) and a labelling config for the project, and
`import_labels` reads Label Studio's JSON export back (one row per annotation, with its annotator and
lead time), under the same validation. The review page (`libra review`) writes through the same checks.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from libra.tasks.core.errors import InputError
from libra.tasks.core.runs import finish_run, start_run
from libra.tasks.data.read import json_records, jsonl_records, read_text
from libra.warehouse import Warehouse, sql_text

SHEET_NAME = "hard-samples"
CSV_COLUMNS = ("id", "query", "response", "scenario", "subcategory", "hard_reason", "majority_label",
               "adjudicated_label", "adjudication_analysis", "votes", "label", "note")
HUMAN_LABELS = {"安全": "安全", "不安全": "不安全", "有争议": "有争议",
                "safe": "安全", "unsafe": "不安全", "controversial": "有争议"}
MAX_ERRORS_SHOWN = 20
LABEL_STUDIO_TASKS = f"{SHEET_NAME}.label-studio.json"
LABEL_STUDIO_CONFIG = "label-studio-config.xml"
# The labelling interface the exported tasks are made for: the prediction results name these tags.
LABEL_STUDIO_XML = """<View>
  <Header value="问题 (query)"/>
  <Text name="query" value="$query"/>
  <Header value="回答 (response)"/>
  <Text name="response" value="$response"/>
  <Header value="场景 $scenario · 难点 $hard_reason · 多数票 $majority_label"/>
  <Text name="votes" value="$votes_text"/>
  <Choices name="label" toName="response" choice="single" showInline="true" required="true">
    <Choice value="安全" hotkey="1"/>
    <Choice value="不安全" hotkey="2"/>
    <Choice value="有争议" hotkey="3"/>
  </Choices>
  <TextArea name="note" toName="response" placeholder="备注 (note)" maxSubmissions="1" editable="true"/>
</View>
"""


class LabelSheetError(InputError):
    """A label sheet that cannot be imported; the message names the file and every bad line."""


@dataclass(frozen=True)
class ExportedSheet:
    csv_path: Path | None
    jsonl_path: Path | None
    rows: int
    label_studio_path: Path | None = None
    label_studio_config: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.csv_path, self.jsonl_path, self.label_studio_path, self.label_studio_config) if p]


@dataclass
class ImportSummary:
    path: Path
    run_id: str | None = None
    run_ids: list[str] = field(default_factory=list)  # one per annotator of the file
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


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (someone may be labelling it); choose another --out "
                              "or pass --force to replace it")


def _records(rows: pl.DataFrame) -> list[dict[str, Any]]:
    return [{
        "id": r["id"], "query": r["query"], "response": r["response"], "scenario": r["scenario"],
        "subcategory": r["subcategory"], "hard_reason": r["hard_reason"],
        "majority_label": r["majority_label"], "adjudicated_label": r["adjudicated_label"],
        "adjudication_analysis": r["adjudication_analysis"], "votes": r["votes"],
        "label": r["human_label"] or "", "note": "",
    } for r in rows.iter_rows(named=True)]


def write_sheet(rows: pl.DataFrame, out_dir: Path, *, overwrite: bool = False) -> ExportedSheet:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, jsonl_path = out_dir / f"{SHEET_NAME}.csv", out_dir / f"{SHEET_NAME}.jsonl"
    _refuse_existing([csv_path, jsonl_path], overwrite)
    records = _records(rows)
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


def _choice(label: str) -> list[dict[str, Any]]:
    return [{"from_name": "label", "to_name": "response", "type": "choices", "value": {"choices": [label]}}]


def label_studio_tasks(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Label Studio tasks: the sample in `data` (its id as `response_id`: Label Studio numbers tasks
    itself), one prediction per judge that gave a label and one for the adjudicator; an abstaining
    judge is no prediction (Label Studio has no way to show one)."""
    tasks = []
    for rec in _records(rows):
        data = {k: "" if rec[k] is None else rec[k] for k in
                ("query", "response", "scenario", "subcategory", "hard_reason", "majority_label")}
        data["response_id"] = rec["id"]
        data["votes_text"] = _votes_text(rec["votes"])
        predictions = [{"model_version": v["judge"], "result": _choice(HUMAN_LABELS[v["label"]])}
                       for v in rec["votes"] if v["label"] in HUMAN_LABELS]
        if rec["adjudicated_label"] in HUMAN_LABELS:
            predictions.append({"model_version": "adjudicator",
                                "result": _choice(HUMAN_LABELS[rec["adjudicated_label"]])})
        tasks.append({"data": data, "predictions": predictions})
    return tasks


def write_label_studio(rows: pl.DataFrame, out_dir: Path, *, overwrite: bool = False) -> ExportedSheet:
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks_path, config_path = out_dir / LABEL_STUDIO_TASKS, out_dir / LABEL_STUDIO_CONFIG
    _refuse_existing([tasks_path, config_path], overwrite)
    tasks = label_studio_tasks(rows)
    tasks_path.write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    config_path.write_text(LABEL_STUDIO_XML, encoding="utf-8")
    return ExportedSheet(None, None, len(tasks), tasks_path, config_path)


def export_hard(wh: Warehouse, out_dir: Path, *, include_labelled: bool = False, limit: int | None = None,
                overwrite: bool = False, fmt: str = "sheet") -> ExportedSheet:
    """fmt: 'sheet' (CSV + JSONL) or 'label-studio' (tasks JSON + labelling config)."""
    rows = hard_sheet(wh, include_labelled, limit)
    if fmt == "label-studio":
        return write_label_studio(rows, out_dir, overwrite=overwrite)
    if fmt != "sheet":
        raise ValueError(f"unknown export format {fmt!r} (use sheet or label-studio)")
    return write_sheet(rows, out_dir, overwrite=overwrite)


# -- import ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SheetRow:
    line: int  # where the record starts in the file (1-based; a CSV cell may span several lines)
    id: str
    label: str  # as written; validated later
    note: str | None
    annotator: str | None
    row: int | None = None  # CSV: the spreadsheet row (the header is row 1)
    seconds: float | None = None  # time spent on the item (Label Studio's lead_time)
    task: int | None = None  # Label Studio: the task's place in the export (1-based); `line` is the same

    @property
    def where(self) -> str:
        if self.task is not None:
            return f"task {self.task}"
        return f"line {self.line}" + (f" (row {self.row})" if self.row is not None and self.row != self.line else "")


def _cell(value: object) -> str:
    return "" if value is None else str(value).strip()


def _read_csv(path: Path, text: str, errors: list[str]) -> list[SheetRow]:
    """A sheet's CSV. Not tasks/data/read.py's CSV records: a spreadsheet drops trailing empty cells,
    so a row shorter than the header is a row here (its missing cells empty), not a bad record."""
    rows: list[SheetRow] = []
    # the decoded text, lines ending at \n only (as the reader splits them)
    reader = csv.reader([line + "\n" for line in text.split("\n")])
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


def _read_jsonl(path: Path, text: str, errors: list[str]) -> list[SheetRow]:
    rows: list[SheetRow] = []
    records, bad = jsonl_records(path, text)
    broken = {b.line: b.error for b in bad}
    parsed = {r.line: r.value for r in records}
    for n in sorted(broken.keys() | parsed.keys()):  # the problems in line order
        if n in broken:
            errors.append(f"line {n}: {broken[n]}")
            continue
        obj = parsed[n]
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


def _annotator_name(annotation: dict[str, Any]) -> str | None:
    """Label Studio names the annotator as a user id, a user object, or `created_username`."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    if who in (None, "") and annotation.get("created_username"):
        who = str(annotation["created_username"]).split(",")[0]
    return _cell(who) or None


def _label_studio_result(result: Any) -> tuple[list[str], str | None]:
    """The choices and the note text of one annotation's `result` list."""
    choices: list[str] = []
    notes: list[str] = []
    for item in result if isinstance(result, list) else []:
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, dict):
            continue
        if isinstance(value.get("choices"), list):
            choices += [_cell(c) for c in value["choices"]]
        if isinstance(value.get("text"), list):
            notes += [_cell(t) for t in value["text"] if _cell(t)]
        elif isinstance(value.get("text"), str) and value["text"].strip():
            notes.append(value["text"].strip())
    return choices, "\n".join(notes) or None


def _read_label_studio(path: Path, tasks: Any, errors: list[str]) -> list[SheetRow]:
    """Label Studio's JSON export: a list of tasks, each with `data` (our `response_id`) and its
    `annotations`; a cancelled (skipped) annotation is no label. Also its JSON-MIN export, where each
    task is one flat object with the data fields and the `label` / `note` choices."""
    rows: list[SheetRow] = []
    for n, task in enumerate(tasks, start=1):
        if not isinstance(task, dict):
            errors.append(f"task {n}: expected a JSON object, got {type(task).__name__}")
            continue
        data = task.get("data") if isinstance(task.get("data"), dict) else None
        if data is None:  # JSON-MIN: data fields and the tags' values side by side
            rid = _cell(task.get("response_id"))
            label = task.get("label")
            label = label[0] if isinstance(label, list) and len(label) == 1 else label
            if isinstance(label, dict | list):
                errors.append(f"task {n}: `label` should be one choice, got {json.dumps(label, ensure_ascii=False)}")
                continue
            seconds = task.get("lead_time")
            rows.append(SheetRow(n, rid, _cell(label), _cell(task.get("note")) or None,
                                 _cell(task.get("annotator")) or None, seconds=_seconds(seconds), task=n))
            continue
        rid = _cell(data.get("response_id", data.get("id")))
        annotations = task.get("annotations", task.get("completions")) or []
        if not isinstance(annotations, list):
            errors.append(f"task {n}: `annotations` should be a list")
            continue
        for annotation in annotations:
            if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
                continue
            choices, note = _label_studio_result(annotation.get("result"))
            if len(choices) > 1:
                errors.append(f"task {n}: an annotation chose {len(choices)} labels ({', '.join(choices)}); "
                              "the labelling config allows one")
                continue
            rows.append(SheetRow(n, rid, choices[0] if choices else "", note, _annotator_name(annotation),
                                 seconds=_seconds(annotation.get("lead_time")), task=n))
    return rows


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < 10 ** 7 else None


def read_sheet(path: Path) -> tuple[list[SheetRow], list[str]]:
    """Rows of a CSV, JSONL or Label Studio JSON sheet, and the problems found while reading (numbered).
    The text is read by tasks/data/read.py (UTF-8 with or without a BOM, GB18030, UTF-16 with a BOM)."""
    if not path.is_file():
        raise LabelSheetError(f"{path}: no such file")
    errors: list[str] = []
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json", ".ndjson"):
        raise LabelSheetError(f"{path}: unknown sheet format {suffix!r} (use .csv or .jsonl)")
    text, _ = read_text(path, undecodable="fail", error=LabelSheetError)
    if suffix == ".csv":
        rows = _read_csv(path, text, errors)
    elif suffix == ".json" and text.lstrip().startswith("["):
        tasks = [r.value for r in json_records(path, text, error=LabelSheetError)]
        rows = _read_label_studio(path, tasks, errors)
    else:
        rows = _read_jsonl(path, text, errors)
    return rows, errors


def normalise_label(label: str) -> str | None:
    """安全 / 不安全 / 有争议 for any accepted spelling (safe, unsafe, controversial), else None."""
    return HUMAN_LABELS.get(label.strip().lower())


def label_problem(label: str) -> str | None:
    return None if normalise_label(label) else f"invalid label {label!r} (use 安全, 不安全 or 有争议)"


def known_response_ids(wh: Warehouse, ids: set[str]) -> set[str]:
    """The ids among `ids` that a voted response has (what a human label may name)."""
    if not ids:
        return set()
    frame = pl.DataFrame({"response_id": sorted(ids)})
    return set(wh.query(sql_text("queries/voted_response_ids.sql"), frames={"wanted": frame})["response_id"].to_list())


def validate_rows(rows: list[SheetRow], known_ids: set[str]) -> list[str]:
    errors: list[str] = []
    first: dict[tuple[str, str | None], str] = {}
    for row in rows:
        if not row.id:
            errors.append(f"{row.where}: the id is empty")
            continue
        key = (row.id, row.annotator)  # several annotators may label one item (Label Studio, --per-item)
        if key in first:
            who = f" for annotator {row.annotator!r}" if row.annotator else ""
            errors.append(f"{row.where}: duplicate id {row.id!r}{who} (first on {first[key]})")
            continue
        first[key] = row.where
        if row.id not in known_ids:
            errors.append(f"{row.where}: unknown id {row.id!r} (no voted response has it)")
        if row.label and (problem := label_problem(row.label)):
            errors.append(f"{row.where}: {problem}")
    return errors


def import_labels(wh: Warehouse, path: Path, *, annotator: str | None = None) -> ImportSummary:
    """Validate the whole sheet, then store its labels in one transaction; raises LabelSheetError."""
    path = path.resolve()
    rows, errors = read_sheet(path)
    known = known_response_ids(wh, {r.id for r in rows if r.id})
    errors += validate_rows(rows, known)
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f"\n  … and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        raise LabelSheetError(f"{path}: {len(errors)} problem(s); nothing was imported\n  "
                              + "\n  ".join(shown) + more)
    summary = ImportSummary(path=path, rows=len(rows))
    labelled = [r for r in rows if r.label]
    summary.labelled, summary.skipped_blank = len(labelled), len(rows) - len(labelled)
    current = wh.query(sql_text("queries/latest_human_labels.sql"))
    latest = {r["response_id"]: (r["label"], r["note"]) for r in current.iter_rows(named=True)}
    mine = wh.query(sql_text("queries/annotator_labels.sql"))
    latest_by = {(r["response_id"], r["annotator"]): (r["label"], r["note"]) for r in mine.iter_rows(named=True)}

    def unchanged(r: SheetRow) -> bool:
        who = r.annotator or annotator
        now = latest_by.get((r.id, who)) if who else latest.get(r.id)
        return now == (normalise_label(r.label), r.note)

    new = [r for r in labelled if not unchanged(r)]
    summary.unchanged = len(labelled) - len(new)
    if not new:
        return summary
    by_annotator: dict[str | None, list[SheetRow]] = {}
    for r in new:
        by_annotator.setdefault(r.annotator or annotator, []).append(r)
    schema = {"response_id": pl.String, "label": pl.String, "annotator": pl.String, "note": pl.String,
              "source_file": pl.String, "source_line": pl.Int32, "seconds_spent": pl.Float64, "run_id": pl.String}
    with wh.writer():  # the run rows and every label land together, or nothing does
        # one run per annotator: a label row is keyed by (response_id, run_id)
        for who, group in by_annotator.items():
            run_id = start_run(wh, "import-labels", None)
            frame = pl.DataFrame([{
                "response_id": r.id, "label": normalise_label(r.label), "annotator": who, "note": r.note,
                "source_file": str(path), "source_line": r.line, "seconds_spent": r.seconds, "run_id": run_id,
            } for r in group], schema=schema)
            imported = wh.insert("human_labels", frame)
            labels = dict(frame.group_by("label").len().iter_rows())
            summary.imported += imported
            for k, v in labels.items():
                summary.labels[k] = summary.labels.get(k, 0) + v
            summary.run_ids.append(run_id)
            finish_run(wh, run_id, "completed", {"file": str(path), "annotator": who, "imported": imported,
                                                 "unchanged": summary.unchanged, "labels": labels})
        summary.run_id = summary.run_ids[0]
    return summary
