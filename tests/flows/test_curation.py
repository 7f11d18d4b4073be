"""The dedup flow under Prefect, `libra dedup FILE` and `libra import benchmark`."""

import csv
import json
import random

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from libra.flows.cli.main import app
from libra.tasks.core.config import load_config
from libra.tasks.dedup.near import DedupParams, sketch_texts
from libra.warehouse import Warehouse
from tests.conftest import SHARED_DATA, small_config
from tests.tasks.dedup.test_dedup import BASE
from tests.tasks.dedup.test_dedup_store import add_queries

runner = CliRunner()


def libra(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def bench_records(questions):
    return [{"source": "test", "category_name": "违法犯罪", "sub_category_name": "诈骗", "question": q,
             "response": "不行。", "label": "安全", "analyze": "", "id": f"t{i}"} for i, q in enumerate(questions)]


# -- libra dedup FILE ---------------------------------------------------------------------------------


def test_dedup_file_writes_one_line_per_record_in_input_order(tmp_path):
    rows = [{"id": 1, "text": BASE[0]}, {"id": "b", "text": BASE[1]}, {"id": 3, "text": BASE[0] + "！"},
            {"id": 4, "text": "请问" + BASE[1]}, {"id": 5, "text": "炸弹"}]
    out = libra("dedup", str(write_jsonl(tmp_path / "in.jsonl", rows)))
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines == [
        {"id": 1, "cluster_id": 1, "kept": True, "reason": "canonical", "matched_id": None},
        {"id": "b", "cluster_id": "b", "kept": True, "reason": "canonical", "matched_id": None},
        {"id": 3, "cluster_id": 1, "kept": False, "reason": "exact", "matched_id": 1},
        {"id": 4, "cluster_id": "b", "kept": False, "reason": "near", "matched_id": "b"},
        {"id": 5, "cluster_id": 5, "kept": True, "reason": "canonical", "matched_id": None},
    ]
    assert "5 records: 3 kept, 1 exact and 1 near duplicates" in out.stderr
    # --out, and parameters from the options: at 0.95 the padded question is not a near-duplicate
    target = tmp_path / "sub" / "out.jsonl"
    out = libra("dedup", str(tmp_path / "in.jsonl"), "--out", str(target), "--threshold", "0.95")
    assert out.exit_code == 0 and out.stdout == ""
    assert [json.loads(line)["reason"] for line in target.read_text().splitlines()] == [
        "canonical", "canonical", "exact", "canonical", "canonical"]


@pytest.mark.parametrize(("content", "message"), [
    ('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', "in.jsonl:2: duplicate id 1"),
    ('{"id": 1, "text": "a"}\n{"id": 2, "text": \n', "in.jsonl:2: not valid JSON (Expecting value: column 19)"),
    ('{"id": 1}\n', "in.jsonl:1: 'text' must be a string, found None"),
    ('[1, 2]\n', "in.jsonl:1: expected an object with 'id' and 'text'"),
])
def test_dedup_file_bad_input_names_the_line_and_writes_nothing(tmp_path, content, message):
    (tmp_path / "in.jsonl").write_text(content, encoding="utf-8")
    target = tmp_path / "out.jsonl"
    out = libra("dedup", str(tmp_path / "in.jsonl"), "--out", str(target))
    assert out.exit_code == 2
    assert message in out.stderr and "nothing was written" in out.stderr
    assert not target.exists() and list(tmp_path.iterdir()) == [tmp_path / "in.jsonl"]


def test_dedup_file_rejects_bad_parameters(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "x"}])
    out = libra("dedup", str(tmp_path / "in.jsonl"), "--threshold", "1.5")
    assert out.exit_code == 2 and "--threshold: Input should be less than 1" in out.stderr


# -- libra import benchmark ---------------------------------------------------------------------------


