"""The whole factory on the stub at a given size, per stage next to a bare client loop of the same run.

For each size (sizes.target_per_subcategory; the default, 150, is about 10k queries on the demo
taxonomy) a fresh process starts a stub (20 ms latency), runs the factory flow on the demo config with
the chosen runner, then replays every stage's stored requests (same messages, models and sampling) with
a bare `AsyncOpenAI` loop under one semaphore as wide as the stage's endpoints' max_concurrency summed:
the ceiling of one process on these cores. Printed per stage: calls, seconds, calls/s, the bare
ceiling, their ratio, and the peak RSS of the flow process (ru_maxrss of that process when the factory
returns, before the replay) and of the Ray
workers (the largest VmHWM of any process under the run's Ray folder, sampled every second). A second,
smaller size shows how time and memory grow.

    python bench/scale.py [--target 150] [--second-target 50] [--runner threads|ray] [--workers 2]

The last three lines (of the first size) read `respond/bare ratio: X.XX`, `annotate/bare ratio: X.XX`
and `peak rss MB: N` (the flow process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"
STAGES = ("elements", "synthesize", "augment", "dedup", "respond", "annotate", "split")


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class WorkerRss(threading.Thread):
    """Peak RSS of the processes whose command line names a Ray folder of this bench (libra-ray-*)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(1.0):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) == me:
                    continue
                try:
                    cmd = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"libra-ray-" in cmd or b"ray::" in cmd:
                    pid = int(entry.name)
                    self.peak_mb[pid] = max(self.peak_mb.get(pid, 0.0), _vm_hwm_mb(pid))


def _config(stub_url: str, tmp: Path, target: int, runner: str, workers: int) -> Path:
    import yaml

    cfg = yaml.safe_load(DEMO.read_text(encoding="utf-8").replace("${LIBRA_STUB_URL:-http://127.0.0.1:8765}", stub_url))
    cfg["warehouse"] = str(tmp / "scale.duckdb")
    cfg["sizes"]["target_per_subcategory"] = target
    cfg["runner"] = {"kind": runner, "workers": workers}
    path = tmp / "scale.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def _bare(url: str, calls: list[tuple[str, list[dict], dict]], concurrency: int) -> float:
    """Seconds for a bare AsyncOpenAI loop to send `calls` (model, messages, params) `concurrency` at once."""
    import openai

    sem = asyncio.Semaphore(concurrency)
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="EMPTY", max_retries=3, timeout=60) as client:
        async def one(model: str, messages: list[dict], params: dict) -> None:
            async with sem:
                await client.chat.completions.create(model=model, messages=messages, **params)

        start = time.perf_counter()
        await asyncio.gather(*(one(*c) for c in calls))
        return time.perf_counter() - start


def _stage_calls(wh, run_id: str) -> list[tuple[str, list[dict], dict]]:
    rows = wh.query("SELECT model, request FROM llm_calls WHERE run_id = ? ORDER BY call_key", [run_id])
    calls = []
    for model, request in rows.iter_rows():
        req = json.loads(request)
        params = {k: v for k, v in (req.get("params") or {}).items()
                  if k in ("temperature", "top_p", "max_tokens", "seed", "n")}
        extra = req.get("extra_body")
        if extra:
            params["extra_body"] = json.loads(extra) if isinstance(extra, str) else extra
        calls.append((model, req["messages"], params))
    return calls


