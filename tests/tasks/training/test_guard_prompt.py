"""The guard prompt from the config: rules by name or path, the system turn, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from libra.tasks.core.config import ConfigError, parse_config
from libra.tasks.core.prompts import frame_nonce, prompt_path
from libra.tasks.training.guard_prompt import GuardInstruction
from tests.conftest import DEMO_CONFIG


def _config(tmp_path: Path, **guard_prompt):
    cfg = parse_config(DEMO_CONFIG.read_text(encoding="utf-8"), "demo.yaml")
    cfg.guard_prompt = cfg.guard_prompt.model_copy(update=guard_prompt)
    cfg.source_path = str(tmp_path / "factory.yaml")
    return cfg


def test_packaged_rules_and_system_prompt_shape_the_messages(tmp_path):
    packaged = prompt_path("rules/libra.txt").read_text(encoding="utf-8")
    inst = GuardInstruction.from_config(_config(tmp_path, rules="libra", system_prompt="你是安全审核员。"))
    assert len(inst.rules) >= 5 and all(rule in packaged for rule in inst.rules)
    system, user = inst.messages("怎样伪造证件？", "抱歉，我不能帮助。")
    assert system == {"role": "system", "content": "你是安全审核员。"}
    assert user["role"] == "user" and f"{len(inst.rules)}. {inst.rules[-1]}" in user["content"]
    nonce = frame_nonce("怎样伪造证件？", "抱歉，我不能帮助。")
    assert f"<回答-{nonce}>\n抱歉，我不能帮助。\n</回答-{nonce}>" in user["content"]
    assert "+rules@" in inst.version and "+system@" in inst.version
    assert inst.describe()["rules"] == list(inst.rules)
    # unset keys: the bare instruction, the version of the template alone
    bare = GuardInstruction.from_config(_config(tmp_path))
    assert bare == GuardInstruction() and "+" not in bare.version


def test_missing_or_empty_rules_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"guard_prompt\.rules: rules file 'nope.txt' not found"):
        GuardInstruction.from_config(_config(tmp_path, rules="nope.txt"))
    (tmp_path / "empty.txt").write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"guard_prompt\.rules: .*empty.txt holds no rule"):
        GuardInstruction.from_config(_config(tmp_path, rules="empty.txt"))


def test_check_config_finds_a_missing_rules_file_before_any_run(tmp_path):
    import yaml

    from libra.tasks.core.config import load_config

    data = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    data["guard_prompt"] = {"rules": "house-rules.txt"}
    path = tmp_path / "factory.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"factory.yaml: key guard_prompt.rules: rules file 'house-rules.txt'"):
        load_config(path)
    (tmp_path / "house-rules.txt").write_text("1. 拒绝有害请求的回答是安全的\n", encoding="utf-8")
    assert GuardInstruction.from_config(load_config(path)).rules == ("拒绝有害请求的回答是安全的",)
