"""Train throughput: Keras `fit` against the same train_step in a bare tf.function loop.

For each family and replica count (1, and 2 logical devices of one CPU or 2 GPUs), times
`steps` batches of `fit` and of the custom loop of the TensorFlow distributed-training guide
(a tf.function step doing `strategy.run(model.train_step, ...)`, called for each batch of the
distributed dataset), alternating `repeats` times, and reports the median images/s and their
ratio (target: fit >= 0.97x bare). With one replica it also times `fit` with XLA
(`jit_compile=True`; XLA fails under MirroredStrategy, so not with 2). Writes JSON and a
markdown table.

    python tools/bench_train.py --out bench-results/train.json [--families gan,cgan,vae]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="gan,cgan,vae")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--out", default="bench-results/train.json")
    return parser.parse_args()


def main():
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from zoo import distribute

    replica_counts = [int(r) for r in args.replicas.split(",")]
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        distribute.split_cpu(max(replica_counts))
    import keras

    import zoo

    def strategy_for(replicas):
        if replicas == 1:
            return distribute.get_strategy("one_device")
        devices = (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))
        if len(devices) < replicas:
            return None
        return distribute.get_strategy("mirrored")

    info = zoo.data.info(args.dataset)
    results = []
    for family in args.families.split(","):
        for replicas in replica_counts:
            strategy = strategy_for(replicas)
            if strategy is None:
                continue
            keras.utils.set_random_seed(0)
            kwargs = {"image_shape": info.image_shape, "seed": 0}
            if zoo.registry.get_model_class(family).conditional:
                kwargs["num_classes"] = info.num_classes
            with strategy.scope():
                model = zoo.build(family, **kwargs)
                model.compile()
            dataset = zoo.data.load(args.dataset, batch_size=args.batch_size, seed=0).repeat()
            dataset = dataset.take(args.steps)
            distributed = strategy.experimental_distribute_dataset(dataset)

            @tf.function
            def bare_step(batch):
                return strategy.run(model.train_step, args=(batch,))

            def time_fit():
                start = time.perf_counter()
                model.fit(dataset, epochs=1, verbose=0)
                return time.perf_counter() - start

            def time_bare():
                start = time.perf_counter()
                for batch in distributed:
                    bare_step(batch)
                return time.perf_counter() - start

            time_fit(), time_bare()  # trace both
            fit_times, bare_times = [], []
            for _ in range(args.repeats):
                fit_times.append(time_fit())
                bare_times.append(time_bare())
            images = args.steps * args.batch_size
            fit_ips = images / statistics.median(fit_times)
            bare_ips = images / statistics.median(bare_times)
            xla_ips = None
            if replicas == 1:
                model.compile(jit_compile=True)
                time_fit()  # compile
                xla_ips = images / statistics.median(time_fit() for _ in range(args.repeats))
            row = {
                "family": family,
                "replicas": replicas,
                "device": "gpu" if gpus else "cpu",
                "fit_images_per_s": round(fit_ips, 1),
                "bare_images_per_s": round(bare_ips, 1),
                "fit_over_bare": round(fit_ips / bare_ips, 3),
                "fit_xla_images_per_s": None if xla_ips is None else round(xla_ips, 1),
                "xla_over_no_xla": None if xla_ips is None else round(xla_ips / fit_ips, 3),
            }
            print(json.dumps(row), flush=True)
            results.append(row)

    report = {
        "benchmark": "train_fit_vs_bare",
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "gpus": len(gpus), "python": platform.python_version(),
                    "tensorflow": tf.__version__, "keras": keras.__version__},
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    table = [
        "| family | replicas | fit img/s | bare img/s | fit/bare | fit+XLA img/s | XLA/no XLA |",
        "|---|---|---|---|---|---|---|",
    ]
    table += [
        f"| {r['family']} | {r['replicas']} | {r['fit_images_per_s']} | "
        f"{r['bare_images_per_s']} | {r['fit_over_bare']} | "
        f"{r['fit_xla_images_per_s'] or '-'} | {r['xla_over_no_xla'] or '-'} |"
        for r in results
    ]
    out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
