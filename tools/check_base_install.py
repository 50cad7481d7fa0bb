"""Check the base install as a deployment gets it: `pip install .` (no extras) in a fresh venv.

Asserts, and writes to bench-results/base_install.json:
- no TensorFlow, Keras, tf2onnx or onnx installed, and the venv under 300 MB;
- `zoo sample saved_models/cgan-mnist5k --n 16 --labels 3 --out g.png` works from it;
- `zoo serve` on the committed cgan .onnx answers /health and POST /v1/generate, with the same
  images as the runtime in the development venv (same seed and labels).

Runs from a folder outside the checkout, so nothing imports from the source tree by accident.
Needs the package index (PyPI) the first time; pip's cache makes reruns quick.

    python tools/check_base_install.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_probe import post_json, rss_mb, serving  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "saved_models" / "cgan-mnist5k"
MAX_VENV_MB = 300
FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "onnx", "tf-keras", "tensorflow-cpu")


def run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(
            f"failed ({result.returncode}): {' '.join(map(str, command))}\n{result.stderr[-3000:]}"
        )
    return result


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def check(venv: Path, work: Path) -> dict:
    started = time.perf_counter()
    run([sys.executable, "-m", "venv", str(venv)])
    python, zoo = venv / "bin" / "python", venv / "bin" / "zoo"
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)])
    install_s = time.perf_counter() - started
    installed = json.loads(run([python, "-m", "pip", "list", "--format", "json"]).stdout)
    names = sorted(p["name"].lower() for p in installed)
    heavy = [name for name in names if name in FORBIDDEN]
    assert not heavy, f"the base install pulled {heavy}"
    size = folder_mb(venv)
    assert size < MAX_VENV_MB, f"the base venv is {size:.0f} MB, over {MAX_VENV_MB} MB"

    grid = work / "g.png"
    run([zoo, "sample", str(RUN), "--n", "16", "--labels", "3", "--out", str(grid)], cwd=work)
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "zoo sample wrote no PNG"

    artifact = RUN / "export" / "generator.onnx"
    with serving([str(zoo)], artifact, cwd=work) as (url, process, ready_s):
        status, body = post_json(url + "/v1/generate", {"n": 4, "labels": [3, 3, 3, 3], "seed": 1})
        serve_rss = rss_mb(process.pid)
    assert status == 200 and body["shape"] == [4, 28, 28, 1], (status, body.get("shape"))

    # the same images as the development venv's runtime for the same request
    from exporters import runtime

    expected = runtime.load(artifact).generate(4, labels=[3, 3, 3, 3], seed=1)
    import numpy as np

    served = np.asarray(body["images"], dtype=np.uint8).reshape(body["shape"])
    assert np.array_equal(served, expected), "the base install's server gives other images"
    return {
        "packages": names,
        "venv_mb": round(size, 1),
        "max_venv_mb": MAX_VENV_MB,
        "install_s": round(install_s, 1),
        "serve_ready_s": round(ready_s, 2),
        "serve_rss_mb": round(serve_rss, 1),
        "ok": True,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="build the venv here and keep it (default: a temp folder)")
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "base_install.json"))
    args = parser.parse_args(argv)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="genzoo-base-"))
    try:
        result = check(base / "venv", base)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"base install: {len(result['packages'])} packages, {result['venv_mb']} MB, "
          f"zoo serve ready in {result['serve_ready_s']} s at {result['serve_rss_mb']} MB RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
