"""Headless Chromium for the browser tests (Debian's chromium driven by Playwright).

Playwright's own browser builds cannot be downloaded here, so it launches the system Chromium
(`tools/setup_browser.sh` installs it; GENZOO_CHROMIUM overrides the path). A missing browser
fails the test with that instruction: the browser tests are never skipped.
Use the `page` fixture (conftest): a fresh page whose console errors and uncaught exceptions are
collected in `page.genzoo_errors`, so a test can assert the page ran clean.
"""

from __future__ import annotations

import os
import shutil

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    path = os.environ.get("GENZOO_CHROMIUM") or next(
        (found for name in CANDIDATES if (found := shutil.which(name))), None)
    if not path:
        pytest.fail("no Chromium found: run `bash tools/setup_browser.sh` (apt-get install chromium) "
                    "or set GENZOO_CHROMIUM=/path/to/chrome")
    return path


@pytest.fixture(scope="module")
def browser():
    """One browser per test module: Playwright's sync API keeps an event loop running in this
    thread while it is open, which would break asyncio.run in later modules' tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.genzoo_errors = []
    opened.on("pageerror", lambda error: opened.genzoo_errors.append(f"pageerror: {error}"))
    opened.on("console", lambda message: message.type == "error"
              and opened.genzoo_errors.append(f"console: {message.text}"))
    opened.set_default_timeout(60_000)
    yield opened
    context.close()
