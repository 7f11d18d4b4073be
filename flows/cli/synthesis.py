"""`libra` commands for synthesis: the coverage report of what the warehouse holds.

The stage flows themselves run through `libra run elements|synthesize|augment|translate`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from libra.flows.cli.common import OutputFormat, WarehouseOpt, echo, open_reader, print_frame


def coverage(
    warehouse: WarehouseOpt = None,
    run: Annotated[str | None, typer.Option(help="Rejection counts of this run id only (default: all runs).")] = None,
    cells: Annotated[bool, typer.Option(
        "--cells", help="Also list every scenario x subcategory x task type x method count.")] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format of the tables.")] = OutputFormat.table,
) -> None:
    """Synthesis coverage: per subcategory harmful vs target, benign look-alikes, task types reached,
    augmented children and distinct-2 diversity; rejected generated items by reason."""
    import polars as pl

    from libra.tasks.reports.coverage import TOLERANCE, coverage_report

    report = coverage_report(open_reader(warehouse), run)
    if fmt is OutputFormat.table:
        for key, value in report.headline.items():
            echo(f"{key.replace('_', ' ')}: {value}")
    subs = report.subcategories
    if fmt is OutputFormat.table:  # the columns that fit a terminal; csv/json give them all
        subs = subs.select("scenario", "subcategory", "harmful", pl.col("harmful_target").alias("target"), "benign",
                           pl.col("task_types_reached").alias("types"), pl.col("augmented").alias("aug"),
                           pl.col("distinct_2").alias("d2"), pl.col("on_target").alias("ok"))
    print_frame(subs, fmt, title=f"Coverage per subcategory (ok: harmful within ±{TOLERANCE:.0%} of target)")
    rejections = pl.DataFrame({"reason": list(report.rejections), "items": list(report.rejections.values())},
                              schema={"reason": pl.String, "items": pl.Int64}).sort("items", descending=True)
    print_frame(rejections, fmt, title="Rejected generated items")
    if cells:
        print_frame(report.cells, fmt, title="Queries per scenario x subcategory x task type x method")
