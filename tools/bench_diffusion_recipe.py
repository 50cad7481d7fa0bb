"""Where a cddpm train step spends its time, and what the fast-recipe options buy on a CPU.

Three parts, each writing JSON + markdown under bench-results/ (run them one after another):

    python tools/bench_diffusion_recipe.py profile   # tf.profiler trace of one train step:
        # share of convolutions, GroupNorm, attention, SiLU, optimizer/EMA, per resolution
    python tools/bench_diffusion_recipe.py speed     # images/s per train step of each variant
        # (classic/lean U-Net, float32/mixed_bfloat16), interleaved, as ratios to the old default
    python tools/bench_diffusion_recipe.py curve --recipe new --checkpoints 100,200,300
        # trains one recipe on Fashion-MNIST, scoring classifier-FID (zoo.evaluate's
        # classifier, --n samples against the test split) at optimizer-step checkpoints
    python tools/bench_diffusion_recipe.py gan RUN   # the same score for a trained gan run
    python tools/bench_diffusion_recipe.py report    # one table from the files above

"old" is the cddpm default before the recipe (classic U-Net, epsilon, unweighted), "new" the
current default. Training time excludes scoring; the curve records both.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

DATASET = "idx:/usr/share/datasets/fashion-mnist"
OUT = Path("bench-results")
# keyword sets of zoo.build("cddpm", ...) compared here; "old" is the default before the recipe.
RECIPES = {
    "old": {"unet": "classic", "min_group_channels": 1, "prediction": "epsilon",
            "loss_weighting": "none"},
    "new": {},
    "lean-eps": {"unet": "lean", "prediction": "epsilon", "loss_weighting": "none"},
    "classic-v-minsnr": {"unet": "classic", "min_group_channels": 1},
}
PRECISIONS = ("float32", "mixed_bfloat16")


def machine() -> dict:
    import keras
    import tensorflow as tf

    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "load_average": os.getloadavg(), "tensorflow": tf.__version__,
            "keras": keras.__version__}


def build(recipe: str, precision: str = "float32", seed: int = 0):
    import zoo

    kwargs = dict(RECIPES[recipe])
    if precision != "float32":
        kwargs["dtype"] = precision
    model = zoo.build("cddpm", image_shape=(28, 28, 1), num_classes=10, seed=seed, **kwargs)
    model.compile()
    return model


def fixed_step(model, batch_size: int):
    """A tf.function of one train step on a fixed random batch (what fit runs per batch)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (batch_size, 28, 28, 1)).astype("float32"))
    labels = tf.constant(rng.integers(0, 10, batch_size).astype("int32"))
    step = tf.function(lambda: model.train_step((images, labels)))
    step()  # trace
    step()
    return step


# ---- profile ---------------------------------------------------------------------------------
KINDS = (("attention", ("_attn",)), ("groupnorm", ("_norm",)), ("silu", ("_act", "silu")),
         ("convolution", ("conv", "_skip", "stem", "downsample", "prediction")),
         ("embedding", ("embedding", "time_", "sinusoidal")),
         ("optimizer+ema", ("adamw", "assign", "ema_denoiser", "merge")))


def kind_of(op: str) -> str:
    name = op.lower()
    for kind, keys in KINDS:
        if any(key in name for key in keys):
            return kind
    return "other (add, concat, loss, noise)"


def level_of(op: str) -> str:
    for prefix, level in (("stem", 0), ("prediction", 0), ("out_", 0), ("middle", None)):
        if f"/{prefix}" in op:
            return "7x7" if level is None else "28x28"
    # downsample{l} writes level l + 1; upsample{l}_conv runs at level l - 1 (after the x2)
    for kind, shift in (("downsample", 1), ("upsample", -1), ("down", 0), ("up", 0)):
        for part in op.split("/"):
            if part.startswith(kind) and len(part) > len(kind) and part[len(kind)].isdigit():
                level = int(part[len(kind)]) + shift
                return ("28x28", "14x14", "7x7")[min(level, 2)]
    return "-"


