"""Fixtures of the reliability suite, and the table of figures it prints."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import small_config
from tests.reliability import figures

TAXONOMY = Path(__file__).resolve().parents[2] / "prompts" / "taxonomy.yaml"
# Every endpoint of the suite's configs sends this key (from the environment, as a real one would be):
# test_secrets looks for it in every artifact the runs leave.
SECRET_ENV = "LIBRA_RELIABILITY_API_KEY"
SECRET = "sk-libra-" + os.urandom(12).hex()
os.environ[SECRET_ENV] = SECRET


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not figures.FIGURES:
        return
    terminalreporter.section("reliability figures")
    terminalreporter.write_line(figures.table())
    out = os.environ.get("LIBRA_RELIABILITY_TABLE")
    if out:
        Path(out).write_text(figures.table() + "\n", encoding="utf-8")


# The figures every comparison looks at: fact counts, final labels, splits.
FACTS = """
SELECT (SELECT count(*) FROM queries) AS queries, (SELECT count(*) FROM responses WHERE status = 'ok') AS responses,
       (SELECT count(*) FROM votes WHERE status <> 'failed') AS votes,
       (SELECT count(*) FROM adjudications) AS adjudications, (SELECT count(*) FROM splits) AS splits
"""


def facts(wh) -> dict:
    return wh.query(FACTS).row(0, named=True)


def labels(wh):
    return wh.query("SELECT response_id, final_label, label_source, vote_status FROM v_final_labels ORDER BY 1")


def split_rows(wh):
    return wh.query("SELECT query_id, split FROM splits ORDER BY 1")


def split_counts(wh) -> str:
    n = dict(wh.query("SELECT split, count(*) FROM splits GROUP BY 1").iter_rows())
    return "/".join(str(n.get(s, 0)) for s in ("eval", "finetune", "pretrain"))


def vote_counts(wh) -> str:
    n = dict(wh.query("SELECT vote_status, count(*) FROM v_final_labels GROUP BY 1").iter_rows())
    return " ".join(f"{k} {n[k]}" for k in sorted(n))


def reliability_config(url: str, tmp: Path, endpoint_overrides: dict[str, dict] | None = None,
                       **overrides: object) -> Path:
    """small_config on a taxonomy cut to 3 scenarios x 2 subcategories: every stage, every split and both
    labels appear (about 30 queries, 90 responses, 270 votes), and a factory run takes seconds.
    endpoint_overrides: endpoint name (or "*" for the rest) -> fields to set, e.g. max_retries."""
    endpoint_overrides = endpoint_overrides or {}
    taxonomy = yaml.safe_load(TAXONOMY.read_text(encoding="utf-8"))
    taxonomy["scenarios"] = [{**s, "subcategories": s["subcategories"][:2]} for s in taxonomy["scenarios"][:3]]
    (tmp / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy, allow_unicode=True), encoding="utf-8")
    # eval 0.25: strata of a few queries still hold some out, so all three splits are compared
    overrides = {"taxonomy": str(tmp / "taxonomy.yaml"), "split": {"eval_fraction": 0.25}, **overrides}
    path = small_config(url, tmp, **overrides)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    for ep in cfg["endpoints"]:
        ep.update(api_key_env=SECRET_ENV, **endpoint_overrides.get(ep["name"], endpoint_overrides.get("*", {})))
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def baseline(stub, prefect_harness, tmp_path_factory):
    """One fault-free factory run on the reliability config: what every fault case must end equal to."""
    from libra.flows.factory import factory_flow
    from libra.warehouse import Warehouse

    tmp = tmp_path_factory.mktemp("baseline")
    config = reliability_config(stub.url, tmp)
    summary = factory_flow(str(config))
    return Warehouse(tmp / "test.duckdb", create=False), summary


def latest_export(wh) -> str:
    """The training files of the newest export (chat JSONL and ShareGPT per split), as one hash over their
    sha256s: equal means byte-identical. (The Parquet files also carry run ids: lineage, so they differ.)"""
    rows = wh.query("SELECT split, format, sha256 FROM exports WHERE format <> 'parquet' "
                    "AND created_at = (SELECT max(created_at) FROM exports) ORDER BY split, format")
    return hashlib.sha256(str(rows.rows()).encode()).hexdigest()


def calls_repaid(wh) -> int:
    """Call keys that succeeded more than once: a call paid twice."""
    return wh.scalar("SELECT count(*) FROM (SELECT call_key FROM llm_calls WHERE status = 'ok' "
                     "GROUP BY 1 HAVING count(*) > 1)")
