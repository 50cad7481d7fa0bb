"""Every family on the same data with the same training budget, scored the same way.

Trains each family with `zoo.train.train` (the same run folders as `zoo train`) for `--epochs`
epochs of `--batch-size` on `--dataset`, then scores it with `zoo.evaluate.evaluate_run`
(classifier-FID and KID against the held-apart split, precision/recall, class consistency for
conditional families, ELBO for VAEs). Writes JSON and a markdown table:

    python tools/compare_families.py --dataset digits --epochs 20 --out bench-results/families.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

DEFAULT_FAMILIES = "gan,cgan,wgan_gp,vae,cvae,cddpm"
COLUMNS = ("fid", "kid", "precision", "recall", "class_consistency", "elbo")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=DEFAULT_FAMILIES)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n", type=int, default=1000, help="samples scored per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-results/families.json")
    return parser.parse_args()


def flatten_scores(result: dict) -> dict:
    """The headline numbers of an eval.json, whatever nesting evaluate_run uses."""
    found = {}

    def visit(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                visit(value, (*path, key))
        elif isinstance(node, (int, float)) and path:
            found.setdefault("/".join(path), node)

    visit(result, ())
    return found


def main():
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from zoo import evaluate, train

    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-compare-") as scratch:
        for family in args.families.split(","):
            start = time.perf_counter()
            run = train.train(
                family, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                seed=args.seed, out=Path(scratch) / family, verbose=0,
            )
            train_seconds = time.perf_counter() - start
            result = evaluate.evaluate_run(run, dataset=args.dataset, n=args.n)
            print(evaluate.format_table(result), flush=True)
            rows.append({"family": family, "train_seconds": round(train_seconds, 1),
                         "scores": flatten_scores(result), "eval": result})

    report = {"benchmark": "families_same_budget", **vars(args), "results": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    headline = sorted({k for row in rows for k in row["scores"]
                       if k.split("/")[-1] in COLUMNS or k.split("/")[0] in COLUMNS})
    lines = ["| family | train s | " + " | ".join(headline) + " |",
             "|---|---|" + "---|" * len(headline)]
    for row in rows:
        cells = [f"{row['scores'][k]:.4g}" if k in row["scores"] else "-" for k in headline]
        lines.append(f"| {row['family']} | {row['train_seconds']} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
