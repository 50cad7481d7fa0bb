"""The README's shell commands, run in order as written on a fresh copy of the checkout.

Full tier only (`@pytest.mark.slow`: it trains four models, exports, trains the eval classifier
once and scores; 15-25 minutes on 2 CPU cores). What it does, as a new user would:

- copies the tracked files (`git ls-files`) to a temporary folder and works there, with
  `.venv/bin` first on PATH and the copy first on PYTHONPATH (its own code, not the checkout's);
  a fresh per-user cache (XDG_CACHE_HOME in the temporary folder), so the first `zoo eval`
  trains its classifier as a new user's does;
- runs every `zoo ...` line of the README's ```bash blocks in order, as written (continuation
  lines joined, comments dropped); a `zoo serve` line runs in the background until /health
  answers and is stopped at the end; the `curl` lines run against it (`-sS --fail-with-body`
  added, so an HTTP error fails the line; the port is 8000 as written unless something else on
  this machine holds it, then a free one in the serve line and the curl lines alike);
- runs the RUN_AS_WRITTEN lines (fetching onnxruntime-web from npm into that fresh cache);
- every other line must be in SKIP with the reason it cannot run here, so a new README line is
  either run or consciously listed;
- checks that no `zoo` line prints TensorFlow's start-up or C++ log lines (E0000 cuInit, ...);
- prints each command's wall time (and writes them as JSON to $GENZOO_README_TIMES if set),
  bounds each command and the whole walk, and checks what the commands say they write.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
TOTAL_SECONDS = 60 * 60  # the whole walk
COMMAND_SECONDS = 20 * 60  # one command
SERVE_READY_SECONDS = 120

# README shell lines that are not run here, by how they start, with the reason.
SKIP = {
    "bash tools/demo.sh": "sets up .venv and trains the demo: timed on its own (tools/demo.sh)",
    "bash tools/test.sh": "runs the test suite this test belongs to",
    "export TF_CONFIG=": "describes a two-machine cluster (node0, node1) that is not here",
    "zoo train cgan --dataset mnist5k --strategy multi_worker": "needs the cluster TF_CONFIG "
    "names (tests/test_multi_worker.py runs multi_worker on local workers)",
    "tritonserver ": "Triton Inference Server is not installed here (the repository layout is "
    "checked against Triton's ModelConfig in tests/test_repositories.py)",
    "docker run ": "needs docker and the tensorflow/serving image from the network",
    "python -m http.server": "serves until stopped: tests/test_web_export.py serves a web export "
    "the same way and checks the page in headless Chromium",
}
# README lines run as written besides `zoo` and `curl` ones.
RUN_AS_WRITTEN = ("bash tools/fetch_onnxruntime_web.sh",)
# README placeholders in commands, and what they stand for in this walk.
PLACEHOLDERS = {"RUN": "runs/cgan-mnist5k"}


def readme_commands(text: str) -> list[str]:
    """Every command line of the ```bash blocks, in order: continuation lines (and quoted
    strings over several lines) joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        pending = ""
        for line in block.splitlines():
            pending += line
            if pending.rstrip().endswith("\\"):
                pending = pending.rstrip()[:-1] + " "
                continue
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:  # a quoted string that goes on on the next line
                pending += "\n"
                continue
            if words:
                commands.append(shlex.join(words))
            pending = ""
    return commands


def test_every_picture_the_readme_shows_is_committed_and_a_png():
    """The gallery and the screenshots: a renamed run or a lost grid.png breaks the page."""
    pictures = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README.read_text())
    assert len(pictures) >= 6
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.splitlines())
    for picture in pictures:
        assert (ROOT / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
        assert picture in tracked, f"{picture} is not committed (see .gitignore)"


def test_readme_commands_are_parsed_as_written():
    text = (
        "```bash\nzoo list   # models\n\nzoo serve a.onnx --port 8000\n```\n"
        "```python\nzoo.build('x')\n```\n"
        "```bash\ncurl -X POST localhost:8000/v1/generate -d '{\"n\": 4}' \\\n"
        "     -o images.u8   # raw\n                 # a comment line\n"
        "export X='{\"a\": 1,\n  \"b\": 2}'   # on two lines\n```\n"
    )
    assert readme_commands(text) == [
        "zoo list", "zoo serve a.onnx --port 8000",
        "curl -X POST localhost:8000/v1/generate -d '{\"n\": 4}' -o images.u8",
        "export 'X={\"a\": 1,\n  \"b\": 2}'",
    ]


