"""Fixtures of the reliability suite, and the table of figures it prints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import small_config
from tests.reliability import figures

TAXONOMY = Path(__file__).resolve().parents[2] / "prompts" / "taxonomy.yaml"


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


def reliability_config(url: str, tmp: Path, **overrides: object) -> Path:
    """small_config on a taxonomy cut to 3 scenarios x 2 subcategories: every stage, every split and both
    labels appear (about 30 queries, 90 responses, 270 votes), and a factory run takes seconds."""
    taxonomy = yaml.safe_load(TAXONOMY.read_text(encoding="utf-8"))
    taxonomy["scenarios"] = [{**s, "subcategories": s["subcategories"][:2]} for s in taxonomy["scenarios"][:3]]
    (tmp / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy, allow_unicode=True), encoding="utf-8")
    # eval 0.25: strata of a few queries still hold some out, so all three splits are compared
    overrides = {"taxonomy": str(tmp / "taxonomy.yaml"), "split": {"eval_fraction": 0.25}, **overrides}
    return small_config(url, tmp, **overrides)


@pytest.fixture(scope="session")
def baseline(stub, prefect_harness, tmp_path_factory):
    """One fault-free factory run on the reliability config: what every fault case must end equal to."""
    from libra.flows.factory import factory_flow
    from libra.warehouse import Warehouse

    tmp = tmp_path_factory.mktemp("baseline")
    config = reliability_config(stub.url, tmp)
    summary = factory_flow(str(config))
    return Warehouse(tmp / "test.duckdb", create=False), summary
