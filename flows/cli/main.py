"""`libra`: run the factory and its stages, and inspect the warehouse.

Every command is defined in its area's module (flows/cli/*.py) and registered here, explicitly; no
module touches `app` when imported. The modules import only typer and the warehouse at the top, so
that `libra --help`, `libra sql` and `libra status` start fast (tests/flows/test_cli_imports.py).
"""

from __future__ import annotations

import os
import sys

import typer

from libra.flows.cli import annotation, core, data, dedup, deploy, review, run, synthesis, training

app = typer.Typer(
    help="libra-factory: a Prefect + DuckDB data factory for Chinese LLM safety guards.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
app.add_typer(run.run_app, name="run")
app.command()(core.demo)
app.command()(core.sql)
app.command()(core.status)
app.command("check-config")(core.check_config)
app.command("parse-verdicts")(annotation.parse_verdicts)
app.command("export-hard")(annotation.export_hard)
app.command("import-labels")(annotation.import_labels)
app.command("export")(data.export)
app.command("build-benchmark")(data.build_benchmark)
app.command("card")(data.card)
app.command("dedup")(dedup.dedup_file)
app.command("coverage")(synthesis.coverage)
app.command("score")(training.score)
app.command("compare")(training.compare)
app.command("deploy")(deploy.deploy)
app.command("review")(review.review)

import_app = typer.Typer(help="Import real queries or benchmarks into the warehouse.", no_args_is_help=True)
import_app.command("queries")(data.import_queries)
import_app.command("benchmark")(dedup.import_benchmark)
app.add_typer(import_app, name="import")


def main() -> None:
    # The temporary Prefect server would try to phone home; this machine may have no network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server starts in ~10 s here, but on a loaded 2-core machine 20 s (the default) is short.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from libra.tasks.core.errors import InputError
    from libra.warehouse import WarehouseError

    try:
        app()
    except (InputError, WarehouseError) as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
