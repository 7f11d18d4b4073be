"""The CLI starts fast: importing it (what `libra sql`, `libra status` and `libra --help` pay before they
do anything) loads no LLM client, orchestrator, ML framework or web stack; each is imported by the
command or flow that uses it."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("openai", "prefect", "torch", "transformers", "vllm", "ray", "matplotlib", "datasketch", "jieba",
         "starlette", "uvicorn", "playwright")


def test_importing_the_cli_loads_no_heavy_package() -> None:
    code = ("import json, sys, libra.flows.cli.main; "
            f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == []
