"""The CLI starts fast: importing it (what `libra sql`, `libra status` and `libra --help` pay before they
do anything) loads no LLM client, orchestrator, ML framework or web stack; each is imported by the
command or flow that uses it. `libra sql` and `libra status` also answer without polars, pyarrow or
rich (their rows come from DuckDB and a plain formatter); bench/cli_start.py times them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from libra.warehouse import Warehouse

HEAVY = ("openai", "prefect", "torch", "transformers", "vllm", "ray", "matplotlib", "datasketch", "jieba",
         "starlette", "uvicorn", "playwright")
# What the light read path (sql, status) must not need either: frames and rich tables cost ~0.5 s of imports.
FRAMES = ("polars", "pyarrow", "rich")


def loaded_after(args: list[str], watched: tuple[str, ...]) -> tuple[list[str], subprocess.CompletedProcess]:
    """Run `libra ARGS` in a fresh interpreter; the watched modules loaded by the time it exits."""
    code = (
        "import atexit, json, sys\n"
        f"watched = {list(watched)!r}\n"
        "atexit.register(lambda: sys.stderr.write('\\nLOADED ' + json.dumps(sorted(m for m in watched "
        "if m in sys.modules)) + '\\n'))\n"
        f"sys.argv = ['libra', *{args!r}]\n"
        "from libra.flows.cli.main import main\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    line = next(line for line in out.stderr.splitlines() if line.startswith("LOADED "))
    return json.loads(line.removeprefix("LOADED ")), out


def test_importing_the_cli_loads_no_heavy_package() -> None:
    code = ("import json, sys, libra.flows.cli.main; "
            f"print(json.dumps(sorted(m for m in {list(HEAVY + FRAMES)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == []


def test_help_loads_no_heavy_package() -> None:
    loaded, out = loaded_after(["--help"], HEAVY + ("polars", "pyarrow"))
    assert out.returncode == 0 and "sql" in out.stdout
    assert loaded == []


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Warehouse:
    return Warehouse(tmp_path_factory.mktemp("cli") / "w.duckdb")


@pytest.mark.parametrize("args", [["sql", "SELECT stage, n FROM v_stage_counts"], ["status"]])
def test_sql_and_status_load_no_heavy_package_nor_frames(warehouse: Warehouse, args: list[str]) -> None:
    loaded, out = loaded_after([*args, "--warehouse", str(warehouse.path)], HEAVY + FRAMES)
    assert out.returncode == 0, out.stderr
    assert "elements" in out.stdout  # it did answer: the stage counts are printed
    assert loaded == []


def test_the_watch_sees_a_heavy_import() -> None:
    """The check can fail: a command that does import Prefect (run) is seen doing it."""
    loaded, out = loaded_after(["run", "--help"], HEAVY)
    assert out.returncode == 0 and "prefect" in loaded
