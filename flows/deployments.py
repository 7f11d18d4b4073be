"""Scheduled deployments: prefect.yaml's declarations turned into Prefect deployments that can run.

`libra deploy` is the one way to register them. It refuses what would only fail later, at 01:00 on a
worker: a missing or invalid config, an unknown flow option, a deployment whose flow lacks an input
(eval without a guard or benchmark, train without a base model, import without files), and a
temporary Prefect server (its deployments die with the command). What it registers does not depend
on the worker's shell: the config and warehouse are absolute paths in the parameters, the config's
non-secret `${VAR}`s are captured into the job's environment, and the working directory is the
warehouse's folder. Secrets (endpoint API keys) are never captured: the worker must hold them.
"""

from __future__ import annotations

import inspect
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libra.tasks.core.config import FactoryConfig, load_config, referenced_env_vars, yaml_mapping
from libra.tasks.core.errors import InputError
from libra.tasks.core.overrides import with_overrides

DEFAULT_POOL = "libra-process"
# Options every flow gets from `libra deploy` itself, never from prefect.yaml or --set.
OWN_PARAMETERS = ("config", "warehouse", "parent_run_id")
# Flow options that name files: relative values are made absolute at deploy time, because the worker
# runs the flow in another folder.
# (output_dir is not one: relative, it means beside the warehouse, which the flow resolves itself.)
PATH_OPTIONS = ("files", "input", "spec", "benchmark", "base_model")
# Environment variables that look like secrets are never written into a deployment (Prefect's
# database holds job variables in the clear), even when a config refers to them.
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


class DeployError(InputError):
    """A deployment that would not run; the message names the file, deployment and key."""


@dataclass
class DeploymentSpec:
    """One entry of prefect.yaml's `deployments` list."""

    name: str
    entrypoint: str
    schedules: list[dict[str, Any]]
    parameters: dict[str, Any] = field(default_factory=dict)
    work_pool: str | None = None
    work_queue: str | None = None
    description: str | None = None

    def load_flow(self) -> Any:
        module, _, attr = self.entrypoint.partition(":")
        import importlib

        return getattr(importlib.import_module(module), attr)


def default_prefect_file() -> Path:
    """./prefect.yaml when the working directory has one, else the checkout's beside the package."""
    here = Path("prefect.yaml")
    if here.exists():
        return here.resolve()
    return Path(__file__).resolve().parents[1] / "prefect.yaml"


def read_prefect_file(path: Path) -> list[DeploymentSpec]:
    """The deployments declared in a prefect.yaml, each checked for a flow that exists."""
    try:
        data = yaml_mapping(path.read_text(encoding="utf-8"), str(path), DeployError)
    except FileNotFoundError:
        raise DeployError(f"{path}: no such file (give the deployments file with --file)") from None
    entries = data.get("deployments")
    if not isinstance(entries, list) or not entries:
        raise DeployError(f"{path}: key deployments: expected a list of deployments")
    specs: list[DeploymentSpec] = []
    for i, entry in enumerate(entries):
        where = f"{path}: key deployments.{i}"
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("entrypoint"):
            raise DeployError(f"{where}: every deployment needs a name and an entrypoint")
        pool = entry.get("work_pool") or {}
        spec = DeploymentSpec(
            name=str(entry["name"]), entrypoint=str(entry["entrypoint"]),
            schedules=list(entry.get("schedules") or []), parameters=dict(entry.get("parameters") or {}),
            work_pool=pool.get("name"), work_queue=pool.get("work_queue_name"), description=entry.get("description"),
        )
        try:
            spec.load_flow()
        except (ImportError, AttributeError, ValueError) as e:
            raise DeployError(f"{where}.entrypoint: cannot load {spec.entrypoint!r} ({e})") from None
        for j, schedule in enumerate(spec.schedules):
            try:
                prefect_schedule(schedule)
            except (TypeError, ValueError) as e:
                raise DeployError(f"{where}.schedules.{j}: invalid schedule ({e})") from None
        specs.append(spec)
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DeployError(f"{path}: deployment names must be unique, repeated: {dupes}")
    return specs


def parse_sets(values: list[str], specs: list[DeploymentSpec]) -> dict[str, dict[str, str]]:
    """`--set weekly-eval.benchmark=F` -> {"weekly-eval": {"benchmark": "F"}}; the deployment must exist."""
    known = {s.name for s in specs}
    out: dict[str, dict[str, str]] = {}
    for value in values:
        target, eq, item = value.partition("=")
        name, dot, key = target.rpartition(".")
        if not eq or not dot or not name or not key:
            raise DeployError(f"--set {value!r}: expected DEPLOYMENT.OPTION=VALUE, e.g. weekly-eval.benchmark=bench.json")
        if name not in known:
            raise DeployError(f"--set {value!r}: no deployment named {name!r} (known: {', '.join(sorted(known))})")
        out.setdefault(name, {})[key.replace("-", "_")] = item
    return out


