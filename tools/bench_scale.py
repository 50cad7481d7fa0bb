#!/usr/bin/env python3
"""Images/s of training under the ways genzoo scales: 1 process vs 2 workers, float32 vs mixed
precision, XLA on vs off, measured in one run on this machine.

    python tools/bench_scale.py                        # -> bench-results/scale.json + scale.md
    python tools/bench_scale.py --steps 10 --model gan --dataset digits
    python tools/bench_scale.py gpu --out F.json       # the GPU suite of tools/gpu_check.sh

Each configuration runs in a fresh process (2 workers: tools/launch_local_cluster.py with
TF_CONFIG), trains `fit` for one warm-up epoch (tracing, XLA compilation) and `--repeats` timed epochs of
`--steps` steps each, and reports images/s = steps * global batch / median epoch time. On a
shared machine other load moves the figures: the load average is recorded with each.

The `gpu` suite runs every family in one process on GPU:0, float32 and mixed_bfloat16, XLA off
and on, and adds peak GPU memory (tf.config.experimental.get_memory_info) to each result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "tools" / "launch_local_cluster.py"
RESULT = "BENCH_RESULT "
# (label, workers, precision, jit_compile): the comparisons the issue asks for, baseline first.
SCALE_CONFIGS = (
    ("1 process, float32, XLA off", 1, "float32", "off"),
    ("1 process, float32, XLA on", 1, "float32", "on"),
    ("1 process, mixed_bfloat16, XLA off", 1, "mixed_bfloat16", "off"),
    ("1 process, mixed_float16, XLA off", 1, "mixed_float16", "off"),
    ("2 workers, float32, XLA off", 2, "float32", "off"),
)
GPU_PRECISIONS = ("float32", "mixed_bfloat16")
GPU_JIT = ("off", "on")


# ---- one measurement (runs inside a fresh process, or each worker of a cluster) --------------
def _timed_fit(model, dataset, steps: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` epochs of `steps` steps, after one warm-up epoch (tracing,
    XLA compilation)."""
    import keras

    times = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: times.append(time.perf_counter()),
        on_epoch_end=lambda epoch, logs: times.append(time.perf_counter()),
    )
    model.fit(dataset, epochs=1 + repeats, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return [end - begin for begin, end in zip(times[2::2], times[3::2])]


def _model_kwargs(name: str, info, extra: dict) -> dict:
    import zoo

    kwargs = {"image_shape": info.image_shape, "seed": 0, **extra}
    if zoo.registry.get_model_class(name).conditional:
        kwargs.setdefault("num_classes", info.num_classes)
    return kwargs


def measure_one(
    strategy, name, dataset, batch_size, steps, precision, jit, extra, device=None, repeats=3
):
    """Build, compile and time one configuration: figures of the median timed epoch (and peak
    memory on a GPU)."""
    import tensorflow as tf

    import zoo

    info = zoo.data.info(dataset)
    if device:
        tf.config.experimental.reset_memory_stats(device)
    with strategy.scope():
        model = zoo.build(name, **_model_kwargs(name, info, extra), dtype=precision)
        model.compile(jit_compile=jit)
    data = zoo.data.load(dataset, "train", batch_size=batch_size, seed=0).repeat()
    epochs = _timed_fit(model, zoo.distribute.shard(data), steps, repeats)
    seconds = sorted(epochs)[len(epochs) // 2]
    result = {
        "model": name,
        "precision": precision,
        "jit_compile": jit,
        "xla": model.jit_choice.enabled,
        "replicas": strategy.num_replicas_in_sync,
        "global_batch": batch_size,
        "steps": steps,
        "seconds": round(seconds, 4),
        "epoch_seconds": [round(t, 4) for t in epochs],
        "step_ms": round(1000 * seconds / steps, 2),
        "images_per_s": round(steps * batch_size / seconds, 1),
    }
    if device:
        result["peak_gpu_memory_mb"] = round(
            tf.config.experimental.get_memory_info(device)["peak"] / 2**20, 1
        )
    return result


def command_measure(args) -> None:
    from zoo import distribute

    strategy = distribute.get_strategy(args.strategy)  # first: before any TensorFlow op
    result = measure_one(
        strategy, args.model, args.dataset, args.batch_size, args.steps, args.precision,
        args.jit_compile, json.loads(args.model_kwargs), repeats=args.repeats,
    )
    if distribute.is_chief(strategy):
        print(RESULT + json.dumps(result), flush=True)


# ---- the scale comparison on this machine ---------------------------------------------------
def _run_config(args, workers, precision, jit) -> dict:
    measure = [
        sys.executable, str(Path(__file__).resolve()), "measure",
        "--model", args.model, "--dataset", args.dataset, "--batch-size", str(args.batch_size),
        "--steps", str(args.steps), "--repeats", str(args.repeats),
        "--precision", precision, "--jit-compile", jit,
        "--model-kwargs", args.model_kwargs,
        "--strategy", "multi_worker" if workers > 1 else "one_device",
    ]
    command = measure if workers == 1 else [
        sys.executable, str(LAUNCHER), str(workers), "--timeout", str(args.timeout), "--", *measure
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=args.timeout + 30,
            check=False,
        )
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as error:
        output = f"timed out after {error.timeout} s"
    found = re.search(re.escape(RESULT) + r"(\{.*\})", output)
    result = json.loads(found.group(1)) if found else {"error": output.strip()[-2000:]}
    return {
        **result, "workers": workers, "load_average_1min": round(load, 2),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _ratio(results, label, baseline):
    a, b = results.get(label, {}), results.get(baseline, {})
    if "images_per_s" in a and "images_per_s" in b:
        return round(a["images_per_s"] / b["images_per_s"], 3)
    return None


def command_scale(args) -> None:
    results = {}
    for label, workers, precision, jit in SCALE_CONFIGS:
        print(f"[bench_scale] {label} ...", flush=True)
        results[label] = _run_config(args, workers, precision, jit)
        print(f"[bench_scale]   {_summary(results[label])}", flush=True)
    base = SCALE_CONFIGS[0][0]
    ratios = {
        "2 workers / 1 process (float32, XLA off)": _ratio(results, SCALE_CONFIGS[4][0], base),
        "mixed_bfloat16 / float32 (1 process, XLA off)": _ratio(results, SCALE_CONFIGS[2][0], base),
        "mixed_float16 / float32 (1 process, XLA off)": _ratio(results, SCALE_CONFIGS[3][0], base),
        "XLA on / off (1 process, float32)": _ratio(results, SCALE_CONFIGS[1][0], base),
    }
    report = {
        "machine": _machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "handler"},
        "results": results,
        "ratios": ratios,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "scale.md").write_text(_markdown(report))
    print((out / "scale.md").read_text())
    print(f"[bench_scale] wrote {out / 'scale.json'} and {out / 'scale.md'}")


def _summary(result) -> str:
    if "images_per_s" not in result:
        return "failed: " + result.get("error", "?").splitlines()[-1][:200]
    return f"{result['images_per_s']} img/s, {result['step_ms']} ms/step"


def _machine() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def _markdown(report) -> str:
    s = report["settings"]
    lines = [
        (
            f"# genzoo scaling: {s['model']} on {s['dataset']}, global batch {s['batch_size']}, "
            f"median of {s['repeats']} epochs of {s['steps']} steps"
        ),
        "",
        f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['platform']}.",
        "",
        "| configuration | images/s | ms/step | vs baseline | load avg |",
        "|---|---:|---:|---:|---:|",
    ]
    base = report["results"][SCALE_CONFIGS[0][0]].get("images_per_s")
    for label, result in report["results"].items():
        if "images_per_s" in result:
            ratio = f"{result['images_per_s'] / base:.2f}x" if base else "-"
            lines.append(
                f"| {label} | {result['images_per_s']} | {result['step_ms']} | {ratio} | "
                f"{result['load_average_1min']} |"
            )
        else:
            lines.append(f"| {label} | failed | | | {result['load_average_1min']} |")
    lines += ["", "Ratios:", ""]
    lines += [f"- {name}: {value}" for name, value in report["ratios"].items()]
    return "\n".join(lines) + "\n"


# ---- the GPU suite (tools/gpu_check.sh) -----------------------------------------------------
def command_gpu(args) -> None:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if not gpus and not args.allow_cpu:
        sys.exit("bench_scale gpu: TensorFlow sees no GPU (is the NVIDIA driver visible?)")
    device = "GPU:0" if gpus else None  # --allow-cpu: the same suite, without memory figures
    import zoo
    from zoo import distribute

    strategy = distribute.get_strategy("one_device")
    families = args.families.split(",") if args.families else zoo.list_models()
    results = []
    for name in families:
        for precision in GPU_PRECISIONS:
            for jit in GPU_JIT:
                started = time.perf_counter()
                try:
                    result = measure_one(
                        strategy, name, args.dataset, args.batch_size, args.steps, precision,
                        jit, {}, device=device, repeats=args.repeats,
                    )
                except Exception as error:  # noqa: BLE001 (a failed config is a finding)
                    result = {"model": name, "precision": precision, "jit_compile": jit,
                              "error": f"{type(error).__name__}: {str(error)[:500]}"}
                result["wall_s"] = round(time.perf_counter() - started, 1)
                results.append(result)
                print(f"[gpu_check] {name} {precision} XLA {jit}: {_summary(result)}", flush=True)
    report = {
        "machine": _machine(),
        "gpu": tf.config.experimental.get_device_details(
            tf.config.list_physical_devices("GPU")[0]
        ) if gpus else None,
        "tensorflow": tf.__version__,
        "xla_auto_choice": str(distribute.choose_jit_compile("auto", strategy)),
        "settings": {
            "dataset": args.dataset, "batch_size": args.batch_size, "steps": args.steps,
            "repeats": args.repeats,
        },
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"[gpu_check] wrote {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")

    def common(p, steps, batch_size):
        p.add_argument("--dataset", default="mnist5k")
        p.add_argument("--batch-size", type=int, default=batch_size, help="global batch")
        p.add_argument("--steps", type=int, default=steps, help="steps per timed epoch")
        p.add_argument("--repeats", type=int, default=3, help="timed epochs (median reported)")

    scale = commands.add_parser("scale", help="1 process vs 2 workers, precision, XLA (default)")
    measure = commands.add_parser("measure", help="one configuration (used by scale)")
    for p in (parser, scale, measure):
        common(p, steps=20, batch_size=64)
        p.add_argument("--model", default="gan")
        p.add_argument("--model-kwargs", default="{}", help="JSON constructor arguments")
    for p in (parser, scale):
        p.add_argument("--out", default="bench-results", help="folder for scale.json/scale.md")
        p.add_argument("--timeout", type=int, default=600, help="seconds per configuration")
        p.set_defaults(handler=command_scale)
    measure.add_argument("--precision", default="float32")
    measure.add_argument("--jit-compile", default="off")
    measure.add_argument("--strategy", default="one_device")
    measure.set_defaults(handler=command_measure)

    gpu = commands.add_parser("gpu", help="every family on GPU:0: float32/bfloat16 x XLA off/on")
    common(gpu, steps=30, batch_size=128)
    gpu.add_argument("--families", help="comma-separated (default: every registered family)")
    gpu.add_argument("--out", default="bench-results/gpu_check.json")
    gpu.add_argument("--allow-cpu", action="store_true", help="smoke-test the suite without a GPU")
    gpu.set_defaults(handler=command_gpu)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
