"""The manual is true to the code.

- `mkdocs build --strict` fails on a broken link, a missing anchor or a page left out of the nav
  (mkdocs.yml).
- Every `libra …` line in a code block of README.md and docs/*.md is checked against the real CLI (the
  click command tree typer builds, walked generically): the command and its sub-commands exist, and every
  option it names is an option of that command. Lines in `bash` blocks are commands to run as written,
  so they are also parsed by click (`make_context`: option values, choices, required options), and the
  read-only ones (`libra sql`, `status`, `coverage`, `check-config`, `… --help`) are run against a demo
  warehouse built once in this module. Other blocks (`text`) are synopses: `[--opt V]`, `A|B`.
- Every repository path a page names (`tasks/llm/pool.py`, `warehouse/views/…`) exists.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_AS_WRITTEN = {"bash", "sh", "shell", "console"}  # code-block languages whose lines are real commands
READ_ONLY = {("sql",), ("status",), ("coverage",), ("check-config",)}  # run against the demo warehouse


def _build(root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, timeout=300, cwd=root)


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    done = _build(REPO, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "design" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copytree(REPO / "docs", copy / "docs")
    (copy / "docs" / "index.md").write_text("# x\n\n[gone](no-such-page.md)\n", encoding="utf-8")
    done = _build(copy, tmp_path / "site")
    assert done.returncode != 0 and "no-such-page.md" in done.stderr


def test_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: the reference belongs in docs/"


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the README's test command unchanged: the same line must be in both."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()[-1].strip()
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert ci in (line.strip() for line in readme), f"README.md lacks .ci/run's test command: {ci}"


# --- commands --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str  # the `libra …` line as written (continuations joined)
    exact: bool  # in a bash block: runs as written


def _code_blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """(language, line number of the first line, lines) of every fenced block."""
    blocks, lang, start, body = [], None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"\s*```\s*([\w-]*)", line)
        if fence and lang is None:
            lang, start, body = fence.group(1).lower(), number + 1, []
        elif fence:
            blocks.append((lang, start, body))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def doc_commands(path: Path) -> list[DocCommand]:
    found = []
    for lang, start, body in _code_blocks(path):
        joined: list[tuple[int, str]] = []
        for offset, line in enumerate(body):
            if joined and joined[-1][1].endswith("\\"):
                joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + line.strip())
            else:
                joined.append((start + offset, line))
        for number, line in joined:
            for segment in _libra_segments(line, exact=lang in RUN_AS_WRITTEN):
                found.append(DocCommand(f"{_shown(path)}:{number}", segment, lang in RUN_AS_WRITTEN))
    return found


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def _libra_segments(line: str, exact: bool) -> list[str]:
    """The `libra …` commands of one shell line: a pipeline, `&&` chain or redirection ends one."""
    if exact:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    else:  # a synopsis: `A|B` is a choice, not a pipe
        tokens = shlex.split(line, comments=True)
    segments, current = [], None
    for token in tokens:
        if exact and token and set(token) <= set("|&;<>()"):
            current = None
        elif current is None:
            if token == "libra":
                current = []
                segments.append(current)
        else:
            current.append(token)
    return [shlex.join(["libra", *s]) for s in segments]


ALL_COMMANDS = [c for path in DOC_FILES for c in doc_commands(path)]


def _root():
    from libra.flows.cli import main

    return typer.main.get_command(main.app)


def _is_group(command) -> bool:  # typer >= 0.20 carries its own click fork: duck-type, not isinstance
    return hasattr(command, "commands")


def _resolve(root, args: list[str]) -> tuple[object, tuple[str, ...], list[str]]:
    """Walk sub-command names down the tree: (command, its path, the arguments left)."""
    command, names = root, ()
    # list_commands/get_command, not .commands: a group may make its commands when first asked (`libra run`)
    while _is_group(command) and args and args[0] in command.list_commands(None):
        command, names, args = command.get_command(None, args[0]), (*names, args[0]), args[1:]
    return command, names, args


def _option_names(command) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)} | {"--help"}


def _flow_options(stage: str) -> set[str]:
    """A stage flow's own options, for a `run` command that passes `--name value` on to the flow."""
    from libra.flows.factory import STAGE_FLOWS, factory_flow

    flows = {"factory": factory_flow, **STAGE_FLOWS}
    assert stage in flows, f"no flow {stage!r} (flows: {', '.join(flows)})"
    return {"--" + name.replace("_", "-") for name in inspect.signature(flows[stage].fn).parameters}