def _absolute(key: str, value: Any, base: Path) -> Any:
    if key not in PATH_OPTIONS or not isinstance(value, str):
        return value
    parts = []
    for part in value.split(","):
        p = Path(part.strip()).expanduser()
        # a relative path or glob that exists from here (or a file list, whose globs may match later)
        if part.strip() and not p.is_absolute() and (key == "files" or (base / p).exists()):
            p = base / p
        parts.append(str(p) if part.strip() else part)
    return ",".join(parts)


def flow_options(flow: Any) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(flow.fn).parameters.items() if n not in OWN_PARAMETERS}


def option_type_problems(flow: Any, params: dict[str, Any]) -> list[str]:
    """Each value checked against the flow's typed parameter as Prefect will check it at run time
    (`--set weekly-train.epochs=two` is refused now, not by the first scheduled run)."""
    from pydantic import TypeAdapter, ValidationError

    hints = typing.get_type_hints(flow.fn)
    problems = []
    for key, value in params.items():
        if key not in hints or value is None:
            continue
        try:
            TypeAdapter(hints[key]).validate_python(value)
        except ValidationError as e:
            problems.append(f"option {key!r} (--{key.replace('_', '-')}) = {value!r}: "
                            + "; ".join(err["msg"] for err in e.errors()))
    return problems


def check_inputs(spec: DeploymentSpec, flow: Any, cfg: FactoryConfig, params: dict[str, Any]) -> list[str]:
    """What this deployment's flow would refuse at run time, said now (empty when it can run)."""
    options = flow_options(flow)
    problems = [f"option {k!r} is not an option of flow {flow.name!r} (its options: {', '.join(options) or 'none'})"
                for k in params if k not in options]
    problems += [f"needs option {n!r} (--set {spec.name}.{n}=…)" for n, p in options.items()
                 if p.default is inspect.Parameter.empty and params.get(n) in (None, "")]
    problems += option_type_problems(flow, params)
    if problems:
        return problems
    try:
        if flow.name == "train":
            t = with_overrides(cfg.training, {k: str(v) for k, v in params.items()}, list_keys=("stages",))
            if not t.base_model:
                problems.append(f"needs a base model: training.base_model in the config or --set {spec.name}.base_model=DIR")
        elif flow.name == "eval":
            ev = with_overrides(cfg.evaluation, {"guards": params.get("guard"), "benchmark": params.get("benchmark"),
                                                 "per_source_limit": params.get("per_source_limit"),
                                                 "max_tokens": params.get("max_tokens"),
                                                 "structured": params.get("structured")}, list_keys=("guards",))
            if not ev.guards:
                problems.append(f"needs a guard: evaluation.guards in the config or --set {spec.name}.guard=G")
            if not ev.benchmark:
                problems.append(f"needs a benchmark: evaluation.benchmark in the config or --set {spec.name}.benchmark=F")
        elif flow.name == "translate":
            if not params.get("input"):
                problems.append(f"needs an input file: --set {spec.name}.input=FILE")
            elif not Path(params["input"]).exists():
                problems.append(f"input {params['input']!r}: no such file")
        elif flow.name == "import":
            from libra.tasks.data.imports import load_import_spec

            load_import_spec(str(params["spec"]))
    except InputError as e:
        problems.append(str(e))
    return problems


def job_environment(config: Path, cfg: FactoryConfig, warehouse: Path) -> tuple[dict[str, str], list[str]]:
    """The environment every run of these deployments gets, and the secrets the worker must hold.

    The config's `${VAR}`s are read when a run starts, in the worker's environment: capture the values
    they had when the config was validated here, so a worker started in a clean shell runs the same
    config. Variables that look like secrets, and every endpoint's API key variable, stay out."""
    secrets = sorted({e.api_key_env for e in cfg.endpoints if e.api_key_env})
    env = {"LIBRA_CONFIG": str(config), "LIBRA_WAREHOUSE": str(warehouse)}
    text = config.read_text(encoding="utf-8-sig")
    for var in referenced_env_vars(text):
        if var in secrets or _SECRET_NAME.search(var):
            if var not in secrets:
                secrets.append(var)
            continue
        if var in env or os.environ.get(var) in (None, ""):
            continue  # unset here: the config's default applies on the worker too
        env[var] = os.environ[var]
    return env, secrets