def test_import_benchmark_registers_whole_files_only(tmp_path):
    wh_path = tmp_path / "w.duckdb"
    bad = bench_records(["好问题", "另一个"])
    bad[1]["label"] = "maybe"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad, ensure_ascii=False), encoding="utf-8")
    out = libra("import", "benchmark", str(path), "--name", "t", "--warehouse", str(wh_path))
    assert out.exit_code == 2
    assert f"{path}: 1 invalid field(s); nothing was imported" in out.stderr
    assert "record [1] (id 't1'): 'label' must be one of 安全 / 不安全, found 'maybe'" in out.stderr
    assert not wh_path.exists() or Warehouse(wh_path).scalar("SELECT count(*) FROM benchmarks") == 0
    path.write_text(json.dumps(bench_records(BASE[:2]), ensure_ascii=False), encoding="utf-8")
    out = libra("import", "benchmark", str(path), "--name", "bad name", "--warehouse", str(wh_path))
    assert out.exit_code == 2 and "benchmark name 'bad name'" in out.stderr
    out = libra("import", "benchmark", str(path), "--name", "t", "--warehouse", str(wh_path))
    assert out.exit_code == 0, out.output
    assert "benchmark 't' registered: 2 items; 0 stored queries duplicate" in out.stderr
    out = libra("import", "benchmark", str(path), "--name", "t", "--warehouse", str(wh_path))
    assert "already registered (unchanged)" in out.stderr
    wh = Warehouse(wh_path)
    assert wh.scalar("SELECT count(*) FROM benchmarks") == 2
    assert wh.scalar("SELECT count(*) FROM runs WHERE flow = 'import-benchmark' AND status = 'completed'") == 2


# -- the dedup flow -----------------------------------------------------------------------------------


def test_dedup_flow_decides_pending_queries_and_records_benchmark_leaks(prefect_harness, tmp_path):
    from libra.flows.curation import dedup_flow

    config = small_config("http://127.0.0.1:9", tmp_path)  # no LLM is called by this stage
    wh_path = tmp_path / "test.duckdb"
    wh = Warehouse(wh_path)
    ids = add_queries(wh, [BASE[0], BASE[0] + "？", "请问" + BASE[1], BASE[2], BASE[3]])
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench_records([BASE[1], "毫不相干的问题"]), ensure_ascii=False), encoding="utf-8")
    assert libra("import", "benchmark", str(path), "--name", "t", "--warehouse", str(wh_path)).exit_code == 0
    summary = dedup_flow(str(config), str(wh_path))
    assert summary["pending"] == 5 and summary["decided"] == 5
    assert (summary["canonical"], summary["exact"], summary["contaminated"]) == (4, 1, 1)
    assert wh.query("SELECT query_id, benchmark, item_id, reason FROM v_contaminated").rows() == [
        (ids[2], "t", "t0", "near")]
    assert wh.scalar("SELECT count(*) FROM dedup WHERE NOT kept") == 1
    assert [(c["cluster_id"], c["members"], c["exact"]) for c in summary["largest_clusters"]] == [(ids[0], 2, 1)]
    again = dedup_flow(str(config), str(wh_path))  # nothing pending: nothing changes
    assert again["pending"] == 0 and wh.scalar("SELECT count(*) FROM dedup") == 5
    assert wh.scalar("SELECT count(*) FROM runs WHERE flow = 'dedup' AND status = 'completed'") == 2


# -- decontamination on real data ---------------------------------------------------------------------


def _real_queries() -> list[str]:
    """The benchmark's source prompts (JADE medium, Flames) and prompts of other sets (CValues)."""
    real = SHARED_DATA / "real"
    with (real / "jade_v2_medium_zh.csv").open(encoding="utf-8-sig", newline="") as f:
        texts = [r["问题"] for r in csv.DictReader(f)]
    for name, key in (("flames_1k_zh.jsonl", "prompt"), ("cvalues_responsibility_prompts.jsonl", "prompt")):
        with (real / name).open(encoding="utf-8-sig") as f:
            texts += [json.loads(line)[key] for line in f if line.strip()]
    return texts


