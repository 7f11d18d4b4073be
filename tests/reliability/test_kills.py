"""kill -9 of a factory run at stage boundaries and mid-stage, again and again on one warehouse, then two
runs at once to the end while this process keeps reading: the same counts, labels and splits as the
fault-free run, no call paid twice, and the killed runs marked `interrupted` (not `running` forever)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress

import pytest

from libra.warehouse import Warehouse
from tests.reliability.conftest import calls_repaid, facts, labels, reliability_config, split_rows
from tests.reliability.figures import record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

# (where, a count that grows once the run is there): the run is killed as soon as the count grows.
KILL_POINTS = [
    ("mid-synthesize", "SELECT count(*) FROM queries"),
    ("boundary dedup -> respond", "SELECT count(*) FROM runs WHERE flow = 'respond'"),
    ("mid-annotate", "SELECT count(*) FROM votes"),
]  # (tests/flows/test_factory.py kills mid-respond; each point here costs a process start, ~15 s)


def _env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    # the harness's server: a killed process leaves no temporary server behind, and starts faster
    return {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": PREFECT_API_URL.value()}


def _count(path, sql: str) -> int:
    try:
        return Warehouse(path, create=False).scalar(sql) or 0
    except Exception:  # not created yet, or mid-migration
        return 0


def test_kill_9_at_every_point_then_a_rerun_ends_equal_without_repaying_calls(baseline, stub, tmp_path):
    base_wh, _ = baseline
    config = reliability_config(stub.url, tmp_path)
    path = tmp_path / "test.duckdb"
    cmd = [sys.executable, "-m", "libra.flows.cli.main", "run", "factory", "--config", str(config)]
    killed = []
    for where, sql in KILL_POINTS:
        start = _count(path, sql)
        log = tmp_path / f"killed-{len(killed)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 180
            while time.time() < deadline and proc.poll() is None and _count(path, sql) <= start:
                time.sleep(0.1)
            assert proc.poll() is None, f"the run ended before {where}:\n{log.read_text()[-3000:]}"
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        killed.append(where)

    # Two runs at once finish the work (their stages take turns on the stage locks) while this process
    # keeps reading through `libra sql`'s read-only path: readers answer during the writes.
    logs = [tmp_path / f"final-{i}.log" for i in range(2)]
    procs = []
    for log in logs:
        with log.open("wb") as out:
            procs.append(subprocess.Popen(cmd, env=_env(), stdout=out, stderr=subprocess.STDOUT))
    wh = Warehouse(path, create=False)
    waits: list[float] = []
    deadline = time.time() + 600
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        t0 = time.perf_counter()
        wh.read_only_query("SELECT count(*) AS n FROM votes")
        waits.append(time.perf_counter() - t0)
        time.sleep(0.05)
    for p, log in zip(procs, logs, strict=True):
        assert p.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert facts(wh) == facts(base_wh)
    assert labels(wh).equals(labels(base_wh)) and split_rows(wh).equals(split_rows(base_wh))
    assert calls_repaid(wh) == 0
    for table, key in (("queries", "query_id"), ("responses", "response_id"), ("votes", "vote_id")):
        assert wh.scalar(f"SELECT count(*) - count(DISTINCT {key}) FROM {table}") == 0
    status = dict(wh.query("SELECT status, count(*) FROM runs GROUP BY 1").iter_rows())
    assert status.get("running", 0) == 0
    killed_factories = wh.scalar("SELECT count(*) FROM runs WHERE flow = 'factory' AND status = 'interrupted'")
    assert killed_factories == len(KILL_POINTS)
    record("kill", f"kill -9 at {len(killed)} points ({', '.join(killed)}), then a rerun: facts",
           "/".join(map(str, facts(wh).values())), "/".join(map(str, facts(base_wh).values())))
    record("kill", "calls paid twice", calls_repaid(wh), 0)
    record("concurrency", "two factory runs at once after the kills: both exit 0, duplicate rows", 0, 0)
    record("concurrency", "reads answered while they wrote / slowest read",
           f"{len(waits)} / {max(waits):.2f} s", "all answered", ok=bool(waits))
    record("kill", "runs left `running` / killed factory runs marked `interrupted`",
           f"{status.get('running', 0)} / {killed_factories}", f"0 / {len(KILL_POINTS)}")
