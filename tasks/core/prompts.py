"""Prompt templates: Chinese text files under prompts/, rendered with jinja2, versioned by content hash.

Untrusted data (queries, responses, judge analyses) is placed inside tags that carry a nonce derived
from that very data: `<回答-3f9a…>…</回答-3f9a…>`. A response cannot close its frame, because it would
have to contain the hash of itself.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from libra.tasks.core.ids import content_hash

if TYPE_CHECKING:
    from libra.tasks.core.config import FactoryConfig

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @functools.cached_property
    def version(self) -> str:
        """Content hash of the template text: stored with every row the template produced."""
        return self.name.removesuffix(".txt") + "@" + hashlib.sha256(self.text.encode()).hexdigest()[:12]

    @functools.cached_property
    def compiled(self) -> jinja2.Template:
        return _ENV.from_string(self.text)

    def render(self, **values: Any) -> str:
        return self.compiled.render(**values).strip()


def prompt_path(name: str) -> Path:
    return Path(str(resources.files("libra.prompts").joinpath(name)))


@functools.cache
def load_template(name: str) -> Template:
    path = prompt_path(name)
    if not path.exists():
        raise FileNotFoundError(f"prompt template {name!r} not found under {path.parent}")
    return Template(name=name, text=path.read_text(encoding="utf-8"))


_RULE_NUMBER = re.compile(r"^\s*(?:\d+\s*[.、．)）:：]|[（(]\d+[)）]|[-*•])\s*")


def read_rules(path: Path) -> list[str]:
    """Rules, one a line; `#` comments and blank lines skipped, any numbering stripped (the prompt numbers)."""
    rules = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        rules.append(_RULE_NUMBER.sub("", text).strip())
    return [r for r in rules if r]


def load_rules(cfg: FactoryConfig, key: str) -> tuple[str, ...]:
    """The numbered rules a config key names (`judging.rules`, `guard_prompt.rules`): a path relative to
    the config, or a name under prompts/rules/ (`libra` = prompts/rules/libra.txt). Unset = no rules."""
    from libra.tasks.core.config import ConfigError

    section, field = key.split(".")
    spec = getattr(getattr(cfg, section), field)
    if not spec:
        return ()
    where = cfg.source_path or "<config>"
    candidates = [cfg.resolve(spec), prompt_path(f"rules/{spec}"), prompt_path(f"rules/{spec}.txt")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ConfigError(f"{where}: key {key}: rules file {spec!r} not found "
                          f"(looked at {', '.join(str(p) for p in candidates)})")
    rules = tuple(read_rules(path))
    if not rules:
        raise ConfigError(f"{where}: key {key}: {path} holds no rule")
    return rules


def frame_nonce(*data: str) -> str:
    return content_hash(*data, length=12)


@dataclass(frozen=True)
class Taxonomy:
    scenarios: list[dict[str, Any]]
    task_types: list[str]
    regions: list[str]
    version: str

    @property
    def scenario_names(self) -> list[str]:
        return [s["name"] for s in self.scenarios]

    def subcategories(self) -> list[tuple[str, str]]:
        """(scenario, subcategory) pairs in file order."""
        return [(s["name"], sub["name"]) for s in self.scenarios for sub in s["subcategories"]]


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """The taxonomy file; a bare name is looked up next to the prompts when not found as a path."""
    p = Path(path) if path else prompt_path("taxonomy.yaml")
    if not p.exists():
        fallback = prompt_path(p.name)
        if not fallback.exists():
            raise FileNotFoundError(f"taxonomy file not found: {p}")
        p = fallback
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    for i, s in enumerate(data.get("scenarios", [])):
        if not s.get("name") or not s.get("subcategories"):
            raise ValueError(f"{p}: scenarios.{i} needs a name and subcategories")
    return Taxonomy(
        scenarios=data["scenarios"],
        task_types=[t["name"] if isinstance(t, dict) else t for t in data.get("task_types", [])] or ["操作指南"],
        regions=list(data.get("regions", [])) or ["中国大陆"],
        version=str(data.get("version", "")) + "@" + hashlib.sha256(p.read_bytes()).hexdigest()[:12],
    )
