"""The factory config: one YAML file, validated by pydantic before any work starts.

`load_config(path)` interpolates `${VAR}` / `${VAR:-default}` from the environment, validates, and on
failure raises `ConfigError` naming the file and the dotted key (e.g. `roles.judges`), so a nightly run
fails in its first second instead of after an hour of paid calls.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    # Unknown keys are typos far more often than intentions: reject them.
    model_config = ConfigDict(extra="forbid")


class Sampling(_Strict):
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    seed: int | None = None


class Endpoint(_Strict):
    """One OpenAI-compatible endpoint. The API key is never stored: only the env var's name."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    base_url: str
    model: str
    api_key_env: str | None = None
    max_concurrency: int = Field(16, ge=1, le=4096)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=50)
    # After this many consecutive requests that failed even after their retries, the endpoint is
    # declared down for the rest of the run and its remaining requests fail fast.
    down_after_failures: int = Field(10, ge=1)
    sampling: Sampling = Field(default_factory=Sampling)

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {v!r})")
        return v.rstrip("/")

    def api_key(self) -> str:
        # Local servers (the stub, vLLM) accept any key; the client still requires one.
        if self.api_key_env is None:
            return "EMPTY"
        value = os.environ.get(self.api_key_env)
        if not value:
            raise ConfigError(f"endpoint {self.name!r}: environment variable {self.api_key_env} is not set")
        return value


class Roles(_Strict):
    synthesizer: str
    responders: list[str] = Field(min_length=3)
    judges: list[str] = Field(min_length=2)
    adjudicator: str | None = None

    @field_validator("responders", "judges")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("names must be distinct")
        return v


class Sizes(_Strict):
    queries_per_call: int = Field(10, ge=1, le=100)
    calls_per_subcategory: int = Field(1, ge=0)
    # Benign look-alike calls per harmful call (0.25 = one benign batch for every four harmful ones).
    benign_ratio: float = Field(0.25, ge=0, le=10)
    # Share of kept seed queries that get one jailbreak/rewrite child per augmentation run.
    augment_fraction: float = Field(0.25, ge=0, le=1)
    augment_methods: list[str] = Field(
        default_factory=lambda: ["rewrite", "role_play", "hypothetical", "prefix_injection"]
    )
    samples_per_responder: int = Field(1, ge=1, le=16)
    # Rows per Prefect task: the unit of retry and of progress; the pool drives it concurrently.
    batch_size: int = Field(500, ge=1)


class Dedup(_Strict):
    shingle: Literal["char", "word"] = "char"
    ngram: int = Field(5, ge=1, le=20)
    num_perm: int = Field(128, ge=16, le=1024)
    threshold: float = Field(0.7, gt=0, lt=1)


class Split(_Strict):
    seed: int = 0
    eval_fraction: float = Field(0.1, ge=0, lt=1)


class Vote(_Strict):
    # Status rules of the majority vote (see warehouse/views/20_votes.sql).
    min_margin: float = Field(0.6, ge=0, le=1)
    max_abstentions: int = Field(0, ge=0)


class FactoryConfig(_Strict):
    name: str = "libra-factory"
    warehouse: str = "libra.duckdb"
    taxonomy: str = "taxonomy.yaml"
    export_dir: str = "exports"
    endpoints: list[Endpoint] = Field(min_length=1)
    roles: Roles
    sizes: Sizes = Field(default_factory=Sizes)
    dedup: Dedup = Field(default_factory=Dedup)
    split: Split = Field(default_factory=Split)
    vote: Vote = Field(default_factory=Vote)
    # Where the file came from: relative paths in the config resolve against its folder.
    source_path: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _roles_name_endpoints(self) -> FactoryConfig:
        names = [e.name for e in self.endpoints]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"endpoints: duplicate names {sorted(dupes)}")
        known = set(names)
        roles = self.roles
        for key, value in (("synthesizer", roles.synthesizer), ("adjudicator", roles.adjudicator)):
            if value is not None and value not in known:
                raise ValueError(f"roles.{key}: unknown endpoint {value!r} (known: {sorted(known)})")
        for key in ("responders", "judges"):
            for i, value in enumerate(getattr(roles, key)):
                if value not in known:
                    raise ValueError(f"roles.{key}.{i}: unknown endpoint {value!r} (known: {sorted(known)})")
        return self

    def endpoint(self, name: str) -> Endpoint:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)

    def resolve(self, path: str) -> Path:
        """A path from the config: absolute, or relative to the config file's folder."""
        p = Path(path).expanduser()
        if p.is_absolute() or self.source_path is None:
            return p
        return Path(self.source_path).parent / p

    def public_dict(self) -> dict[str, Any]:
        """The config as stored in `runs`: no secrets exist in it (keys are env var names)."""
        return self.model_dump(mode="json")


def interpolate_env(text: str, source: str) -> str:
    """Replace ${VAR} and ${VAR:-default}; an unset variable without default is an error."""

    def sub(m: re.Match[str]) -> str:
        var, default = m.group(1), m.group(2)
        value = os.environ.get(var)
        if value is None or value == "":
            if default is None:
                line = text.count("\n", 0, m.start()) + 1
                raise ConfigError(f"{source}:{line}: environment variable {var} is not set (no default)")
            return default
        return value

    return _ENV_REF.sub(sub, text)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def parse_config(text: str, source: str = "<config>") -> FactoryConfig:
    try:
        data = yaml.safe_load(interpolate_env(text, source))
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        cfg = FactoryConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"{source}: invalid config"]
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  key {_dotted(err['loc'])}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    return cfg


def load_config(path: str | Path) -> FactoryConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    cfg = parse_config(text, str(path))
    cfg.source_path = str(path.resolve())
    return cfg
