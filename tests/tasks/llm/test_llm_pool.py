"""Unit tests of the LLM pool: retries and Retry-After, backoff, the breaker, the cache, rate limits.

The pool's real `openai.AsyncOpenAI` client talks HTTP to a scripted in-process ASGI app (httpx's ASGI
transport), so every status code and header goes through the client's own error mapping; waits are
recorded by a pool whose `_backoff` returns 0 after noting what it would have slept, and the rate
limiter runs on a fake clock, so no test depends on wall time.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from libra.tasks.core.config import Endpoint
from libra.tasks.llm import pool as llm_pool
from libra.tasks.llm.pool import LLMPool, LLMRequest, MemoryCallLog


class Scripted:
    """An OpenAI-compatible chat endpoint answering from a script of (status, headers, body) per request."""

    def __init__(self, script: list[tuple[int, dict[str, str], Any]] | None = None, default: tuple | None = None):
        self.script = list(script or [])
        self.default = default or (200, {}, None)
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak = 0
        self.clients_built = 0

    @staticmethod
    def completion(text: str, prompt_tokens: int = 7, completion_tokens: int = 3) -> dict[str, Any]:
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        request = json.loads(body)
        self.requests.append(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        status, headers, payload = self.script.pop(0) if self.script else self.default
        if payload is None:
            payload = self.completion("echo: " + request["messages"][-1]["content"])
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                *((k.encode(), v.encode()) for k, v in headers.items())]})
        await send({"type": "http.response.body", "body": raw})


class RecordingPool(LLMPool):
    """Notes every backoff delay the pool computed, then waits 0 s instead."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.waits: list[tuple[int, float | None, float]] = []

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        self.waits.append((attempt, retry_after, super()._backoff(attempt, retry_after)))
        return 0.0


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch):
    """Route every AsyncOpenAI client the pool builds to the given ASGI app."""

    def use(app: Scripted) -> Scripted:
        real = openai.AsyncOpenAI

        def client(**kw: Any) -> openai.AsyncOpenAI:
            app.clients_built += 1
            return real(**kw, http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=app)))

        monkeypatch.setattr(llm_pool.openai, "AsyncOpenAI", client)
        llm_pool.client_loop().drop_idle()  # clients kept from an earlier test route elsewhere
        return app

    yield use
    llm_pool.client_loop().drop_idle()


def _endpoint(**kw: Any) -> Endpoint:
    return Endpoint(**{"name": "ep", "base_url": "http://scripted/v1", "model": "m", "max_retries": 3,
                       "timeout_s": 5, **kw})


def _pool(*endpoints: Endpoint, log: MemoryCallLog | None = None) -> RecordingPool:
    return RecordingPool(list(endpoints), log or MemoryCallLog(), show_progress=False, rng=random.Random(0))


def test_429_is_retried_after_the_servers_retry_after(serve) -> None:
    app = serve(Scripted([(429, {"retry-after": "1.5"}, {"error": {"message": "slow down"}}),
                          (503, {"retry-after": "2"}, {"error": {"message": "busy"}})]))
    pool = _pool(_endpoint())
    [res] = pool.run([LLMRequest.chat("ep", "你好")])
    assert res.ok and res.text == "echo: 你好" and res.attempts == 3 and len(app.requests) == 3
    assert [(a, ra) for a, ra, _ in pool.waits] == [(0, 1.5), (1, 2.0)]
    assert all(delay >= ra for _, ra, delay in pool.waits)  # never earlier than the server asked
    stats = pool.stats["ep"]
    assert (stats.sent, stats.ok, stats.retries, stats.errors) == (3, 1, 2, {"HTTP 429": 1, "HTTP 503": 1})
    [row] = pool.call_log.rows
    assert row["status"] == "ok" and row["attempts"] == 3 and row["prompt_tokens"] == 7


def test_a_client_error_is_not_retried(serve) -> None:
    app = serve(Scripted(default=(400, {}, {"error": {"message": "bad request"}})))
    pool = _pool(_endpoint())
    [res] = pool.run([LLMRequest.chat("ep", "x")])
    assert not res.ok and res.error.startswith("HTTP 400") and res.attempts == 1 and len(app.requests) == 1
    assert pool.waits == [] and pool.call_log.rows[0]["status"] == "failed"


def test_a_malformed_body_and_empty_content_are_retried(serve) -> None:
    empty = Scripted.completion("x")
    empty["choices"][0]["message"]["content"] = None
    serve(Scripted([(200, {}, b"{not json"), (200, {}, empty)]))
    pool = _pool(_endpoint())
    [res] = pool.run([LLMRequest.chat("ep", "x")])
    assert res.ok and res.attempts == 3 and pool.stats["ep"].retries == 2


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    pool = LLMPool([_endpoint()], show_progress=False, backoff_base_s=0.25, backoff_cap_s=8.0, rng=random.Random(1))
    for attempt in range(8):
        nominal = min(8.0, 0.25 * 2**attempt)
        for _ in range(20):
            assert 0.5 * nominal <= pool._backoff(attempt, None) <= 1.5 * nominal
    assert pool._backoff(0, 5.0) >= 5.0
    assert pool._backoff(0, 3600.0) == pytest.approx(60.0)  # a server's Retry-After is honoured up to a minute


