"""`libra run STAGE --config C [--warehouse W] [stage options]`: one typer command per flow, its options
built from the flow's typed signature.

A flow option `epochs: int | None = None` becomes `--epochs INTEGER`; `method: Literal["full", "lora"]
| None` becomes `--method [full|lora]`; a bool takes a value (`--skip-bad true`, as deployments and docs
write it); a union such as `bool | Literal["auto"]` is checked by pydantic, as Prefect checks it. None
means "the config's value" and is not passed, so the flow's own default applies. An unknown option or
a bad value is typer's usage error (exit 2) naming the option.

The flows import Prefect, so the commands are built when `run` itself is used (StageGroup), never for
`libra --help`, `libra sql` or `libra status`.
"""

from __future__ import annotations

import inspect
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from typer.core import TyperGroup

from libra.flows.cli.common import ConfigOpt, WarehouseOpt, fail, print_json

# Parameters every flow has; the CLI gives them as --config/--warehouse (parent_run_id: the factory's own).
OWN_PARAMETERS = ("config", "warehouse", "parent_run_id")
# Where batch tasks run (docs/scale-out.md); beats $LIBRA_RUNNER and the config's runner.kind.
RunnerOpt = Annotated[Literal["threads", "ray"] | None, typer.Option(
    "--runner",
    help="Run batch tasks on threads in this process or on Ray workers (default: $LIBRA_RUNNER, else the config's runner.kind).")]
_NATIVE = (str, int, float, Path)


def stage_flows() -> dict[str, Any]:
    """Every flow `libra run` starts: the whole factory, then each stage and the other flows."""
    from libra.flows.factory import STAGE_FLOWS, factory_flow

    return {"factory": factory_flow, **STAGE_FLOWS}


def _members(annotation: Any) -> list[Any]:
    """`int | None` -> [int]; `bool | Literal["auto"] | None` -> [bool, Literal["auto"]]."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _parser(annotation: Any) -> Any:
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(annotation)

    def parse(value: str) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError as e:
            raise typer.BadParameter("; ".join(err["msg"] for err in e.errors())) from None

    return parse


def _metavar(members: list[Any]) -> str:
    names = []
    for m in members:
        if typing.get_origin(m) is Literal:
            names += [str(a) for a in typing.get_args(m)]
        else:
            names.append({bool: "true|false", int: "INTEGER", float: "FLOAT", Path: "PATH"}.get(m, "TEXT"))
    return "|".join(names)


def split_docstring(doc: str | None, names: list[str]) -> tuple[str, dict[str, str]]:
    """A flow's docstring as the command's description and its options' help: a line `name: text` (to the
    next such line or the end of the paragraph) is the help of option --name, not description."""
    found: dict[str, list[str]] = {}
    kept: list[str] = []
    current = None
    for line in inspect.cleandoc(doc or "").splitlines():
        head, sep, rest = line.strip().partition(": ")
        if sep and head in names:
            current = head
            found[current] = [rest]
        elif current and line.strip():
            found[current].append(line.strip())
        else:
            current = None
            if line.strip() or not kept or kept[-1].strip():  # one blank line where a parameter paragraph was
                kept.append(line)
    return "\n".join(kept).strip(), {k: " ".join(v) for k, v in found.items()}


def option_parameter(name: str, annotation: Any, default: Any, doc: str | None = None) -> inspect.Parameter:
    """The typer option of one flow parameter; doc: what the flow's docstring says of it."""
    required = default is inspect.Parameter.empty
    members = _members(annotation)
    flag = "--" + name.replace("_", "-")
    help_text = doc or (None if required else "default: the config's" if default is None else f"default: {default}")
    if len(members) == 1 and (members[0] in _NATIVE or typing.get_origin(members[0]) is Literal):
        kind: Any = members[0] if required else members[0] | None
        option = typer.Option(flag, help=help_text)
    else:  # bool (a value, not a flag) and unions: pydantic decides, as it does for Prefect
        kind = Any
        option = typer.Option(flag, help=help_text, parser=_parser(annotation), metavar=_metavar(members))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, option],
                             default=... if required else None)


def stage_command(name: str, flow: Any) -> Any:
    """A typer command function for `flow`, its signature built from the flow's type hints."""
    hints = typing.get_type_hints(flow.fn)
    signature = inspect.signature(flow.fn)
    names = [n for n in signature.parameters if n not in OWN_PARAMETERS]
    description, docs = split_docstring(flow.fn.__doc__, names)
    options = [option_parameter(n, hints.get(n, str), signature.parameters[n].default, docs.get(n)) for n in names]

    def command(config: Path, warehouse: str | None = None, runner: str | None = None, **given: Any) -> None:
        from libra.tasks.core.config import ConfigError, load_config
        from libra.tasks.core.executor import RUNNER_ENV

        if runner:  # every stage flow of the run reads it (tasks/core/executor.py: runner_kind)
            os.environ[RUNNER_ENV] = runner

        try:
            load_config(config)  # fail on a bad config before Prefect or any endpoint is touched
        except ConfigError as e:
            fail(str(e))
        chosen = {k: v for k, v in given.items() if v is not None}
        print_json(flow(str(config), warehouse, **chosen))

    own = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=ConfigOpt),
           inspect.Parameter("warehouse", inspect.Parameter.KEYWORD_ONLY, annotation=WarehouseOpt, default=None),
           inspect.Parameter("runner", inspect.Parameter.KEYWORD_ONLY, annotation=RunnerOpt, default=None)]
    params = own + options
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = name
    command.__doc__ = description or f"Run the {name} flow."
    return command


class StageGroup(TyperGroup):
    """`libra run`'s subcommands, made from the flows the first time one is asked for."""

    _stages: Any = None

    def _group(self) -> Any:
        if StageGroup._stages is None:
            stages = typer.Typer(add_completion=False)
            for name, flow in stage_flows().items():
                stages.command(name)(stage_command(name, flow))
            StageGroup._stages = typer.main.get_group(stages)
        return StageGroup._stages

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self._group().commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        group = self._group()
        if cmd_name not in group.commands:
            fail(f"unknown flow {cmd_name!r}; choose from: {', '.join(group.commands)}")
        return group.commands[cmd_name]


run_app = typer.Typer(
    cls=StageGroup, no_args_is_help=True,
    help="Run the factory flow (every stage in order) or one stage flow under Prefect (the commands below). "
         "Each takes --config C, --warehouse W and its own options, e.g. `libra run train --stages mixed`, "
         "`libra run eval --guard training:latest --benchmark F`; `libra run STAGE --help` lists them with "
         "their types.",
)