def _check_options(where: str, text: str, command, names: tuple[str, ...],
                   options: list[str], first_argument: str | None) -> None:
    known = _option_names(command)
    unknown = [o for o in options if o not in known]
    if unknown and command.context_settings.get("allow_extra_args") and names == ("run",):
        assert first_argument, f"{where}: `{text}`: `libra run` without a stage"
        stages = first_argument.split("|")
        unknown = [o for o in unknown if not all(o in _flow_options(s) for s in stages)]
    assert not unknown, (f"{where}: `{text}`: `libra {' '.join(names)}` has no option {unknown[0]} "
                         f"(its options: {', '.join(sorted(known))})")


def _choices(root, args: list[str]) -> list[list[str]]:
    """A synopsis' `a|b` sub-command choice as one argument list per choice."""
    command, names, rest = _resolve(root, args)
    if rest and _is_group(command) and "|" in rest[0]:
        return [v for choice in rest[0].split("|") for v in _choices(root, [*names, choice, *rest[1:]])]
    return [args]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: c.where)
def test_every_documented_command_exists_with_its_options(command: DocCommand) -> None:
    root = _root()
    args = shlex.split(command.text)[1:]
    for choice in _choices(root, args) if not command.exact else [args]:
        _check_command(root, command, choice)


def _check_command(root, command: DocCommand, args: list[str]) -> None:
    resolved, names, rest = _resolve(root, args)
    assert names or rest == ["--help"], f"{command.where}: `{command.text}`: no such command (commands: {', '.join(root.list_commands(None))})"
    assert not _is_group(resolved) or "--help" in rest, (
        f"{command.where}: `{command.text}`: `libra {' '.join(names)}` needs a sub-command "
        f"({', '.join(resolved.list_commands(None))})")
    options = [a.strip("[]").split("=")[0] for a in rest if a.strip("[").startswith("--")]
    first_argument = next((a for a in rest if not a.startswith(("-", "["))), None)
    _check_options(command.where, command.text, resolved, names, options, first_argument)
    if not command.exact or "--help" in rest:
        return
    try:  # parse as click would, without running: option values, choices, required options
        with resolved.make_context(" ".join(["libra", *names]), list(rest)) as ctx:
            extra = ctx.args
    except Exception as e:  # click's UsageError (typer's fork of it): a bad option, value or missing one
        pytest.fail(f"{command.where}: `{command.text}`: {getattr(e, 'format_message', e.__str__)()}")
    dangling = [a for a in extra[1::2] if a.startswith("--")] + ([extra[-1]] if len(extra) % 2 else [])
    assert not dangling, f"{command.where}: `{command.text}`: option {extra[-1]} of the flow needs a value"


def test_the_command_check_catches_a_wrong_option(tmp_path: Path) -> None:
    root = _root()
    resolved, names, rest = _resolve(root, ["sql", "SELECT 1", "--no-such-option"])
    with pytest.raises(AssertionError, match="no option --no-such-option"):
        _check_options("x.md:1", "libra sql …", resolved, names, ["--no-such-option"], rest[0])
    with pytest.raises(AssertionError, match="has no option --guard"):
        _check_options("x.md:1", "libra run dedup", *_resolve(root, ["run", "dedup"])[:2], ["--guard"], "dedup")
    page = tmp_path / "page.md"
    page.write_text("```bash\necho x | libra sql 'SELECT 1' > out.txt\n```\n\n```text\nlibra a|b [--c D]\n```\n",
                    encoding="utf-8")
    assert [(c.text, c.exact) for c in doc_commands(page)] == [("libra sql 'SELECT 1'", True),
                                                                ("libra 'a|b' '[--c' 'D]'", False)]


