import subprocess

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
    assert "flow 'train' has no option --learnig-rate" in out.stderr and "--learning-rate" in out.stderr
    assert not (tmp_path / "w.duckdb").exists()
    out = libra("run", "dedup", "--config", "configs/demo.yaml", "--warehouse", str(tmp_path / "w.duckdb"),
                "--guard", "x")
    assert out.returncode == 2 and "(its options: none)" in out.stderr


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
