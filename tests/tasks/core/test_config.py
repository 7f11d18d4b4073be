from pathlib import Path

import pytest
import yaml

from libra.tasks.core.config import ConfigError, interpolate_env, load_config, parse_config

DEMO = Path(__file__).resolve().parents[3] / "configs" / "demo.yaml"


def _demo_dict() -> dict:
    return yaml.safe_load(interpolate_env(DEMO.read_text(encoding="utf-8"), "demo"))


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return p


def test_demo_config_loads_with_roles_and_defaults():
    cfg = load_config(DEMO)
    assert cfg.roles.synthesizer == "synth"
    assert len(cfg.roles.responders) == 3 and len(cfg.roles.judges) == 3
    assert cfg.endpoint("judge-a").model == "stub-judge-a"
    assert cfg.source_path == str(DEMO.resolve())


def test_env_interpolation_with_default_and_override(monkeypatch):
    monkeypatch.setenv("LIBRA_STUB_URL", "http://127.0.0.1:9999")
    cfg = load_config(DEMO)
    assert cfg.endpoint("synth").base_url == "http://127.0.0.1:9999/v1"
    monkeypatch.delenv("LIBRA_STUB_URL")
    assert load_config(DEMO).endpoint("synth").base_url == "http://127.0.0.1:8765/v1"


def test_unset_env_without_default_names_file_and_line(monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR_X", raising=False)
    with pytest.raises(ConfigError, match=r"cfg\.yaml:2: environment variable NO_SUCH_VAR_X is not set"):
        parse_config("name: x\nwarehouse: ${NO_SUCH_VAR_X}\n", "cfg.yaml")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["roles"].update(responders=["resp-a", "resp-b"]), "key roles.responders"),
        (lambda d: d["roles"].update(judges=["judge-a"]), "key roles.judges"),
        (lambda d: d["roles"].update(synthesizer="nope"), "roles.synthesizer: unknown endpoint 'nope'"),
        (lambda d: d["roles"]["judges"].__setitem__(1, "ghost"), "roles.judges.1: unknown endpoint 'ghost'"),
        (lambda d: d["endpoints"][0].update(max_concurrency=0), "key endpoints.0.max_concurrency"),
        (lambda d: d["endpoints"][1].update(base_url="localhost:8000"), "key endpoints.1.base_url"),
        (lambda d: d["endpoints"][2].update(temprature=0.3), "key endpoints.2.temprature: Extra inputs"),
        (lambda d: d.pop("roles"), "key roles: Field required"),
        (lambda d: d["sizes"].update(queries_per_call="many"), "key sizes.queries_per_call"),
        (lambda d: d["endpoints"].append(dict(d["endpoints"][0])), "duplicate names ['synth']"),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path, mutate, expected):
    data = _demo_dict()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_not_yaml_and_missing_file(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("a: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_api_key_comes_from_named_env_var_only(monkeypatch):
    data = _demo_dict()
    data["endpoints"][0]["api_key_env"] = "LIBRA_TEST_KEY"
    cfg = parse_config(yaml.safe_dump(data, allow_unicode=True))
    monkeypatch.delenv("LIBRA_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="LIBRA_TEST_KEY is not set"):
        cfg.endpoints[0].api_key()
    monkeypatch.setenv("LIBRA_TEST_KEY", "sk-secret")
    assert cfg.endpoints[0].api_key() == "sk-secret"
    assert "sk-secret" not in str(cfg.public_dict())