def profile(args):
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    model = build(args.recipe)
    step = fixed_step(model, args.batch_size)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - started) / args.steps
    logdir = tempfile.mkdtemp(prefix="diffusion-profile-")
    tf.profiler.experimental.start(logdir)
    for _ in range(args.steps):
        step()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(max(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)))
                          .read_bytes())
    by_kind, by_level, by_op = collections.Counter(), collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or name.startswith("ExecutorState"):
                    continue  # op events are "scope/op:Type"; the rest are their parents
                ms = event.duration_ps / 1e9 / args.steps
                by_kind[kind_of(name)] += ms
                by_level[level_of(name)] += ms
                by_op[name] += ms
    total = sum(by_kind.values())
    result = {
        "recipe": args.recipe, "config": RECIPES[args.recipe], "batch_size": args.batch_size,
        "seconds_per_step": seconds, "images_per_s": args.batch_size / seconds,
        "op_ms_per_step": total,
        "share_by_kind": {k: v / total for k, v in by_kind.most_common()},
        "share_by_resolution": {k: v / total for k, v in by_level.most_common()},
        "top_ops_ms": dict(by_op.most_common(15)),
        "ops_ms": dict(by_op.most_common()),
        "parameters": int(model.denoiser.count_params()), "machine": machine(),
    }
    lines = [(f"One train step of cddpm ({args.recipe}) at 28x28, batch {args.batch_size}: "
             f"{seconds:.2f} s ({result['images_per_s']:.0f} images/s), "
             f"{result['parameters']:,} parameters; op time summed over threads "
             f"{total:.0f} ms."), "", "| op kind | share |", "|---|---:|"]
    lines += [f"| {k} | {v:.1%} |" for k, v in result["share_by_kind"].items()]
    lines += ["", "| resolution | share |", "|---|---:|"]
    lines += [f"| {k} | {v:.1%} |" for k, v in result["share_by_resolution"].items()]
    write(result, lines, f"diffusion_profile_{args.recipe}")


# ---- speed -----------------------------------------------------------------------------------
def speed(args):
    variants = [(r, p) for r in args.recipes.split(",") for p in args.precisions.split(",")]
    steps = {v: fixed_step(build(*v), args.batch_size) for v in variants}
    times = collections.defaultdict(list)
    for _ in range(args.repeats):  # interleaved, so a busy spell hits every variant alike
        for variant, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[variant].append((time.perf_counter() - started) / args.steps)
    base = statistics.median(times[variants[0]])
    rows = [{"recipe": r, "precision": p, "seconds_per_step": statistics.median(times[(r, p)]),
             "images_per_s": args.batch_size / statistics.median(times[(r, p)]),
             "speedup_vs_first": base / statistics.median(times[(r, p)]),
             "all_seconds": times[(r, p)]} for r, p in variants]
    result = {"batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
              "rows": rows, "machine": machine()}
    lines = [(f"Train-step speed at 28x28, batch {args.batch_size}, median of {args.repeats} "
             f"interleaved runs of {args.steps} steps (one process, this machine)."), "",
             "| recipe | precision | s / step | images / s | x first row |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {r['recipe']} | {r['precision']} | {r['seconds_per_step']:.2f} | "
              f"{r['images_per_s']:.0f} | {r['speedup_vs_first']:.2f} |" for r in rows]
    write(result, lines, "diffusion_speed")


# ---- quality against wall-clock --------------------------------------------------------------
class Scorer:
    """classifier-FID of n balanced samples against the test split, and class consistency."""

    def __init__(self, n: int, classifier_epochs: int, classifier_max_train: int):
        """zoo.evaluate's default classifier takes about 68 min to train on 2 cores; a shorter
        one (same architecture, cached under its own key) ranks runs alike for a comparison."""
        import zoo
        from zoo import evaluate

        self.n = n
        settings = evaluate.classifier_overrides(classifier_epochs, classifier_max_train)
        self.classifier = evaluate.load_classifier(DATASET, **settings)
        test_images, _ = zoo.data.load_arrays(DATASET, "test")
        self.real, _ = self.classifier.embed(test_images)
        self.evaluate = evaluate

    def __call__(self, model, **options) -> dict:
        import numpy as np

        labels = np.arange(self.n) % 10 if model.num_classes else None
        started = time.perf_counter()
        images = model.sample(self.n, labels=labels, seed=0, **options)
        seconds = time.perf_counter() - started
        features, predicted = self.classifier.embed(images)
        score = {"fid": self.evaluate.frechet_distance(self.real, features),
                 "sample_seconds": seconds, "n": self.n, **options}
        if labels is not None:
            score["class_consistency"] = self.evaluate.class_consistency(
                labels, predicted, 10)["overall"]
        return score


