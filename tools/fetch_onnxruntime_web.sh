#!/usr/bin/env bash
# Fetch onnxruntime-web (pinned) from npm into the cache `zoo export --formats web` reads:
#   ${XDG_CACHE_HOME:-~/.cache}/genzoo/onnxruntime-web/<version>/  (override: ZOO_ORT_WEB_DIR)
# Needs node + npm (Debian: apt-get install nodejs npm). Safe to rerun.
set -euo pipefail
version=${ORT_WEB_VERSION:-1.30.0}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/genzoo/onnxruntime-web
target=$cache/$version
if [ -f "$target/ort.wasm.min.mjs" ] && [ -f "$target/ort-wasm-simd-threaded.wasm" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "fetching onnxruntime-web needs npm: apt-get install npm (or set ZOO_ORT_WEB_DIR to a folder with its dist/ files)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "Fetching onnxruntime-web $version from npm..."
npm install --silent --no-save --no-audit --no-fund --prefix "$work" "onnxruntime-web@$version" >/dev/null
mkdir -p "$cache"
staged=$(mktemp -d "$cache/.staging.XXXXXX")
cp "$work/node_modules/onnxruntime-web/dist/"{ort.wasm.min.mjs,ort-wasm-simd-threaded.mjs,ort-wasm-simd-threaded.wasm} "$staged/"
cp "$work/node_modules/onnxruntime-web/LICENSE" "$staged/" 2>/dev/null || true
chmod 0755 "$staged" && chmod 0644 "$staged"/*
rm -rf "$target" && mv "$staged" "$target"
echo "onnxruntime-web $version -> $target"
