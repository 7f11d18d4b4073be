"""The built wheel is the whole factory: it holds every module and data file of the tree, and installed
alone into a fresh venv it runs `libra demo`.

The wheel is built from a copy of the files git sees (tracked, and untracked ones not ignored), so the
build leaves nothing in the checkout. The fresh venv gets the wheel with `--no-deps`; its dependencies
come from the running interpreter's site-packages through a `.pth` file, so nothing is downloaded and
the `libra` package itself can only come from the wheel (asserted, and the demo runs in a temporary
folder so the checkout is not on sys.path).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("flows", "tasks", "warehouse", "prompts", "configs", "stubllm")  # the `libra.<root>` packages

pytestmark = pytest.mark.slow


def tree_files() -> list[str]:
    """What git sees of the tree: tracked files and untracked ones not ignored (present on disk)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sorted(f for f in listed if f and (REPO / f).is_file())


def expected_in_wheel(files: list[str]) -> set[str]:
    """Every file under the package roots, as its path inside the wheel (`libra/...`): a module, or a data
    file (SQL, prompts, configs, the review page); a new kind of file must reach the wheel too."""
    return {f"libra/{f}" for f in files if f.split("/", 1)[0] in ROOTS}


def build_wheel(source: Path, out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out)], cwd=source, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("libra_factory-*.whl")
    return wheel


def copy_tree(dest: Path, leave_out: str | None = None) -> Path:
    for name in tree_files():
        if name == leave_out:
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return dest


def missing_from(wheel: Path, files: list[str]) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        held = set(archive.namelist())
    return sorted(expected_in_wheel(files) - held)


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A venv holding the wheel alone; the running interpreter's packages come in through a .pth file."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    outer = [p for p in (*site.getsitepackages(), sysconfig.get_paths()["purelib"]) if Path(p).is_dir()]
    (purelib / "outer_site_packages.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder


def test_expected_files_cover_every_package_and_data_folder() -> None:
    expected = expected_in_wheel(tree_files())
    for name in ("libra/tasks/llm/pool.py", "libra/flows/cli/main.py", "libra/warehouse/store.py",
                 "libra/prompts/judge.txt", "libra/configs/demo.yaml", "libra/stubllm/__main__.py"):
        assert name in expected, name
    assert any(n.startswith("libra/warehouse/migrations/") for n in expected)
    assert any(n.startswith("libra/flows/review_web/") for n in expected)


def test_the_wheel_holds_the_tree_and_runs_the_demo_from_a_fresh_venv(tmp_path: Path) -> None:
    files = tree_files()
    wheel = build_wheel(copy_tree(tmp_path / "src"), tmp_path / "dist")
    assert not missing_from(wheel, files), f"{wheel.name} lacks: {missing_from(wheel, files)}"

    venv = fresh_venv(tmp_path / "venv", wheel)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LIBRA_WAREHOUSE")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import libra, libra.flows; print(list(libra.__path__)[0]); print(libra.flows.__file__)"],
                           cwd=run_dir, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).resolve().is_relative_to(venv.resolve()) for p in where), where

    warehouse = run_dir / "demo.duckdb"
    demo = subprocess.run([str(venv / "bin" / "libra"), "demo", "--warehouse", str(warehouse)], cwd=run_dir,
                          env=env, capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert f"libra sql --warehouse {warehouse} " in demo.stdout, "the closing hints name another warehouse"
    counts = subprocess.run([str(venv / "bin" / "libra"), "sql", "--warehouse", str(warehouse), "--format", "json",
                             "SELECT stage, n FROM v_stage_counts"], cwd=run_dir, env=env,
                            capture_output=True, text=True, check=True).stdout
    n = {row["stage"]: row["n"] for row in map(json.loads, counts.splitlines())}
    for stage in ("queries", "responses ok", "votes"):
        assert n.get(stage, 0) > 0, n


def test_data_files_left_out_of_the_build_are_found(tmp_path: Path) -> None:
    """The check can fail: with a package-data pattern gone from pyproject.toml, the files it covered are
    reported by name."""
    files = tree_files()
    source = copy_tree(tmp_path / "src")
    pyproject = source / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert ', "rules/*.txt"' in text
    pyproject.write_text(text.replace(', "rules/*.txt"', ""), encoding="utf-8")
    wheel = build_wheel(source, tmp_path / "dist")
    rules = sorted(f"libra/{f}" for f in files if f.startswith("prompts/rules/") and f.endswith(".txt"))
    assert rules and missing_from(wheel, files) == rules
