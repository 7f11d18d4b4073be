"""Review page benchmark: how fast `libra review` answers, alone and while another process writes.

A warehouse with N generated hard-sample candidates (tests' vote generator: three judges of different
error rates), the real `libra review` server on it, and an httpx client that does what the page does per
item: the item list (GET /api/items), the item (GET /api/item/ID), a label (POST /api/label). First with
nothing else running, then while a second process commits a flow-like write transaction (five inserts)
every 50 ms. Prints p50 / p95 / max per request kind and phase, and the writer's commit count.

    python bench/review.py [--items 2000] [--rounds 40]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from libra.tasks.llm.servers import free_port, start_server  # noqa: E402
from tests.flows.test_review import WRITER  # noqa: E402
from tests.tasks.annotation_data import generated_votes, warehouse_with_votes  # noqa: E402


def _figures(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"  {name:<12} n={len(seconds):<4} p50 {statistics.median(ordered) * 1000:7.1f} ms   "
            f"p95 {p95 * 1000:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms")


def _rounds(client: httpx.Client, token: str, ids: list[str], rounds: int, start: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"items": [], "item": [], "label": []}
    for i in range(rounds):
        rid = ids[(start + i) % len(ids)]
        for kind, call in (("items", lambda: client.get("/api/items")),
                           ("item", lambda rid=rid: client.get(f"/api/item/{rid}")),
                           ("label", lambda rid=rid: client.post("/api/label", json={"id": rid, "label": "安全", "seconds": 1},
                                                                  headers={"X-Libra-Token": token}))):
            t = time.perf_counter()
            response = call()
            times[kind].append(time.perf_counter() - t)
            response.raise_for_status()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wh = warehouse_with_votes(Path(tmp) / "bench.duckdb", generated_votes(n_items=args.items).drop("truth"))
        hard = wh.scalar("SELECT count(*) FROM v_hard_samples")
        port = free_port()
        cmd = [str(Path(sys.executable).with_name("libra")), "review", "--warehouse", str(wh.path),
               "--port", str(port), "--annotator", "bench"]
        with start_server(cmd, f"http://127.0.0.1:{port}", log_path=Path(tmp) / "review.log") as server, \
                httpx.Client(base_url=server.url, timeout=120) as client:
            token = client.get("/").text.split('name="libra-token" content="', 1)[1].split('"', 1)[0]
            ids = [it["id"] for it in client.get("/api/items").json()["items"]]
            print(f"{args.items} responses, {hard} hard samples listed")
            print("alone:")
            for kind, seconds in _rounds(client, token, ids, args.rounds, 0).items():
                print(_figures(kind, seconds))
            writer = subprocess.Popen([sys.executable, "-c", WRITER,
                                       str(wh.path), "3600"], stdout=subprocess.PIPE, text=True)
            try:
                time.sleep(1.0)
                times = _rounds(client, token, ids, args.rounds, args.rounds)
            finally:
                writer.terminate()
                writer.wait(timeout=30)
            print("while another process writes (a 5-insert transaction every 50 ms):")
            for kind, seconds in times.items():
                print(_figures(kind, seconds))
            writes = wh.scalar("SELECT count(*) FROM settings WHERE key LIKE 'writer.%'") // 5
            print(f"writer committed {writes} transactions meanwhile")


if __name__ == "__main__":
    main()
