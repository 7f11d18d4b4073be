"""`libra deploy`: register prefect.yaml's scheduled deployments so that they can really run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from libra.flows.cli.common import ConfigOpt, echo, fail, print_frame


def deploy(
    config: ConfigOpt,
    warehouse: Annotated[str, typer.Option(
        "--warehouse", "-w", help="The DuckDB file every scheduled run writes (required: a worker's shell "
                                  "does not decide it).")],
    pool: Annotated[str | None, typer.Option(
        help="Process work pool for every deployment (default: each deployment's work_pool in the file, "
             "libra-process); created when the server has none.")] = None,
    prefect_file: Annotated[Path | None, typer.Option(
        "--file", help="The deployments file (default: ./prefect.yaml, else the checkout's).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        help="Deploy only this deployment (repeat the option for several).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="A flow option of one deployment, DEPLOYMENT.OPTION=VALUE, e.g. "
                      "weekly-eval.benchmark=bench.json or nightly-import.files='/drop/*.jsonl' (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and list; register nothing.")] = False,
) -> None:
    """Validate the config and every deployment's inputs, then register prefect.yaml's deployments with the Prefect server at $PREFECT_API_URL (creating the work pool when missing).

    Each deployment gets the absolute config and warehouse as parameters and the job variables its runs need, so a worker started in any shell writes the warehouse deployed for. Nothing is registered when anything is wrong. Then start a worker: prefect worker start --pool libra-process.
    """
    import polars as pl

    from libra.flows import deployments
    from libra.tasks.core.errors import InputError

    try:
        plan = deployments.plan(str(config), warehouse, prefect_file or deployments.default_prefect_file(),
                                pool=pool, only=only, sets=set_)
    except InputError as e:
        fail(str(e))
    print_frame(pl.DataFrame(plan.rows()), title=f"deployments for {plan.warehouse}")
    echo(f"job environment: {', '.join(sorted(plan.env))}")
    if plan.secrets:
        echo(f"secrets the worker's environment must hold (never stored in a deployment): {', '.join(plan.secrets)}")
    if dry_run:
        echo("dry run: nothing registered")
        return
    try:
        url = deployments.api_url()
    except InputError as e:
        fail(str(e))
    for name in deployments.pools_of(plan):
        if deployments.ensure_pool(name):
            echo(f"created process work pool {name!r}")
    names = deployments.apply(plan)
    echo(f"registered {len(names)} deployments on {url}")
    for name in deployments.pools_of(plan):
        echo(f"start a worker:  prefect worker start --pool {name}")