def curve(args):
    import keras

    import zoo

    scorer = Scorer(args.n, args.classifier_epochs, args.classifier_max_train)
    model = build(args.recipe, args.precision, seed=args.seed)
    dataset = zoo.data.load(DATASET, batch_size=args.batch_size, seed=args.seed).repeat()
    points = []

    class Clock(keras.callbacks.Callback):
        """Scores at each checkpoint of optimizer steps, and stops there or at the wall-clock
        deadline. Steps are the x axis that a busy machine does not distort; wall and CPU
        seconds of training (scoring excluded) are recorded beside them."""

        def __init__(self, steps, deadline_minutes):
            super().__init__()
            self.checkpoints = list(steps)
            self.deadline = time.perf_counter() + deadline_minutes * 60
            self.wall = self.cpu = 0.0
            self.since = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            self.wall += time.perf_counter() - self.since[0]
            self.cpu += time.process_time() - self.since[1]
            done = int(model.optimizer.iterations.numpy())
            late = time.perf_counter() > self.deadline
            if done >= self.checkpoints[0] or late:
                while self.checkpoints and done >= self.checkpoints[0]:
                    self.checkpoints.pop(0)
                points.append({"optimizer_steps": done, "train_wall_minutes": self.wall / 60,
                               "train_cpu_minutes": self.cpu / 60, "loss": float(logs["loss"]),
                               "load_average": os.getloadavg()[0],
                               **scorer(model, steps=args.sampling_steps)})
                print(json.dumps(points[-1]), flush=True)
                model.stop_training = late or not self.checkpoints
            self.since = (time.perf_counter(), time.process_time())

    clock = Clock([int(m) for m in args.checkpoints.split(",")], args.deadline_minutes)
    model.fit(dataset, epochs=10**6, steps_per_epoch=args.chunk, verbose=0, callbacks=[clock])
    step_rows = []
    for steps in [int(s) for s in args.step_sweep.split(",") if s]:
        step_rows.append(scorer(model, steps=steps))
        print(json.dumps(step_rows[-1]), flush=True)
    sample_2000 = None
    if args.step_sweep:  # the sampling-time measurement goes with the sweep (it takes minutes)
        started = time.perf_counter()
        model.sample(2000, labels=[i % 10 for i in range(2000)], seed=1, steps=args.sampling_steps)
        sample_2000 = time.perf_counter() - started
    steps_per_epoch = 60000 // args.batch_size
    result = {"recipe": args.recipe, "config": model.get_config(), "precision": args.precision,
              "batch_size": args.batch_size, "steps_per_epoch": steps_per_epoch,
              "points": points, "sampling_steps_sweep": step_rows,
              "sample_2000_seconds": sample_2000, "sample_2000_steps": args.sampling_steps,
              "parameters": int(model.denoiser.count_params()), "machine": machine()}
    lines = [(f"cddpm {args.recipe} ({args.precision}) on Fashion-MNIST, batch "
             f"{args.batch_size}; classifier-FID of {args.n} samples (DDIM, guidance "
             f"{model.guidance_scale:g}) against the test split."), "",
             ("| steps | train wall min | train CPU min | DDIM steps | FID | class consistency "
             "| sample s |"), "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {p['optimizer_steps']} | {p['train_wall_minutes']:.1f} | "
              f"{p['train_cpu_minutes']:.1f} | {p['steps']} | "
              f"{p['fid']:.2f} | {p['class_consistency']:.3f} | {p['sample_seconds']:.0f} |"
              for p in points]
    lines += [f"| (end) | - | - | {r['steps']} | {r['fid']:.2f} | {r['class_consistency']:.3f} | "
              f"{r['sample_seconds']:.0f} |" for r in step_rows]
    lines += ["", (f"Sampling 2,000 images at {args.sampling_steps} DDIM steps (Keras, guided): "
              f"{sample_2000:.0f} s.")]
    write(result, lines, f"diffusion_curve_{args.recipe}_{args.precision}")