# --- the read-only commands, run against a demo warehouse -----------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `demo.duckdb` (`libra demo`) and the repository's configs/, as the docs assume."""
    folder = tmp_path_factory.mktemp("docs-demo")
    (entry,) = entry_points(group="console_scripts", name="libra")  # what the `libra` script runs
    module, _, function = entry.value.partition(":")
    done = subprocess.run([sys.executable, "-c", f"import {module} as m; m.{function}()", "demo",
                           "--warehouse", str(folder / "demo.duckdb")],
                          capture_output=True, text=True, timeout=900, cwd=folder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (folder / "configs").symlink_to(REPO / "configs")
    return folder


def _runs_read_only(command: DocCommand) -> bool:
    """A command this module runs: read-only, and on the demo warehouse when it names one."""
    args = shlex.split(command.text)[1:]
    warehouse = args[args.index("--warehouse") + 1] if "--warehouse" in args[:-1] else "demo.duckdb"
    return (command.exact and warehouse == "demo.duckdb"
            and ("--help" in args or any(tuple(args[:len(c)]) == c for c in READ_ONLY)))


READ_ONLY_COMMANDS = [c for c in ALL_COMMANDS if _runs_read_only(c)]


def test_some_read_only_commands_are_documented() -> None:
    assert len(READ_ONLY_COMMANDS) >= 10, [c.text for c in READ_ONLY_COMMANDS]


@pytest.mark.slow
@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=lambda c: c.where)
def test_read_only_commands_run_as_written(command: DocCommand, demo_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from libra.flows.cli import main

    monkeypatch.chdir(demo_dir)
    monkeypatch.delenv("LIBRA_WAREHOUSE", raising=False)
    done = CliRunner().invoke(main.app, shlex.split(command.text)[1:], env={"COLUMNS": "200"})
    assert done.exit_code == 0, f"{command.where}: `{command.text}` failed:\n{done.output}\n{done.exception!r}"


# --- paths ------------------------------------------------------------------------------------------------

ROOTS = ("flows", "tasks", "warehouse", "prompts", "configs", "stubllm", "tests", "bench", "docs", ".ci")
# a path has a suffix, a further folder or a placeholder (`docs/s`, documents per second, is none)
PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(re.escape(r) for r in ROOTS) + r")/[\w-]*[./*<{][\w./*<>{}-]*)")


def doc_paths(text: str) -> list[str]:
    """Repository paths named in a page; a placeholder (`<stage>`, `NNN`) stands for any name."""
    return [p.rstrip(".,:;)`'\"") for p in PATH.findall(text)]


def _exists(path: str) -> bool:
    pattern = re.sub(r"<[^>]*>|NNN|\{[^}]*\}", "*", path)
    return any(REPO.glob(pattern)) if "*" in pattern else (REPO / pattern).exists()


def test_every_path_a_page_names_exists() -> None:
    missing = [f"{page.relative_to(REPO)}: {p}" for page in DOC_FILES
               for p in doc_paths(page.read_text(encoding="utf-8")) if not _exists(p)]
    assert not missing, "pages name paths that do not exist:\n" + "\n".join(missing)


def test_the_path_check_finds_a_stale_path() -> None:
    paths = doc_paths("see `tasks/llm_pool.py`, [x](docs/design.md) and warehouse/views/*.sql, not ../shared/data/x")
    assert paths == ["tasks/llm_pool.py", "docs/design.md", "warehouse/views/*.sql"]
    assert [p for p in paths if not _exists(p)] == ["tasks/llm_pool.py"]


if __name__ == "__main__":  # list what the checks see
    for c in ALL_COMMANDS:
        print(("RUN " if c in READ_ONLY_COMMANDS else "    ") + ("exact " if c.exact else "synop ") + c.where, c.text)
    sys.exit(os.EX_OK)
