"""An endpoint down for a whole run (a closed port), then back: the samples it left are pending, not
abstentions, and the rerun ends with the same final labels and splits as a fault-free run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from libra.flows.cli.main import app
from libra.tasks.llm.servers import free_port
from libra.warehouse import Warehouse
from tests.reliability.conftest import (
    facts,
    labels,
    reliability_config,
    split_counts,
    split_rows,
    vote_counts,
)
from tests.reliability.figures import record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def _with_endpoint_down(config: Path, endpoint: str) -> Path:
    """The same config with one endpoint's URL on a port nothing listens on."""
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    for ep in cfg["endpoints"]:
        if ep["name"] == endpoint:
            ep["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    path = config.with_name(f"down-{endpoint}.yaml")
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("endpoint", ["judge-c", "resp-b"])
def test_an_endpoint_down_for_one_run_then_back_ends_equal_to_the_fault_free_run(
        baseline, stub, tmp_path, endpoint):
    from libra.flows.factory import factory_flow

    base_wh, _ = baseline
    config = reliability_config(stub.url, tmp_path)
    down = factory_flow(str(_with_endpoint_down(config, endpoint)))
    wh = Warehouse(tmp_path / "test.duckdb", create=False)
    during = {"facts": facts(wh), "splits": split_counts(wh), "votes": vote_counts(wh)}
    pending = wh.scalar("SELECT count(*) FROM v_final_labels WHERE vote_status = 'pending'")
    failed = wh.scalar("SELECT count(*) FROM responses WHERE status = 'failed'")

    # while it is down: its samples wait, nothing is decided on a missing vote or response
    assert endpoint in down["endpoints_down"]
    status = CliRunner().invoke(app, ["status", "--warehouse", str(wh.path)])
    assert status.exit_code == 0 and "Endpoints declared down" in status.output and endpoint in status.output
    if endpoint.startswith("judge"):
        assert pending == wh.scalar("SELECT count(*) FROM responses WHERE status = 'ok'") > 0
        assert during["facts"]["adjudications"] == 0 and during["facts"]["splits"] == 0
    else:
        assert failed > 0
        assert during["facts"]["splits"] == 0  # every query waits for resp-b's answer

    factory_flow(str(config))  # it is back
    after = facts(wh)
    assert after == facts(base_wh)
    assert labels(wh).equals(labels(base_wh))
    assert split_rows(wh).equals(split_rows(base_wh))
    if endpoint.startswith("judge"):
        record("outage", f"{endpoint} on a closed port for one run: samples left pending", pending,
               "every response (none settled on 2 of 3 votes)", ok=pending == facts(wh)["responses"])
    else:
        record("outage", f"{endpoint} on a closed port for one run: responses failed, queries split", f"{failed}, 0",
               "its share of responses, 0", ok=failed > 0 and during["facts"]["splits"] == 0)
    record("outage", f"{endpoint} down: splits during the run (eval/finetune/pretrain)", during["splits"],
           "0/0/0 (nothing split on missing data)", ok=during["facts"]["splits"] == 0)
    record("outage", f"{endpoint} back: votes after the rerun", vote_counts(wh), vote_counts(base_wh))
    record("outage", f"{endpoint} back: adjudications after the rerun", after["adjudications"],
           facts(base_wh)["adjudications"])
    record("outage", f"{endpoint} back: splits after the rerun", split_counts(wh), split_counts(base_wh))
