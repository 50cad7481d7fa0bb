"""Benchmark exported generators: sizes, accuracy and speed in every runtime, as JSON + markdown.

    python tools/bench_export.py [--families gan,cgan,vae] [--out saved_models/bench-export]
                                 [--repeats-1 30] [--repeats-256 5] [--passes 2] [--fit-steps 0]

For each family (default architecture sizes), exports SavedModel, ONNX and TFLite fp32 / fp16 /
dynamic-range / int8 at static batch 1 and 256, then measures batch-1 latency and batch-256
throughput in Keras (eager call), the TF SavedModel signature, ONNX Runtime and LiteRT. ONNX
Runtime is measured three ways, to show what each fix buys:
  ort-baseline   tf2onnx's graph, default InferenceSession (= `model.export(format="onnx")`)
  ort-rewritten  the exported (tuned) graph, default InferenceSession
  ort-runtime    the exported graph through exporters.runtime (1 intra-op thread per call,
                 the batch split into chunks run concurrently on every core)
Each runtime is timed in a process of its own (thread pools of one runtime spinning after a call
would otherwise steal the cores of the next), in `--passes` rounds over all runtimes so that
changing load hits them alike. Reported: median wall time per call (and the best call), and the
process CPU time per call, the work a call costs, which load on a shared machine moves far less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FAMILIES = {"gan": {}, "cgan": {"num_classes": 10}, "vae": {}, "cvae": {"num_classes": 10},
            "wgan_gp": {}, "cddpm": {"num_classes": 10}}
QUANTIZE = ("fp16", "dynamic", "int8")
BIG_BATCH = 256
LITERT = {"litert-fp32": "", "litert-fp16": "-fp16", "litert-dynamic": "-dynamic",
          "litert-int8": "-int8"}
# process group -> the runtimes timed in it (Keras and SavedModel share TensorFlow)
GROUPS = {"tf": ("keras", "saved_model"), "ort-baseline": ("ort-baseline",),
          "ort-rewritten": ("ort-rewritten",), "ort-runtime": ("ort-runtime",),
          **{name: (name,) for name in LITERT}}
ARTIFACTS = {"saved_model": "generator_saved_model", "ort-rewritten": "generator.onnx",
             "ort-runtime": "generator.onnx",
             **{name: f"generator{tag}-b1.tflite" for name, tag in LITERT.items()}}


# ---- the child: time the runtimes of one group ---------------------------------------------------
def feeds_for(manifest, n):
    """Inputs for n images: latents [+ labels]; a diffusion denoiser gets x_t, t [+ labels]."""
    from exporters.sampling import latents

    if "schedule" in manifest:  # one denoiser call at a mid-schedule timestep
        timesteps = int(manifest["schedule"].get("timesteps", 1000))
        feeds = {"x_t": np.random.default_rng(n).standard_normal(
                     (n, *manifest["image_shape"])).astype(np.float32),
                 "t": np.full((n,), timesteps // 2, np.float32)}
    else:
        feeds = {"z": latents(n, manifest["latent_dim"], seed=n)}
    if manifest["num_classes"]:
        feeds["label"] = (np.arange(n) % manifest["num_classes"]).astype(np.int32)
    return feeds


def _tf_runtimes(folder, scratch):
    import keras
    import tensorflow as tf

    import zoo  # noqa: F401  (registers the zoo classes)

    generator = keras.models.load_model(scratch / "model.keras", compile=False).generator

    def keras_call(feeds):
        values = list(feeds.values())
        return np.asarray(generator(values[0] if len(values) == 1 else feeds, training=False))

    serve = tf.saved_model.load(str(folder / "generator_saved_model")).signatures["serve"]

    def saved_model_call(feeds):
        outputs = serve(**{k: tf.constant(v) for k, v in feeds.items()})
        return next(iter(outputs.values())).numpy()  # images, or a denoiser's prediction

    return {"keras": keras_call, "saved_model": saved_model_call}


def _session_runtime(path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)[0]


def _runtime_backend(path):
    from exporters import runtime

    backend = runtime.BACKENDS[Path(path).suffix](path)
    return lambda feeds: next(iter(backend.run(feeds).values()))


def _litert(folder, tag):
    from exporters import runtime

    backends = {b: runtime.LiteRTBackend(folder / f"generator{tag}-b{b}.tflite")
                for b in (1, BIG_BATCH)}
    def call(feeds):
        size = len(next(iter(feeds.values())))
        return next(iter(backends[1 if size == 1 else BIG_BATCH].run(feeds).values()))

    return call


def make_group(group, folder, scratch):
    makers = {
        "tf": lambda: _tf_runtimes(folder, scratch),
        "ort-baseline": lambda: {"ort-baseline": _session_runtime(scratch / "baseline.onnx")},
        "ort-rewritten": lambda: {"ort-rewritten": _session_runtime(folder / "generator.onnx")},
        "ort-runtime": lambda: {"ort-runtime": _runtime_backend(folder / "generator.onnx")},
        **{name: (lambda tag=tag, name=name: {name: _litert(folder, tag)})
           for name, tag in LITERT.items()},
    }
    return makers[group]()


def time_calls(calls, feeds, rounds):
    """name -> (wall seconds, process CPU seconds) per call; runtimes alternate each round."""
    for call in calls.values():
        call(feeds)
    times = {name: ([], []) for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call(feeds)
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return times


def child(args):
    folder, scratch = Path(args.folder), Path(args.scratch)
    manifest = json.loads((folder / "manifest.json").read_text())
    calls = make_group(args.measure, folder, scratch)
    big = feeds_for(manifest, BIG_BATCH)
    reference = np.load(scratch / "reference.npy")
    result = {name: {"max_abs_diff": float(np.abs(call(big) - reference).max())}
              for name, call in calls.items()}
    for size, rounds in ((1, args.repeats_1), (BIG_BATCH, args.repeats_256)):
        for name, (wall, cpu) in time_calls(calls, feeds_for(manifest, size), rounds).items():
            result[name][f"wall_{size}"], result[name][f"cpu_{size}"] = wall, cpu
    print(json.dumps(result))


# ---- the parent: export, then time every group in its own process ---------------------------------
def build(family, fit_steps):
    import zoo

    model = zoo.build(family, image_shape=(28, 28, 1), seed=0, **FAMILIES[family])
    model.compile()
    if fit_steps:
        ds = zoo.data.load("mnist5k", split="train", batch_size=64).repeat()
        model.fit(ds, epochs=1, steps_per_epoch=fit_steps, verbose=0)
    return model


def prepare(family, out_root, args):
    """Export the family, and write what the children need beside it."""
    import exporters
    from exporters.converters.onnx import export_onnx

    model = build(family, args.fit_steps)
    # measure every quantization, also those a family declines for export (diffusion: int8)
    model.quantizations_not_offered = {}
    folder, scratch = out_root / "artifacts" / family, out_root / "scratch" / family
    scratch.mkdir(parents=True, exist_ok=True)
    # Speed is measured here whatever the accuracy: quantized variants are not held to export's
    # tolerances (the table reports their max abs diff). float32 artifacts still must pass.
    report = exporters.export(
        model, folder, quantize=QUANTIZE, tflite_batch_sizes=(1, BIG_BATCH), overwrite=True,
        tolerances={quantization: float("inf") for quantization in QUANTIZE},
    )
    model.save(scratch / "model.keras")
    export_onnx(model.generator, scratch / "baseline.onnx", optimize=False)
    feeds = list(feeds_for(report, BIG_BATCH).values())
    named = feeds_for(report, BIG_BATCH)
    reference = model.generator(feeds[0] if len(feeds) == 1 else named, training=False)
    np.save(scratch / "reference.npy", np.asarray(reference, np.float32))
    return report, folder, scratch, int(model.generator.count_params())


def run_group(group, folder, scratch, args) -> dict:
    command = [sys.executable, __file__, "--measure", group, "--folder", str(folder),
               "--scratch", str(scratch), "--repeats-1", str(args.repeats_1),
               "--repeats-256", str(args.repeats_256)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"timing {group} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(samples, report, parameters) -> dict:
    rows = {}
    for name, runs in samples.items():
        artifact = ARTIFACTS.get(name)
        entry = report["artifacts"].get(artifact, {})
        wall1, wall256 = runs["wall_1"], runs[f"wall_{BIG_BATCH}"]
        rows[name] = {
            "artifact": artifact,
            "bytes": entry.get("bytes"),
            "verified_max_abs_diff": entry.get("verification", {}).get("max_abs_diff"),
            "max_abs_diff_vs_keras_b256": max(runs["max_abs_diff"]),
            "batch1_latency_ms_median": 1e3 * statistics.median(wall1),
            "batch1_latency_ms_best": 1e3 * min(wall1),
            "batch256_images_per_s_median": BIG_BATCH / statistics.median(wall256),
            "batch256_images_per_s_best": BIG_BATCH / min(wall256),
            "batch1_cpu_ms_median": 1e3 * statistics.median(runs["cpu_1"]),
            "batch256_cpu_ms_median": 1e3 * statistics.median(runs[f"cpu_{BIG_BATCH}"]),
        }
    base = rows["saved_model"]

    def speedups(row):
        ratios = {}
        for kind in ("median", "best"):
            ratios[f"batch1_speedup_{kind}"] = (
                base[f"batch1_latency_ms_{kind}"] / row[f"batch1_latency_ms_{kind}"])
            ratios[f"batch256_speedup_{kind}"] = (
                row[f"batch256_images_per_s_{kind}"] / base[f"batch256_images_per_s_{kind}"])
        for size in (1, BIG_BATCH):
            ratios[f"batch{size}_cpu_work_ratio"] = (
                base[f"batch{size}_cpu_ms_median"] / row[f"batch{size}_cpu_ms_median"])
        return ratios

    return {
        "parameters": parameters,
        "runtimes": rows,
        "ort_vs_saved_model": {n: speedups(r) for n, r in rows.items() if n.startswith("ort")},
        "onnx_graph_rewrite": report["artifacts"]["generator.onnx"]["graph_rewrite"],
    }


def markdown(results) -> str:
    lines = []
    for family, result in results["families"].items():
        lines += [
            f"### {family} ({result['parameters']:,} generator parameters)", "",
            ("| runtime | artifact | size (KB) | max abs diff vs Keras | batch-1 latency (ms) "
             "| batch-256 throughput (img/s) | batch-256 CPU (ms) |"),
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for name, row in result["runtimes"].items():
            size = f"{row['bytes'] / 1024:,.0f}" if row["bytes"] else ""
            lines.append(
                f"| {name} | {row['artifact'] or ''} | {size} | "
                f"{row['max_abs_diff_vs_keras_b256']:.2e} | "
                f"{row['batch1_latency_ms_median']:.3f} | "
                f"{row['batch256_images_per_s_median']:,.0f} | "
                f"{row['batch256_cpu_ms_median']:,.1f} |"
            )
        lines += ["", ("ONNX Runtime vs TF SavedModel: speed from wall time, median (best "
                       "call), and CPU work (SavedModel CPU / ORT CPU):"), ""]
        for name, ratio in result["ort_vs_saved_model"].items():
            lines.append(
                f"- {name}: batch 1 {ratio['batch1_speedup_median']:.2f}x "
                f"({ratio['batch1_speedup_best']:.2f}x), batch 256 "
                f"{ratio['batch256_speedup_median']:.2f}x ({ratio['batch256_speedup_best']:.2f}x); "
                f"CPU work ratio batch 1 {ratio['batch1_cpu_work_ratio']:.2f}x, batch 256 "
                f"{ratio['batch256_cpu_work_ratio']:.2f}x"
            )
        lines.append("")
    return "\n".join(lines)


def parent(args, parser):
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {sorted(FAMILIES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from exporters import manifest

    results = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpus": os.cpu_count(), "load_average_before": os.getloadavg()},
        "versions": manifest.versions(),
        "settings": vars(args),
        "families": {},
    }
    for family in families:
        report, folder, scratch, parameters = prepare(family, out, args)
        samples: dict[str, dict[str, list]] = {}
        for _ in range(args.passes):
            for group in GROUPS:
                for name, runs in run_group(group, folder, scratch, args).items():
                    merged = samples.setdefault(name, {})
                    for key, value in runs.items():
                        merged.setdefault(key, []).extend(
                            value if isinstance(value, list) else [value])
        results["families"][family] = summarize(samples, report, parameters)
        results["machine"]["load_average_after"] = os.getloadavg()
        # written after every family, so a later family's failure keeps the earlier numbers
        (out / "bench_export.json").write_text(json.dumps(results, indent=2) + "\n")
        table = markdown(results)
        (out / "bench_export.md").write_text(table + "\n")
        print(f"{family}: done", flush=True)
    print(table)
    print(f"wrote {out / 'bench_export.json'} and {out / 'bench_export.md'}")


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--out", default="bench-results/export")
    parser.add_argument("--repeats-1", type=int, default=30)
    parser.add_argument("--repeats-256", type=int, default=5)
    parser.add_argument("--passes", type=int, default=2, help="rounds over all runtimes")
    parser.add_argument("--fit-steps", type=int, default=0,
                        help="train this many steps on mnist5k first (realistic weights)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child mode: one group
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        child(args)
    else:
        parent(args, parser)


if __name__ == "__main__":
    main()
