"""The runner choice and the endpoint-limit split (tasks/core/executor.py); Ray itself: tests/flows/test_ray.py."""

from __future__ import annotations

import os

import pytest

from libra.tasks.core import executor
from libra.tasks.core.config import ConfigError, Endpoint, parse_config
from tests.conftest import DEMO_CONFIG


def _config(runner: str = "", sizes: str = ""):
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    if sizes:
        text = text.replace("sizes:\n", f"sizes:\n{sizes}", 1)
    return parse_config(text + runner, "demo.yaml")


def test_endpoint_share_splits_every_limit() -> None:
    ep = Endpoint(name="e", base_url="http://x/v1", model="m", max_concurrency=9, requests_per_minute=600,
                  tokens_per_minute=90_000)
    half = executor.endpoint_share(ep, 2)
    assert (half.max_concurrency, half.requests_per_minute, half.tokens_per_minute) == (4, 300, 45_000)
    assert executor.endpoint_share(ep, 1) is ep
    tiny = executor.endpoint_share(Endpoint(name="t", base_url="http://x/v1", model="m", max_concurrency=2), 8)
    assert tiny.max_concurrency == 1 and tiny.requests_per_minute is None  # at least one call, unset stays unset


def test_worker_endpoints_split_over_batches_in_flight() -> None:
    cfg = _config(sizes="  batches_in_flight: 4\n")
    shares = {e.name: e.max_concurrency for e in executor.worker_endpoints(cfg)}
    assert shares == {e.name: max(1, e.max_concurrency // 4) for e in cfg.endpoints}
    assert sum(shares.values()) * 4 <= sum(e.max_concurrency for e in cfg.endpoints)


def test_runner_kind_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config("\nrunner:\n  kind: ray\n")
    monkeypatch.delenv(executor.RUNNER_ENV, raising=False)
    assert executor.runner_kind(cfg) == "ray"
    monkeypatch.setenv(executor.RUNNER_ENV, "threads")
    assert executor.runner_kind(cfg) == "threads"
    assert executor.runner_kind(cfg, "ray") == "ray"
    monkeypatch.setenv(executor.RUNNER_ENV, "dask")
    with pytest.raises(ConfigError, match=r"\$LIBRA_RUNNER: must be threads or ray"):
        executor.runner_kind(cfg)


def test_runner_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"key runner.address: must be local, auto or ray://"):
        _config("\nrunner:\n  kind: ray\n  address: 10.0.0.1:6379\n")
    with pytest.raises(ConfigError, match=r"key runner.kind"):
        _config("\nrunner:\n  kind: dask\n")


def test_threads_runner_and_worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    cfg = _config(sizes="  batches_in_flight: 3\n")
    monkeypatch.delenv(executor.RUNNER_ENV, raising=False)
    runner = executor.task_runner(cfg)
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        env = executor.worker_env(cfg, "ray")
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4200/api" and env[executor.RUNNER_ENV] == "ray"


def test_libra_run_runner_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """--runner sets $LIBRA_RUNNER for every stage flow of the run; a bad value is a usage error."""
    from typer.testing import CliRunner

    from libra.flows.cli import run as run_cli
    from libra.flows.cli.main import app

    monkeypatch.delenv(executor.RUNNER_ENV, raising=False)
    seen = {}

    def fake_flow(config: str, warehouse: str | None = None, parent_run_id: str | None = None) -> dict:
        seen["runner"] = os.environ.get(executor.RUNNER_ENV)
        return {}

    fake_flow.fn = fake_flow  # what stage_command reads the signature from
    monkeypatch.setattr(run_cli, "stage_flows", lambda: {"fake": fake_flow})
    monkeypatch.setattr(run_cli.StageGroup, "_stages", None)
    try:
        bad = CliRunner().invoke(app, ["run", "fake", "-c", str(DEMO_CONFIG), "--runner", "dask"],
                                 env={"COLUMNS": "200"})
        assert bad.exit_code == 2 and "'--runner'" in bad.output and "'dask' is not one of 'threads', 'ray'" in bad.output
        ok = CliRunner().invoke(app, ["run", "fake", "-c", str(DEMO_CONFIG), "--runner", "ray"])
        assert ok.exit_code == 0, ok.output
        assert seen["runner"] == "ray"
    finally:
        monkeypatch.setattr(run_cli.StageGroup, "_stages", None)
        os.environ.pop(executor.RUNNER_ENV, None)


def test_results_in_order_keeps_at_most_in_flight_submitted_and_yields_in_submission_order() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect.utilities.annotations import quote

    from libra.tasks.core.executor import results_in_order

    class Done:
        def __init__(self, value: int) -> None:
            self.value = value

        def result(self) -> int:
            return self.value

    submitted: list[int] = []

    class Runner(ThreadPoolTaskRunner):  # futures done on submit: only the window matters here
        def submit(self, task, parameters):
            # every parameter reaches the thread runner quoted: Prefect must not walk a batch's inputs
            assert all(isinstance(v, quote) for v in parameters.values())
            parameters = {k: v.unquote() for k, v in parameters.items()}
            submitted.append(parameters["x"])
            return Done(task(**parameters))

    drawn: list[int] = []

    def parameters():
        for x in range(7):
            drawn.append(x)
            yield {"x": x}

    out = []
    for value in results_in_order(Runner(), lambda x: x * 10, parameters(), in_flight=3):
        # when a result is handed over, no more than in_flight - 1 later ones were submitted before it
        assert len(submitted) - len(out) <= 3 and len(drawn) == len(submitted)
        out.append(value)
    assert out == [x * 10 for x in range(7)] and submitted == list(range(7))
