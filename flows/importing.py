"""Dataset flows: real-query imports, splits and exports."""

from __future__ import annotations

import glob
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE

from libra.flows.common import merge, stage_run
from libra.tasks.core.runs import Factory
from libra.tasks.data import imports, split_tasks


@flow(name="split", log_prints=True)
def split_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None) -> dict:
    """Assign pretrain/finetune/eval splits to settled queries and export every split."""
    with stage_run("split", config, warehouse, parent_run_id) as (fx, summary):
        merge(summary, {"splits": split_tasks.assign_splits(fx)})
        merge(summary, {"export": split_tasks.export_splits(fx)})
    return summary


def expand_files(files: str) -> list[Path]:
    """`a.csv,b/*.csv` -> the files, globs expanded in sorted order (a pattern matching nothing is kept,
    so that the import names the missing file)."""
    out: list[Path] = []
    for part in (p.strip() for p in files.split(",")):
        if not part:
            continue
        matches = sorted(glob.glob(part)) if any(ch in part for ch in "*?[") else []
        out += [Path(m) for m in matches] or [Path(part)]
    return out


@task(name="import-queries", cache_policy=NONE, persist_result=False)
def import_task(fx: Factory, files: list[Path], spec: imports.ImportSpec, skip_bad: bool,
                limit: int | None) -> dict:
    return imports.import_queries(fx.warehouse, files, spec, skip_bad=skip_bad, limit=limit, run_id=fx.run_id)


@flow(name="import", log_prints=True)
def import_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None, *,
                files: str, spec: str, skip_bad: bool = False, limit: int | None = None) -> dict:
    """Import real queries: `files` (comma-separated paths or globs) read with the import config `spec`
    (a path or a name under configs/imports/). All or nothing unless skip_bad."""
    with stage_run("import", config, warehouse, parent_run_id) as (fx, summary):
        merge(summary, {"import": import_task(fx, expand_files(files), imports.load_import_spec(spec), skip_bad,
                                              limit)})
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"split": split_flow, "import": import_flow}
