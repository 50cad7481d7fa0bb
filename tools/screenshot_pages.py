"""Screenshots of genzoo's two browser pages, at desktop and phone width, for the README.

    python tools/screenshot_pages.py [--run saved_models/cgan-mnist5k] [--out docs/screenshots]

- the playground: `zoo serve RUN` (GET /), after a grid of one row per class and an interpolation;
- the in-browser page: `zoo export RUN --formats web` into a scratch folder, served by
  `python -m http.server`, after a grid and an interpolation run by onnxruntime-web.
Both are driven by headless Chromium (tools/setup_browser.sh installs it and onnxruntime-web).
Writes playground-{desktop,phone}.png and inbrowser-{desktop,phone}.png, and prints their paths.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{' '.join(process.args)} did not start serving {url}") from None
            time.sleep(0.2)


def start(command: list[str], url: str) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_until_up(url, process)
    return process


def chromium() -> str:
    path = os.environ.get("GENZOO_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not path:
        raise SystemExit("no Chromium found: run `bash tools/setup_browser.sh`")
    return path


def shoot_playground(page, url: str, path: Path) -> None:
    page.goto(url)
    page.wait_for_selector("#generate:enabled")
    if page.is_visible("#rows-per-class"):
        page.check("#rows-per-class")
        page.fill("#n", "6")
    page.fill("#seed", "7")
    page.click("#generate")
    page.wait_for_selector("#generate:enabled")
    page.fill("#interp-seed-a", "7")
    page.fill("#interp-seed-b", "8")
    page.click("#interpolate")
    page.wait_for_selector("#interpolate:enabled")
    page.screenshot(path=str(path), full_page=True)


def shoot_inbrowser(page, url: str, path: Path) -> None:
    page.goto(url)
    page.wait_for_selector('body[data-runs="1"]', state="attached")  # the first grid
    page.fill("#seed", "7")
    page.click("#generate")
    page.wait_for_selector('body[data-runs="2"]', state="attached")
    page.click("#interpolate")
    page.wait_for_selector('body[data-runs="3"]', state="attached")
    page.screenshot(path=str(path), full_page=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="saved_models/cgan-mnist5k")
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    zoo = [sys.executable, "-m", "zoo.cli"]
    scratch = Path(tempfile.mkdtemp(prefix="genzoo-screens-"))
    processes = []
    try:
        web = scratch / "web"
        subprocess.run([*zoo, "export", args.run, "--formats", "web", "--out", str(web)],
                       cwd=ROOT, check=True)
        web_root = web / "web"  # --out X writes X/web/ (and X/manifest.json)
        serve_port, static_port = free_port(), free_port()
        serve_url = f"http://127.0.0.1:{serve_port}/"
        static_url = f"http://127.0.0.1:{static_port}/"
        processes.append(start([*zoo, "serve", args.run, "--port", str(serve_port)], serve_url))
        processes.append(start([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                str(static_port), "-d", str(web_root)], static_url))

        from playwright.sync_api import sync_playwright

        written = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), headless=True,
                                                 args=["--no-sandbox", "--disable-dev-shm-usage"])
            for size, viewport in VIEWPORTS.items():
                for name, url, shoot in (("playground", serve_url, shoot_playground),
                                         ("inbrowser", static_url, shoot_inbrowser)):
                    context = browser.new_context(viewport=viewport)
                    page = context.new_page()
                    page.set_default_timeout(60_000)
                    path = out / f"{name}-{size}.png"
                    shoot(page, url, path)
                    context.close()
                    written.append(path)
            browser.close()
        for path in written:
            print(f"{path} ({path.stat().st_size // 1024} KB)")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
