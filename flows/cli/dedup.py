"""`libra dedup FILE` (dedup outside the warehouse) and `libra import benchmark` (benchmark registration)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from libra.flows.cli.common import WarehouseOpt, fail
from libra.tasks.core.errors import InputError


class _InputError(InputError):
    pass


def _read_items(path: Path, ids: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(id, text) from a JSONL file, streamed; `ids` collects str(id) -> the id as written."""
    from libra.tasks.data.jsonl import json_lines

    try:
        f = path.open(encoding="utf-8-sig")
    except OSError as e:
        raise _InputError(f"{path}: cannot read: {e.strerror or e}") from None
    with f:
        try:
            for jl in json_lines(f):
                n, rec = jl.lineno, jl.value
                if jl.error:
                    raise _InputError(f"{path}:{n}: {jl.error}")
                if not isinstance(rec, dict):
                    raise _InputError(f"{path}:{n}: expected an object with 'id' and 'text'")
                rid, text = rec.get("id"), rec.get("text")
                if isinstance(rid, bool) or not isinstance(rid, str | int):
                    raise _InputError(f"{path}:{n}: 'id' must be a string or integer, found {rid!r:.60}")
                if not isinstance(text, str):
                    raise _InputError(f"{path}:{n}: 'text' must be a string, found {text!r:.60}")
                key = str(rid)
                if key in ids:
                    raise _InputError(f"{path}:{n}: duplicate id {rid!r}")
                ids[key] = rid
                yield key, text
        except UnicodeDecodeError as e:
            raise _InputError(f"{path}: not UTF-8 (invalid byte at offset {e.start})") from None


def dedup_file(
    file: Annotated[Path, typer.Argument(help="JSONL input: one object per line with 'id' and 'text'.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Take the dedup parameters from this factory config's `dedup` section.")] = None,
    shingle: Annotated[str | None, typer.Option(help="char (character n-grams) or word (jieba word n-grams).")] = None,
    ngram: Annotated[int | None, typer.Option(help="Shingle length n.")] = None,
    num_perm: Annotated[int | None, typer.Option(help="MinHash permutations.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Jaccard similarity of near-duplicates.")] = None,
    verify: Annotated[bool | None, typer.Option(
        "--verify/--no-verify", help="Check candidates on true Jaccard (default) or the MinHash estimate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Records per batch (bounds memory).")] = None,
) -> None:
    """Deduplicate a JSONL file outside the warehouse, with the dedup stage's code.

    Writes one JSON line per input record, in input order: id, cluster_id (the id of the cluster's canonical record: its first in the file), kept, reason (canonical | exact | near), matched_id.

    Parameters: the defaults of the `dedup` config section, then --config, then the options. A bad line stops the run with its line number and writes nothing.
    """
    from pydantic import ValidationError

    from libra.tasks.core.config import ConfigError, Dedup, load_config
    from libra.tasks.dedup.near import DedupParams, dedup_stream

    values = Dedup().model_dump()
    if config is not None:
        try:
            values = load_config(config).dedup.model_dump()
        except ConfigError as e:
            fail(str(e))
    overrides = {"shingle": shingle, "ngram": ngram, "num_perm": num_perm, "threshold": threshold,
                 "verify_jaccard": verify, "batch_size": batch_size}
    try:
        section = Dedup(**{**values, **{k: v for k, v in overrides.items() if v is not None}})
    except ValidationError as e:
        fail("invalid dedup parameters: " + "; ".join(
            f"--{'-'.join(map(str, x['loc'])).replace('_', '-')}: {x['msg']}" for x in e.errors()))
    params = DedupParams.from_dict(section.model_dump())
    ids: dict[str, Any] = {}
    try:
        result = dedup_stream(_read_items(file, ids), params, batch_size=section.batch_size)
    except _InputError as e:
        fail(f"{e}; nothing was written")
    lines = "".join(
        json.dumps({"id": ids[r["item_id"]], "cluster_id": ids[r["cluster_id"]], "kept": r["kept"],
                    "reason": r["reason"], "matched_id": ids[r["matched_id"]] if r["matched_id"] else None},
                   ensure_ascii=False) + "\n"
        for r in result.iter_rows(named=True))
    if out is None:
        sys.stdout.write(lines)
    else:  # whole file or nothing: write beside the target, then rename over it
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(lines)
        os.replace(tmp, out)
    counts = result.group_by("reason").len()
    by_reason = dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))
    sys.stderr.write(f"{result.height} records: {by_reason.get('canonical', 0)} kept, {by_reason.get('exact', 0)} "
                     f"exact and {by_reason.get('near', 0)} near duplicates ({params.method}, threshold "
                     f"{params.threshold:g})\n")


def import_benchmark(
    file: Annotated[Path, typer.Argument(help="Libra-Test-format file: a JSON list of records (or JSON Lines).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Name to register the benchmark under.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Register a benchmark (Libra-Test record format) for evaluation and decontamination.

    Records: source, category_name, sub_category_name, question, response, label (安全/不安全), analyze, id; question, label and id are required. The file is registered whole or not at all.

    Then every stored query that duplicates one of its questions (exactly or nearly, with the parameters of the warehouse's latest dedup run) is recorded in `decontamination` (view v_contaminated); the dedup stage checks every later query against it too.
    """
    from libra.tasks.core.runs import finish_run, start_run
    from libra.tasks.data.benchmarks import BenchmarkError, check_name, read_benchmark, register_benchmark
    from libra.tasks.dedup.near import DedupParams
    from libra.tasks.dedup.store import sketch_benchmarks, stored_params
    from libra.warehouse import Warehouse, WarehouseError

    path = warehouse or os.environ.get("LIBRA_WAREHOUSE")
    if not path:
        fail("no warehouse given: pass --warehouse PATH or set LIBRA_WAREHOUSE")
    try:
        check_name(name)
        items = read_benchmark(file)
    except BenchmarkError as e:
        fail(str(e))
    try:
        wh = Warehouse(path)
        # the dedup stage reads and writes the same sketches: take turns with its runs
        with wh.stage_lock("dedup"):
            params = stored_params(wh) or DedupParams()
            run_id = start_run(wh, "import-benchmark", None)
            try:
                new = register_benchmark(wh, name, items, run_id)
                found = sketch_benchmarks(wh, params, run_id)
            except BaseException as e:
                finish_run(wh, run_id, "failed", {"error": f"{type(e).__name__}: {e}"})
                raise
            summary = {"benchmark": name, "file": str(file), "items": items.height, "new_items": new, **found}
            finish_run(wh, run_id, "completed", summary)
    except (BenchmarkError, WarehouseError) as e:
        fail(str(e))
    state = "registered" if new else "already registered (unchanged)"
    sys.stderr.write(f"benchmark {name!r} {state}: {items.height} items; {found['contaminated_found']} stored "
                     f"queries duplicate one of its questions ({params.method}); see v_contaminated\n")
