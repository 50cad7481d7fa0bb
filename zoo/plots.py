"""Pictures of a trained run (PNG): what the numbers of `zoo.evaluate` cannot show.

`plot_run(run_dir, out_dir=None)` writes, into RUN/plots/ by default (the run folder's layout is
`exporters.run_folder.RunFolder`'s):

- samples.png         a grid of samples (fixed seed);
- classes.png         conditional models: one row per class;
- interpolation.png   rows of slerp paths between two latents (fixed label per row if conditional);
- reconstructions.png VAE: rows of held-apart originals, each with its reconstructions below;
- latent_manifold.png VAE with a 2-D latent: decodings over a grid of latent quantiles;
- truncation.png      stylegan: a row per seed, truncation psi 0 .. 1;
- mixing.png          stylegan: seeds A (rows) x seeds B (columns), A's coarse styles with B's
                      fine ones from the middle layer on, A in the first column, B in the first row;
- directions.png      stylegan with directions (`zoo directions RUN`): a strip per direction,
                      amounts -3 .. 3 standard deviations;
- loss_curves.png     every loss column of RUN/history.csv against the epoch.

A run that ships only its export (the committed pretrained runs: no model.keras) gets the
pictures its exported generator can draw (samples, classes, interpolation, through
`exporters.runtime`) and the loss curves; the ones that need the Keras model (a VAE's
reconstructions and manifold need its encoder) are skipped with a one-line note each.

Grids are drawn with `exporters.images`; loss curves with matplotlib's Agg canvas (a declared
dependency) without touching pyplot's global state.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import numpy as np

from exporters.images import save_grid
from exporters.sampling import slerp  # moved there (TF-free); zoo.plots.slerp still works
from zoo.evaluate import left_out_by_export, load_generator

MIN_CELL_PIXELS = 28  # smaller images (8x8 digits) are enlarged, nearest neighbour, to this


# ---- pure helpers ------------------------------------------------------------------------
def latent_grid(size: int, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    """(size * size, 2) latents at standard-normal quantiles: the prior's mass spread evenly."""
    normal = statistics.NormalDist()
    axis = np.array([normal.inv_cdf(q) for q in np.linspace(low, high, size)], np.float32)
    rows, columns = np.meshgrid(axis[::-1], axis, indexing="ij")  # z2 grows upwards
    return np.stack([columns.ravel(), rows.ravel()], axis=1)


def enlarge(images, min_pixels: int = MIN_CELL_PIXELS) -> np.ndarray:
    """Repeat pixels so tiny images stay visible in a grid."""
    images = np.asarray(images)
    factor = max(1, math.ceil(min_pixels / images.shape[1]))
    return images if factor == 1 else images.repeat(factor, axis=1).repeat(factor, axis=2)


