"""End-to-end: the factory flow under Prefect's test harness against the stub server."""

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress

import pytest

from libra.warehouse import Warehouse
from tests.conftest import copy_of_factory, small_config

pytestmark = pytest.mark.slow

FACT_COUNTS = """
SELECT (SELECT count(*) FROM queries) AS queries, (SELECT count(*) FROM dedup) AS dedup,
       (SELECT count(*) FROM responses) AS responses, (SELECT count(*) FROM votes) AS votes,
       (SELECT count(*) FROM adjudications) AS adjudications, (SELECT count(*) FROM splits) AS splits
"""


def counts(wh: Warehouse) -> dict:
    return wh.query(FACT_COUNTS).row(0, named=True)


def network_calls(wh: Warehouse) -> int:
    return wh.scalar("SELECT count(*) FROM llm_calls")


@pytest.fixture(scope="module")
def finished(stub, demo_factory, tmp_path_factory):
    """A complete factory run on a small config (the session's, copied; shared by the assertions below)."""
    tmp = tmp_path_factory.mktemp("factory")
    config = copy_of_factory(demo_factory, stub.url, tmp)
    return config, Warehouse(tmp / "test.duckdb", create=False), demo_factory[1]


def test_every_stage_lands_in_the_warehouse(finished):
    _, wh, _ = finished
    scenarios = wh.query("SELECT DISTINCT scenario FROM v_queries WHERE kept")["scenario"]
    assert scenarios.n_unique() == 7
    per_query = wh.query("SELECT query_id, count(*) AS n FROM responses WHERE status = 'ok' GROUP BY 1")
    kept = wh.scalar("SELECT count(*) FROM dedup WHERE kept")
    assert per_query.height == kept and per_query["n"].min() >= 3
    per_response = wh.query("SELECT response_id, count(*) AS n FROM votes GROUP BY 1")
    assert per_response.height == wh.scalar("SELECT count(*) FROM responses") and per_response["n"].min() >= 3
    assert wh.scalar("SELECT count(*) FROM v_final_labels WHERE final_label IS NULL") == 0
    assert wh.scalar("SELECT count(*) FROM v_hard_samples") > 0
    splits = dict(wh.query("SELECT split, count(*) AS n FROM splits GROUP BY 1").iter_rows())
    assert splits.get("pretrain", 0) > 0 and splits.get("finetune", 0) > 0
    # near/exact duplicates were never sent to responders
    assert wh.scalar("SELECT count(*) FROM responses r JOIN dedup d USING (query_id) WHERE NOT d.kept") == 0
    # lineage: every fact row names a completed run of this warehouse
    orphans = wh.scalar("SELECT count(*) FROM responses WHERE run_id NOT IN (SELECT run_id FROM runs)")
    assert orphans == 0
    assert wh.scalar("SELECT count(*) FROM runs WHERE status <> 'completed'") == 0


def test_exports_are_chat_jsonl_with_rear_critic_targets(finished):
    import json

    from libra.tasks.annotation.verdicts import parse_verdict

    _, wh, summary = finished
    files = wh.query("SELECT split, path, n_rows FROM exports WHERE format = 'chat-jsonl'")
    assert set(files["split"]) == {"pretrain", "finetune", "eval"}
    for row in files.iter_rows(named=True):
        lines = open(row["path"], encoding="utf-8").read().splitlines()
        assert len(lines) == row["n_rows"]
        for line in lines[:50]:
            rec = json.loads(line)
            assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]
            assert parse_verdict(rec["messages"][1]["content"]).label == rec["label"]
            assert rec["messages"][1]["content"].startswith('{"答案"')


def test_rerun_makes_no_llm_call_and_changes_no_count(finished):
    from libra.flows.factory import factory_flow

    config, wh, _ = finished
    before, calls = counts(wh), network_calls(wh)
    factory_flow(str(config))
    assert counts(wh) == before
    assert network_calls(wh) == calls


