"""stylegan against the DCGAN `gan` at the same budget, and what its controls do to quality.

Trains each family with `zoo.train.train` (unconditional: stylegan with num_classes=0) for
`--epochs` epochs of `--batch-size` on `--dataset`, scores it with `zoo.evaluate.evaluate_run`
(classifier-FID, precision, recall) and records the wall time. Then, for the stylegan run,
precision/recall at truncation psi 1.0, 0.9, 0.7, 0.5 (same seeds), and with --conditional
a class-conditional stylegan's style-mixing class share per crossover layer: A's coarse styles
(A's label) with B's fine ones (another label) from layer L on; the evaluation classifier reads
which class the picture shows.

    python tools/bench_stylegan.py --epochs 5 --batch-size 64 --out bench-results/stylegan.json
    python tools/bench_stylegan.py --dataset idx:/usr/share/datasets/fashion-mnist --epochs 1 \
        --classifier-epochs 3 --classifier-max-train 20000 --out bench-results/stylegan_fashion.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

TRUNCATIONS = (1.0, 0.9, 0.7, 0.5)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="gan,stylegan")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n", type=int, default=2000, help="samples scored per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditional", action="store_true",
                        help="also train a conditional stylegan for the mixing class share")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="smoke runs only")
    parser.add_argument("--classifier-epochs", type=int, default=None,
                        help="a cheaper scoring classifier (zoo eval --classifier-epochs)")
    parser.add_argument("--classifier-max-train", type=int, default=None)
    parser.add_argument("--out", default="bench-results/stylegan.json")
    return parser.parse_args()


class Truncated:
    """A model whose sample() uses truncation psi (what evaluate_model calls)."""

    def __init__(self, model, psi):
        self._model, self._psi = model, psi

    def __getattr__(self, name):
        return getattr(self._model, name)

    def sample(self, n, labels=None, seed=None, batch_size=256):
        return self._model.sample(n, labels=labels, seed=seed, batch_size=batch_size,
                                  truncation=self._psi)


def mixing_class_share(model, classifier, n, seed):
    """Per crossover layer L: the share of mixed images the classifier reads as A's class and
    as B's class (A's w on layers < L, B's from L on; B's label differs from A's)."""
    import numpy as np

    from exporters import style_controls as sc
    from exporters.sampling import latents

    rng = np.random.default_rng(seed)
    labels_a = (np.arange(n) % model.num_classes).astype(np.int32)
    labels_b = ((labels_a + rng.integers(1, model.num_classes, n)) % model.num_classes).astype(
        np.int32)
    w_a = model.map(latents(n, model.latent_dim, seed), labels_a)
    w_b = model.map(latents(n, model.latent_dim, seed + 1), labels_b)
    w_avg = np.asarray(model.style_manifest()["w_avg"], np.float32)
    rows = []
    for layer in range(model.num_ws + 1):
        ws = sc.style_inputs(w_a, model.num_ws, w_avg, 1.0, w_b, layer)
        _, predicted = classifier.embed(model.synthesize(ws))
        rows.append({"from_layer": layer, "class_a": float((predicted == labels_a).mean()),
                     "class_b": float((predicted == labels_b).mean())})
    return rows


def main():
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from zoo import evaluate, train

    report = {"benchmark": "stylegan_vs_gan", **vars(args), "results": [], "truncation": [],
              "mixing": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = evaluate.classifier_overrides(args.classifier_epochs, args.classifier_max_train)
    jobs = [(family, {"num_classes": 0} if family == "stylegan" else {})
            for family in args.families.split(",")]
    if args.conditional:
        jobs.append(("stylegan", {"num_classes": 10}))
    with tempfile.TemporaryDirectory(prefix="zoo-stylegan-") as scratch:
        for family, kwargs in jobs:
            label = family + ("-conditional" if kwargs.get("num_classes") else "")
            start = time.perf_counter()
            run = train.train(family, dataset=args.dataset, epochs=args.epochs,
                              batch_size=args.batch_size, seed=args.seed, model_kwargs=kwargs,
                              steps_per_epoch=args.steps_per_epoch,
                              out=Path(scratch) / label, verbose=0)
            seconds = time.perf_counter() - start
            result = evaluate.evaluate_run(run, dataset=args.dataset, n=args.n, seed=args.seed,
                                           classifier_settings=settings)
            scores = result["model"]
            row = {"model": label, "train_seconds": round(seconds, 1),
                   **{k: scores[k] for k in ("fid", "precision", "recall")}}
            if "class_consistency" in result:
                row["class_consistency"] = result["class_consistency"].get("overall")
            report["results"].append(row)
            print(row, flush=True)
            if family != "stylegan":
                continue
            model, _, _ = evaluate.load_generator(run)
            classifier = evaluate.load_classifier(args.dataset, **settings)
            if not kwargs.get("num_classes"):
                for psi in TRUNCATIONS:
                    scored = evaluate.evaluate_model(Truncated(model, psi), args.dataset, args.n,
                                                     classifier=classifier, seed=args.seed)
                    entry = {"truncation": psi, **{k: scored["model"][k]
                                                  for k in ("fid", "precision", "recall")}}
                    report["truncation"].append(entry)
                    print(entry, flush=True)
            else:
                report["mixing"] = mixing_class_share(model, classifier, args.n, args.seed)
                print(report["mixing"], flush=True)
            out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report) -> str:
    lines = [(f"# stylegan vs gan: {report['dataset']}, {report['epochs']} epochs, batch "
              f"{report['batch_size']}, seed {report['seed']}, {report['n']} samples scored"),
             "", "| model | train s | classifier-FID | precision | recall |", "|---|---|---|---|---|"]
    for row in report["results"]:
        lines.append(f"| {row['model']} | {row['train_seconds']} | {row['fid']:.2f} | "
                     f"{row['precision']:.3f} | {row['recall']:.3f} |")
    if report["truncation"]:
        lines += ["", "Truncation (unconditional stylegan, same seeds):", "",
                  "| psi | classifier-FID | precision | recall |", "|---|---|---|---|"]
        lines += [f"| {e['truncation']} | {e['fid']:.2f} | {e['precision']:.3f} | "
                  f"{e['recall']:.3f} |" for e in report["truncation"]]
    if report["mixing"]:
        lines += ["", ("Style mixing (conditional stylegan): A's styles below the crossover, "
                       "B's from it on; share read as A's / B's class:"), "",
                  "| from_layer | A's class | B's class |", "|---|---|---|"]
        lines += [f"| {e['from_layer']} | {e['class_a']:.3f} | {e['class_b']:.3f} |"
                  for e in report["mixing"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
