"""`zoo serve x.onnx` in the full (TensorFlow-installed) environment: time to ready and RSS.

The serving path must not import TensorFlow even where it is installed: this measures what a
user sees (spawn to the first 200 from /health, and resident memory once ready) against the
targets of 1.5 s and 150 MB, and for scale the cost of `import tensorflow` in the same venv.

    python tools/bench_serve_startup.py [--artifact saved_models/cgan-mnist5k/export/generator.onnx]
        [--repeats 5] [--out bench-results/serve_startup.json]

Writes JSON and a markdown table beside it. Exit status 1 when a median misses its target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_probe import rss_mb, serving  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"ready_s": 1.5, "rss_mb": 150.0}


def zoo_command() -> list[str]:
    script = Path(sys.executable).with_name("zoo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "zoo.cli"]


def measure_serve(artifact: str) -> dict:
    with serving(zoo_command(), artifact) as (_, process, ready_s):
        time.sleep(0.2)  # let the process settle after answering
        return {"ready_s": ready_s, "rss_mb": rss_mb(process.pid)}


def measure_tensorflow_import() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--artifact", default=str(ROOT / "saved_models/cgan-mnist5k/export/generator.onnx")
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench-results/serve_startup.json"))
    args = parser.parse_args(argv)

    runs = [measure_serve(args.artifact) for _ in range(args.repeats)]
    medians = {key: statistics.median(run[key] for run in runs) for key in TARGETS}
    result = {
        "artifact": args.artifact,
        "python": sys.executable,
        "repeats": args.repeats,
        "runs": runs,
        "median": medians,
        "targets": TARGETS,
        "met": {key: medians[key] <= TARGETS[key] for key in TARGETS},
        "import_tensorflow_s": measure_tensorflow_import(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        "| measure | median | target | met |",
        "|---|---|---|---|",
        *(f"| {key} | {medians[key]:.2f} | {TARGETS[key]} | {result['met'][key]} |"
          for key in TARGETS),
        f"| `import tensorflow` alone (s) | {result['import_tensorflow_s']:.2f} | | |",
    ]
    out.with_suffix(".md").write_text(
        f"# zoo serve startup ({args.repeats} runs, TensorFlow installed)\n\n" + "\n".join(rows) + "\n"
    )
    print("\n".join(rows))
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