def one_size(target: int, runner: str, workers: int, latency_ms: float) -> dict:
    """Run the factory at one size in this process; figures as a dict."""
    tmp = Path(tempfile.mkdtemp(prefix="libra-scale-"))
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # a temporary server on 2 busy cores can take longer than Prefect's default wait (as `libra run`)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from libra.flows.factory import factory_flow
    from libra.tasks.core.config import load_config
    from libra.tasks.llm.servers import free_port, start_server
    from libra.warehouse import Warehouse

    port = free_port()
    stub = start_server([sys.executable, "-m", "libra.stubllm", "--port", str(port), "--latency-ms", str(latency_ms)],
                        f"http://127.0.0.1:{port}", log_path=tmp / "stub.log", timeout_s=30)
    sampler = WorkerRss()
    if runner == "ray":  # on threads there are no workers; any ray:: process here is someone else's
        sampler.start()
    try:
        config = _config(stub.url, tmp, target, runner, workers)
        cfg = load_config(config)
        started = time.perf_counter()
        factory_flow(str(config))
        factory_s = time.perf_counter() - started
        # the flow's peak now, before the replay below loads every stage's requests into this process
        # (which at 36k queries would add hundreds of MB that are the bench's, not the factory's)
        flow_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sampler.stop.set()
        wh = Warehouse(tmp / "scale.duckdb", create=False)
        runs = wh.query("""
            SELECT flow, run_id, epoch_ms(finished_at) - epoch_ms(started_at) AS ms,
                   (SELECT count(*) FROM llm_calls c WHERE c.run_id = r.run_id) AS calls
            FROM runs r WHERE parent_run_id = (SELECT run_id FROM runs WHERE flow = 'factory' LIMIT 1)""")
        stages = []
        for flow, run_id, ms, calls in runs.iter_rows():
            row = {"stage": flow, "calls": calls, "seconds": ms / 1000, "calls_per_s": calls / max(ms / 1000, 1e-9)}
            if calls:
                replay = _stage_calls(wh, run_id)
                models = {m for m, _, _ in replay}
                width = sum(e.max_concurrency for e in cfg.endpoints if e.model in models)
                bare_s = asyncio.run(_bare(stub.url, replay, width))
                row.update(bare_per_s=len(replay) / bare_s, ratio=row["calls_per_s"] / (len(replay) / bare_s))
            stages.append(row)
        order = {s: i for i, s in enumerate(STAGES)}
        stages.sort(key=lambda r: order.get(r["stage"], 99))
        return {"target": target, "runner": runner, "workers": workers, "factory_s": factory_s,
                "queries": wh.scalar("SELECT count(*) FROM queries"),
                "responses": wh.scalar("SELECT count(*) FROM responses"), "votes": wh.scalar("SELECT count(*) FROM votes"),
                "stages": stages, "flow_peak_rss_mb": flow_peak_mb,
                "worker_peak_rss_mb": max(sampler.peak_mb.values(), default=0.0),
                "worker_processes": len(sampler.peak_mb)}
    finally:
        sampler.stop.set()
        stub.stop()


def _print(fig: dict) -> None:
    print(f"\n== target_per_subcategory {fig['target']}: {fig['queries']} queries -> {fig['responses']} responses -> "
          f"{fig['votes']} votes; runner {fig['runner']} (workers {fig['workers']}); factory {fig['factory_s']:.0f} s")
    print(f"{'stage':<12}{'calls':>8}{'s':>8}{'calls/s':>9}{'bare/s':>9}{'ratio':>7}")
    for r in fig["stages"]:
        bare = f"{r['bare_per_s']:>9.0f}{r['ratio']:>7.2f}" if "bare_per_s" in r else f"{'':>9}{'':>7}"
        print(f"{r['stage']:<12}{r['calls']:>8}{r['seconds']:>8.1f}{r['calls_per_s']:>9.0f}{bare}")
    print(f"peak RSS: flow process {fig['flow_peak_rss_mb']:.0f} MB; Ray workers {fig['worker_peak_rss_mb']:.0f} MB "
          f"(largest of {fig['worker_processes']} processes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=int, default=150, help="sizes.target_per_subcategory (150: about 10k queries)")
    ap.add_argument("--second-target", type=int, default=50, help="a second size (0: none)")
    ap.add_argument("--runner", choices=("threads", "ray"), default="threads")
    ap.add_argument("--workers", type=int, default=2, help="runner.workers: a local Ray's CPUs")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one size, JSON out
    args = ap.parse_args()
    if args.one:
        print("SCALE-JSON " + json.dumps(one_size(args.target, args.runner, args.workers, args.latency_ms)))
        return
    figures = []
    for target in [t for t in (args.second_target, args.target) if t]:  # the smaller first, the main size last
        # one process per size: ru_maxrss is a process's lifetime peak
        cmd = [sys.executable, __file__, "--one", "--target", str(target), "--runner", args.runner,
               "--workers", str(args.workers), "--latency-ms", str(args.latency_ms)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in out.stdout.splitlines() if x.startswith("SCALE-JSON ")), None)
        if line is None:
            sys.exit(f"size {target} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        figures.append(json.loads(line.removeprefix("SCALE-JSON ")))
        _print(figures[-1])
    if len(figures) == 2:
        small, big = figures
        print(f"\ngrowth {small['queries']} -> {big['queries']} queries ({big['queries'] / max(small['queries'], 1):.1f}x): "
              f"factory time {big['factory_s'] / small['factory_s']:.2f}x, "
              f"flow peak RSS {big['flow_peak_rss_mb'] / small['flow_peak_rss_mb']:.2f}x")
    main_fig = figures[-1]
    ratio = {r["stage"]: r.get("ratio", 0.0) for r in main_fig["stages"]}
    print(f"respond/bare ratio: {ratio.get('respond', 0.0):.2f}")
    print(f"annotate/bare ratio: {ratio.get('annotate', 0.0):.2f}")
    print(f"peak rss MB: {main_fig['flow_peak_rss_mb']:.0f}")


if __name__ == "__main__":
    main()
