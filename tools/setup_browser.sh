#!/usr/bin/env bash
# What the browser tests and `zoo export --formats web` need besides Python packages:
#   - Debian's chromium (headless, driven by Playwright; Playwright's own browser download does
#     not work behind a registry-only network), installed with apt when run as root;
#   - onnxruntime-web (the WASM runtime the in-browser page uses), from npm, into
#     ${XDG_CACHE_HOME:-~/.cache}/genzoo/onnxruntime-web (tools/fetch_onnxruntime_web.sh).
# Safe to rerun: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium_bin=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium_bin" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "Installing Debian's chromium for the browser tests (apt, about a minute)..."
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "the browser tests need Chromium: sudo apt-get install chromium (or set GENZOO_CHROMIUM=/path/to/chrome)" >&2
    exit 1
  fi
fi
bash tools/fetch_onnxruntime_web.sh
