"""How fast the CLI answers: wall time of `libra --help`, `libra status` and `libra sql` on a warehouse.

    python bench/cli_start.py [--warehouse W] [--runs N] [--libra EXECUTABLE]

Without --warehouse it times a fresh empty warehouse (made in a temporary folder); the issue's figure
is on a demo warehouse: `libra demo --warehouse /tmp/cli-demo.duckdb` first (about a minute). Each
command runs N times in a fresh process; the minimum and the median are printed (the minimum is the
figure to compare: other load on the machine only adds to it). The last line is
`libra sql start ms: N` (the minimum), for scripts that read it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) milliseconds of each run. CPU time hardly moves when other work
    shares the machine; wall time is what a user waits."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall.append((time.perf_counter() - start) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--libra", default="libra", help="The libra executable to time (e.g. an older checkout's).")
    args = ap.parse_args()
    libra = shutil.which(args.libra)
    if libra is None:
        raise SystemExit("libra is not on PATH: activate the venv (pip install -e .)")
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = args.warehouse
        if warehouse is None:
            from libra.warehouse import Warehouse

            warehouse = Warehouse(Path(tmp) / "w.duckdb").path
        size_mb = warehouse.stat().st_size / 1e6
        commands = {
            "libra --help": [libra, "--help"],
            "libra status": [libra, "status", "--warehouse", str(warehouse)],
            "libra sql": [libra, "sql", "--warehouse", str(warehouse), "SELECT 1"],
        }
        print(f"warehouse {warehouse} ({size_mb:.1f} MB), {args.runs} runs each, load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        best = {}
        for name, cmd in commands.items():
            wall, cpu = timed(cmd, args.runs)
            best[name] = min(wall)
            print(f"{name:14s} wall min {min(wall):6.0f} ms, median {statistics.median(wall):6.0f} ms; "
                  f"CPU min {min(cpu):6.0f} ms")
    print(f"libra sql start ms: {best['libra sql']:.0f}")


if __name__ == "__main__":
    main()