def read_history(path) -> dict[str, list[float]]:
    """Columns of a Keras CSVLogger file as float lists (non-numeric cells become NaN)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))

    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):
            return float("nan")

    columns = rows[0].keys() if rows else []
    return {column: [number(row[column]) for row in rows] for column in columns}


# ---- one function per picture ------------------------------------------------------------
def _save(images, path, columns):
    return save_grid(enlarge(images), path, columns)


def plot_samples(model, out_dir: Path, n: int = 64, seed: int = 0) -> dict:
    """n samples; conditional models: one column per class, n rounded up to full rows."""
    columns = model.num_classes or None
    if columns:
        n = columns * math.ceil(n / columns)
    labels = np.arange(n) % columns if columns else None
    return {
        "samples": _save(
            model.sample(n, labels=labels, seed=seed), out_dir / "samples.png", columns
        )
    }


def plot_classes(model, out_dir: Path, per_class: int = 10, seed: int = 0) -> dict:
    if not model.num_classes:
        return {}
    labels = np.repeat(np.arange(model.num_classes), per_class)
    images = model.sample(len(labels), labels=labels, seed=seed)
    return {"classes": _save(images, out_dir / "classes.png", per_class)}


def plot_interpolation(model, out_dir: Path, rows: int = 8, steps: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ends = rng.standard_normal((rows, 2, model.latent_dim)).astype(np.float32)
    z = np.concatenate([slerp(a, b, np.linspace(0.0, 1.0, steps)) for a, b in ends])
    labels = (
        np.repeat(np.arange(rows) % model.num_classes, steps).astype(np.int32)
        if model.num_classes
        else None
    )
    return {"interpolation": _save(model.generate(z, labels), out_dir / "interpolation.png", steps)}


def plot_reconstructions(model, out_dir: Path, dataset, groups: int = 4, columns: int = 10) -> dict:
    """Rows of originals from the held-apart split, each followed by its reconstructions."""
    from zoo import data

    images, labels = data.load_arrays(dataset, "test")
    originals = images[: groups * columns]
    given = {"labels": labels[: groups * columns]} if model.num_classes else {}
    rebuilt = model.reconstruct(originals, **given)
    paired = np.concatenate(
        [
            np.concatenate([originals[i : i + columns], rebuilt[i : i + columns]])
            for i in range(0, len(originals), columns)
        ]
    )
    return {"reconstructions": _save(paired, out_dir / "reconstructions.png", columns)}


def plot_latent_manifold(model, out_dir: Path, size: int = 20) -> dict:
    images = model.decode(latent_grid(size))
    return {"latent_manifold": _save(images, out_dir / "latent_manifold.png", size)}


def plot_loss_curves(history_path: Path, out_dir: Path) -> dict:
    """Every numeric column but `epoch` against the epoch; validation columns dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history = read_history(history_path)
    epochs = history.pop("epoch", None)
    curves = {name: values for name, values in history.items() if np.isfinite(values).any()}
    if not curves:
        return {}
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in sorted(curves.items()):
        x = [e + 1 for e in epochs] if epochs else list(range(1, len(values) + 1))
        axes.plot(x, values, "--" if name.startswith("val_") else "-", marker=".", label=name)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss / metric")
    axes.set_title(f"training history ({history_path.name})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path = out_dir / "loss_curves.png"
    figure.savefig(path, format="png")
    return {"loss_curves": path}


def _style_label(model, label: int = 0):
    """The one class a style picture is drawn in (conditional models), None otherwise."""
    return [label] if model.num_classes else None


def plot_truncation(model, out_dir: Path, seeds: int = 6, steps: int = 6, label: int = 0) -> dict:
    """A row per seed, truncation psi from 0 (every row the average-w image) to 1 (none)."""
    psis = np.linspace(0.0, 1.0, steps)
    labels = _style_label(model, label)
    images = np.concatenate([model.sample(1, labels=labels, seed=seed, truncation=float(psi))
                             for seed in range(seeds) for psi in psis])
    return {"truncation": _save(images, out_dir / "truncation.png", steps)}


def plot_mixing(model, out_dir: Path, rows: int = 5, columns: int = 5, label: int = 0) -> dict:
    """Style mixing: seed A per row, seed B per column (the first row shows B, the first column
    A); a cell is A's coarse styles with B's fine ones from the middle style layer on."""
    labels = _style_label(model, label)
    seeds_a, seeds_b = range(rows), range(rows, rows + columns)
    from_layer = model.num_ws // 2
    corner = np.zeros((1, *model.image_shape), np.float32)
    cells = [corner, *(model.sample(1, labels=labels, seed=b) for b in seeds_b)]
    for a in seeds_a:
        cells.append(model.sample(1, labels=labels, seed=a))
        cells += [model.sample(1, labels=labels, seed=a, mix=(b, from_layer)) for b in seeds_b]
    return {"mixing": _save(np.concatenate(cells), out_dir / "mixing.png", columns + 1)}


def plot_directions(model, out_dir: Path, top: int = 8, seed: int = 0, label: int = 0) -> dict:
    """A strip per direction (the top `top` by explained variance): amounts -3 .. 3 std."""
    labels = _style_label(model, label)
    amounts = np.arange(-3, 4)
    names = list(model.directions)[:top]
    images = np.concatenate([model.sample(1, labels=labels, seed=seed, edits={name: float(a)})
                             for name in names for a in amounts])
    return {"directions": _save(images, out_dir / "directions.png", len(amounts))}


def _is_style_based(model) -> bool:
    return callable(getattr(model, "find_directions", None))


def _is_vae(model) -> bool:
    return callable(getattr(model, "reconstruct", None)) and callable(
        getattr(model, "decode", None)
    )


# Pictures by what a model can do: name -> (applies?(model, run context), draw(model, ctx)).
PICTURES = {
    "samples": (lambda m, ctx: True, lambda m, ctx: plot_samples(m, ctx["out"])),
    "classes": (lambda m, ctx: bool(m.num_classes), lambda m, ctx: plot_classes(m, ctx["out"])),
    "interpolation": (lambda m, ctx: True, lambda m, ctx: plot_interpolation(m, ctx["out"])),
    "reconstructions": (
        lambda m, ctx: _is_vae(m) and bool(ctx["dataset"]),
        lambda m, ctx: plot_reconstructions(m, ctx["out"], ctx["dataset"]),
    ),
    "latent_manifold": (
        lambda m, ctx: _is_vae(m) and not m.num_classes and m.latent_dim == 2,
        lambda m, ctx: plot_latent_manifold(m, ctx["out"]),
    ),
    "truncation": (lambda m, ctx: _is_style_based(m),
                   lambda m, ctx: plot_truncation(m, ctx["out"])),
    "mixing": (lambda m, ctx: _is_style_based(m), lambda m, ctx: plot_mixing(m, ctx["out"])),
    "directions": (lambda m, ctx: _is_style_based(m) and bool(m.directions),
                   lambda m, ctx: plot_directions(m, ctx["out"])),
    "loss_curves": (
        lambda m, ctx: ctx["history"].is_file(),
        lambda m, ctx: plot_loss_curves(ctx["history"], ctx["out"]),
    ),
}


# Why an export-only run skips a picture its Keras model would get (keys of PICTURES).
NEEDS_KERAS_MODEL = {
    "reconstructions": "it needs the VAE's encoder, which this run does not ship",
    "latent_manifold": "it needs the VAE's Keras decoder (no model.keras in this run)",
    "truncation": "the style controls need the Keras model (no model.keras in this run)",
    "mixing": "the style controls need the Keras model (no model.keras in this run)",
    "directions": "the style controls need the Keras model (no model.keras in this run)",
}


def skipped_pictures(model, context) -> dict:
    """{picture: reason} for the pictures the run's Keras model would get but `model` (an
    exported generator) cannot draw; {} for a Keras model."""
    return left_out_by_export(
        model, PICTURES, NEEDS_KERAS_MODEL, "it needs the Keras model (no model.keras)", context
    )


def _note(message: str) -> None:
    import sys

    print(f"zoo: {message}", file=sys.stderr, flush=True)


def plot_run(run_dir, out_dir=None, *, note=_note) -> list[Path]:
    """Write the run's pictures as PNGs into out_dir (default RUN/plots); returns their paths.

    A run without model.keras but with an export is drawn from its exported generator; each
    picture that needs the Keras model is skipped and `note(message)` told why (one line).
    """
    model, config, run = load_generator(run_dir, "zoo plot")
    out = Path(out_dir) if out_dir is not None else run.plots_dir
    out.mkdir(parents=True, exist_ok=True)
    context = {"out": out, "dataset": config.get("dataset"), "history": run.history_path}
    written = {}
    for applies, draw in PICTURES.values():
        if applies(model, context):
            written.update(draw(model, context))
    for name, reason in skipped_pictures(model, context).items():
        if note is not None:
            note(f"skipped {name}.png: {reason} (drawn from {model.source.name})")
    return list(written.values())
