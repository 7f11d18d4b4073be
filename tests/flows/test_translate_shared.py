"""Translation of the shared English safety sets (BeaverTails pairs, MultiJail's `en` column) end to end
on the stub: every record becomes a Chinese row with its English original beside it."""

import csv
import json

import pytest

from libra.warehouse import Warehouse
from tests.conftest import SHARED_DATA, small_config

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

BEAVERTAILS = SHARED_DATA / "real" / "safetyj_beavertails_en_label.json"
MULTIJAIL = SHARED_DATA / "real" / "multijail.csv"


@pytest.fixture(scope="module")
def translated(stub, prefect_harness, tmp_path_factory):
    if not (BEAVERTAILS.exists() and MULTIJAIL.exists()):
        pytest.skip(f"shared English sets not found under {SHARED_DATA / 'real'} (a fresh clone has no ../shared)")
    from libra.flows.synthesis import translate_flow

    tmp = tmp_path_factory.mktemp("translate")
    config = small_config(stub.url, tmp, sizes={"batch_size": 2000})
    summaries = {
        "beavertails": translate_flow(str(config), input=str(BEAVERTAILS), dataset="beavertails"),
        "multijail": translate_flow(str(config), input=str(MULTIJAIL), import_config="multijail_zh",
                                    text_column="en", dataset="multijail"),
    }
    return config, Warehouse(tmp / "test.duckdb", create=False), summaries


def test_every_record_is_translated_with_its_english_original(translated):
    _, wh, summaries = translated
    beaver = json.loads(BEAVERTAILS.read_text(encoding="utf-8"))
    with MULTIJAIL.open(encoding="utf-8-sig", newline="") as f:
        multijail = list(csv.DictReader(f))
    for name, records in (("beavertails", beaver), ("multijail", multijail)):
        s = summaries[name]
        assert s["records_left"] == 0 and s["records_translated"] == s["records"] > 0
        assert s["records"] + sum(s["skipped"].get(k, 0) for k in ("duplicate_record", "empty_query")) == len(records)
        rows = wh.query("SELECT query, query_en, response, response_en, label FROM v_translations WHERE dataset = ?",
                        [name])
        assert rows.height == s["records"]
        english = {r["query"] if name == "beavertails" else r["en"] for r in records}
        assert set(rows["query_en"]) == {e.strip() for e in english}
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in q) for q in rows["query"])
    beaver_rows = wh.query("SELECT * FROM v_translations WHERE dataset = 'beavertails'")
    assert beaver_rows["response"].null_count() == 0 and beaver_rows["response_en"].null_count() == 0
    assert set(beaver_rows["label"]) == {"Safe", "Unsafe"}
    assert wh.scalar("SELECT count(*) FROM responses WHERE responder = 'translated:beavertails'") == beaver_rows.height
    # MultiJail's tags map onto the Libra scenarios (queries it shares with BeaverTails were stored first,
    # without a scenario: one English text, one translation, one query)
    mj = wh.query("SELECT scenario FROM queries WHERE provenance->>'dataset' = 'multijail'")
    assert mj.height > 200 and mj["scenario"].null_count() == 0


def test_rerun_translates_nothing_again(translated):
    from libra.flows.synthesis import translate_flow

    config, wh, _ = translated
    before = wh.scalar("SELECT count(*) FROM llm_calls")
    again = translate_flow(str(config), input=str(MULTIJAIL), import_config="multijail_zh", text_column="en",
                           dataset="multijail")
    assert again["records_left"] == 0 and "calls" not in again
    assert wh.scalar("SELECT count(*) FROM llm_calls") == before
