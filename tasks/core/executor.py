"""Where batch tasks run: Prefect's thread pool in the flow process, or Ray workers (docs/scale-out.md).

The config's `runner` section chooses (`--runner` on `libra run`, else `$LIBRA_RUNNER`, else
`runner.kind`). Either way the flow process stays the only warehouse writer: a batch task gets plain,
picklable inputs (config, frames), computes, and hands rows back for the flow to store.

On Ray three things must reach every worker, because a worker is a process of its own:
- the flow's Prefect API (`PREFECT_API_URL`): without it each worker starts a temporary Prefect server
  of its own on the same database (measured: the first flow took 55 s instead of 10 s);
- the endpoints' API keys (the env vars the config names; values never enter the warehouse);
- its share of every endpoint's limits: `max_concurrency`, requests and tokens per minute belong to the
  endpoint, so with `sizes.batches_in_flight` batches in flight each batch's pool gets that share of
  them (`worker_endpoints`), whichever runner runs them (threads run batches concurrently too).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from libra.tasks.core.config import ConfigError, Endpoint, FactoryConfig

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

RunnerKind = Literal["threads", "ray"]
RUNNER_ENV = "LIBRA_RUNNER"  # what `libra run --runner` sets, so every stage flow of a run sees it


def runner_kind(cfg: FactoryConfig, override: str | None = None) -> RunnerKind:
    """--runner (override) beats $LIBRA_RUNNER beats the config's runner.kind."""
    kind = override or os.environ.get(RUNNER_ENV) or cfg.runner.kind
    if kind not in ("threads", "ray"):
        source = "--runner" if override else f"${RUNNER_ENV}" if os.environ.get(RUNNER_ENV) else "runner.kind"
        raise ConfigError(f"{source}: must be threads or ray (got {kind!r})")
    return kind  # type: ignore[return-value]


