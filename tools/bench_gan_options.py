"""The GAN training options (EMA, DiffAugment, hinge + spectral norm, R1) on the demo's budget.

Trains `--family` (default cgan) with `zoo.train.train` exactly as tools/demo.sh does (mnist5k,
12 epochs, batch 64, seed 0) once per named configuration, scores each run with
`zoo.evaluate.evaluate_run` (classifier-FID, KID, precision/recall, class consistency overall and
per class) and merges the rows into `--out` (JSON) and its .md table, so configurations can be
run in several sittings. Every option is given explicitly, so a row means the same whatever the
family's defaults are:

    python tools/bench_gan_options.py --configs baseline,ema,diffaugment [--seed 1]
    python tools/bench_gan_options.py --configs baseline,ema_hinge_sn_r1 --step-time

`--step-time` trains nothing to the end: it times train steps of the configs interleaved, so a
busy machine slows every config alike (the wall times of whole runs are not comparable here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

OFF = {"ema_decay": 0.0, "augment": "", "gan_loss": "nonsaturating", "spectral_norm": False,
       "r1_weight": 0.0, "class_loss_weight": 0.0, "class_norm": False,
       "upsampling": "transpose"}
CONFIGS = {
    "baseline": {},
    "ema": {"ema_decay": 0.999},
    "diffaugment": {"augment": "translation,cutout"},
    "hinge_sn": {"gan_loss": "hinge", "spectral_norm": True},
    "r1": {"r1_weight": 0.1},
    "ema_hinge_sn": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True},
    "ema_hinge_sn_r1": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                        "r1_weight": 0.1},
    "ema_hinge_sn_ac": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                        "class_loss_weight": 1.0},
    "ema_hinge_sn_ac_resize": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                               "class_loss_weight": 1.0, "upsampling": "resize"},
    "ema_hinge_sn_ac05_resize": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                                 "class_loss_weight": 0.5, "upsampling": "resize"},
    "ema_hinge_sn_ac_resize_cbn": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                                   "class_loss_weight": 1.0, "upsampling": "resize",
                                   "class_norm": True},
    "ema_hinge_sn_ac05_resize_cbn": {"ema_decay": 0.999, "gan_loss": "hinge",
                                     "spectral_norm": True, "class_loss_weight": 0.5,
                                     "upsampling": "resize", "class_norm": True},
    "ema_hinge_sn_ac_cbn": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                            "class_loss_weight": 1.0, "class_norm": True},
    "default_small": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                      "class_loss_weight": 1.0, "upsampling": "resize", "class_norm": True,
                      "latent_dim": 32, "base_filters": 32},
    "ema_hinge_sn_resize_cbn": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                                "upsampling": "resize", "class_norm": True},
    "ema_hinge_sn_ac3": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                         "class_loss_weight": 3.0},
    "ema_hinge_sn_ac02": {"ema_decay": 0.999, "gan_loss": "hinge", "spectral_norm": True,
                          "class_loss_weight": 0.2},
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="baseline,ema,diffaugment,hinge_sn,r1",
                        help=f"comma-separated names from {', '.join(CONFIGS)}")
    parser.add_argument("--family", default="cgan")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=2000, help="samples scored per run")
    parser.add_argument("--runs", default="runs/bench-gan-options", help="run folders (kept)")
    parser.add_argument("--out", default="bench-results/gan_options.json")
    parser.add_argument("--step-time", action="store_true",
                        help="instead of training: seconds per train step of each config, "
                        "interleaved (the machine's load hits every config alike)")
    args = parser.parse_args()
    unknown = sorted(set(args.configs.split(",")) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {', '.join(CONFIGS)}")
    return args


def row_key(name: str, seed: int) -> str:
    """Rows of the default seed 0 are keyed by config name, others NAME@seedN."""
    return name if seed == 0 else f"{name}@seed{seed}"


def train_and_score(args, name: str) -> dict:
    from zoo import evaluate, train

    run_dir = Path(args.runs) / f"{args.family}-{row_key(name, args.seed)}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a finished run is never overwritten by train
    options = {**OFF, **CONFIGS[name]}
    start = time.perf_counter()
    train.train(
        args.family, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
        seed=args.seed, out=run_dir, model_kwargs=options, verbose=0,
    )
    train_seconds = time.perf_counter() - start
    result = evaluate.evaluate_run(run_dir, dataset=args.dataset, n=args.n)
    consistency = result.get("class_consistency") or {}
    per_class = consistency.get("per_class") or []
    return {
        "config": name,
        "seed": args.seed,
        "options": options,
        "train_seconds": round(train_seconds, 1),
        "class_consistency": consistency.get("overall"),
        "min_class_consistency": min((v for v in per_class if v is not None), default=None),
        "worst_class": per_class.index(min(per_class)) if per_class else None,
        "per_class": per_class,
        "fid": result["model"]["fid"],
        "kid": result["model"]["kid"],
        "precision": result["model"]["precision"],
        "recall": result["model"]["recall"],
        "run": str(run_dir),
    }


def step_times(args, names, steps: int = 10, rounds: int = 6) -> dict:
    """Seconds per train step of each config: the fastest of `rounds` interleaved rounds (on a
    shared machine other load only ever adds time, so the minimum is the steadiest figure)."""
    import keras

    import zoo

    data = zoo.data.load(args.dataset, split="train", batch_size=args.batch_size, seed=0)
    info = zoo.data.info(args.dataset)
    models = {}
    for name in names:
        keras.utils.set_random_seed(args.seed)
        kwargs = {"num_classes": info.num_classes} if args.family != "gan" else {}
        model = zoo.build(args.family, image_shape=info.image_shape, seed=args.seed,
                          **kwargs, **{**OFF, **CONFIGS[name]})
        model.compile()
        model.fit(data.take(2), epochs=1, verbose=0, shuffle=False)  # trace outside the timing
        models[name] = model
    seconds = {name: [] for name in names}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(data.take(steps), epochs=1, verbose=0, shuffle=False)
            seconds[name].append((time.perf_counter() - start) / steps)
    return {name: round(min(values), 4) for name, values in seconds.items()}


def write_report(out: Path, args, rows: dict) -> None:
    report = {"benchmark": "gan_options_demo_budget", "family": args.family,
              "dataset": args.dataset, "epochs": args.epochs, "batch_size": args.batch_size,
              "n": args.n, "results": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        (f"{args.family} on {args.dataset}, {args.epochs} epochs of batch {args.batch_size}; "
         f"{args.n} samples scored (classifier-FID: lower is better); train s is wall time on "
         "a shared, loaded 2-core CPU machine; s/step: fastest of 6 interleaved 10-step rounds "
         "(`--step-time`), the fairer speed comparison."),
        "",
        ("| config | seed | options | class consistency | worst class | FID | KID | precision "
         "| recall | train s | s/step |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        changed = {k: v for k, v in row["options"].items() if OFF.get(k) != v}
        options = ", ".join(f"{k}={v}" for k, v in changed.items()) or "(all off)"
        lines.append(
            f"| {row['config']} | {row.get('seed', 0)} | {options} | "
            f"{row['class_consistency']:.3f} | "
            f"{row['worst_class']}: {row['min_class_consistency']:.3f} | {row['fid']:.3f} | "
            f"{row['kid']:.4f} | {row['precision']:.3f} | {row['recall']:.3f} | "
            f"{row['train_seconds']} | {row.get('seconds_per_step', '-')} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main():
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = Path(args.out)
    rows = json.loads(out.read_text())["results"] if out.exists() else {}
    if args.step_time:
        for name, seconds in step_times(args, args.configs.split(",")).items():
            print(f"{name}: {seconds:.4f} s/step", flush=True)
            if row_key(name, args.seed) in rows:
                rows[row_key(name, args.seed)]["seconds_per_step"] = seconds
        write_report(out, args, rows)
        return
    for name in args.configs.split(","):
        print(f"== {name}: {CONFIGS[name] or 'all options off'}", flush=True)
        rows[row_key(name, args.seed)] = train_and_score(args, name)
        write_report(out, args, rows)  # after every run: a partial report survives a crash


if __name__ == "__main__":
    main()