def test_the_breaker_declares_an_endpoint_down_and_the_rest_fail_fast(serve) -> None:
    app = serve(Scripted(default=(500, {}, {"error": {"message": "boom"}})))
    pool = _pool(_endpoint(max_retries=1, down_after_failures=2, max_concurrency=1))
    results = pool.run([LLMRequest.chat("ep", f"q{i}") for i in range(6)])
    assert not any(r.ok for r in results)
    stats = pool.stats["ep"]
    assert stats.down and "2 consecutive requests failed" in stats.down_reason
    # Every request's first try went out (one slot, taken in turn) before any had used up its retry;
    # then the first two failed for good, the breaker tripped, and no queued retry was sent.
    assert len(app.requests) == stats.sent == 6 + 2
    assert stats.failed == 6 and stats.skipped == 0 and stats.retries == 2
    assert [r.attempts for r in results] == [2, 2, 1, 1, 1, 1]
    assert all("is down" in r.error for r in results[2:])
    assert set(pool.down_endpoints()) == {"ep"}
    assert len(pool.call_log.rows) == 6  # every call that went to the network is logged, as failed
    late = pool.run([LLMRequest.chat("ep", "after")])  # the endpoint stays down for the run
    assert late[0].attempts == 0 and stats.skipped == 1 and len(app.requests) == 8


def test_a_success_resets_the_breakers_count(serve) -> None:
    fail = (500, {}, {"error": {"message": "boom"}})
    serve(Scripted([fail, (200, {}, None), fail, (200, {}, None), fail]))
    pool = _pool(_endpoint(max_retries=0, down_after_failures=2, max_concurrency=1))
    results = pool.run([LLMRequest.chat("ep", f"q{i}") for i in range(5)])
    assert [r.ok for r in results] == [False, True, False, True, False]
    assert not pool.stats["ep"].down


def test_a_cached_answer_is_never_paid_for_twice(serve) -> None:
    app = serve(Scripted())
    log = MemoryCallLog()
    first = _pool(_endpoint(), log=log).run([LLMRequest.chat("ep", "a"), LLMRequest.chat("ep", "a"),
                                             LLMRequest.chat("ep", "a", sample_index=1)])
    assert len(app.requests) == 2  # identical requests in one batch go out once; another sample is another call
    assert first[0].text == first[1].text
    again = _pool(_endpoint(), log=log)
    second = again.run([LLMRequest.chat("ep", "a"), LLMRequest.chat("ep", "a", sample_index=1)])
    assert len(app.requests) == 2 and all(r.cached and r.ok for r in second)
    assert again.stats["ep"].cached == 2 and again.stats["ep"].sent == 0
    # the key covers model, messages, sampling, template version and sample index
    keys = {again.call_key(r) for r in (LLMRequest.chat("ep", "a"), LLMRequest.chat("ep", "a", template_version="v2"),
                                        LLMRequest.chat("ep", "a", params={"temperature": 0.1}))}
    assert len(keys) == 3


def test_concurrency_never_exceeds_the_endpoints_cap(serve) -> None:
    app = serve(Scripted())
    pool = _pool(_endpoint(max_concurrency=3))
    results = pool.run([LLMRequest.chat("ep", f"q{i}") for i in range(30)])
    assert all(r.ok for r in results) and app.peak == 3


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock: when it would wait for a timer, the clock jumps to the timer
    at once. The rate limiter (aiolimiter schedules its wake-ups on the loop) is tested in virtual
    seconds, so no test depends on wall time."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        real, loop = self._selector, self  # type: ignore[has-type]

        class JumpingSelector:
            def select(self, timeout: float | None = None):  # noqa: ANN202
                if timeout:
                    loop.now += timeout
                return real.select(0)

            def __getattr__(self, name: str):  # noqa: ANN204
                return getattr(real, name)

        self._selector = JumpingSelector()

    def time(self) -> float:
        return self.now


@pytest.fixture
def loop() -> Iterator[VirtualTimeLoop]:
    virtual = VirtualTimeLoop()
    yield virtual
    virtual.close()


def test_requests_per_minute_allow_a_small_burst_then_the_rate(loop: VirtualTimeLoop) -> None:
    limiter = llm_pool._Limiter(rpm=120, tpm=None)

    def took(n: int) -> float:
        async def take() -> None:
            for _ in range(n):
                await limiter.acquire()
        started = loop.now
        loop.run_until_complete(take())
        return loop.now - started

    assert took(2) == 0  # the burst: one second's worth at once
    assert took(120) == pytest.approx(60.0, rel=0.01)  # then 120 a minute = 2 a second
    loop.now += 3600  # an idle hour refills the bucket to one second's worth, not to an hour's
    assert took(4) == pytest.approx(1.0, rel=0.01)


