"""Start `zoo serve` in a subprocess and wait until /health answers: time-to-ready and RSS.

Shared by tools/bench_serve.py, tools/bench_serve_startup.py and tools/check_base_install.py. Stdlib only, so it runs
under any interpreter (a TF-free venv included).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MB (Linux /proc)."""
    total_kb = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()  # noqa: SIM115
        pids += [int(child) for child in children]
    for each in pids:
        with contextlib.suppress(OSError), open(f"/proc/{each}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        return response.status, response.read()


def post_json(url: str, payload: dict, timeout: float = 30.0) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback)
        return response.status, json.loads(response.read())


@contextlib.contextmanager
def serving(zoo_command: list[str], artifact: str, timeout: float = 60.0, env=None, cwd=None,
            extra=()):
    """Run `ZOO serve ARTIFACT [EXTRA...]` on a free loopback port; yields (base url, process,
    seconds to the first 200 from /health). Stops the server on exit."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [*zoo_command, "serve", str(artifact), "--host", "127.0.0.1", "--port", str(port),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"zoo serve exited with {process.returncode}: {process.stderr.read()[-2000:]}"
                )
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"zoo serve did not answer /health within {timeout} s")
            with contextlib.suppress(OSError):
                if get(url + "/health", timeout=1.0)[0] == 200:
                    break
            time.sleep(0.02)
        yield url, process, time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
