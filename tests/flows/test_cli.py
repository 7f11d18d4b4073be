import os
import subprocess
from typing import Literal

import pytest
import yaml

from libra.warehouse import Warehouse


def libra(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["libra", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_command():
    out = libra("--help")
    assert out.returncode == 0
    for command in ("demo", "run", "sql", "status", "check-config"):
        assert command in out.stdout
    from libra.flows.factory import STAGE_FLOWS

    run_help = libra("run", "--help")
    listed = set(run_help.stdout.replace(",", " ").split())
    assert run_help.returncode == 0 and set(STAGE_FLOWS) <= listed  # the help names every flow


def test_bad_config_fails_before_any_work_naming_file_and_key(tmp_path):
    cfg = yaml.safe_load(open("configs/demo.yaml", encoding="utf-8").read().replace("${", "$${"))
    cfg["roles"]["judges"] = ["judge-a"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    out = libra("run", "factory", "--config", str(path), "--warehouse", str(tmp_path / "w.duckdb"))
    assert out.returncode == 2
    assert str(path) in out.stderr and "roles.judges" in out.stderr
    assert not (tmp_path / "w.duckdb").exists()  # nothing was started, nothing written


def test_unknown_flow_option_is_refused_naming_it_and_the_flow_options(tmp_path):
    out = libra("run", "train", "--config", "configs/demo.yaml", "--warehouse", str(tmp_path / "w.duckdb"),
                "--learnig-rate", "1e-4")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "No such option: --learnig-rate" in out.stderr and "--learning-rate" in out.stderr
    assert not (tmp_path / "w.duckdb").exists()
    out = libra("run", "dedup", "--config", "configs/demo.yaml", "--warehouse", str(tmp_path / "w.duckdb"),
                "--guard", "x")
    assert out.returncode == 2 and "No such option: --guard" in out.stderr
    out = libra("run", "nope", "--config", "configs/demo.yaml")
    assert out.returncode == 2 and "unknown flow 'nope'; choose from: factory" in out.stderr


def test_flow_options_are_typed_from_the_flow_signature(tmp_path):
    """`libra run STAGE --help` lists the flow's options with their types; a bad value is refused by the
    parser (exit 2, naming the option) before any config, warehouse or Prefect run is touched."""
    env = {**os.environ, "COLUMNS": "200"}
    run_help = subprocess.run(["libra", "run", "train", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert run_help.returncode == 0
    lines = {line.split()[1]: line for line in run_help.stdout.splitlines() if line.strip().startswith("│ ")
             and len(line.split()) > 2 and line.split()[1].startswith("--")}
    assert "<int>" in lines["--max-steps"] and "<float>" in lines["--learning-rate"]
    assert "<full|lora>" in lines["--method"] and "true|false|auto" in lines["--bf16"]
    for args, option in ((("--epochs", "abc"), "--epochs"), (("--method", "qlora"), "--method"),
                         (("--bf16", "maybe"), "--bf16"), (("--max-steps", "1.5"), "--max-steps")):
        out = subprocess.run(["libra", "run", "train", "--config", "configs/demo.yaml", "--warehouse",
                              str(tmp_path / "w.duckdb"), *args], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 2 and f"Invalid value for '{option}'" in out.stderr, out.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_stage_options_become_the_flow_parameters_with_their_types(monkeypatch):
    """What the parser hands the flow: typed values, None (= the config's) left out."""
    from typer.testing import CliRunner

    from libra.flows.cli import run
    from libra.flows.cli.main import app

    seen = {}

    class Flow:
        @staticmethod
        def fn(config, warehouse=None, parent_run_id=None, *, epochs: float | None = None,
               bf16: bool | Literal["auto"] | None = None, files: str, skip_bad: bool = False):
            pass

        def __call__(self, config, warehouse, **options):
            seen.update(config=config, warehouse=warehouse, **options)
            return {"ok": True}

    monkeypatch.setattr(run, "stage_flows", lambda: {"fake": Flow()})
    monkeypatch.setattr(run.StageGroup, "_stages", None)
    try:
        out = CliRunner().invoke(app, ["run", "fake", "-c", "configs/demo.yaml", "--epochs", "2",
                                       "--bf16", "auto", "--files", "a.jsonl", "--skip-bad", "true"])
        assert out.exit_code == 0, out.output
        assert seen == {"config": "configs/demo.yaml", "warehouse": None, "epochs": 2.0, "bf16": "auto",
                        "files": "a.jsonl", "skip_bad": True}
        seen.clear()
        out = CliRunner().invoke(app, ["run", "fake", "-c", "configs/demo.yaml", "--bf16", "no", "--files", "b"])
        assert out.exit_code == 0 and seen == {"config": "configs/demo.yaml", "warehouse": None, "bf16": False,
                                               "files": "b"}  # skip_bad not given: the flow's default
        out = CliRunner().invoke(app, ["run", "fake", "-c", "configs/demo.yaml"])
        assert out.exit_code == 2 and "Missing option '--files'" in out.output
    finally:
        run.StageGroup._stages = None


def test_prefect_refuses_a_wrongly_typed_flow_parameter_and_coerces_strings():
    """Prefect validates flow parameters against the typed signature (what a deployment's string
    parameters go through before the flow body runs)."""
    from prefect.exceptions import ParameterTypeError

    from libra.flows.importing import import_flow
    from libra.flows.training import train_flow

    with pytest.raises(ParameterTypeError, match="epochs"):
        train_flow.validate_parameters({"config": "configs/demo.yaml", "epochs": "many"})
    with pytest.raises(ParameterTypeError, match="method"):
        train_flow.validate_parameters({"config": "configs/demo.yaml", "method": "qlora"})
    ok = train_flow.validate_parameters({"config": "configs/demo.yaml", "epochs": "2", "bf16": "auto",
                                         "max_steps": "5"})
    assert (ok["epochs"], ok["bf16"], ok["max_steps"]) == (2.0, "auto", 5)
    ok = import_flow.validate_parameters({"config": "c.yaml", "files": "a.jsonl", "spec": "jade_v2",
                                          "skip_bad": "true", "limit": "10"})
    assert (ok["skip_bad"], ok["limit"]) == (True, 10)


def test_sql_on_missing_warehouse_is_a_clear_error(tmp_path):
    out = libra("sql", "--warehouse", str(tmp_path / "none.duckdb"), "SELECT 1")
    assert out.returncode == 2
    assert "no warehouse here" in out.stderr
    assert not (tmp_path / "none.duckdb").exists()


def test_sql_formats_and_read_only(tmp_path):
    path = tmp_path / "w.duckdb"
    Warehouse(path)
    out = libra("sql", "--warehouse", str(path), "--format", "csv", "SELECT stage, n FROM v_stage_counts")
    assert out.returncode == 0 and out.stdout.splitlines()[0] == "stage,n"
    out = libra("sql", "--warehouse", str(path), "--format", "json", "SELECT 1 AS a")
    assert out.stdout.strip() == '{"a": 1}'
    out = libra("sql", "--warehouse", str(path), "DELETE FROM queries")
    assert out.returncode == 2 and "read-only" in out.stderr.lower()


def test_prefect_yaml_deploys_every_stage_on_a_cron_schedule():
    """prefect.yaml names real flow entrypoints, one per factory stage, each with a cron schedule."""
    from prefect.flows import load_flow_from_entrypoint

    from libra.flows.factory import STAGES

    with open("prefect.yaml", encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    names = set()
    for deployment in spec["deployments"]:
        assert deployment["schedules"][0]["cron"]
        names.add(load_flow_from_entrypoint(deployment["entrypoint"]).name)
    assert {"factory", *STAGES} <= names


def test_demo_hints_name_the_warehouse_the_user_gave_and_run_as_printed(tmp_path, monkeypatch):
    """The closing hints say `--warehouse W` with W as given (absolute, relative or ~), and each runs."""
    import contextlib
    import shlex

    from typer.testing import CliRunner

    from libra.flows import factory
    from libra.flows.cli.main import app
    from libra.tasks.llm import servers

    monkeypatch.setattr(servers, "start_server", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(factory, "factory_flow", lambda config, warehouse: Warehouse(warehouse))
    monkeypatch.chdir(tmp_path)
    for given in (str(tmp_path / "x.duckdb"), "rel.duckdb", "sub dir/y.duckdb"):
        (tmp_path / "sub dir").mkdir(exist_ok=True)
        out = CliRunner().invoke(app, ["demo", "--warehouse", given], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        hints = [line.strip() for line in out.output.splitlines() if line.strip().startswith("libra sql")]
        assert len(hints) == 3 and all(h.startswith(f"libra sql --warehouse {shlex.quote(given)} ") for h in hints)
        assert "demo.duckdb" not in out.output
        for hint in hints:
            ran = CliRunner().invoke(app, shlex.split(hint)[1:])
            assert ran.exit_code == 0, (hint, ran.output)


def test_a_flow_docstring_gives_its_options_their_help_and_the_command_the_rest():
    from libra.flows.cli.run import split_docstring

    doc = """Do the thing.

    More about it.

    guard: which guard,
        over two lines.
    limit: at most this many.

    nothing: not a parameter, so description."""
    description, docs = split_docstring(doc, ["guard", "limit"])
    assert docs == {"guard": "which guard, over two lines.", "limit": "at most this many."}
    assert description == "Do the thing.\n\nMore about it.\n\nnothing: not a parameter, so description."
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run(["libra", "run", "mine", "--help"], capture_output=True, text=True, env=env, timeout=120)
    guard = next(line for line in out.stdout.splitlines() if "--guard" in line)
    assert "training:latest" in guard and "[required]" in out.stdout
    assert "guard: training:latest" not in out.stdout  # the parameter line is the option's, not the description's
