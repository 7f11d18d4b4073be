"""`libra` commands for imports, exports, benchmark building, dataset cards."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from libra.flows.cli.common import WarehouseOpt, echo, fail, open_reader, open_writer, print_json, print_rows

if TYPE_CHECKING:
    from libra.tasks.core.config import Split
    from libra.tasks.training.guard_prompt import GuardInstruction


def import_queries(
    files: Annotated[list[Path], typer.Argument(help="Input files (JSONL, JSON, CSV, Parquet), read alike.")],
    config: Annotated[str | None, typer.Option(
        "--config", "-c", help="Import config YAML, or the name of one in configs/imports/ (e.g. jade_v2).")] = None,
    text_column: Annotated[str | None, typer.Option(
        help="Column with the query text (default: the first of text, query, question, prompt, 问题).")] = None,
    category_column: Annotated[str | None, typer.Option(help="Column with the file's own category.")] = None,
    subcategory_column: Annotated[str | None, typer.Option(help="Column with the file's own subcategory.")] = None,
    label_column: Annotated[str | None, typer.Option(
        help="Column with a label of the query (安全/不安全/safe/unsafe/… or the mapping's labels).")] = None,
    id_column: Annotated[str | None, typer.Option(help="Column with the record's original id (kept as provenance).")] = None,
    mapping: Annotated[str | None, typer.Option(
        help="Taxonomy mapping onto the Libra scenarios: a name in prompts/mappings/ (jade, flames, xsafety, "
             "chineseharm, multijail, jailbench, cvalues, llama_guard) or a YAML path.")] = None,
    category_from_filename: Annotated[bool, typer.Option(
        "--category-from-filename", help="The file name (without suffix) is the category (XSafety).")] = False,
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl, json, csv or parquet (default: from the suffix).")] = None,
    encoding: Annotated[str | None, typer.Option(
        help="utf-8, utf-8-sig, gb18030 or utf-16 (with a BOM) (default: detected; a UTF-8 BOM is always accepted).")] = None,
    no_header: Annotated[bool, typer.Option("--no-header", help="CSV without a header row (one text column).")] = False,
    dataset: Annotated[str | None, typer.Option(help="Dataset name kept in provenance (default: the file stem).")] = None,
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Import the good rows; list the bad ones in a reject file (default: refuse the whole import).")] = False,
    reject_file: Annotated[Path | None, typer.Option(
        help="Where --skip-bad writes the bad rows (default: rejects/<batch>.jsonl beside the warehouse).")] = None,
    limit: Annotated[int | None, typer.Option(help="Read only the first N records of each file (a trial).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and count; store nothing.")] = False,
    warehouse: WarehouseOpt = None,
) -> None:
    """Import real queries (source = real) with their provenance: file, row, original id.

    The whole input is validated first: a bad row (malformed line, empty text, oversized field, invalid bytes, unknown label, unmapped category) refuses the import with its file and line, and nothing is stored, unless --skip-bad. Flags override the config's values.
    """
    from libra.tasks.data import imports

    try:
        base = imports.load_import_spec(config) if config else imports.ImportSpec()
        data = base.model_dump()
        data["columns"].update({k: v for k, v in {"text": text_column, "category": category_column,
                                                  "subcategory": subcategory_column, "label": label_column,
                                                  "id": id_column}.items() if v is not None})
        data.update({k: v for k, v in {"mapping": mapping, "format": fmt, "encoding": encoding,
                                       "dataset": dataset}.items() if v is not None})
        if category_from_filename:
            data["category_from"] = "filename"
        if no_header:
            data.update(header=False, names=data["names"] or ["text"])
        spec = imports.ImportSpec.model_validate(data)
        spec.source_path = base.source_path
    except imports.ImportFailure as e:
        fail(str(e))
    except ValueError as e:  # pydantic: a flag value outside its choices
        fail(f"invalid import option: {e}")
    wh = open_writer(warehouse)
    try:
        summary = imports.import_queries(wh, files, spec, skip_bad=skip_bad, reject_path=reject_file, limit=limit,
                                         dry_run=dry_run)
    except imports.ImportFailure as e:
        fail(str(e))
    per_scenario = summary.pop("per_scenario")
    print_rows(["scenario", "queries"], list(per_scenario.items()),
               title="Queries per mapped scenario" + (" (dry run: nothing stored)" if dry_run else ""))
    print_json(summary)


def _export_params(config: Path | None) -> tuple[Split, GuardInstruction, dict]:
    from libra.tasks.core.config import ConfigError, Split, load_config
    from libra.tasks.training.guard_prompt import GuardInstruction

    if config is None:
        return Split(), GuardInstruction(), {}
    try:
        cfg = load_config(config)
        return cfg.split, GuardInstruction.from_config(cfg), cfg.public_dict()
    except ConfigError as e:
        fail(str(e))


def export(
    warehouse: WarehouseOpt = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Factory config whose `split` section sets balancing and `guard_prompt` the rules and system prompt.")] = None,
    out: Annotated[Path | None, typer.Option(help="Export root (default: exports/ beside the warehouse).")] = None,
) -> None:
    """Export the stored splits (no new assignment) into <root>/<export-id>/.

    Writes chat JSONL, Parquet, ShareGPT + dataset_info.json, manifest.json and the dataset card; the same data gives the same export id.
    """
    from libra.tasks.core.runs import new_run_id
    from libra.tasks.data.splits import export_dataset

    wh = open_reader(warehouse)
    params, instruction, public = _export_params(config)
    root = out or wh.path.parent / "exports"
    print_json(export_dataset(wh, params, instruction, root, new_run_id("export"), public))


def build_benchmark(
    out: Annotated[Path, typer.Option("--out", "-o", help="Benchmark JSON to write (Libra-Test record format).")],
    warehouse: WarehouseOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the deterministic selection.")] = 0,
    per_cell: Annotated[int | None, typer.Option(
        help="Items per (source, scenario) cell (default: the size of the smallest cell: fully balanced).")] = None,
) -> None:
    """Build a Libra-Test-format benchmark from the eval split.

    Only adjudicated or human labels, balanced by source and scenario, each item tagged with its judges' disagreement. Register it with `libra import benchmark`.
    """
    from libra.tasks.data.benchmark_builder import build_benchmark as build

    wh = open_reader(warehouse)
    try:
        summary = build(wh, out, seed=seed, per_cell=per_cell)
    except ValueError as e:
        fail(str(e))
    print_json(summary)


def card(
    export_dir: Annotated[Path, typer.Argument(help="An export folder (holds manifest.json and <split>.parquet).")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Rewrite the dataset card (card.md + charts/) of an export folder."""
    from libra.tasks.reports.cards import card_for_export

    wh = open_reader(warehouse)
    try:
        path = card_for_export(export_dir, wh)
    except FileNotFoundError as e:
        fail(str(e))
    echo(f"wrote {path}")
