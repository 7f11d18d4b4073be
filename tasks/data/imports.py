"""Step 7: real queries from files (JSONL, JSON, CSV, Parquet) into `queries` with `source = real`.

An import is described by an `ImportSpec` (a committed YAML under configs/imports/, or CLI flags): the
format and encoding (both detected when not given), the column map, and a mapping file
(prompts/mappings/*.yaml) that brings the file's own taxonomy onto the Libra scenarios. Reading is
separate from storing: `read_import` parses and validates every row of every file into good rows and
bad rows (file, line, reason); `store_import` writes the good rows, the batch record and the rejects in
one transaction. A file with a bad row is refused whole unless `skip_bad` is set, and a failed import
writes nothing at all.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from libra.tasks.core.config import invalid_keys, yaml_mapping
from libra.tasks.core.errors import InputError
from libra.tasks.core.ids import content_hash, file_sha256, query_id
from libra.tasks.core.prompts import Taxonomy, load_taxonomy, prompt_path
from libra.tasks.core.runs import finish_run, start_run
from libra.tasks.data.read import (
    LONE_SURROGATE,
    BadRecord,
    CsvOptions,
    Record,
    read_file,
)
from libra.warehouse import Warehouse
from libra.warehouse.schemas import schema

# The text column is found by name when the column map does not give it (first match wins).
TEXT_COLUMN_NAMES = ("text", "query", "question", "prompt", "问题")
HARMFUL, BENIGN = "harmful", "benign"
# Label words every import understands; a mapping file's `labels:` adds to (and overrides) them.
BUILTIN_LABELS: dict[str, str | None] = {
    "不安全": HARMFUL, "unsafe": HARMFUL, "harmful": HARMFUL, "有害": HARMFUL, "违规": HARMFUL, "1": HARMFUL,
    "安全": BENIGN, "safe": BENIGN, "benign": BENIGN, "无害": BENIGN, "不违规": BENIGN, "0": BENIGN,
}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SPACE = re.compile(r"\s+")


class ImportFailure(InputError):
    """An import that cannot proceed; the message names the file (and line) and says what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnMap(_Strict):
    """Which input column plays which role. Only `text` is required, and it is found by name
    (TEXT_COLUMN_NAMES) when not given."""

    text: str | None = None
    category: str | None = None
    subcategory: str | None = None
    label: str | None = None
    id: str | None = None


class ImportSpec(_Strict):
    """How to read one kind of file. Committed examples: configs/imports/*.yaml."""

    dataset: str | None = None              # a short name stored in provenance (default: the file stem)
    description: str | None = None
    format: Literal["auto", "jsonl", "json", "csv", "parquet"] = "auto"
    encoding: Literal["auto", "utf-8", "utf-8-sig", "gb18030", "utf-16"] = "auto"
    header: bool = True                      # CSV: first row names the columns
    names: list[str] | None = None           # CSV without header: the column names
    delimiter: str = Field(",", min_length=1, max_length=1)
    records_key: str | None = None           # JSON: the records are the list under this key
    columns: ColumnMap = Field(default_factory=ColumnMap)
    category_from: Literal["column", "filename"] = "column"  # XSafety: the file name is the category
    mapping: str | None = None               # prompts/mappings/<name>.yaml, or a path
    default_label: Literal["harmful", "benign"] | None = None  # when the file has no label column
    language: Literal["zh", "en"] = "zh"
    max_field_bytes: int = Field(65_536, ge=1)
    source_path: str | None = Field(None, exclude=True)

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        if p.is_absolute() or self.source_path is None:
            return p
        return Path(self.source_path).parent / p


