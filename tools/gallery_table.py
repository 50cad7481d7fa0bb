"""The pretrained gallery's scores as a Markdown table, read from each saved_models/RUN/eval.json.

    python tools/gallery_table.py                 # every run folder with an eval.json
    python tools/gallery_table.py --runs cgan-mnist5k,cddpm-fashion
    python tools/gallery_table.py --root /tmp/runs --train-minutes   # any folder of runs
    python tools/gallery_table.py --runs /tmp/a,/tmp/b --json out.json  # runs by path, + JSON

One row per run: classifier-FID, precision, recall and class consistency beside the real floor
(the same scores for real training images), and the classifier's test accuracy, since scores
compare only within one classifier. Prints the table (README.md and saved_models/README.md
quote it). `--train-minutes` adds each run's training wall time (config.json's started and
finished; a resumed run counts from its first start, pauses included), for quality-against-time
comparisons.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SAVED = Path(__file__).resolve().parents[1] / "saved_models"


def numbers(run: Path) -> dict:
    """One run's scores and settings (what --json writes and each table row shows), read once."""
    scores = json.loads((run / "eval.json").read_text())
    config = json.loads((run / "config.json").read_text())
    consistency = scores.get("class_consistency") or {}
    per_class = [v for v in consistency.get("per_class") or [] if v is not None]
    finished = config.get("finished")
    return {
        "run": run.name, "family": config.get("family"), "dataset": config["dataset"],
        "epochs": config["epochs"], "batch_size": config["batch_size"],
        "model_args": config.get("model_kwargs") or {},
        "model": scores["model"], "real_floor": scores["real_floor"],
        "class_consistency": consistency.get("overall"),
        "class_consistency_lowest": min(per_class) if per_class else None,
        "class_consistency_real": consistency.get("real_floor"),
        "classifier_accuracy": scores["classifier"]["test_accuracy"],
        "train_minutes": (finished - config["started"]) / 60 if finished else None,
    }


def row(run: dict, train_minutes: bool = False) -> str:
    """One Markdown row from numbers(run)."""
    model, floor = run["model"], run["real_floor"]
    classes = (f"{run['class_consistency']:.3f} (lowest {run['class_consistency_lowest']:.2f}; "
               f"real {run['class_consistency_real']:.3f})"
               if run["class_consistency"] is not None else "-")
    dataset = "Fashion-MNIST" if "fashion" in run["dataset"] else run["dataset"]
    epochs = run["epochs"]
    return (f"| `{run['run']}` | {dataset}, {epochs} epoch{'s' * (epochs != 1)} of "
            f"{run['batch_size']} | "
            f"{model['fid']:.2f} ({floor['fid']:.2f}) | {model['precision']:.2f} "
            f"({floor['precision']:.2f}) | {model['recall']:.2f} ({floor['recall']:.2f}) | "
            f"{classes} | {run['classifier_accuracy']:.3f} |"
            + (f" {run['train_minutes']:.1f} |" if train_minutes else ""))


def table(runs: list[dict], train_minutes: bool = False) -> str:
    """A Markdown table of numbers(run) for each run."""
    header = ("| run | trained on | classifier-FID (real) | precision (real) | recall (real) | "
              "class consistency | classifier accuracy |")
    rule = "|---|---|---|---|---|---|---|"
    if train_minutes:
        header, rule = header + " train minutes |", rule + "---|"
    return "\n".join([header, rule] + [row(run, train_minutes) for run in runs])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", help="comma-separated run folder names (default: all)")
    parser.add_argument("--root", default=str(SAVED),
                        help="the folder holding the runs (default: saved_models/)")
    parser.add_argument("--train-minutes", action="store_true",
                        help="add a column: training wall minutes from config.json")
    parser.add_argument("--json", help="also write each run's numbers to this JSON file")
    args = parser.parse_args()
    root = Path(args.root)
    if not root.is_dir():
        parser.error(f"--root {args.root!r} is not a folder")
    names = args.runs.split(",") if args.runs else None
    runs = [root / name for name in names] if names else sorted(
        p.parent for p in root.glob("*/eval.json"))
    missing = [str(run) for run in runs if not (run / "eval.json").is_file()]
    if missing:
        parser.error(f"no eval.json in {', '.join(missing)}")
    read = [numbers(run) for run in runs]
    unfinished = [str(run) for run, each in zip(runs, read)
                  if args.train_minutes and each["train_minutes"] is None]
    if unfinished:
        parser.error(f"--train-minutes: no finished time in {', '.join(unfinished)}/config.json")
    print(table(read, args.train_minutes))
    if args.json:
        Path(args.json).write_text(json.dumps(read, indent=2) + "\n")


if __name__ == "__main__":
    main()