def _near_pairs(queries: list[str], questions: list[str], params: DedupParams) -> set[tuple[int, int]]:
    """Every (query, question) pair whose shingle sets have Jaccard >= threshold or the same normalised
    text: exact all-pairs similarity through a sparse incidence product, no LSH."""
    from scipy import sparse

    q, b = sketch_texts(queries, params), sketch_texts(questions, params)
    _, columns = np.unique(np.concatenate([q.hashes, b.hashes]), return_inverse=True)

    def incidence(sk, cols):
        rows = np.repeat(np.arange(len(sk)), np.diff(sk.offsets))
        m = sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(sk), columns.max() + 1))
        m.data[:] = 1  # repeated shingles count once
        m.sum_duplicates()
        m.data[:] = 1
        return m

    mq, mb = incidence(q, columns[: len(q.hashes)]), incidence(b, columns[len(q.hashes):])
    inter = (mq @ mb.T).tocoo()
    sizes_q, sizes_b = np.asarray(mq.sum(axis=1)).ravel(), np.asarray(mb.sum(axis=1)).ravel()
    jaccard = inter.data / (sizes_q[inter.row] + sizes_b[inter.col] - inter.data)
    near = {(int(i), int(j)) for i, j, s in zip(inter.row, inter.col, jaccard, strict=True) if s >= params.threshold}
    index = {h: j for j, h in enumerate(b.norm_hashes)}
    return near | {(i, index[h]) for i, h in enumerate(q.norm_hashes) if h in index}


@pytest.mark.realdata
def test_no_query_near_a_registered_benchmark_question_escapes_decontamination(prefect_harness, tmp_path):
    bench = SHARED_DATA / "benchmark" / "libra_format.json"
    if not bench.exists():
        pytest.skip(f"real data not available at {bench} (the shared data folder is absent)")
    from libra.flows.curation import dedup_flow

    questions = [r["question"] for r in json.loads(bench.read_text(encoding="utf-8"))]
    rng = random.Random(3)
    planted = ["请问，" + q for q in rng.sample(questions, 100)] + [q.rstrip("？?。") + "呢？" for q in
                                                                   rng.sample(questions, 100)]
    queries = list(dict.fromkeys(_real_queries() + planted))
    config = small_config("http://127.0.0.1:9", tmp_path)
    wh_path = tmp_path / "test.duckdb"
    wh = Warehouse(wh_path)
    half = len(queries) // 2
    ids = add_queries(wh, queries[:half])
    dedup_flow(str(config), str(wh_path))  # half the queries are stored before the benchmark comes
    out = libra("import", "benchmark", str(bench), "--name", "libra-test", "--warehouse", str(wh_path))
    assert out.exit_code == 0, out.output
    ids += add_queries(wh, queries[half:], start=half)
    dedup_flow(str(config), str(wh_path))

    contaminated = set(wh.query("SELECT query_id FROM v_contaminated")["query_id"].to_list())
    pairs = _near_pairs(queries, questions, DedupParams.from_dict(load_config(config).dedup.model_dump()))
    leaking = {ids[i] for i, _ in pairs}
    # the benchmark's 1,276 distinct questions come from JADE medium and Flames; plus the planted ones
    assert len(leaking) >= 1276 + 150
    assert leaking - contaminated == set()
    assert {ids[queries.index(p)] for p in planted} <= contaminated
    # and nothing else: every recorded leak is a verified duplicate of the question it names
    recorded = wh.query("SELECT query_id, item_id FROM decontamination")
    item_index = {r["id"]: j for j, r in enumerate(json.loads(bench.read_text(encoding="utf-8")))}
    position = {qid: i for i, qid in enumerate(ids)}
    assert {(position[q], item_index[i]) for q, i in recorded.iter_rows()} <= pairs
    assert pl.Series(list(contaminated)).is_in(ids).all()