@dataclass
class Plan:
    """What `libra deploy` registers: one entry per deployment, all checked."""

    config: Path
    warehouse: Path
    pool: str
    env: dict[str, str]
    secrets: list[str]
    deployments: list[tuple[DeploymentSpec, dict[str, Any]]]

    def pool_for(self, spec: DeploymentSpec) -> str:
        """--pool, else the deployment's work_pool in the file, else libra-process."""
        return self.pool or spec.work_pool or DEFAULT_POOL

    def rows(self) -> list[dict[str, str]]:
        return [{"deployment": s.name, "flow": s.load_flow().name,
                 "schedule": "; ".join(_describe(x) for x in s.schedules) or "(none)",
                 "options": ", ".join(f"{k}={v}" for k, v in p.items() if k not in OWN_PARAMETERS) or "-"}
                for s, p in self.deployments]


def _describe(schedule: dict[str, Any]) -> str:
    when = (f"cron {schedule['cron']}" if "cron" in schedule else f"every {schedule['interval']} s"
            if "interval" in schedule else f"rrule {schedule.get('rrule')}")
    return f"{when} {schedule.get('timezone', 'UTC')}"


def plan(config: str, warehouse: str, prefect_file: Path, pool: str | None = None, only: list[str] | None = None,
         sets: list[str] | None = None) -> Plan:
    """Read and check everything; touch no server. Raises DeployError/ConfigError naming what is wrong."""
    config_path = Path(config).expanduser().resolve()
    cfg = load_config(config_path)
    if not warehouse:
        raise DeployError("no warehouse given: pass --warehouse PATH (the file every scheduled run writes)")
    warehouse_path = Path(warehouse).expanduser().resolve()
    if not warehouse_path.parent.is_dir():
        raise DeployError(f"--warehouse {warehouse}: folder {warehouse_path.parent} does not exist")
    specs = read_prefect_file(prefect_file)
    chosen = specs
    if only:
        unknown = sorted(set(only) - {s.name for s in specs})
        if unknown:
            raise DeployError(f"--only: no deployment named {unknown} in {prefect_file} "
                              f"(known: {', '.join(s.name for s in specs)})")
        chosen = [s for s in specs if s.name in only]
    overrides = parse_sets(sets or [], specs)
    here = Path.cwd()
    problems, planned = [], []
    for spec in chosen:
        flow = spec.load_flow()
        params = {k: _absolute(k, v, here) for k, v in {**spec.parameters, **overrides.get(spec.name, {})}.items()}
        for why in check_inputs(spec, flow, cfg, params):
            problems.append(f"deployment {spec.name!r} ({flow.name}): {why}")
        planned.append((spec, {"config": str(config_path), "warehouse": str(warehouse_path), **params}))
    if problems:
        raise DeployError(f"{prefect_file}: nothing deployed, fix these first (or leave them out with --only):\n  "
                          + "\n  ".join(problems))
    env, secrets = job_environment(config_path, cfg, warehouse_path)
    return Plan(config_path, warehouse_path, pool or "", env, secrets, planned)


def api_url() -> str:
    """The Prefect server the deployments go to; a temporary one would forget them when we exit."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise DeployError("no Prefect server: start one (`prefect server start`) and set PREFECT_API_URL "
                          "(e.g. `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`); deployments "
                          "on a temporary server would vanish when this command ends")
    return str(url)


def ensure_pool(name: str) -> bool:
    """Create a process work pool named `name` when the server has none; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process",
                                                   base_job_template=ProcessWorker.get_default_base_job_template()))
            return True


def apply(p: Plan) -> list[str]:
    """Register every planned deployment with the server; returns their full names (flow/deployment)."""
    from prefect.deployments.runner import EntrypointType

    names = []
    for spec, params in p.deployments:
        flow = spec.load_flow()
        pool = p.pool_for(spec)
        schedules = [prefect_schedule(s) for s in spec.schedules]
        deployment = flow.to_deployment(
            name=spec.name, schedules=schedules, parameters=params, description=spec.description,
            tags=["libra", f"warehouse:{p.warehouse.name}"], work_pool_name=pool, work_queue_name=spec.work_queue,
            job_variables={"env": dict(p.env), "working_dir": str(p.warehouse.parent)},
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.apply(work_pool_name=pool)
        names.append(f"{flow.name}/{spec.name}")
    return names


def prefect_schedule(schedule: dict[str, Any]) -> Any:
    """One prefect.yaml schedule (cron, interval in seconds, or rrule; timezone) as Prefect's Schedule."""
    from datetime import timedelta

    from prefect.schedules import Schedule

    if not isinstance(schedule, dict):
        raise ValueError("expected a mapping with cron, interval or rrule")
    fields = dict(schedule)
    if "interval" in fields and not isinstance(fields["interval"], timedelta):
        fields["interval"] = timedelta(seconds=float(fields["interval"]))
    return Schedule(**fields)


def pools_of(p: Plan) -> list[str]:
    return sorted({p.pool_for(s) for s, _ in p.deployments})

