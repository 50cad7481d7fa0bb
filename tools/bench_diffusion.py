"""DDIM quality against sampling steps, on the TensorFlow-free runtime (ONNX Runtime).

Trains a small class-conditional DDPM (`cddpm`) on `digits` (scikit-learn's 8x8 digits, 1,500
train images) for a wall-clock budget (default 180 s on CPU), exports its EMA denoiser to ONNX,
and for DDIM (eta 0) with 10, 25, 50 and 250 steps (capped at the schedule's timesteps)
samples `--n` images (labels cycling over the classes, the model's guidance scale) with
`exporters.runtime` and reports:

- classifier-FID: Frechet distance between the digits domain classifier's penultimate features
  (zoo.evaluate.load_classifier) of the samples and of the train split (lower is better; the
  test split's own FID against train is given as the floor);
- class consistency: share of samples the classifier assigns to the requested class;
- ORT seconds per 100 images (one `generate(100)` call after a warm-up, this machine's cores).

Writes JSON and a markdown table:

    python tools/bench_diffusion.py [--budget 180] [--n 500] [--out bench-results/diffusion.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds")
    parser.add_argument("--steps", default="10,25,50,250")
    parser.add_argument("--n", type=int, default=500, help="samples per setting")
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-results/diffusion.json")
    return parser.parse_args()


def train(args, info, images, labels):
    import keras

    import zoo

    model = zoo.build(
        "cddpm", image_shape=info.image_shape, num_classes=info.num_classes,
        base_filters=args.base_filters, channel_multipliers=(1, 2), timesteps=args.timesteps,
        ema_decay=0.995, guidance_scale=args.guidance_scale, seed=args.seed,
    )
    model.compile()
    dataset = zoo.data.from_arrays(images, labels, batch_size=args.batch_size, seed=args.seed)
    started, epochs, losses = time.perf_counter(), 0, []
    while time.perf_counter() - started < args.budget:
        history = model.fit(dataset, epochs=1, verbose=0)
        losses.append(float(history.history["loss"][-1]))
        epochs += 1
    seconds = time.perf_counter() - started
    return model, {
        "epochs": epochs, "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "train_seconds": round(seconds, 1), "final_loss": losses[-1],
        "first_loss": losses[0], "keras_version": keras.__version__,
    }


def main():
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    import exporters
    import zoo
    from exporters import runtime
    from zoo import evaluate

    info = zoo.data.info(args.dataset)
    train_images, train_labels = zoo.data.load_arrays(args.dataset, "train")
    test_images, _ = zoo.data.load_arrays(args.dataset, "test")
    classifier = evaluate.load_classifier(args.dataset)
    real_features, _ = classifier.embed(train_images)
    floor = evaluate.frechet_distance(real_features, classifier.embed(test_images)[0])

    model, training = train(args, info, train_images, train_labels)
    out = Path(args.out)
    export_dir = Path(tempfile.mkdtemp(prefix="bench-diffusion-")) / "export"
    exporters.export(model, export_dir, formats=("onnx",))
    generator = runtime.load(export_dir / "generator.onnx")
    timesteps = model.noise_schedule.timesteps
    step_counts = sorted({min(int(s), timesteps) for s in args.steps.split(",")})
    requested = (np.arange(args.n) % info.num_classes).astype(np.int32)
    timing_labels = (np.arange(100) % info.num_classes).astype(np.int32)

    # the runtime gives model.sample's images (a check on 8 images at the fewest steps)
    parity = float(np.abs(
        generator.generate_float(8, timing_labels[:8], seed=1, steps=step_counts[0])
        - model.sample(8, timing_labels[:8], seed=1, steps=step_counts[0])
    ).max())

    rows = []
    for steps in step_counts:
        generator.generate(10, timing_labels[:10], seed=0, steps=steps)  # warm-up
        started = time.perf_counter()
        generator.generate(100, timing_labels, seed=0, steps=steps)
        per_100 = time.perf_counter() - started
        started = time.perf_counter()
        images = generator.generate_float(args.n, requested, seed=args.seed, steps=steps)
        sample_seconds = time.perf_counter() - started
        features, predicted = classifier.embed(images)
        consistency = evaluate.class_consistency(requested, predicted, info.num_classes)
        rows.append({
            "sampler": "ddim", "eta": 0.0, "steps": steps,
            "guidance_scale": args.guidance_scale,
            "classifier_fid": evaluate.frechet_distance(real_features, features),
            "class_consistency": consistency["overall"],
            "ort_seconds_per_100": per_100,
            "ort_seconds_all": sample_seconds, "n": args.n,
        })
        print(json.dumps(rows[-1]), flush=True)

    result = {
        "dataset": args.dataset, "family": "cddpm", "image_shape": list(info.image_shape),
        "model": {"base_filters": args.base_filters, "channel_multipliers": [1, 2],
                  "schedule": model.noise_schedule.config(), "prediction": model.prediction,
                  "parameters": int(model.denoiser.count_params())},
        "training": {**training, "budget_seconds": args.budget, "batch_size": args.batch_size},
        "classifier": {"test_accuracy": classifier.info.get("test_accuracy"),
                       "real_features": "train split", "n_real": len(train_images)},
        "fid_floor_test_vs_train": floor,
        "runtime_vs_keras_max_abs_diff": parity,
        "rows": rows,
        "machine": {"cpus": runtime.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result) + "\n")
    print(markdown(result))


def markdown(result) -> str:
    t = result["training"]
    lines = [
        (
            f"cddpm on {result['dataset']} {tuple(result['image_shape'])}, "
            f"{result['model']['parameters']:,} parameters, trained {t['train_seconds']} s "
            f"({t['epochs']} epochs, {t['optimizer_steps']} steps, batch {t['batch_size']}) on "
            f"{result['machine']['cpus']} CPU cores; schedule {result['model']['schedule']['kind']} "
            f"T={result['model']['schedule']['timesteps']}. Samples from ONNX Runtime "
            f"(runtime vs Keras max abs diff {result['runtime_vs_keras_max_abs_diff']:.1e}); "
            f"classifier-FID against the train split (test split: "
            f"{result['fid_floor_test_vs_train']:.2f}), classifier test accuracy "
            f"{result['classifier']['test_accuracy']:.3f}."
        ),
        "",
        "| DDIM steps | guidance | classifier-FID | class consistency | ORT s / 100 images |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['steps']} | {row['guidance_scale']:g} | {row['classifier_fid']:.2f} | "
            f"{row['class_consistency']:.3f} | {row['ort_seconds_per_100']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