def gan(args):
    import keras

    from zoo import registry

    registry.register_all()
    run = Path(args.run)
    model = keras.models.load_model(run / "model.keras")
    timing = json.loads(Path(args.timing).read_text()) if args.timing else {}
    scorer = Scorer(args.n, args.classifier_epochs, args.classifier_max_train)
    score = scorer(model)
    result = {"family": model.family if hasattr(model, "family") else "gan",
              "run": str(run), **timing, **score, "machine": machine()}
    lines = [(f"gan, 5 epochs, batch 128, seed 0 (zoo train): "
             f"{timing.get('train_seconds', float('nan')) / 60:.1f} min wall clock (incl. start-up"
             f"), classifier-FID {score['fid']:.2f} on {args.n} samples.")]
    write(result, lines, "diffusion_gan_reference")


def report(args):
    """One summary of the files the other parts wrote (whichever exist)."""
    def load(name):
        path = OUT / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    speed_rows = {(r["recipe"], r["precision"]): r for r in (load("diffusion_speed") or {})
                  .get("rows", [])}
    quiet = args.old_quiet_seconds_per_step
    lines = [("Old default cddpm against the new one on Fashion-MNIST (batch 128). Quiet-machine "
             f"minutes = steps x {quiet} s/step (the issue's measurement of the old default) / "
             "the measured speed ratio; the wall minutes of this busy machine are in the "
             "curve files."), "",
             "| recipe | x old speed (float32) | steps | est. quiet min | FID | class consistency |",
             "|---|---:|---:|---:|---:|---:|"]
    summary = {"old_quiet_seconds_per_step": quiet, "rows": []}
    for recipe in ("old", "new"):
        curve_result = load(f"diffusion_curve_{recipe}_float32")
        ratio = (speed_rows.get((recipe, "float32")) or {}).get("speedup_vs_first")
        for point in (curve_result or {}).get("points", []):
            minutes = point["optimizer_steps"] * quiet / (ratio or float("nan")) / 60
            summary["rows"].append({"recipe": recipe, "speedup": ratio, "quiet_minutes": minutes,
                                    **point})
            lines.append(f"| {recipe} | {ratio or float('nan'):.2f} | {point['optimizer_steps']} | "
                         f"{minutes:.1f} | {point['fid']:.2f} | "
                         f"{point['class_consistency']:.3f} |")
    gan_result = load("diffusion_gan_reference")
    if gan_result:
        summary["gan"] = gan_result
        lines += ["", (f"gan, 5 epochs (2,340 steps): FID {gan_result['fid']:.2f}, class "
                  f"consistency not applicable; {gan_result.get('train_seconds', 0) / 60:.1f} "
                  "wall minutes on this busy machine (about 11 when quiet).")]
    write(summary, lines, "diffusion_recipe")


def write(result: dict, lines: list[str], name: str):
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile")
    p.add_argument("--recipe", default="old", choices=sorted(RECIPES))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=2)
    p = sub.add_parser("speed")
    p.add_argument("--recipes", default="old,new")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("curve")
    p.add_argument("--recipe", default="new", choices=sorted(RECIPES))
    p.add_argument("--precision", default="float32", choices=PRECISIONS)
    p.add_argument("--checkpoints", default="100,200,300,400,500",
                   help="optimizer steps to score at")
    p.add_argument("--deadline-minutes", type=float, default=40.0,
                   help="wall-clock minutes after which it scores once more and stops")
    p.add_argument("--chunk", type=int, default=25, help="steps between clock checks")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--sampling-steps", type=int, default=25)
    p.add_argument("--step-sweep", default="10,25,50")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--classifier-max-train", type=int, default=20000)
    p = sub.add_parser("report")
    p.add_argument("--old-quiet-seconds-per-step", type=float, default=2.1)
    p = sub.add_parser("gan")
    p.add_argument("run")
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--classifier-max-train", type=int, default=20000)
    p.add_argument("--timing", default="")
    p.add_argument("--n", type=int, default=1000)
    return parser.parse_args()


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_args()
    {"profile": profile, "speed": speed, "curve": curve, "gan": gan, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
