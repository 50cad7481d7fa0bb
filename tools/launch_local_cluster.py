#!/usr/bin/env python3
"""Run one command as N TensorFlow workers on this machine: a local MultiWorkerMirroredStrategy.

    python tools/launch_local_cluster.py 2 -- zoo train gan --dataset digits --strategy multi_worker

Starts N copies of the command, each with TF_CONFIG naming a cluster of N workers on 127.0.0.1
(free ports picked here) and its own task index; worker 0 is the chief. Their output is streamed
with a "[worker i]" prefix. When one worker fails, the others are stopped (a collective would wait
for it forever) and the launcher exits with that worker's status; a timeout or Ctrl-C stops them
all too. Exit status 0 only when every worker exited 0.

The same command runs on a real cluster when the cluster manager sets TF_CONFIG on each machine
(see README, "Several machines, mixed precision and XLA"). Imports nothing but the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

EXIT_TIMEOUT = 124
STOP_GRACE_S = 5.0


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports the OS reports free right now (held open together, so never the same)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(addresses: list[str], index: int) -> str:
    return json.dumps(
        {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
    )


def _stream(process: subprocess.Popen, prefix: str, out) -> None:
    for line in iter(process.stdout.readline, b""):
        out.write(prefix + line.decode(errors="replace"))
        out.flush()
    process.stdout.close()


def stop(processes: list[subprocess.Popen], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM every live worker's process group, SIGKILL what is left after `grace` seconds."""
    live = [p for p in processes if p.poll() is None]
    for p in live:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.wait()


def _signal_group(process: subprocess.Popen, sig) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def launch(
    workers: int,
    command: list[str],
    host: str = "127.0.0.1",
    timeout: float | None = None,
    out=None,
) -> int:
    """Run `command` as `workers` workers; returns 0 when all succeed, else the first failure's code."""
    out = out or sys.stdout
    addresses = [f"{host}:{port}" for port in free_ports(workers, host)]
    out.write(f"[launcher] cluster {addresses}\n")
    processes, threads = [], []
    try:
        for index in range(workers):
            env = dict(os.environ, TF_CONFIG=tf_config(addresses, index))
            process = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
            processes.append(process)
            out.write(f"[launcher] worker {index} pid {process.pid}\n")
            out.flush()
            thread = threading.Thread(
                target=_stream, args=(process, f"[worker {index}] ", out), daemon=True
            )
            thread.start()
            threads.append(thread)
        status = _wait(processes, timeout, out)
    except KeyboardInterrupt:
        out.write("[launcher] interrupted: stopping the workers\n")
        status = 130
    finally:
        stop(processes)
        for thread in threads:
            thread.join(timeout=5)
    out.write(f"[launcher] exit status {status}\n")
    out.flush()
    return status


def _wait(processes, timeout, out) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in processes]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            index, code = failed[0]
            out.write(f"[launcher] worker {index} exited with status {code}: stopping the others\n")
            return code if code > 0 else 128 - code  # killed by signal N -> 128 + N
        if all(c == 0 for c in codes):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            out.write(f"[launcher] timed out after {timeout:g} s: stopping the workers\n")
            return EXIT_TIMEOUT
        time.sleep(0.2)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        description="Run COMMAND as N local TensorFlow workers (TF_CONFIG set for each).",
        usage="%(prog)s N [--timeout S] [--host H] -- COMMAND [ARGS...]",
    )
    parser.add_argument("workers", type=int, help="number of worker processes (>= 1)")
    parser.add_argument("--timeout", type=float, help="stop everything after S seconds (exit 124)")
    parser.add_argument("--host", default="127.0.0.1", help="address the workers listen on")
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if args.workers < 1:
        parser.error(f"N must be at least 1, got {args.workers}")
    if not command:
        parser.error("give the command after --, e.g. -- zoo train gan --strategy multi_worker")
    signal.signal(signal.SIGTERM, _interrupt)
    return launch(args.workers, command, host=args.host, timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