def endpoint_share(endpoint: Endpoint, shares: int) -> Endpoint:
    """The endpoint as one of `shares` concurrent pools sees it: 1/shares of its concurrency (at least
    one call) and of its requests and tokens per minute, so all pools together stay within its limits."""
    if shares <= 1:
        return endpoint
    return endpoint.model_copy(update={
        "max_concurrency": max(1, endpoint.max_concurrency // shares),
        "requests_per_minute": endpoint.requests_per_minute / shares if endpoint.requests_per_minute else None,
        "tokens_per_minute": endpoint.tokens_per_minute / shares if endpoint.tokens_per_minute else None,
    })


def worker_endpoints(cfg: FactoryConfig, shares: int | None = None) -> list[Endpoint]:
    """The endpoints for the pool of one batch task: each limit split over `shares` pools running at
    once (default: the batches in flight)."""
    return [endpoint_share(e, shares or cfg.sizes.batches_in_flight) for e in cfg.endpoints]


def prefect_api_url() -> str | None:
    """The Prefect API this process talks to: $PREFECT_API_URL (or a settings context, e.g. the test
    harness), else the temporary server the current flow run started."""
    from prefect.settings import PREFECT_API_URL

    if url := PREFECT_API_URL.value():
        return str(url)
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is not None and ctx.client is not None:
        return str(ctx.client.api_url).rstrip("/")
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # one instance per port: the flow run's temporary server, if any
    return server.api_url if server.running else None


def worker_env(cfg: FactoryConfig, override: str | None = None) -> dict[str, str]:
    """Environment variables every Ray worker gets: the flow's Prefect API, the runner choice, and the
    endpoints' API keys that are set here (a worker without its key fails the way the flow would)."""
    env: dict[str, str] = {RUNNER_ENV: runner_kind(cfg, override)}
    if url := prefect_api_url():
        env["PREFECT_API_URL"] = url
    for name in ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    for e in cfg.endpoints:
        if e.api_key_env and os.environ.get(e.api_key_env):
            env[e.api_key_env] = os.environ[e.api_key_env]
    return env


@dataclass(frozen=True)
class RaySession:
    """The Ray a run uses. started: this process started it (and stops it at the end); temp_dir: the
    session folder of a local Ray (every Ray process it starts names it on its command line)."""

    address: str
    started: bool
    temp_dir: str | None = None


@contextmanager
def ray_session(cfg: FactoryConfig, override: str | None = None) -> Iterator[RaySession | None]:
    """Connect to (or start) Ray for the run when the runner is ray, once for the whole run: stage flows
    inside it reuse it. Started here (address local), it is shut down and its folder removed at the
    end. Must be entered inside the flow run, so the workers get the run's Prefect API."""
    if runner_kind(cfg, override) != "ray":
        yield None
        return
    import ray

    if ray.is_initialized():  # an outer flow (the factory) already holds it
        yield RaySession(address=cfg.runner.address, started=False)
        return
    runtime_env = {"env_vars": worker_env(cfg, override)}
    temp_dir = None
    if cfg.runner.address == "local":
        # Ray's own default writes ~/.ray and /tmp/ray and needs a token; a run's Ray is private to it
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # short: Ray puts unix sockets under it (at most 107 bytes a path)
        temp_dir = tempfile.mkdtemp(prefix="libra-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        ray.init(num_cpus=cfg.runner.workers, include_dashboard=False,
                 _temp_dir=temp_dir, runtime_env=runtime_env, namespace="prefect", log_to_driver=False)
    else:
        ray.init(address=cfg.runner.address, runtime_env=runtime_env, namespace="prefect")
    try:
        yield RaySession(address=cfg.runner.address, started=True, temp_dir=temp_dir)
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def task_runner(cfg: FactoryConfig, override: str | None = None) -> TaskRunner:
    """The Prefect task runner for a flow's batch tasks: a thread per batch in flight, or
    prefect-ray's RayTaskRunner on the Ray of `ray_session` (started by the runner itself otherwise)."""
    if runner_kind(cfg, override) == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=cfg.sizes.batches_in_flight)
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise ConfigError("runner.kind ray needs the ray extra: pip install 'libra-factory[ray]'") from None
    address = None if cfg.runner.address == "local" else cfg.runner.address
    init_kwargs = {"runtime_env": {"env_vars": worker_env(cfg, override)}}
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        init_kwargs.update(num_cpus=cfg.runner.workers, include_dashboard=False)
    return RayTaskRunner(address=address, init_kwargs=init_kwargs)


def submit(runner: TaskRunner, task: Any, parameters: dict[str, Any]) -> Any:
    """`runner.submit`, on the thread runner with the parameters wrapped in Prefect's `quote`: the task
    gets the values unchanged, and Prefect does not walk them in the flow process looking for upstream
    futures to track. A batch's inputs are frames, configs, texts and requests, never futures, and the
    walk holds the GIL the batches' LLM calls need: measured on a judge batch of 500, 197 ms for its
    requests as a list of LLMRequest, 8 ms for its cached answers. prefect-ray (0.6) hands a quoted
    value to the task still wrapped, and walks the parameters on the worker, so Ray gets them bare."""
    from prefect.utilities.annotations import quote

    if in_flow_process(runner):
        parameters = {name: quote(value) for name, value in parameters.items()}
    return runner.submit(task, parameters)


def in_flow_process(runner: TaskRunner) -> bool:
    """Whether the runner's tasks run in the flow process (threads), sharing its objects unpickled."""
    from prefect.task_runners import ThreadPoolTaskRunner

    return isinstance(runner, ThreadPoolTaskRunner)


def results_in_order(runner: TaskRunner, task: Any, parameters: Iterable[dict[str, Any]], in_flight: int
                     ) -> Iterator[Any]:
    """Submit `task` once per parameters dict to an entered runner, at most `in_flight` at once, and
    yield the results in submission order: the flow consumes (writes) one result while the next ones
    compute, and `parameters` (a generator reading pages, say) is drawn only as room frees up."""
    pending: deque[Any] = deque()
    for params in parameters:
        pending.append(submit(runner, task, params))
        if len(pending) >= max(1, in_flight):
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
