"""Test session setup: 2 logical CPU devices (for replica-parity tests) before TF uses any device."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from zoo import distribute

distribute.split_cpu(2)

from browser_fixtures import browser, page  # noqa: F401  (fixtures for the browser tests)
