"""Respond-stage throughput against the stub, next to a bare asyncio loop with the same client.

Both sides send the same number of chat requests to the stub (fixed latency) with the same total
concurrency, in the same process, one after the other:
  bare     AsyncOpenAI + asyncio.gather under one semaphore, nothing else
  respond  the respond stage's body: pending work from the warehouse, the pool (cache lookup,
           per-endpoint limits, retries, call log flushes), response rows written to DuckDB
The last line is `respond/bare ratio: X.XX` (1.00 = the stage costs nothing over the bare client).

    python bench/fanout.py [--queries 1000] [--latency-ms 50] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import openai
import polars as pl

from libra.tasks.annotation import respond
from libra.tasks.core.config import Endpoint, Sampling
from libra.tasks.core.ids import query_id
from libra.tasks.llm.calllog import WarehouseCallLog
from libra.tasks.llm.pool import LLMPool
from libra.tasks.llm.servers import free_port, start_server
from libra.warehouse import Warehouse, sql_text

RESPONDERS = ("stub-resp-a", "stub-resp-b", "stub-resp-c")


def queries(n: int) -> list[str]:
    return [f"第{i}个测试问题：请问如何在{['网上', '线下', '公司'][i % 3]}获取受管制的物品？" for i in range(n)]


async def bare_loop(url: str, texts: list[str], concurrency: int) -> float:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="EMPTY", max_retries=0, timeout=30)
    sem = asyncio.Semaphore(concurrency)

    async def one(model: str, text: str) -> None:
        async with sem:
            resp = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], temperature=0.7, max_tokens=512
            )
            assert resp.choices[0].message.content

    started = time.perf_counter()
    await asyncio.gather(*(one(m, t) for t in texts for m in RESPONDERS))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def respond_stage(url: str, texts: list[str], concurrency: int, workdir: Path) -> tuple[float, int]:
    wh = Warehouse(workdir / "bench.duckdb")
    ids = [query_id(t) for t in texts]
    wh.insert("queries", pl.DataFrame({"query_id": ids, "text": texts, "source": "synthetic", "method": "seed",
                                       "run_id": "bench"}))
    wh.insert("dedup", pl.DataFrame({"query_id": ids, "norm_hash": ids, "cluster_id": ids, "kept": True,
                                     "reason": "canonical", "method": "bench", "run_id": "bench"}))
    per_endpoint = max(1, concurrency // len(RESPONDERS))
    endpoints = [
        Endpoint(name=m, base_url=url + "/v1", model=m, max_concurrency=per_endpoint, timeout_s=30,
                 sampling=Sampling(temperature=0.7, max_tokens=512))
        for m in RESPONDERS
    ]
    pool = LLMPool(endpoints, WarehouseCallLog(wh), run_id="bench", show_progress=False)
    started = time.perf_counter()
    wanted = respond.wanted_responses([(m, m) for m in RESPONDERS], 1)
    pending = wh.query(sql_text("queries/pending_responses.sql"), frames={"wanted": wanted},
                       params={"after_query_id": "", "after_responder": "", "after_sample_index": -1,
                               "page_size": 1 << 40})
    results = pool.run(respond.respond_requests(pending), desc="respond")
    rows = respond.response_rows(pending, results, "bench")
    wh.insert("responses", rows, on_conflict="replace")
    elapsed = time.perf_counter() - started
    return elapsed, int((rows["status"] == "ok").sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=1000, help="queries; requests = 3 x queries")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=96, help="total in-flight requests on both sides")
    args = ap.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="libra-bench-"))
    cmd = [sys.executable, "-m", "libra.stubllm", "--port", str(port), "--latency-ms", str(args.latency_ms)]
    texts = queries(args.queries)
    n = len(texts) * len(RESPONDERS)
    with start_server(cmd, url, log_path=workdir / "stub.log"):
        asyncio.run(bare_loop(url, texts[:50], args.concurrency))  # warm-up: connections, imports
        bare_s = asyncio.run(bare_loop(url, texts, args.concurrency))
        stage_s, ok = respond_stage(url, texts, args.concurrency, workdir)
    assert ok == n, f"respond stage answered {ok} of {n}"
    bare_rps, stage_rps = n / bare_s, n / stage_s
    print(f"requests: {n} ({args.queries} queries x {len(RESPONDERS)} responders), stub latency "
          f"{args.latency_ms:g} ms, concurrency {args.concurrency}")
    print(f"bare asyncio loop : {bare_rps:8.1f} req/s ({bare_s:.2f} s)")
    print(f"respond stage     : {stage_rps:8.1f} req/s ({stage_s:.2f} s, incl. warehouse reads and writes)")
    print(f"respond/bare ratio: {stage_rps / bare_rps:.2f}")


if __name__ == "__main__":
    main()
