"""Run the stub LLM server: ``python -m libra.stubllm --port 8900``.

Prints ``stubllm ready on http://HOST:PORT`` (the real port, so ``--port 0`` works) once it
accepts connections, and exits with status 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Iterator

import uvicorn

from libra.stubllm.server import FaultConfig, StubApp


def build_parser() -> argparse.ArgumentParser:
    d = FaultConfig()
    parser = argparse.ArgumentParser(
        prog="python -m libra.stubllm",
        description="Stub OpenAI-compatible chat-completions server with scripted models "
        "(stub-synth, stub-resp-a/b/c, stub-judge-a/b/c/d/e, stub-guard, stub-echo*) and fault injection. "
        "A test double: faults can also be changed at runtime with POST /admin/faults.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8900, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument("--latency-ms", type=float, default=d.latency_ms, help="base latency per completion")
    parser.add_argument("--jitter-ms", type=float, default=d.jitter_ms, help="latency varies by ± up to this")
    parser.add_argument("--fault-429", type=float, default=d.fault_429, help="probability of a 429 reply")
    parser.add_argument("--fault-500", type=float, default=d.fault_500, help="probability of a 500 reply")
    parser.add_argument(
        "--fault-timeout",
        type=float,
        default=d.fault_timeout,
        help="probability that a request stalls for --timeout-sleep-s",
    )
    parser.add_argument(
        "--timeout-sleep-s",
        type=float,
        default=d.timeout_sleep_s,
        help="how long a stalled request sleeps (default: %(default)s)",
    )
    parser.add_argument(
        "--fault-broken-json",
        type=float,
        default=d.fault_broken_json,
        help="probability of a 200 reply whose JSON body is cut mid-object",
    )
    parser.add_argument(
        "--retry-after-s",
        type=float,
        default=d.retry_after_s,
        help="Retry-After seconds sent with 429 replies (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault/latency random generator")
    return parser


def config_from_args(args: argparse.Namespace) -> FaultConfig:
    keys = (
        "latency_ms",
        "jitter_ms",
        "fault_429",
        "fault_500",
        "fault_timeout",
        "timeout_sleep_s",
        "fault_broken_json",
        "retry_after_s",
    )
    return FaultConfig().updated({k: getattr(args, k) for k in keys})


class _Server(uvicorn.Server):
    """uvicorn.Server whose signals we handle: its own handler re-raises SIGTERM after shutdown,
    which would end the process with -15 instead of a clean 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn: a busy port becomes a one-line error, and the real port of
    ``--port 0`` is known up front."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and without it every reply (headers and body are two writes) waits ~40 ms
    # for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def _serve(server: _Server, app: StubApp, sock: socket.socket, host: str) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        server.force_exit = server.should_exit  # a second signal skips the graceful wait
        server.should_exit = True
        app.release_stalls()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(f"stubllm ready on http://{host}:{sock.getsockname()[1]}", flush=True)
    await task


def main(argv: list[str] | None = None) -> int:
    # Until the event loop takes over, a SIGTERM still means "exit cleanly".
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fault_config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"stubllm: cannot bind {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    app = StubApp(fault_config, seed=args.seed)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",
        loop="asyncio",
        timeout_graceful_shutdown=2,  # last resort; stalled requests are released on stop anyway
        backlog=4096,
    )
    server = _Server(config)
    with sock:
        asyncio.run(_serve(server, app, sock, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