def test_requests_per_minute_hold_across_concurrent_callers(loop: VirtualTimeLoop) -> None:
    limiter = llm_pool._Limiter(rpm=60, tpm=None)
    sent: list[float] = []

    async def caller() -> None:
        for _ in range(10):
            await limiter.acquire()
            sent.append(loop.now)

    async def go() -> None:
        await asyncio.gather(*(caller() for _ in range(6)))

    loop.run_until_complete(go())
    assert len(sent) == 60
    for i, t in enumerate(sent):  # in any minute at most 60 (+ the one-request burst)
        assert sum(1 for u in sent[i:] if u < t + 60) <= 61
    assert sent[-1] - sent[0] == pytest.approx(59.0, abs=0.01)


def test_tokens_per_minute_make_the_next_request_wait_for_what_the_last_used(loop: VirtualTimeLoop) -> None:
    limiter = llm_pool._Limiter(rpm=None, tpm=1000)
    waits: list[float] = []

    async def go() -> None:
        for _ in range(4):
            started = loop.now
            await limiter.acquire()
            waits.append(loop.now - started)
            limiter.used(600)

    loop.run_until_complete(go())
    # the first answer's 600 fit the empty 1000-token bucket; the second's 600 fit once it drained 200
    # (1000 a minute: 12 s); every later 600 waits 36 s, 600 tokens at 1000 a minute
    assert waits[:2] == [0, 0] and waits[2] == pytest.approx(12.0, abs=0.01)
    assert waits[3] == pytest.approx(36.0, abs=0.01)


def test_tokens_per_minute_hold_over_a_long_run(loop: VirtualTimeLoop) -> None:
    limiter = llm_pool._Limiter(rpm=None, tpm=1000)

    async def go() -> None:
        for _ in range(100):
            await limiter.acquire()
            limiter.used(700)  # more than half the bucket: answers bigger than the rest of a minute
        await limiter.acquire()  # the last answer's tokens are paid too

    started = loop.now
    loop.run_until_complete(go())
    minutes = (loop.now - started) / 60
    # at most the bucket (1000) plus 1000 a minute went through
    assert 1000 + 1000 * minutes + 1e-6 >= 100 * 700
    assert minutes == pytest.approx((100 * 700 - 1000) / 1000, rel=0.01)


def test_a_response_larger_than_the_bucket_is_paid_in_parts(loop: VirtualTimeLoop) -> None:
    limiter = llm_pool._Limiter(rpm=None, tpm=1000)

    async def go() -> None:
        await limiter.acquire()
        limiter.used(2500)
        await limiter.acquire()

    started = loop.now
    loop.run_until_complete(go())
    assert loop.now - started == pytest.approx(90.0, abs=0.01)  # 2500 - 1000 of burst at 1000 a minute


def test_pools_run_one_after_another_reuse_one_client(serve) -> None:
    app = serve(Scripted())
    for text in ("a", "b", "c"):
        [res] = _pool(_endpoint()).run([LLMRequest.chat("ep", text)])
        assert res.text == f"echo: {text}"
    assert app.clients_built == 1  # kept on the process's ClientLoop, not rebuilt per batch


class Rendezvous(Scripted):
    """Answers nothing until requests of both pools ("x…" and "y…") have arrived: the pools overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.both = asyncio.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        messages = [await receive()]
        while messages[-1].get("more_body"):
            messages.append(await receive())

        async def replay() -> dict:
            return messages.pop(0)

        body = b"".join(m.get("body", b"") for m in messages)
        self.seen.add(json.loads(body)["messages"][-1]["content"][0])
        if self.seen >= {"x", "y"}:
            self.both.set()
        await asyncio.wait_for(self.both.wait(), 10)
        await super().__call__(scope, replay, send)


def test_pools_running_at_once_never_share_a_client(serve) -> None:
    import threading

    app = serve(Rendezvous())
    results = {}

    def batch(name: str) -> None:
        results[name] = _pool(_endpoint()).run([LLMRequest.chat("ep", f"{name}{i}") for i in range(20)])

    threads = [threading.Thread(target=batch, args=(n,)) for n in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.text for n in ("x", "y") for r in results[n]} == {f"echo: {n}{i}" for n in ("x", "y") for i in range(20)}
    assert app.clients_built == 2  # each pool checked out its own; both are kept for the next batches
    [again] = _pool(_endpoint()).run([LLMRequest.chat("ep", "z")])
    assert again.ok and app.clients_built == 2


def test_a_pool_awaited_on_its_own_loop_closes_its_clients(serve) -> None:
    app = serve(Scripted())
    for _ in range(2):
        [res] = asyncio.run(_pool(_endpoint()).arun([LLMRequest.chat("ep", "x")]))
        assert res.ok
    assert app.clients_built == 2  # not the process's loop: a client per call, closed at its end


def test_a_forked_child_starts_its_own_client_loop() -> None:
    import os

    parent = llm_pool.client_loop()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child inherits the object, not its thread
        ok = llm_pool.client_loop() is not parent and llm_pool.client_loop().run(asyncio.sleep(0, "ran")) == "ran"
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert llm_pool.client_loop() is parent