def test_faulty_endpoints_retry_and_every_query_ends_answered_or_failed(stub, prefect_harness, faults, tmp_path):
    from libra.flows.factory import factory_flow

    faults(fault_429=0.2, fault_500=0.1, fault_timeout=0.02, fault_broken_json=0.03, timeout_sleep_s=5,
           retry_after_s=0.05)
    config = small_config(stub.url, tmp_path, sizes={"calls_per_subcategory": 1, "queries_per_call": 2,
                                                     "benign_ratio": 0.0, "augment_fraction": 0.0})
    factory_flow(str(config))
    wh = Warehouse(tmp_path / "test.duckdb", create=False)
    assert wh.scalar("SELECT sum(retries) FROM v_llm_usage") > 0
    # every kept query x responder has a row: its response, or a failure with its reason
    missing = wh.scalar("""
        SELECT count(*) FROM dedup d CROSS JOIN (SELECT DISTINCT responder FROM responses) r
        ANTI JOIN responses x ON x.query_id = d.query_id AND x.responder = r.responder WHERE d.kept""")
    assert missing == 0
    assert wh.scalar("SELECT count(*) FROM responses WHERE status = 'failed' AND error IS NULL") == 0
    assert wh.scalar("SELECT count(*) FROM runs WHERE status = 'completed' AND flow = 'factory'") == 1


def test_unreachable_endpoint_is_reported_and_the_run_completes(stub, prefect_harness, tmp_path):
    import yaml

    from libra.flows.factory import factory_flow
    from libra.tasks.llm.servers import free_port

    config = small_config(stub.url, tmp_path, sizes={"queries_per_call": 2, "benign_ratio": 0.0,
                                                     "augment_fraction": 0.0})
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    dead = f"http://127.0.0.1:{free_port()}/v1"
    for ep in data["endpoints"]:
        if ep["name"] == "resp-c":
            ep.update(base_url=dead, max_retries=1, down_after_failures=3, timeout_s=1)
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    summary = factory_flow(str(config))
    assert "resp-c" in summary["respond"]["endpoints_down"]
    wh = Warehouse(tmp_path / "test.duckdb", create=False)
    by = dict(wh.query("SELECT responder, count(*) FILTER (WHERE status = 'ok') FROM responses GROUP BY 1").iter_rows())
    assert by["resp-a"] > 0 and by["resp-b"] > 0 and by["resp-c"] == 0
    errors = wh.query("SELECT DISTINCT error FROM responses WHERE responder = 'resp-c'")["error"].to_list()
    assert all(e and ("connection error" in e or "is down" in e) for e in errors)
    # responses of the live responders were still voted on
    assert wh.scalar("SELECT count(*) FROM votes v JOIN responses r USING (response_id) WHERE r.responder = 'resp-a'") > 0


def test_killed_run_resumes_to_the_same_counts_without_repaying_calls(stub, finished, tmp_path):
    """Kill a factory run in another process mid-respond, restart it, compare with the full run."""
    ref_config, ref_wh, _ = finished
    config = small_config(stub.url, tmp_path)
    path = tmp_path / "test.duckdb"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cmd = [sys.executable, "-m", "libra.flows.cli.main", "run", "factory", "--config", str(config)]
    log = tmp_path / "killed-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if path.exists():
                try:
                    if Warehouse(path, create=False).scalar("SELECT count(*) FROM llm_calls WHERE model LIKE 'stub-resp%'"):
                        break
                except Exception:
                    pass
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wh = Warehouse(path, create=False)
    partial = counts(wh)
    assert partial["votes"] < counts(ref_wh)["votes"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert counts(wh) == counts(ref_wh)
    # no call was paid twice: each call key succeeded in exactly one run
    assert wh.scalar("SELECT count(*) FROM (SELECT call_key FROM llm_calls WHERE status = 'ok' "
                     "GROUP BY 1 HAVING count(*) > 1)") == 0
    for table, key in (("queries", "query_id"), ("responses", "response_id"), ("votes", "vote_id")):
        assert wh.scalar(f"SELECT count(*) - count(DISTINCT {key}) FROM {table}") == 0


def test_overlapping_runs_in_two_processes_neither_fail_nor_double_pay(stub, finished, tmp_path):
    """DESIGN §8: two flow runs on one warehouse from different processes take turns per stage."""
    _, ref_wh, _ = finished
    config = small_config(stub.url, tmp_path)
    procs = []
    for i in range(2):
        home = tmp_path / f"prefect-home-{i}"  # each process gets its own temporary Prefect server
        env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "libra.flows.cli.main", "run", "factory", "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    wh = Warehouse(tmp_path / "test.duckdb", create=False)
    assert counts(wh) == counts(ref_wh)
    assert wh.scalar("SELECT count(*) FROM (SELECT call_key FROM llm_calls WHERE status = 'ok' "
                     "GROUP BY 1 HAVING count(*) > 1)") == 0
    assert wh.scalar("SELECT count(*) FROM runs WHERE flow = 'factory' AND status = 'completed'") == 2
