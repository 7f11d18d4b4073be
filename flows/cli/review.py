"""`libra review`: label hard samples in the browser (flows/review_app.py serves the page)."""

from __future__ import annotations

import getpass
import os
import secrets
from typing import Annotated

import typer

from libra.flows.cli.common import WarehouseOpt, echo, fail, open_reader


def _default_annotator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "annotator"


def review(
    warehouse: WarehouseOpt = None,
    annotator: Annotated[str | None, typer.Option(
        help="Who labels (default: the login name); the page's ?annotator=NAME picks another.")] = None,
    host: Annotated[str, typer.Option(
        help="Address to bind. Anything but loopback needs the token on every request.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8765,
    token: Annotated[str | None, typer.Option(
        help="The page's token (default: $LIBRA_REVIEW_TOKEN, else a new random one, printed).")] = None,
    per_item: Annotated[int, typer.Option(
        "--per-item", min=1, help="Annotators wanted per item; their agreement shows once an item has them.")] = 1,
    all_samples: Annotated[bool, typer.Option(
        "--all", help="List every labelled response (v_dataset), not only the hard samples.")] = False,
    where: Annotated[str | None, typer.Option(
        help="Only responses matching this SQL predicate over v_dataset's columns, e.g. "
             "\"split = 'finetune' AND source = 'real'\" (run read-only, like libra sql).")] = None,
) -> None:
    """Serve a page for labelling hard samples one at a time, with the judges' votes beside each.

    Keys: 1 安全, 2 不安全, 3 有争议, s skip, u undo, n note, ←/→ move. Labels go straight into
    human_labels (annotator, seconds spent, note), with import-labels' validation and precedence
    (human > adjudicated > majority). The page keeps answering while a flow writes.
    """
    import uvicorn

    from libra.flows.review_app import ReviewSettings, create_app, is_loopback
    from libra.tasks.annotation.review import ReviewError, check_annotator, check_where

    wh = open_reader(warehouse)
    try:
        name = check_annotator(annotator or _default_annotator())
    except ReviewError as e:
        fail(f"--annotator: {e}")
    if where is not None:
        try:
            kept = check_where(wh, where)
        except ReviewError as e:
            fail(str(e))
        echo(f"--where keeps {kept} responses of v_dataset")
    given = token or os.environ.get("LIBRA_REVIEW_TOKEN")
    if given is not None and len(given) < 16:
        fail("--token: use at least 16 characters")
    require_token = not is_loopback(host)
    settings = ReviewSettings(warehouse=str(wh.path), annotator=name, per_item=per_item,
                              scope="all" if all_samples else "hard", token=given or secrets.token_urlsafe(24),
                              require_token=require_token, where=where)
    if port == 0:
        from libra.tasks.llm.servers import free_port

        port = free_port()
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    if require_token:
        echo(f"libra review on {url}?token={settings.token}\n  bound to {host}: every request needs that token")
    else:
        echo(f"libra review on {url} (annotator {name}, {per_item} per item)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
