"""`libra` commands for training, evaluation and scoring."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from libra.flows.cli.common import OutputFormat, WarehouseOpt, echo, fail, open_reader, print_frame
from libra.warehouse import sql_text


class Parser(StrEnum):
    libra = "libra"
    official = "official"


def score(
    predictions: Annotated[Path, typer.Argument(
        help="JSONL of predictions made elsewhere (`id` + the raw answer in `critic` or `text`, as Libra's "
             "inference script writes them), or a folder of such files.")],
    benchmark: Annotated[Path, typer.Option("--benchmark", "-b", help="The Libra-Test-format benchmark (JSON or JSONL).")],
    parser: Annotated[Parser, typer.Option(
        help="libra: the project's lenient parser (as `libra run eval`); official: the official script's "
             "reading (the 答案 field of the repaired JSON).")] = Parser.libra,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table: figures and tables; json: one object.")]
    = OutputFormat.table,
) -> None:
    """Score predictions against a benchmark with the official Libra metric (per source and averaged);
    the per-source and Average lines come last, in the official script's layout."""
    import polars as pl

    from libra.tasks.annotation.verdicts import parse_verdict
    from libra.tasks.core.errors import InputError
    from libra.tasks.data.benchmarks import read_benchmark
    from libra.tasks.evaluation import metrics

    try:
        bench = read_benchmark(benchmark)
        preds = metrics.read_predictions(predictions)
    except InputError as e:
        fail(str(e))
    texts = preds["raw_text"].to_list()
    if parser is Parser.official:
        labels = [metrics.official_label(t) for t in texts]
    else:
        labels = [parse_verdict(t).label for t in texts]
    items = metrics.benchmark_items(bench, preds, labels)
    if items.is_empty():
        fail(f"no prediction in {predictions} has an id of {benchmark}")
    report = metrics.evaluate(items)
    unknown = preds.height - items.height
    unanswered = bench.height - items.height
    if fmt is OutputFormat.json:
        print(json.dumps({**report.as_dict(), "unknown_ids": unknown, "unanswered": unanswered, "parser": parser.value},
                         ensure_ascii=False, default=str))
        return
    shown = pl.col(pl.Float64).round(4)
    print_frame(report.per_source.with_columns(shown),
                title="Per source (a1/a2: unsafe items answered unsafe/safe; b1/b2: safe items)")
    print_frame(report.per_scenario.drop("a1", "a2", "b1", "b2").with_columns(shown), title="Per scenario")
    print_frame(report.confusion.pivot(on="answer", index="gold", values="n").fill_null(0),
                title="Gold label x answer")
    echo(f"{report.n} items scored ({parser.value} parser); {report.parse_failures} without a 安全/不安全 "
         f"answer, counted as wrong; {unknown} predictions of unknown ids skipped; {unanswered} benchmark "
         "items without a prediction not counted")
    print(metrics.official_block(report.per_source, report.average))


def compare(
    benchmark: Annotated[str, typer.Option("--benchmark", "-b", help="A benchmark name in the warehouse.")],
    warehouse: WarehouseOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write comparison.md/.png/.json here (default: only print).")] = None,
) -> None:
    """Every guard evaluated on a benchmark, side by side (macro averages over sources)."""
    from libra.flows.evaluation import write_comparison

    wh = open_reader(warehouse)
    frame = wh.query(sql_text("queries/eval_comparison.sql"), {"benchmark": benchmark})
    if frame.is_empty():
        fail(f"no guard has been evaluated on {benchmark!r} in {wh.path}")
    print_frame(frame, title=f"Guards on {benchmark}")
    if out is not None:
        written = write_comparison(wh, benchmark, out)
        echo(f"wrote {written['dir']}/comparison.md, comparison.png, comparison.json")