def load_import_spec(path: str | Path) -> ImportSpec:
    """An import config: a path, or the bare name of a packaged one (configs/imports/<name>.yaml)."""
    p = Path(path)
    if not p.exists():
        packaged = Path(str(resources.files("libra.configs").joinpath("imports", p.name)))
        candidates = [packaged, packaged.with_suffix(".yaml")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ImportFailure(f"{path}: import config not found (neither a file nor a name under configs/imports/)")
        p = found
    data = yaml_mapping(p.read_text(encoding="utf-8-sig"), str(p), ImportFailure, empty=True)
    try:
        spec = ImportSpec.model_validate(data)
    except ValidationError as e:
        raise invalid_keys(str(p), "import config", e, ImportFailure) from None
    spec.source_path = str(p.resolve())
    return spec


# -- taxonomy mapping --------------------------------------------------------------------------------


def mapping_key(value: str) -> str:
    """Keys compare after NFKC, case folding and removing all whitespace (JADE has stray spaces)."""
    return _SPACE.sub("", unicodedata.normalize("NFKC", value)).casefold()


Target = tuple[str | None, str | None]  # (scenario, subcategory); (None, None) = explicitly no scenario


@dataclass(frozen=True)
class TaxonomyMapping:
    """External categories -> Libra (scenario, subcategory), and external labels -> harmful/benign.

    Lookup order for a row: "<category>/<subcategory>" in `subcategories`, then "<subcategory>", then
    "<category>" in `categories`. A category value that is a list (MultiJail's tags) maps by its first
    tag that has a mapping. `aliases` rename values before lookup (JADE: 侵犯权益 -> 侵害权益).
    """

    name: str
    version: str
    categories: dict[str, Target]
    subcategories: dict[str, Target]
    labels: dict[str, str | None]
    aliases: dict[str, str]

    def _alias(self, value: str) -> str:
        key = mapping_key(value)
        return self.aliases.get(key, key)

    def target(self, category: str | list[str] | None, subcategory: str | None) -> Target:
        """The Libra target of a row; raises LookupError naming what has no mapping."""
        cats = category if isinstance(category, list) else [category] if category not in (None, "") else []
        sub = self._alias(subcategory) if subcategory not in (None, "") else None
        if sub is not None:
            for cat in cats:
                qualified = f"{self._alias(cat)}/{sub}"
                if qualified in self.subcategories:
                    return self.subcategories[qualified]
            if sub in self.subcategories:
                return self.subcategories[sub]
            if self.subcategories:
                raise LookupError(f"subcategory {subcategory!r} (category {_show(category)}) has no mapping "
                                  f"in {self.name}")
        for cat in cats:
            key = self._alias(cat)
            if key in self.categories:
                return self.categories[key]
        if not cats:
            raise LookupError(f"no category value to map with {self.name}")
        raise LookupError(f"category {_show(category)} has no mapping in {self.name}")

    def label(self, value: str) -> str | None:
        key = self._alias(value)
        if key in self.labels:
            return self.labels[key]
        raise LookupError(key)


def _show(value: object) -> str:
    return repr(value) if not isinstance(value, list) else "[" + ", ".join(repr(v) for v in value) + "]"


def mapping_path(name: str, relative_to: ImportSpec | None = None) -> Path:
    """A mapping by bare name (prompts/mappings/<name>.yaml) or by path."""
    if relative_to is not None and relative_to.source_path and ("/" in name or name.endswith(".yaml")):
        local = relative_to.resolve(name)
        if local.exists():
            return local
    p = Path(name)
    if p.exists():
        return p
    packaged = prompt_path(f"mappings/{name.removesuffix('.yaml')}.yaml")
    if packaged.exists():
        return packaged
    raise ImportFailure(f"mapping {name!r} not found (a path, or a name under prompts/mappings/)")


def _parse_target(value: Any, where: str, taxonomy: Taxonomy) -> Target:
    if value is None:
        return (None, None)
    if not isinstance(value, str) or not value.strip():
        raise ImportFailure(f"{where}: a target is 'scenario' or 'scenario/subcategory' or null, got {value!r}")
    scenario, _, sub = value.strip().partition("/")
    pairs = taxonomy.subcategories()
    if scenario not in taxonomy.scenario_names:
        raise ImportFailure(f"{where}: unknown scenario {scenario!r} (known: {', '.join(taxonomy.scenario_names)})")
    if sub and (scenario, sub) not in pairs:
        subs = [b for s, b in pairs if s == scenario]
        raise ImportFailure(f"{where}: unknown subcategory {sub!r} of {scenario} (known: {', '.join(subs)})")
    return (scenario, sub or None)


def load_mapping(name: str, taxonomy: Taxonomy | None = None, relative_to: ImportSpec | None = None) -> TaxonomyMapping:
    """Load and validate a mapping file: every target must exist in the taxonomy."""
    path = mapping_path(name, relative_to)
    taxonomy = taxonomy or load_taxonomy()
    raw = path.read_bytes()
    data = yaml_mapping(raw.decode("utf-8-sig"), str(path), ImportFailure, empty=True)
    unknown = set(data) - {"name", "description", "source", "aliases", "categories", "subcategories", "labels"}
    if unknown:
        raise ImportFailure(f"{path}: unknown keys {sorted(unknown)}")
    aliases = {mapping_key(str(k)): mapping_key(str(v)) for k, v in (data.get("aliases") or {}).items()}

    def targets(section: str) -> dict[str, Target]:
        return {mapping_key(str(k)): _parse_target(v, f"{path}: {section}.{k}", taxonomy)
                for k, v in (data.get(section) or {}).items()}

    labels: dict[str, str | None] = {}
    for k, v in (data.get("labels") or {}).items():
        if v not in (HARMFUL, BENIGN, None):
            raise ImportFailure(f"{path}: labels.{k}: must be harmful, benign or null, got {v!r}")
        labels[mapping_key(str(k))] = v
    return TaxonomyMapping(
        name=path.name, version=f"{path.stem}@{content_hash(raw.decode('utf-8-sig'), length=12)}",
        categories=targets("categories"), subcategories=targets("subcategories"),
        labels={**{mapping_key(k): v for k, v in BUILTIN_LABELS.items()}, **labels}, aliases=aliases,
    )


# -- reading -----------------------------------------------------------------------------------------


BadRow = BadRecord  # a row that cannot be imported: file, row, line, error, raw


@dataclass
class ImportResult:
    """What a read produced: rows ready for `queries`, the bad rows, and counts for the report."""

    rows: pl.DataFrame
    bad: list[BadRow]
    files: list[dict[str, Any]]
    n_records: int
    n_duplicates: int
    spec: ImportSpec
    mapping: str | None
    counts: dict[str, int] = field(default_factory=dict)


def read_records(path: Path, spec: ImportSpec, bad: list[BadRow]) -> tuple[list[Record], list[str], str]:
    """Every record of one file (bad ones appended to `bad`); returns (records, columns, encoding).
    JSON Lines records must be objects; a JSON array's other values are the one column `_value`."""
    got = read_file(path, format=spec.format, encoding=spec.encoding, language=spec.language,
                    records_key=spec.records_key, error=ImportFailure,
                    csv_options=CsvOptions(header=spec.header, names=spec.names, delimiter=spec.delimiter))
    records: list[Record] = []
    for r in got.records:
        if got.format == "jsonl" and not isinstance(r.value, dict):
            bad.append(BadRow(str(path), r.row, r.line, f"expected a JSON object, got {type(r.value).__name__}", r.raw))
        else:
            records.append(r)
    bad += got.bad
    columns: list[str] = []
    for r in records:
        columns += [c for c in r.fields if c not in columns]
    return records, columns, got.encoding


def _find_text_column(path: Path, columns: list[str], spec: ImportSpec) -> str:
    if spec.columns.text:
        return spec.columns.text
    by_name = {c.strip().casefold(): c for c in columns}
    for name in TEXT_COLUMN_NAMES:
        if name in by_name:
            return by_name[name]
    raise ImportFailure(f"{path}: no text column: none of {', '.join(TEXT_COLUMN_NAMES)} among the columns "
                        f"({', '.join(columns) or 'none'}); pass --text-column or set columns.text in the import config")


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if not isinstance(value, list | dict) else json.dumps(value, ensure_ascii=False)


def category_value(value: Any) -> str | list[str] | None:
    """A category cell; a list (JSON list or a Python list literal like "['a', 'b']") stays a list."""
    if isinstance(value, list):
        return [str(v) for v in value]
    text = _as_text(value)
    if text is None:
        return None
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            parsed = ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            return text
        if isinstance(parsed, list | tuple):
            return [str(v) for v in parsed]
    return text


def _validate(rec: Record, cols: dict[str, str | None], spec: ImportSpec,
              mapping: TaxonomyMapping | None, dataset: str, encoding: str) -> dict[str, Any]:
    """One good row for `queries`, or ValueError with the reason (the caller adds file and line)."""
    for name, value in rec.fields.items():
        text = _as_text(value)
        if text is None:
            continue
        size = len(text.encode("utf-8", "surrogateescape"))
        if size > spec.max_field_bytes:
            raise ValueError(f"field {name!r} is {size:,} bytes (limit {spec.max_field_bytes:,}: max_field_bytes)")
        bad_bytes = LONE_SURROGATE.search(text)
        if bad_bytes:
            byte = ord(bad_bytes.group()) - 0xDC00
            raise ValueError(f"invalid bytes in field {name!r} (byte 0x{byte:02x} is not valid {encoding}; "
                             "fix the file or declare its encoding with --encoding)")
    text = _as_text(rec.fields.get(cols["text"]))
    if text is None or not text.strip():
        raise ValueError(f"empty text in column {cols['text']!r}")
    text = text.strip()
    if spec.language == "zh" and not _CJK.search(text):
        raise ValueError(f"text in column {cols['text']!r} has no Chinese characters (language: zh)")
    category = (rec.file.stem if spec.category_from == "filename"
                else category_value(rec.fields.get(cols["category"])) if cols["category"] else None)
    subcategory = _as_text(rec.fields.get(cols["subcategory"])) if cols["subcategory"] else None
    scenario = sub = None
    if mapping is not None:
        try:
            scenario, sub = mapping.target(category, subcategory)
        except LookupError as e:
            raise ValueError(str(e)) from None
    label_raw = _as_text(rec.fields.get(cols["label"])) if cols["label"] else None
    if cols["label"]:
        if label_raw is None or not label_raw.strip():
            raise ValueError(f"empty label in column {cols['label']!r}")
        try:
            intended = mapping.label(label_raw) if mapping else BUILTIN_LABELS[mapping_key(label_raw)]
        except LookupError:
            known = sorted({k for k, v in (mapping.labels if mapping else BUILTIN_LABELS).items()})
            raise ValueError(f"unknown label value {label_raw!r} in column {cols['label']!r} "
                             f"(known: {', '.join(known)})") from None
    else:
        intended = spec.default_label
    original_id = _as_text(rec.fields.get(cols["id"])) if cols["id"] else None
    provenance = {
        "dataset": dataset, "file": str(rec.file), "row": rec.row, "line": rec.line, "original_id": original_id,
        "category": category, "subcategory": subcategory, "label": label_raw,
        "mapping": mapping.version if mapping else None,
    }
    return {
        "query_id": query_id(text), "text": text, "source": "real", "method": "import",
        "scenario": scenario, "subcategory": sub, "intended_label": intended,
        "provenance": json.dumps(provenance, ensure_ascii=False),
    }


QUERY_COLUMNS = schema("queries", "query_id", "text", "source", "method", "scenario", "subcategory",
                       "intended_label", "provenance")


def read_import(files: list[Path], spec: ImportSpec, *, limit: int | None = None,
                taxonomy: Taxonomy | None = None) -> ImportResult:
    """Parse and validate every record of every file. File-level problems (missing file or column,
    unreadable document) raise ImportFailure at once; row-level problems become BadRows."""
    if not files:
        raise ImportFailure("no input files given")
    mapping = load_mapping(spec.mapping, taxonomy, spec) if spec.mapping else None
    cols_needed = {"category": spec.columns.category, "subcategory": spec.columns.subcategory,
                   "label": spec.columns.label, "id": spec.columns.id}
    if (cols_needed["category"] or spec.category_from == "filename") and mapping is None:
        raise ImportFailure("a category column (or category_from: filename) needs a mapping file (--mapping)")
    rows: list[dict[str, Any]] = []
    bad: list[BadRow] = []
    file_info: list[dict[str, Any]] = []
    n_records = 0
    for path in files:
        path = Path(path).resolve()
        file_bad: list[BadRow] = []
        records, columns, encoding = read_records(path, spec, file_bad)
        if limit is not None:
            records = records[:limit]
            file_bad = [b for b in file_bad if b.row is None or b.row <= limit]
        if not records and not file_bad:
            raise ImportFailure(f"{path}: no records")
        cols: dict[str, str | None] = {"text": _find_text_column(path, columns, spec), **cols_needed}
        for role, name in cols.items():
            if name is not None and name not in columns:
                raise ImportFailure(f"{path}: column {name!r} ({role}) not found; columns are: {', '.join(columns)}")
        dataset = spec.dataset or path.stem
        n_records += len(records) + len(file_bad)  # records that could not even be parsed count too
        for rec in records:
            try:
                rows.append(_validate(rec, cols, spec, mapping, dataset, encoding))
            except ValueError as e:
                file_bad.append(BadRow(str(path), rec.row, rec.line, str(e), rec.raw))
        file_bad.sort(key=lambda b: (b.row or 0))
        bad += file_bad
        file_info.append({"file": str(path), "sha256": file_sha256(path), "encoding": encoding,
                          "records": len(records), "bad": len(file_bad)})
    frame = pl.DataFrame(rows, schema=QUERY_COLUMNS)
    unique = frame.unique(subset="query_id", keep="first", maintain_order=True)
    return ImportResult(rows=unique, bad=bad, files=file_info, n_records=n_records,
                        n_duplicates=frame.height - unique.height, spec=spec,
                        mapping=mapping.version if mapping else None)


def failure_message(bad: list[BadRow], shown: int = 5) -> str:
    lines = [b.message() for b in bad[:shown]]
    more = f" ({len(bad) - shown} more not shown)" if len(bad) > shown else ""
    lines.append(f"{len(bad)} bad row{'s' if len(bad) != 1 else ''}{more}: nothing was imported "
                 "(--skip-bad imports the good rows and lists the bad ones in a reject file)")
    return "\n".join(lines)


# -- storing -----------------------------------------------------------------------------------------


def batch_id(result: ImportResult, limit: int | None) -> str:
    """Same files (by content) read the same way ⇒ same batch: a re-import is recognised, not repeated."""
    spec = result.spec.model_dump(mode="json")
    return "imp-" + content_hash(sorted(f["sha256"] for f in result.files), spec, limit, length=12)


def store_import(wh: Warehouse, result: ImportResult, *, run_id: str | None, skip_bad: bool,
                 reject_path: Path | None = None, limit: int | None = None) -> dict[str, Any]:
    """Write the good rows, the batch and its rejects in one transaction (all or nothing).

    With bad rows and no `skip_bad`, nothing is written and ImportFailure lists them. Without `run_id`
    (the CLI path; a flow has its own run row) an `import` run is started and finished in the same
    transaction.
    """
    if result.bad and not skip_bad:
        raise ImportFailure(failure_message(result.bad))
    bid = batch_id(result, limit)
    counts = Counter((r["scenario"] or "(none)") for r in result.rows.iter_rows(named=True))
    summary: dict[str, Any] = {
        "batch_id": bid, "files": len(result.files), "records": result.n_records, "good": result.rows.height,
        "duplicates_in_input": result.n_duplicates, "rejected": len(result.bad),
        "reject_file": str(reject_path) if result.bad and reject_path else None,
        "per_scenario": dict(sorted(counts.items())),
    }
    written: Path | None = None
    if result.bad and reject_path is not None:
        written = write_rejects(result.bad, reject_path)
    spec = result.spec.model_dump(mode="json")
    try:
        with wh.writer():
            record_run = run_id is None
            if run_id is None:
                run_id = start_run(wh, "import", None, config=spec)
            rejects = pl.DataFrame(
                [{"batch_id": bid, "file": b.file, "row": b.row, "line": b.line, "error": b.error, "raw": b.raw,
                  "run_id": run_id} for b in result.bad],
                schema={"batch_id": pl.String, "file": pl.String, "row": pl.Int64, "line": pl.Int64,
                        "error": pl.String, "raw": pl.String, "run_id": pl.String},
            )
            rows = result.rows.with_columns(pl.lit(run_id).alias("run_id"))
            new = wh.insert("queries", rows)
            summary["new"] = new
            summary["already_stored"] = result.rows.height - new
            wh.insert("import_rejects", rejects)
            wh.insert("import_batches", pl.DataFrame([{
                "batch_id": bid, "kind": "queries",
                "dataset": result.spec.dataset or ",".join(sorted({Path(f["file"]).stem for f in result.files})),
                "files": json.dumps(result.files, ensure_ascii=False),
                "spec": json.dumps(spec, ensure_ascii=False),
                "mapping": result.mapping, "n_records": result.n_records, "n_good": result.rows.height,
                "n_new": new, "n_duplicates": result.n_duplicates, "n_rejected": len(result.bad),
                "reject_file": str(written) if written else None, "run_id": run_id,
            }]))
            if record_run:
                finish_run(wh, run_id, "completed", summary)
    except BaseException:
        if written is not None:
            written.unlink(missing_ok=True)
        raise
    summary["run_id"] = run_id
    return summary


def write_rejects(bad: list[BadRow], path: Path) -> Path:
    """One JSON line per bad row: file, line, row, error, and the raw record (for fixing and re-importing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for b in bad:
            f.write(json.dumps({"file": b.file, "line": b.line, "row": b.row, "error": b.error,
                                "raw": b.raw},
                               ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def import_queries(wh: Warehouse, files: list[Path], spec: ImportSpec, *, skip_bad: bool = False,
                   reject_path: Path | None = None, limit: int | None = None, run_id: str | None = None,
                   dry_run: bool = False) -> dict[str, Any]:
    """Read, validate and store one import. Without `run_id` a `runs` row (flow 'import') is written
    with the rows; `dry_run` validates and reports without writing anything."""
    if spec.language != "zh":
        raise ImportFailure(
            f"{files[0] if files else 'input'}: the import config declares language {spec.language!r}; real queries "
            "must be Chinese. English safety sets enter through translation (source = translated), not as real queries")
    result = read_import([Path(f) for f in files], spec, limit=limit)
    if dry_run:
        if result.bad and not skip_bad:
            raise ImportFailure(failure_message(result.bad))
        counts = Counter((r["scenario"] or "(none)") for r in result.rows.iter_rows(named=True))
        return {"dry_run": True, "records": result.n_records, "good": result.rows.height,
                "duplicates_in_input": result.n_duplicates, "rejected": len(result.bad),
                "per_scenario": dict(sorted(counts.items()))}
    if reject_path is None and result.bad:
        reject_path = wh.path.parent / "rejects" / f"{batch_id(result, limit)}.jsonl"
    return store_import(wh, result, run_id=run_id, skip_bad=skip_bad, reject_path=reject_path, limit=limit)
