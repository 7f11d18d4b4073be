import os
import signal
import subprocess
import sys
import time

import httpx

from libra.tasks.llm.servers import free_port, start_server

STARTER = """
import sys, time
from libra.tasks.llm.servers import start_server, free_port
port = free_port()
server = start_server([sys.executable, "-m", "libra.stubllm", "--port", str(port)], f"http://127.0.0.1:{port}")
print(server.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_server_is_stopped_by_its_pid(tmp_path):
    port = free_port()
    server = start_server([sys.executable, "-m", "libra.stubllm", "--port", str(port)], f"http://127.0.0.1:{port}",
                          log_path=tmp_path / "stub.log")
    assert httpx.get(server.url + "/health").status_code == 200
    server.stop()
    assert not _alive(server.pid)


def test_server_does_not_outlive_a_killed_parent():
    """A test run or `libra demo` killed with SIGKILL must not leave its stub running."""
    parent = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 15
    while _alive(child) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(child)
