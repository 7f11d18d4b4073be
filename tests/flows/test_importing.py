"""Split invariants, exports and the benchmark round trip on a warehouse filled by the demo factory plus
real imports (stub endpoints, Prefect test harness, ../shared/data)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from libra.tasks.annotation.verdicts import parse_verdict
from libra.tasks.core.config import load_config
from libra.tasks.core.ids import query_id
from libra.tasks.data import imports, splits
from libra.tasks.dedup.near import normalize_for_dedup
from libra.tasks.training.guard_prompt import GuardInstruction
from libra.warehouse import Warehouse
from tests.conftest import SHARED_DATA, copy_of_factory

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

REAL = SHARED_DATA / "real"
BENCHMARK = SHARED_DATA / "benchmark" / "libra_format.json"
# (import config, files under real/): a few rows of each, enough to reach every stage
REAL_SAMPLE = [("jade_v2", ["jade_v2_medium_zh.csv"]), ("flames_1k_zh", ["flames_1k_zh.jsonl"]),
               ("chineseharm_bench", ["chineseharm_bench.json"]), ("cvalues_responsibility", ["cvalues_responsibility_prompts.jsonl"]),
               ("jailbench_zh", ["jailbench_zh.csv"]), ("xsafety_zh", ["xsafety_zh/*.csv"])]
PER_FILE = 12


def register_benchmark(wh: Warehouse, path: Path, name: str) -> int:
    """Through `libra import benchmark` itself (registration + decontamination); returns the items stored."""
    out = subprocess.run(["libra", "import", "benchmark", str(path), "--name", name, "--warehouse", str(wh.path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return wh.scalar("SELECT count(*) FROM benchmarks WHERE benchmark = ?", [name])


@pytest.fixture(scope="module")
def filled(stub, demo_factory, tmp_path_factory):
    """Demo factory, then real imports (one through the import flow), the Libra-format benchmark
    registered, and the stages that carry the imports to labelled, split data. Before the split flow,
    the warehouse is copied: the copy is split again in a test (same seed, same split)."""
    if not REAL.is_dir() or not BENCHMARK.is_file():
        pytest.skip(f"real data not found under {SHARED_DATA} (a fresh clone has no ../shared/data)")
    from libra.flows.curation import dedup_flow
    from libra.flows.importing import import_flow, split_flow
    from libra.flows.labelling import annotate_flow, respond_flow

    tmp = tmp_path_factory.mktemp("datasets")
    config = copy_of_factory(demo_factory, stub.url, tmp)
    wh = Warehouse(tmp / "test.duckdb", create=False)
    for name, globs in REAL_SAMPLE:
        files = sorted(p for g in globs for p in REAL.glob(g))
        imports.import_queries(wh, files, imports.load_import_spec(name), limit=PER_FILE)
    import_flow(str(config), files=str(REAL / "multijail.csv"), spec="multijail_zh", limit=str(PER_FILE))
    n_items = register_benchmark(wh, BENCHMARK, "libra-format")
    for stage in (dedup_flow, respond_flow, annotate_flow):
        stage(str(config))
    copy = tmp / "copy.duckdb"
    shutil.copyfile(wh.path, copy)
    summary = split_flow(str(config))
    return config, wh, copy, summary, n_items


def test_real_imports_reached_every_split_stage(filled):
    _, wh, _, summary, n_items = filled
    assert n_items == 2300
    per_source = dict(wh.query("SELECT q.source, count(*) FROM splits s JOIN queries q USING (query_id) "
                               "GROUP BY 1").iter_rows())
    assert per_source.get("real", 0) > 0 and per_source.get("synthetic", 0) > 0
    assert summary["splits"]["assigned"] > 0
    # real queries went to finetune or were held out, never to pretrain
    assert wh.scalar("SELECT count(*) FROM splits s JOIN queries q USING (query_id) "
                     "WHERE q.source = 'real' AND s.split = 'pretrain'") == 0


def test_splits_are_disjoint_by_query_and_by_dedup_cluster(filled):
    _, wh, _, _, _ = filled
    assert wh.scalar("SELECT count(*) - count(DISTINCT query_id) FROM splits") == 0
    spanning = wh.scalar("""
        SELECT count(*) FROM (SELECT d.cluster_id FROM splits s JOIN dedup d USING (query_id)
                              GROUP BY 1 HAVING count(DISTINCT s.split) > 1)""")
    assert spanning == 0
    # and in the exported files: no query and no cluster in two splits
    export = Path(wh.scalar("SELECT path FROM export_versions ORDER BY created_at DESC LIMIT 1"))
    seen: dict[str, str] = {}
    for split in splits.SPLITS:
        frame = pl.read_parquet(export / f"{split}.parquet")
        for key in set(frame["query_id"]) | set(frame["dedup_cluster"].drop_nulls()):
            assert seen.setdefault(key, split) == split


def test_no_benchmark_question_leaks_into_a_training_split(filled):
    _, wh, _, _, _ = filled
    contaminated = wh.scalar("SELECT count(*) FROM v_contaminated")
    assert contaminated > 0  # the JADE-medium rows are Libra-format questions: the decontamination found them
    assert wh.scalar("SELECT count(*) FROM splits JOIN v_contaminated USING (query_id)") == 0
    questions = {normalize_for_dedup(q) for q in
                 wh.query("SELECT question FROM benchmarks WHERE benchmark = 'libra-format'")["question"]}
    export = Path(wh.scalar("SELECT path FROM export_versions ORDER BY created_at DESC LIMIT 1"))
    for split in splits.TRAINING_SPLITS:
        frame = pl.read_parquet(export / f"{split}.parquet")
        assert not {normalize_for_dedup(q) for q in frame["query"]} & questions


def test_eval_is_stratified_within_tolerance(filled):
    config, wh, _, summary, _ = filled
    cfg = load_config(config)
    settled = splits.settled_queries(wh, len(cfg.roles.judges), cfg.roles.adjudicator is not None)
    strata = splits.stratification(settled, cfg.split)
    assert strata["n"].sum() == wh.scalar("SELECT count(*) FROM splits")
    assert strata.filter(~pl.col("within_tolerance")).is_empty(), strata
    assert summary["splits"]["strata_outside_tolerance"] == 0


def test_same_seed_same_split(filled):
    config, wh, copy, _, _ = filled
    from libra.flows.importing import split_flow

    split_flow(str(config), str(copy))
    ours = wh.query("SELECT query_id, split FROM splits ORDER BY query_id")
    again = Warehouse(copy, create=False).query("SELECT query_id, split FROM splits ORDER BY query_id")
    assert ours.equals(again)


def test_exported_jsonl_reads_back_with_polars_and_datasets_and_parses_to_the_stored_label(filled, tmp_path):
    import datasets

    _, wh, _, _, _ = filled
    stored = dict(wh.query("SELECT response_id, final_label FROM v_final_labels").iter_rows())
    files = wh.query("SELECT split, path, n_rows FROM exports WHERE format = 'chat-jsonl' "
                     "AND export_id LIKE (SELECT export_id FROM export_versions ORDER BY created_at DESC LIMIT 1) || '-%'")
    assert set(files["split"]) == set(splits.SPLITS)
    checked = 0
    for row in files.filter(pl.col("n_rows") > 0).iter_rows(named=True):
        frame = pl.read_ndjson(row["path"])
        ds = datasets.load_dataset("json", data_files=row["path"], split="train", cache_dir=str(tmp_path / "hf"))
        assert frame.height == ds.num_rows == row["n_rows"]
        assert frame["id"].to_list() == ds["id"]
        for rec in ds:
            roles = [m["role"] for m in rec["messages"]]
            assert roles == ["user", "assistant"]
            target = rec["messages"][-1]["content"]
            assert target.startswith('{"答案"')
            assert parse_verdict(target).label == rec["label"] == stored[rec["id"]]
            checked += 1
    assert checked > 0


def test_manifest_cards_and_sharegpt_describe_the_export(filled):
    config, wh, _, summary, _ = filled
    export = Path(summary["export"]["path"])
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["export_id"] == export.name and manifest["source_run_ids"]
    assert manifest["config"]["split"] == load_config(config).split.model_dump(mode="json")
    for f in manifest["files"]:
        assert hashlib.sha256((export / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    assert manifest["counts"] == {s: summary["export"][s] for s in splits.SPLITS}
    info = json.loads((export / "dataset_info.json").read_text(encoding="utf-8"))
    for split in splits.SPLITS:
        items = json.loads((export / info[f"libra_{split}"]["file_name"]).read_text(encoding="utf-8"))
        assert len(items) == manifest["counts"][split]
        assert all([t["from"] for t in it["conversations"]] == ["human", "gpt"] for it in items)
    card = (export / "card.md").read_text(encoding="utf-8")
    assert "## Judge agreement" in card and (export / "charts" / "label_balance.png").is_file()
    assert set(wh.query("SELECT format FROM exports")["format"]) >= {"chat-jsonl", "parquet", "sharegpt"}


def test_built_benchmark_imports_back_and_shares_no_item_with_a_training_split(filled, tmp_path):
    from libra.tasks.data.benchmark_builder import LIBRA_FIELDS, build_benchmark
    from libra.tasks.data.benchmarks import read_benchmark

    _, wh, _, _, _ = filled
    out = tmp_path / "built.json"
    summary = build_benchmark(wh, out, seed=0, per_cell=3)
    items = json.loads(out.read_text(encoding="utf-8"))
    assert summary["items"] == len(items) > 0
    assert set(summary["source"]) >= {"real", "synthetic"}
    cells = pl.DataFrame(items).group_by("source", "category_name").len()
    assert cells["len"].max() <= 3  # at most per_cell items from any (source, scenario) cell
    for it in items:
        assert set(LIBRA_FIELDS) <= set(it) and it["difficulty"] in ("easy", "medium", "hard")
        label_source = wh.scalar("SELECT label_source FROM v_final_labels WHERE response_id = ?", [it["id"]])
        assert label_source in ("adjudicated", "human")
    ids = [query_id(it["question"]) for it in items]
    assert wh.scalar("SELECT count(*) FROM splits WHERE split <> 'eval' AND query_id IN ?", [ids]) == 0
    assert read_benchmark(out).height == len(items)  # the benchmark reader accepts every record
    assert register_benchmark(wh, out, "built-from-eval") == len(items)
    back = wh.query("SELECT item_id, question, label FROM benchmarks WHERE benchmark = 'built-from-eval' ORDER BY item_id")
    assert back.rows() == sorted((it["id"], it["question"], it["label"]) for it in items)


def test_an_export_in_pages_of_three_rows_writes_what_the_flow_wrote_on_its_runner(filled, tmp_path):
    # the split flow encoded its pages on the run's task runner; a fresh export of the same warehouse
    # in pages of 3 rows, encoded here, must give the same records in the same order (it runs last:
    # it adds an export version)
    config, wh, _, summary, _ = filled
    cfg = load_config(config)
    flow_export = Path(summary["export"]["path"])
    instruction = GuardInstruction.from_config(cfg)
    done = splits.export_dataset(wh, cfg.split, instruction, tmp_path, "paged-test", page_size=3)
    paged = Path(done["path"])
    assert {s: done[s] for s in splits.SPLITS} == {s: summary["export"][s] for s in splits.SPLITS}
    assert sum(done[s] for s in splits.SPLITS) > 3 * len(splits.SPLITS)  # more than one page per split
    for split in splits.SPLITS:
        for name in (f"{split}.jsonl", f"{split}.sharegpt.json"):
            assert (paged / name).read_bytes() == (flow_export / name).read_bytes(), name
        assert pl.read_parquet(paged / f"{split}.parquet").equals(pl.read_parquet(flow_export / f"{split}.parquet"))
        ids = pl.read_parquet(paged / f"{split}.parquet", columns=["response_id"])["response_id"]
        assert ids.is_sorted() and ids.n_unique() == ids.len()
    assert instruction.version in (paged / "manifest.json").read_text(encoding="utf-8")
