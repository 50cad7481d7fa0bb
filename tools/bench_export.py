"""Benchmark exported generators: sizes, accuracy and speed in every runtime, as JSON + markdown.

    python tools/bench_export.py [--families gan,cgan,vae] [--out saved_models/bench-export]
                                 [--repeats-1 50] [--repeats-256 5] [--fit-steps 0]

For each family (default architecture sizes), exports SavedModel, ONNX and TFLite fp32 / fp16 /
dynamic-range / int8 at static batch 1 and 256, then measures batch-1 latency and batch-256
throughput in Keras (eager call), the TF SavedModel signature, ONNX Runtime and LiteRT. ONNX
Runtime is measured three ways, to show what each fix buys:
  ort-baseline   tf2onnx's graph, default InferenceSession (= `model.export(format="onnx")`)
  ort-rewritten  the exported (phase-conv) graph, default InferenceSession
  ort-runtime    the exported graph through exporters.runtime (1 intra-op thread per call,
                 batch split into concurrent per-core chunks)
Runtimes are timed in interleaved rounds (one call each per round) so load on a shared machine
hits them alike; the table gives the median, the JSON also the best call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

FAMILIES = {"gan": {}, "cgan": {"num_classes": 10}, "vae": {}}
QUANTIZE = ("fp16", "dynamic", "int8")
BIG_BATCH = 256


def build(family, fit_steps):
    import zoo

    model = zoo.build(family, image_shape=(28, 28, 1), seed=0, **FAMILIES[family])
    if fit_steps:
        model.compile()
        ds = zoo.data.load("mnist5k", split="train", batch_size=64).repeat()
        model.fit(ds, epochs=1, steps_per_epoch=fit_steps, verbose=0)
    return model


def feeds_for(model, n):
    from exporters.runtime import latents

    feeds = {"z": latents(n, model.latent_dim, seed=n)}
    if model.num_classes:
        feeds["label"] = (np.arange(n) % model.num_classes).astype(np.int32)
    return feeds


def runners(model, folder, baseline_onnx):
    """name -> (callable(feeds) -> images, artifact file or None)."""
    import onnxruntime as ort
    import tensorflow as tf

    from exporters import runtime

    generator = model.generator

    def keras_call(feeds):
        values = list(feeds.values())
        return np.asarray(generator(values[0] if len(values) == 1 else values, training=False))

    serve = tf.saved_model.load(str(folder / "generator_saved_model")).signatures["serve"]

    def saved_model_call(feeds):
        return serve(**{k: tf.constant(v) for k, v in feeds.items()})["images"].numpy()

    def session_call(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(["images"], feeds)[0]

    backend = runtime.OnnxBackend(folder / "generator.onnx")
    table = {
        "keras": (keras_call, None),
        "saved_model": (saved_model_call, "generator_saved_model"),
        "ort-baseline": (session_call(baseline_onnx), None),
        "ort-rewritten": (session_call(folder / "generator.onnx"), "generator.onnx"),
        "ort-runtime": (lambda feeds: backend.run(feeds)["images"], "generator.onnx"),
    }
    for quantization in ("none", *QUANTIZE):
        tag = "" if quantization == "none" else f"-{quantization}"
        backends = {
            b: runtime.LiteRTBackend(folder / f"generator{tag}-b{b}.tflite") for b in (1, BIG_BATCH)
        }

        def litert_call(feeds, backends=backends):
            n = len(next(iter(feeds.values())))
            return backends[1 if n == 1 else BIG_BATCH].run(feeds)["images"]

        name = "litert-" + ("fp32" if quantization == "none" else quantization)
        table[name] = (litert_call, f"generator{tag}-b1.tflite")
    return table


def time_interleaved(table, feeds, rounds):
    """name -> (wall seconds, process CPU seconds) per call, one call per runtime per round.

    CPU seconds (all threads of this process) are the work a call costs; on a loaded machine
    they move far less than wall time does."""
    for call, _ in table.values():
        call(feeds)
    times = {name: ([], []) for name in table}
    for _ in range(rounds):
        for name, (call, _) in table.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call(feeds)
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return times


def bench_family(family, out_root, args):
    import exporters
    from exporters.onnx import export_onnx

    model = build(family, args.fit_steps)
    folder = out_root / family
    report = exporters.export(
        model, folder, quantize=QUANTIZE, tflite_batch_sizes=(1, BIG_BATCH), overwrite=True
    )
    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "baseline.onnx"
        export_onnx(model.generator, baseline, optimize=False)
        table = runners(model, folder, baseline)
        small, big = feeds_for(model, 1), feeds_for(model, BIG_BATCH)
        reference = table["keras"][0](big)
        accuracy = {
            name: float(np.abs(call(big) - reference).max()) for name, (call, _) in table.items()
        }
        latency = time_interleaved(table, small, args.repeats_1)
        throughput = time_interleaved(table, big, args.repeats_256)
    rows = {}
    for name, (_, artifact) in table.items():
        entry = report["artifacts"].get(artifact, {}) if artifact else {}
        (lat, lat_cpu), (thr, thr_cpu) = latency[name], throughput[name]
        rows[name] = {
            "artifact": artifact,
            "bytes": entry.get("bytes"),
            "verified_max_abs_diff": entry.get("verification", {}).get("max_abs_diff"),
            "max_abs_diff_vs_keras_b256": accuracy[name],
            "batch1_latency_ms_median": 1e3 * statistics.median(lat),
            "batch1_latency_ms_best": 1e3 * min(lat),
            "batch256_images_per_s_median": BIG_BATCH / statistics.median(thr),
            "batch256_images_per_s_best": BIG_BATCH / min(thr),
            "batch1_cpu_ms_median": 1e3 * statistics.median(lat_cpu),
            "batch256_cpu_ms_median": 1e3 * statistics.median(thr_cpu),
        }
    base = rows["saved_model"]

    def speedups(row):
        return {
            f"batch{size}_speedup_{kind}": (
                base[f"batch1_latency_ms_{kind}"] / row[f"batch1_latency_ms_{kind}"] if size == 1
                else row[f"batch256_images_per_s_{kind}"] / base[f"batch256_images_per_s_{kind}"]
            )
            for size in (1, BIG_BATCH) for kind in ("median", "best")
        } | {
            f"batch{size}_cpu_work_ratio": base[f"batch{size}_cpu_ms_median"]
            / row[f"batch{size}_cpu_ms_median"]
            for size in (1, BIG_BATCH)
        }

    ratios = {name: speedups(row) for name, row in rows.items() if name.startswith("ort")}
    rewrite = report["artifacts"]["generator.onnx"]["graph_rewrite"]
    return {"runtimes": rows, "ort_vs_saved_model": ratios, "onnx_graph_rewrite": rewrite,
            "parameters": int(model.generator.count_params())}


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--out", default="saved_models/bench-export")
    parser.add_argument("--repeats-1", type=int, default=50)
    parser.add_argument("--repeats-256", type=int, default=5)
    parser.add_argument("--fit-steps", type=int, default=0,
                        help="train this many steps on mnist5k first (realistic weights)")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {sorted(FAMILIES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from exporters import manifest

    results = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "versions": manifest.versions(),
        "settings": vars(args),
        "families": {},
    }
    for family in families:
        results["families"][family] = bench_family(family, out / "artifacts", args)
        print(f"{family}: done", flush=True)
    results["machine"]["load_average_after"] = os.getloadavg()
    (out / "bench_export.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / "bench_export.md").write_text(table + "\n")
    print(table)
    print(f"wrote {out / 'bench_export.json'} and {out / 'bench_export.md'}")


if __name__ == "__main__":
    main()
