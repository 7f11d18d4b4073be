"""Processes the factory starts and must stop: the stub LLM server for the demo, managed vLLM servers.

A server is started in its own process group, waited for on a health URL, and stopped by its own
process id (SIGTERM, then SIGKILL), so nothing is left running when a command or test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when its parent dies, so a server outlives
    neither a killed test run nor a killed `libra` command (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    cmd: list[str], url: str, *, health_path: str = "/health", timeout_s: float = 60.0,
    log_path: Path | None = None, env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start `cmd`, wait until GET url+health_path answers 200, or stop it and raise with its log tail."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent,
        )
    finally:
        if log is not subprocess.DEVNULL:
            log.close()  # the child holds its own descriptor
    server = ServerProcess(proc, url, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url + health_path, timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    tail = ""
    if log_path and log_path.exists():
        tail = "\n" + log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"server {' '.join(cmd[:4])}… did not become healthy at {url} within {timeout_s:.0f}s{tail}")
