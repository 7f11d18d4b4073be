"""Batch tasks on a real local Ray through prefect-ray's RayTaskRunner (tasks/core/executor.py).

A Ray of 2 CPUs in its own temp dir (auth disabled) runs LLM batches against the stub: the workers
use the flow's Prefect API and get the endpoint's key, two pools together never pass the endpoint's
max_concurrency (the stub reports its peak per model), and afterwards no process Ray started is left.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import pytest
from prefect import flow, task
from prefect.cache_policies import NONE

from libra.tasks.core import executor
from libra.tasks.core.config import FactoryConfig, load_config
from tests.conftest import small_config

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")

MODEL = "stub-echo-ray-limit"
KEY_ENV = "LIBRA_RAY_TEST_KEY"
LIMIT = 4  # the endpoint's max_concurrency
# Workers cannot import a test module (pytest puts tests/ on sys.path of this process only): its task
# travels by value. Product batch tasks live in importable modules and travel by reference.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@task(name="ray-probe-batch", cache_policy=NONE, persist_result=False)
def probe_batch(cfg: FactoryConfig, texts: list[str]) -> dict:
    """One batch on a worker: a pool over the worker's share of the endpoints, like every batch task."""
    from libra.tasks.llm.pool import LLMPool, LLMRequest

    pool = LLMPool(executor.worker_endpoints(cfg), run_id="ray-test", show_progress=False)
    results = pool.run([LLMRequest.chat("limited", t) for t in texts], desc="probe")
    return {"pid": os.getpid(), "ok": sum(r.ok for r in results), "api_url": os.environ.get("PREFECT_API_URL"),
            "key": os.environ.get(KEY_ENV)}


@flow(name="ray-probe")
def probe_flow(session_cfg: FactoryConfig, batch_cfg: FactoryConfig, n_batches: int, per_batch: int) -> dict:
    with executor.ray_session(session_cfg) as session:
        with executor.task_runner(session_cfg) as runner:
            futures = [runner.submit(probe_batch, {"cfg": batch_cfg, "texts": [f"{b}-{i}" for i in range(per_batch)]})
                       for b in range(n_batches)]
            batches = [f.result() for f in futures]
        return {"session": session, "batches": batches, "api_url": executor.prefect_api_url()}


def _config(stub_url: str, tmp: Path, batches_in_flight: int) -> FactoryConfig:
    path = small_config(stub_url, tmp, runner={"kind": "ray", "workers": 2},
                        sizes={"batches_in_flight": batches_in_flight})
    cfg = load_config(path)
    data = cfg.model_dump()
    data["endpoints"].append({"name": "limited", "base_url": f"{stub_url}/v1", "model": MODEL,
                              "api_key_env": KEY_ENV, "max_concurrency": LIMIT, "timeout_s": 10})
    return FactoryConfig.model_validate(data)


def _processes_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _peak(stub_url: str) -> int:
    return httpx.get(f"{stub_url}/admin/stats", timeout=5).json()["peak_concurrency"].get(MODEL, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's processes through /proc")
def test_ray_workers_share_endpoint_limits_and_leave_nothing_running(
        stub, faults, prefect_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-ray")
    monkeypatch.delenv(executor.RUNNER_ENV, raising=False)
    faults(models={MODEL: {"latency_ms": 40}})
    split = _config(stub.url, tmp_path, batches_in_flight=2)
    unsplit = split.model_copy(update={"sizes": split.sizes.model_copy(update={"batches_in_flight": 1})})

    httpx.delete(f"{stub.url}/admin/stats", timeout=5).raise_for_status()
    out = probe_flow(split, split, 2, 60)
    peak_split = _peak(stub.url)
    # the control: pools that each take the whole limit, two at once on 2 CPUs, pass it
    httpx.delete(f"{stub.url}/admin/stats", timeout=5).raise_for_status()
    control = probe_flow(split, unsplit, 2, 60)
    peak_unsplit = _peak(stub.url)

    batches = out["batches"]
    assert [b["ok"] for b in batches] == [60, 60]
    assert all(b["pid"] != os.getpid() for b in batches)  # on Ray workers, not in the flow process
    assert all(b["api_url"] == out["api_url"] and b["api_url"] for b in batches)  # one Prefect API
    assert all(b["key"] == "sk-test-ray" for b in batches)  # the endpoint's key reached the workers
    assert LIMIT // 2 < peak_split <= LIMIT, peak_split  # both workers called at once, within the limit
    assert peak_unsplit > LIMIT, peak_unsplit  # the check above can fail
    assert [b["ok"] for b in control["batches"]] == [60, 60]

    for session in (out["session"], control["session"]):
        assert session.started and session.temp_dir
        deadline = time.monotonic() + 20
        while _processes_naming(session.temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _processes_naming(session.temp_dir) == [], "Ray processes left running"
        assert not Path(session.temp_dir).exists()
    assert not ray.is_initialized()


def test_factory_on_ray_ends_with_the_thread_runners_counts(stub, prefect_harness, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole small factory through RayTaskRunner stores what the thread runner stores, table by table."""
    from libra.flows.factory import factory_flow
    from libra.warehouse import Warehouse

    monkeypatch.delenv(executor.RUNNER_ENV, raising=False)
    counts = {}
    for kind in ("threads", "ray"):
        tmp = tmp_path / kind
        tmp.mkdir()
        factory_flow(str(small_config(stub.url, tmp, runner={"kind": kind, "workers": 2})))
        counts[kind] = Warehouse(tmp / "test.duckdb", create=False).table_counts()
    assert counts["ray"]["responses"] > 0 and counts["ray"]["votes"] > counts["ray"]["responses"]
    assert counts["ray"] == counts["threads"]
    assert not ray.is_initialized()
    leftover = [p for p in _processes_naming("libra-ray-") if p != os.getpid()]
    assert leftover == [], "Ray processes left running"
