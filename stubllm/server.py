"""The stub server's ASGI app: OpenAI chat completions plus fault injection.

A raw ASGI app rather than a Starlette one: the stub must outrun the client that measures the
product's LLM pool (≈500 req/s on two cores), and a router plus Request/Response objects per call
cost a noticeable share of that on the same cores. There are only a handful of routes.

Faults are drawn per request from one seeded ``random.Random``: the sequence is reproducible for
a given seed, yet a retry of the same request draws again and can succeed, like a real endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

from libra.stubllm import behaviours

Scope = dict[str, Any]
Headers = list[tuple[bytes, bytes]]
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
PROBABILITY_KEYS = ("fault_429", "fault_500", "fault_timeout", "fault_broken_json")


@dataclass(frozen=True)
class FaultConfig:
    """Latency and fault knobs; probabilities are per request, in [0, 1]."""

    latency_ms: float = 20.0
    jitter_ms: float = 0.0  # each reply waits latency_ms ± a uniform draw of up to jitter_ms
    fault_429: float = 0.0
    fault_500: float = 0.0
    fault_timeout: float = 0.0
    timeout_sleep_s: float = 30.0  # a "timeout" stalls this long (or until the client hangs up)
    fault_broken_json: float = 0.0
    retry_after_s: float = 0.2  # sent as Retry-After with every injected 429

    def updated(self, changes: dict[str, Any], where: str = "") -> FaultConfig:
        """A copy with `changes` applied; raises ValueError naming a bad key or value."""
        names = {f.name for f in fields(self)}
        clean: dict[str, float] = {}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown fault setting {where}{key!r}; allowed: {sorted(names)}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{where}{key} must be a non-negative number, got {value!r}")
            if key in PROBABILITY_KEYS and value > 1:
                raise ValueError(f"{where}{key} is a probability, got {value!r}")
            clean[key] = float(value)
        return dataclasses.replace(self, **clean)


class StubState:
    """Mutable server state: fault config (global and per model), RNG, counters."""

    def __init__(self, config: FaultConfig, seed: int = 0) -> None:
        self.initial_config = config
        self.config = config
        self.model_overrides: dict[str, dict[str, float]] = {}
        self.initial_seed = self.seed = seed
        self.rng = random.Random(seed)
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter({k: 0 for k in ("429", "500", "timeout", "broken_json")})
        self.errors: Counter[str] = Counter()
        # Requests being answered now, and the most ever at once, per model: an endpoint's concurrency
        # limit holds across every client process only if the peak never passes it (tests/flows/test_ray.py).
        self.in_flight: Counter[str] = Counter()
        self.peak_in_flight: Counter[str] = Counter()
        self.ids = itertools.count(1)

    def config_for(self, model: str) -> FaultConfig:
        overrides = self.model_overrides.get(model)
        return self.config.updated(overrides) if overrides else self.config

    def apply(self, body: dict[str, Any]) -> None:
        """Apply an /admin/faults body; all-or-nothing, so a bad key changes nothing.

        ``"reset": true`` first restores the start-up settings (fault knobs and seed, so the fault
        draws restart) and drops per-model overrides.
        """
        reset = body.get("reset", False)
        if not isinstance(reset, bool):
            raise ValueError(f"reset must be true or false, got {reset!r}")
        base_config = self.initial_config if reset else self.config
        changes = {k: v for k, v in body.items() if k not in ("models", "seed", "reset")}
        new_config = base_config.updated(changes)
        new_overrides = {} if reset else self.model_overrides
        if "models" in body:  # replaces the whole per-model map: {"models": {}} clears it
            new_overrides = self._parse_overrides(body["models"])
        seed = body.get("seed", self.initial_seed if reset else None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.config, self.model_overrides = new_config, new_overrides
        if seed is not None:
            self.seed, self.rng = seed, random.Random(seed)

    @staticmethod
    def _parse_overrides(models: Any) -> dict[str, dict[str, float]]:
        if not isinstance(models, dict):
            raise ValueError("models must be an object {model: {setting: value}}")
        overrides: dict[str, dict[str, float]] = {}
        for model, settings in models.items():
            if settings is None:  # null: no overrides for this model
                continue
            if not isinstance(settings, dict):
                raise ValueError(f"models.{model} must be an object or null")
            FaultConfig().updated(settings, where=f"models.{model}.")  # validates keys and values
            overrides[model] = dict(settings)
        return overrides

    def describe(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.config),
            "seed": self.seed,
            "models": {m: dataclasses.asdict(self.config_for(m)) for m in sorted(self.model_overrides)},
        }

    def stats(self) -> dict[str, Any]:
        return {
            "requests_total": sum(self.requests.values()),
            "requests": dict(self.requests),
            "faults": dict(self.faults),
            "errors": dict(self.errors),
            "peak_concurrency": dict(self.peak_in_flight),
        }

    def reset_stats(self) -> None:
        self.requests.clear()
        self.errors.clear()
        # requests still being answered stay counted: the new peak starts from them
        self.peak_in_flight = Counter({m: n for m, n in self.in_flight.items() if n})
        for kind in self.faults:
            self.faults[kind] = 0

    def draw_fault(self, cfg: FaultConfig) -> str | None:
        """Which fault (if any) this request gets; only knobs that are on consume draws."""
        for kind, p in (
            ("429", cfg.fault_429),
            ("500", cfg.fault_500),
            ("timeout", cfg.fault_timeout),
            ("broken_json", cfg.fault_broken_json),
        ):
            if p > 0 and self.rng.random() < p:
                return kind
        return None

    def latency_s(self, cfg: FaultConfig) -> float:
        jitter = self.rng.uniform(-cfg.jitter_ms, cfg.jitter_ms) if cfg.jitter_ms > 0 else 0.0
        return max(0.0, cfg.latency_ms + jitter) / 1000.0


# ---------------------------------------------------------------------------------------------
# HTTP helpers


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def openai_error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


async def send_bytes(send: Any, status: int, body: bytes, headers: Headers = JSON_HEADERS) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Any, status: int, obj: Any, headers: Headers = JSON_HEADERS) -> None:
    await send_bytes(send, status, _dumps(obj), headers)


async def read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def stall(receive: Any, seconds: float, release: asyncio.Event) -> None:
    """Stall like a hung upstream, but stop as soon as the client hangs up or the server stops
    (so a shutdown never waits for, or cancels, a stalled request)."""
    hangup = asyncio.ensure_future(receive())  # after the body, receive() returns only on disconnect
    stopping = asyncio.ensure_future(release.wait())
    try:
        await asyncio.wait({hangup, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hangup.cancel()
        stopping.cancel()


def estimate_tokens(text: str) -> int:
    """Rough token count: one per CJK character, one per four other characters."""
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    return cjk + (len(text) - cjk + 3) // 4


def truncated_json(full: bytes) -> bytes:
    """A body cut mid-object, a few characters into the message content (broken-JSON fault)."""
    text = full.decode("utf-8")
    marker = '"content":"'
    at = text.find(marker)
    cut = at + len(marker) + 3 if at >= 0 else len(text) // 2
    return text[:cut].encode("utf-8")


# ---------------------------------------------------------------------------------------------
# The app


class StubApp:
    """ASGI app serving the stub models; one instance per server process."""

    def __init__(self, config: FaultConfig | None = None, seed: int = 0) -> None:
        self.state = StubState(config or FaultConfig(), seed)
        self.stalls_released = asyncio.Event()

    def release_stalls(self) -> None:
        """End every stalled ("timeout") request now; called when the server is stopping."""
        self.stalls_released.set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        route = (scope["method"], scope["path"].rstrip("/") or "/")
        if route == ("POST", "/v1/chat/completions"):
            await self.chat_completions(receive, send)
        elif route == ("GET", "/health"):
            await send_json(send, 200, {"status": "ok"})
        elif route == ("GET", "/v1/models"):
            await send_json(send, 200, self.models())
        elif route == ("GET", "/admin/stats"):
            await send_json(send, 200, self.state.stats())
        elif route == ("DELETE", "/admin/stats"):
            self.state.reset_stats()
            await send_json(send, 200, self.state.stats())
        elif route == ("GET", "/admin/faults"):
            await send_json(send, 200, self.state.describe())
        elif route == ("POST", "/admin/faults"):
            await self.set_faults(receive, send)
        else:
            await send_json(
                send,
                404,
                openai_error(f"no route {route[0]} {route[1]}", "invalid_request_error", "not_found"),
            )

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "stubllm"} for m in behaviours.MODELS
            ],
        }

    async def set_faults(self, receive: Any, send: Any) -> None:
        try:
            body = json.loads(await read_body(receive) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            self.state.apply(body)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            await send_json(
                send, 400, openai_error(str(exc), "invalid_request_error", "invalid_fault_config")
            )
            return
        await send_json(send, 200, self.state.describe())

    async def _reject(self, send: Any, status: int, message: str, code: str) -> None:
        self.state.errors[str(status)] += 1
        await send_json(send, status, openai_error(message, "invalid_request_error", code))

    async def chat_completions(self, receive: Any, send: Any) -> None:
        raw = await read_body(receive)
        try:
            body = json.loads(raw)
        except ValueError:
            await self._reject(send, 400, "request body is not valid JSON", "invalid_json")
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            await self._reject(send, 400, "'messages' must be a list", "invalid_request")
            return
        model = str(body.get("model", ""))
        if not behaviours.is_known_model(model):
            await self._reject(send, 404, f"The model `{model}` does not exist", "model_not_found")
            return
        if body.get("stream"):
            await self._reject(send, 400, "stream=true is not supported by stubllm", "stream_not_supported")
            return
        state = self.state
        state.requests[model] += 1
        state.in_flight[model] += 1
        state.peak_in_flight[model] = max(state.peak_in_flight[model], state.in_flight[model])
        try:
            await self._answer(model, body, receive, send)
        finally:
            state.in_flight[model] -= 1

    async def _answer(self, model: str, body: dict[str, Any], receive: Any, send: Any) -> None:
        state = self.state
        cfg = state.config_for(model)
        fault = state.draw_fault(cfg)
        if fault:
            state.faults[fault] += 1
        if fault == "429":  # a rate limiter answers at once, before any work
            retry = f"{cfg.retry_after_s:g}".encode()
            headers = [
                *JSON_HEADERS,
                (b"retry-after", retry),
                (b"retry-after-ms", f"{cfg.retry_after_s * 1000:g}".encode()),
            ]
            await send_json(
                send,
                429,
                openai_error("Rate limit reached (injected by stubllm)", "requests", "rate_limit_exceeded"),
                headers,
            )
            return
        if fault == "timeout":
            await stall(receive, cfg.timeout_sleep_s, self.stalls_released)
        else:
            delay = state.latency_s(cfg)
            if delay > 0:
                await asyncio.sleep(delay)
        if fault == "500":
            await send_json(
                send,
                500,
                openai_error(
                    "The server had an error while processing your request (injected by stubllm)",
                    "server_error",
                    None,
                ),
            )
            return
        payload = _dumps(self.completion(model, body))
        await send_bytes(send, 200, truncated_json(payload) if fault == "broken_json" else payload)

    def completion(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        n = body.get("n", 1)
        n = min(n, 16) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        contents = [behaviours.complete(model, messages, behaviours.request_salt(body, i)) for i in range(n)]
        prompt_tokens = sum(
            estimate_tokens(behaviours.message_text(m)) for m in messages if isinstance(m, dict)
        )
        completion_tokens = sum(estimate_tokens(c) for c in contents)
        return {
            "id": f"chatcmpl-stub{next(self.state.ids):08x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
                for i, c in enumerate(contents)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def create_app(config: FaultConfig | None = None, seed: int = 0) -> StubApp:
    return StubApp(config, seed)
