"""Scheduled deployments: `libra deploy` refuses what could not run, and what it registers fires.

The slow test is the whole path a team takes: a real `prefect server start` (its own PREFECT_HOME, on
a free port, scheduler every 2 s), `libra deploy` of the repository's prefect.yaml, a process worker
started in a clean shell whose $LIBRA_WAREHOUSE names another file; the scheduler must create runs
for every deployment and a deployment on a short interval must fire by itself and write the deployed
warehouse. Everything started is stopped by its pid, and no process of this Prefect home survives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml

from libra.flows import deployments
from libra.flows.factory import STAGE_FLOWS
from libra.tasks.llm.servers import free_port, start_server
from tests.conftest import DEMO_CONFIG

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _libra(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "libra"), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, cwd=cwd or REPO)


def _demo_config(tmp: Path) -> Path:
    """The demo config, small, still reading the stub URL from ${LIBRA_STUB_URL} when a run starts."""
    cfg = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    cfg["sizes"].update({"queries_per_call": 3, "calls_per_subcategory": 1, "behaviours_per_subcategory": 2,
                         "events_per_subcategory": 1})
    cfg["evaluation"] = {"benchmark": "bench.json"}
    for ep in cfg["endpoints"]:
        ep["timeout_s"] = 5
    path = tmp / "factory.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# Inputs the team chooses for the deployments that need them, as a README user would pass them.
def _sets(tmp: Path) -> list[str]:
    (tmp / "en.jsonl").write_text(json.dumps({"query": "How to pick a lock?"}) + "\n", encoding="utf-8")
    (tmp / "base-model").mkdir(exist_ok=True)
    return ["--set", f"nightly-import.files={tmp}/drop/*.jsonl", "--set", "nightly-import.spec=flames_1k_zh",
            "--set", f"nightly-translate.input={tmp / 'en.jsonl'}", "--set", f"weekly-train.base_model={tmp / 'base-model'}"]


# Run on demand, never on a schedule: an ablation grid is an experiment, not a nightly job; mining and
# the curriculum need a guard and a training budget the team chooses (weekly-train is the scheduled one).
ON_DEMAND = {"ablation", "mine", "curriculum"}


def test_every_flow_a_team_runs_has_a_deployment() -> None:
    specs = deployments.read_prefect_file(REPO / "prefect.yaml")
    deployed = {s.load_flow().name for s in specs}
    assert deployed == {"factory", *(f.name for f in STAGE_FLOWS.values())} - ON_DEMAND
    assert all(s.schedules for s in specs), "every deployment has a schedule"


def test_deploy_refuses_a_missing_or_invalid_config_and_names_it(tmp_path: Path) -> None:
    missing = _libra("deploy", "--config", str(tmp_path / "nope.yaml"), "--warehouse", str(tmp_path / "w.duckdb"))
    assert missing.returncode == 2 and "nope.yaml: config file not found" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO_CONFIG.read_text(encoding="utf-8").replace("roles:", "rolez:"), encoding="utf-8")
    invalid = _libra("deploy", "--config", str(bad), "--warehouse", str(tmp_path / "w.duckdb"))
    assert invalid.returncode == 2 and "bad.yaml" in invalid.stderr and "key roles" in invalid.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_deploy_refuses_deployments_whose_inputs_are_missing(tmp_path: Path) -> None:
    config = _demo_config(tmp_path)
    out = _libra("deploy", "--config", str(config), "--warehouse", str(tmp_path / "w.duckdb"), "--dry-run")
    assert out.returncode == 2
    for name, why in (("nightly-import", "needs option 'files'"), ("nightly-translate", "needs an input file"),
                      ("weekly-train", "needs a base model")):
        assert f"deployment '{name}'" in out.stderr and why in out.stderr, out.stderr
    assert "weekly-eval" not in out.stderr  # guard from prefect.yaml, benchmark from the config
    unknown = _libra("deploy", "--config", str(config), "--warehouse", str(tmp_path / "w.duckdb"), "--dry-run",
                     "--only", "weekly-split", "--set", "weekly-split.stagez=mixed")
    assert unknown.returncode == 2 and "'stagez' is not an option of flow 'split'" in unknown.stderr
    bad_value = _libra("deploy", "--config", str(config), "--warehouse", str(tmp_path / "w.duckdb"), "--dry-run",
                       *_sets(tmp_path), "--set", "weekly-train.learning_rate=fast")
    assert bad_value.returncode == 2 and "--learning-rate" in bad_value.stderr
    # checked against the flow's typed signature, as Prefect checks a scheduled run's parameters
    bad_type = _libra("deploy", "--config", str(config), "--warehouse", str(tmp_path / "w.duckdb"), "--dry-run",
                      *_sets(tmp_path), "--set", "weekly-train.max_steps=1.5", "--set", "nightly-import.limit=ten")
    assert bad_type.returncode == 2, bad_type.stderr
    assert "option 'max_steps' (--max-steps) = '1.5'" in bad_type.stderr and "valid integer" in bad_type.stderr
    assert "deployment 'nightly-import' (import): option 'limit'" in bad_type.stderr
    good = _libra("deploy", "--config", str(config), "--warehouse", str(tmp_path / "w.duckdb"), "--dry-run",
                  *_sets(tmp_path), "--set", "weekly-train.max_steps=5", "--set", "weekly-train.bf16=auto")
    assert good.returncode == 0, good.stderr


def test_deploy_refuses_a_temporary_prefect_server(tmp_path: Path) -> None:
    config = _demo_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = subprocess.run([str(BIN / "libra"), "deploy", "--config", str(config), "--warehouse",
                          str(tmp_path / "w.duckdb"), "--only", "weekly-split"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert out.returncode == 2 and "no Prefect server" in out.stderr


def test_job_environment_captures_config_variables_but_never_secrets(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    text = DEMO_CONFIG.read_text(encoding="utf-8").replace(
        "model: stub-synth,", "model: stub-synth, api_key_env: SYNTH_API_KEY,")
    config = tmp_path / "c.yaml"
    config.write_text(text + "\nname: ${TEAM_NAME:-demo}\n", encoding="utf-8")
    monkeypatch.setenv("LIBRA_STUB_URL", "http://10.0.0.5:9000")
    monkeypatch.setenv("SYNTH_API_KEY", "sk-secret")
    monkeypatch.delenv("TEAM_NAME", raising=False)
    from libra.tasks.core.config import load_config

    env, secrets = deployments.job_environment(config, load_config(config), tmp_path / "w.duckdb")
    assert env["LIBRA_STUB_URL"] == "http://10.0.0.5:9000"
    assert env["LIBRA_WAREHOUSE"] == str(tmp_path / "w.duckdb") and env["LIBRA_CONFIG"] == str(config)
    assert "TEAM_NAME" not in env  # unset at deploy: the config's default applies on the worker too
    assert secrets == ["SYNTH_API_KEY"] and "sk-secret" not in json.dumps(env)


def _api(url: str, path: str, body: dict | None = None) -> list[dict]:
    r = httpx.post(f"{url}{path}", json=body or {}, timeout=30)
    r.raise_for_status()
    return r.json()


def _wait(what: str, check, timeout_s: float, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _processes_with(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
def test_scheduler_creates_runs_for_every_deployment_and_a_worker_runs_one(tmp_path: Path, stub) -> None:
    home = tmp_path / "prefect-home"
    home.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    prefect_env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
                   "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}
    server = start_server([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                          api, health_path="/health", timeout_s=180, log_path=tmp_path / "server.log",
                          env={k: v for k, v in prefect_env.items() if k != "PREFECT_API_URL"})
    worker = None
    try:
        # The repository's deployments, one of them moved to a 10 s interval so that it fires now.
        prefect_file = tmp_path / "prefect.yaml"
        declared = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
        for d in declared["deployments"]:
            if d["name"] == "nightly-elements":
                d["schedules"] = [{"interval": 10, "timezone": "Asia/Shanghai"}]
        prefect_file.write_text(yaml.safe_dump(declared, allow_unicode=True, sort_keys=False), encoding="utf-8")
        config = _demo_config(tmp_path)
        warehouse = tmp_path / "deployed" / "factory.duckdb"
        warehouse.parent.mkdir()
        out = _libra("deploy", "--config", str(config), "--warehouse", str(warehouse), "--pool", "libra-test",
                     "--file", str(prefect_file), *_sets(tmp_path),
                     env={**prefect_env, "LIBRA_STUB_URL": stub.url}, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "created process work pool 'libra-test'" in out.stdout
        names = {d["name"]: d for d in _api(api, "/deployments/filter")}
        assert set(names) == {d["name"] for d in declared["deployments"]}
        for d in names.values():
            assert d["parameters"]["config"] == str(config) and d["parameters"]["warehouse"] == str(warehouse)
            assert d["job_variables"]["env"]["LIBRA_STUB_URL"] == stub.url

        # The scheduler (the part that SQLAlchemy 2.1 broke) creates runs for every deployment.
        def scheduled() -> dict[str, int] | None:
            runs = _api(api, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
                                                   "limit": 200})
            counts = {n: sum(r["deployment_id"] == d["id"] for r in runs) for n, d in names.items()}
            return counts if all(counts.values()) else None

        counts = _wait("scheduled runs for every deployment", scheduled, 90)
        assert all(n >= 1 for n in counts.values()), counts

        # A worker in a clean shell: no stub URL, and a $LIBRA_WAREHOUSE that is not the deployed one.
        decoy = tmp_path / "elsewhere" / "decoy.duckdb"
        decoy.parent.mkdir()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LIBRA_")}
        worker_port = free_port()
        worker = start_server(
            [str(BIN / "prefect"), "worker", "start", "--pool", "libra-test", "--type", "process",
             "--with-healthcheck"], f"http://127.0.0.1:{worker_port}", health_path="/health", timeout_s=120,
            log_path=tmp_path / "worker.log",
            env={**clean, **prefect_env, "LIBRA_WAREHOUSE": str(decoy), "PREFECT_WORKER_QUERY_SECONDS": "2",
                 "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1", "PREFECT_WORKER_WEBSERVER_PORT": str(worker_port)})

        def completed() -> list[dict]:
            runs = _api(api, "/flow_runs/filter", {"flow_runs": {
                "deployment_id": {"any_": [names["nightly-elements"]["id"]]},
                "state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}})
            return runs

        finished = _wait("a run of the interval deployment to finish", completed, 240, every_s=2)
        assert finished[0]["state_type"] == "COMPLETED", (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
        assert finished[0]["auto_scheduled"] is True
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    assert not decoy.exists()
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        elements = con.execute("SELECT count(*) FROM elements").fetchone()[0]
        run_config = json.loads(con.execute("SELECT config FROM runs WHERE flow = 'elements' AND status = 'completed' "
                                            "ORDER BY started_at LIMIT 1").fetchone()[0])
    finally:
        con.close()
    assert elements > 0
    assert run_config["warehouse"] == str(warehouse) and run_config["config_file"] == str(config)
    time.sleep(1)
    assert _processes_with(f"PREFECT_HOME={home}") == [], "a process started by this test is still running"
