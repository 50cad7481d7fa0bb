"""The pretrained gallery's scores as a Markdown table, read from each saved_models/RUN/eval.json.

    python tools/gallery_table.py                 # every run folder with an eval.json
    python tools/gallery_table.py --runs cgan-mnist5k,cddpm-fashion

One row per run: classifier-FID, precision, recall and class consistency beside the real floor
(the same scores for real training images), and the classifier's test accuracy, since scores
compare only within one classifier. Prints the table (README.md and saved_models/README.md
quote it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SAVED = Path(__file__).resolve().parents[1] / "saved_models"


def row(run: Path) -> str:
    scores = json.loads((run / "eval.json").read_text())
    config = json.loads((run / "config.json").read_text())
    model, floor = scores["model"], scores["real_floor"]
    consistency = scores.get("class_consistency") or {}
    per_class = [v for v in consistency.get("per_class") or [] if v is not None]
    classes = (f"{consistency['overall']:.3f} (lowest {min(per_class):.2f}; real "
               f"{consistency['real_floor']:.3f})" if consistency else "-")
    dataset = "Fashion-MNIST" if "fashion" in config["dataset"] else config["dataset"]
    return (f"| `{run.name}` | {dataset}, {config['epochs']} epochs of {config['batch_size']} | "
            f"{model['fid']:.2f} ({floor['fid']:.2f}) | {model['precision']:.2f} "
            f"({floor['precision']:.2f}) | {model['recall']:.2f} ({floor['recall']:.2f}) | "
            f"{classes} | {scores['classifier']['test_accuracy']:.3f} |")


def table(runs) -> str:
    lines = ["| run | trained on | classifier-FID (real) | precision (real) | recall (real) | "
             "class consistency | classifier accuracy |", "|---|---|---|---|---|---|---|"]
    return "\n".join(lines + [row(run) for run in runs])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", help="comma-separated run folder names (default: all)")
    args = parser.parse_args()
    names = args.runs.split(",") if args.runs else None
    runs = [SAVED / name for name in names] if names else sorted(
        p.parent for p in SAVED.glob("*/eval.json"))
    missing = [str(run) for run in runs if not (run / "eval.json").is_file()]
    if missing:
        parser.error(f"no eval.json in {', '.join(missing)}")
    print(table(runs))


if __name__ == "__main__":
    main()
