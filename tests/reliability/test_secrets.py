"""The API key every endpoint of the suite sends (from an environment variable) appears in no artifact:
not in any warehouse table or the file's bytes, not in the exports or the run's folder, not in Prefect's
database (flow runs, task runs, logs, artifacts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.conftest import SECRET
from tests.reliability.figures import record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def _string_columns(wh) -> list[tuple[str, str]]:
    return wh.query(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main' "
        "AND (data_type LIKE 'VARCHAR%' OR data_type = 'JSON') AND table_name IN "
        "(SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE')").rows()


def test_the_api_key_is_in_no_artifact(baseline):
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    wh, summary = baseline
    needle = SECRET.encode()
    hits: list[str] = []
    columns = _string_columns(wh)
    for table, column in columns:
        n = wh.scalar(f'SELECT count(*) FROM "{table}" WHERE strpos(CAST("{column}" AS VARCHAR), ?) > 0', [SECRET])
        if n:
            hits.append(f"{table}.{column}")
    files = [p for p in wh.path.parent.rglob("*") if p.is_file()]  # warehouse, exports, cards, configs
    prefect_db = Path(PREFECT_API_DATABASE_CONNECTION_URL.value().split("///", 1)[1])
    files += [p for p in prefect_db.parent.glob(prefect_db.name + "*") if p.is_file()]
    assert prefect_db.exists() and any(p.suffix == ".jsonl" for p in files)
    hits += [str(p) for p in files if needle in p.read_bytes()]
    hits += ["flow summary"] if SECRET in repr(summary) else []
    assert hits == []
    record("secrets", f"API key (env var) searched in {len(columns)} warehouse columns and {len(files)} files "
           "(warehouse, exports, configs, Prefect DB)", f"{len(hits)} hits", "0 hits")