def skip_reason(command: str) -> str | None:
    """SKIP's reason for a command, matched on its words as the shell reads them."""
    plain = " ".join(shlex.split(command))
    return next((why for start, why in SKIP.items() if plain.startswith(start)), None)


def test_every_readme_shell_line_is_run_or_skipped_with_a_reason():
    commands = readme_commands(README.read_text())
    assert any(c.startswith("zoo train") for c in commands) and len(commands) > 10
    unknown = [c for c in commands
               if not c.startswith(("zoo ", "curl ", *RUN_AS_WRITTEN)) and skip_reason(c) is None]
    assert unknown == [], "README lines neither run by tests/test_readme.py nor in its SKIP"
    used = {start for start in SKIP
            if any(skip_reason(c) == SKIP[start] for c in commands)}
    assert used == set(SKIP), f"SKIP entries no README line uses: {set(SKIP) - used}"


def fresh_checkout(target: Path) -> Path:
    """The tracked files of this checkout (as they are in the working tree), copied to target."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # deleted in the working tree: not part of this checkout
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"zoo serve exited with {server.returncode} before {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"{url} did not answer within {seconds} s")


class Walk:
    """Runs the README's commands in one folder, timing each."""

    def __init__(self, home: Path, cache: Path, port: int):
        self.home, self.port = home, port
        environment = {k: v for k, v in os.environ.items()
                       if k not in ("TF_CPP_MIN_LOG_LEVEL", "ZOO_CLASSIFIER_DIR", "ZOO_TF_LOGS")}
        self.env = {
            **environment,
            "PATH": f"{VENV_BIN}{os.pathsep}{environment.get('PATH', '')}",
            "PYTHONPATH": str(home),
            "XDG_CACHE_HOME": str(cache),
        }
        self.started = time.monotonic()
        self.times: list[tuple[str, float, str]] = []
        self.server: subprocess.Popen | None = None

    def remaining(self) -> float:
        left = TOTAL_SECONDS - (time.monotonic() - self.started)
        if left <= 0:
            raise AssertionError(f"the README walk took over {TOTAL_SECONDS} s: {self.times}")
        return left

    def words(self, command: str) -> list[str]:
        words = [PLACEHOLDERS.get(word, word) for word in shlex.split(command)]
        if self.port != 8000:
            words = [re.sub(r"(localhost|127\.0\.0\.1):8000\b", rf"\1:{self.port}", w)
                     for w in words]
            if words[:2] == ["zoo", "serve"] and "--port" in words:
                words[words.index("--port") + 1] = str(self.port)
        return words

    def run(self, command: str) -> subprocess.CompletedProcess | None:
        words = self.words(command)
        begun = time.monotonic()
        if words[:2] == ["zoo", "serve"]:
            self.start_server(words)
            result = None
        else:
            if words[0] == "curl":
                if self.server is None:
                    raise AssertionError(f"README line {command!r} comes before any zoo serve")
                words = ["curl", "-sS", "--fail-with-body", *words[1:]]
            result = subprocess.run(
                words, cwd=self.home, env=self.env, capture_output=True, text=True,
                timeout=min(COMMAND_SECONDS, self.remaining()), check=False,
            )
        seconds = time.monotonic() - begun
        self.times.append((command, round(seconds, 1), shlex.join(words)))
        print(f"[{seconds:7.1f} s] {command}", flush=True)
        if result is not None:
            assert result.returncode == 0, (
                f"README line failed ({result.returncode}): {command}\n"
                f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
            )
            assert "Traceback" not in result.stderr, result.stderr[-3000:]
            if words[0] == "zoo":  # TensorFlow's start-up and C++ lines stay hidden
                alarming = [line for line in result.stderr.splitlines()
                            if re.match(r"[EWIF]\d{4} |.*(oneDNN|cuInit|remapper|absl::InitializeLog)", line)]
                assert alarming == [], (command, alarming)
        return result

    def start_server(self, words: list[str]) -> None:
        assert self.server is None, "a second zoo serve line: stop the first one first"
        self.server = subprocess.Popen(
            words, cwd=self.home, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        wait_for_health(f"http://127.0.0.1:{self.port}/health", self.server,
                        min(SERVE_READY_SECONDS, self.remaining()))

    def stop_server(self) -> str:
        if self.server is None:
            return ""
        self.server.send_signal(signal.SIGINT)  # Ctrl-C: drains and exits quietly
        try:
            output, _ = self.server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            output, _ = self.server.communicate()
            raise AssertionError(f"zoo serve did not stop on Ctrl-C: {output[-2000:]}") from None
        return output


@pytest.mark.slow  # trains four models, two exports, the eval classifier: 15-25 min on 2 cores
def test_readme_commands_run_on_a_fresh_checkout(tmp_path):
    home = fresh_checkout(tmp_path / "genzoo")
    walk = Walk(home, tmp_path / "cache", 8000 if port_free(8000) else free_port())
    probe = subprocess.run(
        [sys.executable, "-c", "import zoo, exporters; print(zoo.__file__, exporters.__file__)"],
        cwd=tmp_path, env=walk.env, capture_output=True, text=True, timeout=120, check=True,
    )
    assert probe.stdout.split() == [str(home / "zoo" / "__init__.py"),
                                    str(home / "exporters" / "__init__.py")]
    outputs, skipped = {}, []
    try:
        for command in readme_commands((home / "README.md").read_text()):
            why = skip_reason(command)
            if why is not None:
                skipped.append((command, why))
                continue
            result = walk.run(command)
            if result is not None:
                outputs[command] = result
        server_log = walk.stop_server()
    finally:
        if walk.server is not None and walk.server.poll() is None:
            walk.server.kill()
            walk.server.communicate()
        total = time.monotonic() - walk.started
        print(f"[{total:7.1f} s] the whole README walk ({len(walk.times)} commands)")
        for command, why in skipped:
            print(f"[skipped] {command}: {why}")
        if os.environ.get("GENZOO_README_TIMES"):
            Path(os.environ["GENZOO_README_TIMES"]).write_text(json.dumps(
                {"total_seconds": round(total, 1), "load_average": os.getloadavg(),
                 "commands": walk.times, "skipped": skipped}, indent=2))

    # what the commands said they would write
    runs = home / "runs"
    assert (runs / "cgan-mnist5k" / "model.keras").is_file()
    assert json.loads((runs / "cgan-mnist5k" / "config.json").read_text())["status"] == "finished"
    assert (runs / "vae-digits" / "model.keras").is_file()
    assert (runs / "gan-mnist5k" / "model.keras").is_file()
    manifest = json.loads((runs / "cgan-mnist5k" / "export" / "manifest.json").read_text())
    assert {"generator_saved_model", "generator.onnx", "generator-b1.tflite"} <= set(
        manifest["artifacts"])
    phone = json.loads((home / "phone" / "manifest.json").read_text())
    assert any(name.startswith("generator-int8") for name in phone["artifacts"])
    assert (home / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert np.load(home / "s.npy").shape == (8, 28, 28, 1)
    second = json.loads((runs / "cgan-mnist5k-2" / "export" / "manifest.json").read_text())
    assert {"generator.onnx", "generator-b1.tflite"} <= set(second["artifacts"])
    scores = json.loads((runs / "cgan-mnist5k" / "eval.json").read_text())
    assert scores["n"] == 10000 and scores["class_consistency"]["overall"] > 0.3
    assert {p.name for p in (runs / "cgan-mnist5k" / "plots").iterdir()} >= {
        "samples.png", "classes.png", "interpolation.png", "loss_curves.png"}
    assert list((walk.home / "saved_models").glob("*/plots")) == []  # committed runs untouched
    health = next(r for c, r in outputs.items() if c.startswith("curl") and "/health" in c)
    assert json.loads(health.stdout)
    assert (home / "images.u8").stat().st_size == 4 * 28 * 28
    web = json.loads((home / "web-cgan" / "web" / "manifest.json").read_text())
    assert web["artifacts"]["generator.onnx"]["bytes"] > 0 and (home / "web-cgan" / "web" /
                                                               "index.html").is_file()
    assert "Traceback" not in server_log
