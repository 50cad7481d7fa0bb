"""How good are a generator's samples? Offline scores from a small domain classifier.

No Inception weights can be downloaded here, so every score is computed on the penultimate
features of a small CNN trained once per dataset and training settings on its train split,
cached per user (`$XDG_CACHE_HOME/genzoo/classifiers/<dataset>/<settings key>/`, default
~/.cache/genzoo/classifiers; `$ZOO_CLASSIFIER_DIR` or `cache_dir=` instead), never in the
current folder. Training it is announced on stderr with a time estimate. The scores are
therefore classifier-based: comparable between runs on the same dataset and classifier, never
with published Inception FID numbers.

Generated samples are compared with the dataset's held-apart test split; each score comes
with the real-vs-real floor (train-split features against the same test split), the value
a perfect generator would reach with the same classifier and sample sizes.

- `frechet_distance`, `kernel_inception_distance`, `precision_recall`, `class_consistency`:
  pure numpy on feature arrays (no TensorFlow);
- `load_classifier` / `train_classifier`: the cached domain classifier;
- `evaluate_model(model, dataset, n)`, `evaluate_run(run_dir)` -> dict (and RUN/eval.json);
- `load_generator(run_dir)`: a run's Keras model, or for a run that ships only its export (the
  committed pretrained runs) an `ExportedGenerator` that samples through `exporters.runtime`
  with the same seeds; scores that need more than the generator (a VAE's ELBO needs its
  encoder) are then left out and listed under "left_out";
- `format_table(results)`: the short text table `zoo eval` prints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import re
import sys
import time
from pathlib import Path

import keras
import numpy as np
from keras import layers

from exporters.run_folder import RunFolder, save_atomically, write_json_atomically
from zoo import data
from zoo.base import check_count

CLASSIFIER_DIR_ENV = "ZOO_CLASSIFIER_DIR"
CACHE_HOME_ENV = "XDG_CACHE_HOME"
CLASSIFIER_CACHE_SUBDIR = os.path.join("genzoo", "classifiers")
CLASSIFIER_FILE = "classifier.keras"
CLASSIFIER_INFO = "info.json"
FEATURE_LAYER = "features"
EVAL_FILE = RunFolder.EVAL
# Training time of the default classifier per train image, epoch and 28x28x1 pixel block:
# 4.5 min for mnist5k (4,000 train images, 30 epochs) on a loaded 2-core CPU (issue 14).
SECONDS_PER_IMAGE_EPOCH = 270.0 / (4000 * 30)


# =========================================================================================
# Pure math on features (numpy only)
# =========================================================================================
def _check_features(features, what: str, min_rows: int = 2) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] < min_rows:
        raise ValueError(
            f"{what} must be a (n, d) array with n >= {min_rows}, got shape {np.shape(features)}"
        )
    return array


def _check_same_width(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: {a.shape[1]} vs {b.shape[1]}")


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (n, d) features: what the Frechet distance compares."""
    array = _check_features(features, "features")
    return array.mean(axis=0), np.atleast_2d(np.cov(array, rowvar=False))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    tr (S1 S2)^(1/2) is the sum of square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2), a
    symmetric PSD matrix with the same spectrum, so plain `eigh` suffices (no complex sqrtm).
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"statistics do not match: means {mu1.shape} and {mu2.shape}, "
            f"covariances {sigma1.shape} and {sigma2.shape}"
        )
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean
    return float(max(value, 0.0))


def frechet_distance(features_a, features_b) -> float:
    """FID-style distance between the Gaussians fitted to two (n, d) feature sets."""
    a, b = _check_features(features_a, "features_a"), _check_features(features_b, "features_b")
    _check_same_width(a, b)
    return frechet_distance_from_statistics(*feature_statistics(a), *feature_statistics(b))


def polynomial_kernel(x, y, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (x.y / d + coef0) ** degree, the kernel KID uses (Binkowski et al. 2018)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices: the diagonals of k_xx and k_yy are left out."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def kernel_inception_distance(
    features_a, features_b, num_subsets: int = 100, subset_size: int = 1000, seed=0
) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD^2 over random subsets of both sets.

    Unbiased, so it is ~0 (and may be slightly negative) when both sets share a distribution,
    whatever the sample size; subsets (drawn without replacement) give its spread.
    """
    a, b = _check_features(features_a, "features_a"), _check_features(features_b, "features_b")
    _check_same_width(a, b)
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(
            f"need num_subsets >= 1 and subset_size >= 2, got {num_subsets} and {subset_size}"
        )
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        values.append(
            mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
        )
    return float(np.mean(values)), float(np.std(values))


def pairwise_distances(a, b) -> np.ndarray:
    """Euclidean distances between the rows of a and b (float64, clipped at 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def knn_radii(features, k: int = 3, batch_size: int = 1024) -> np.ndarray:
    """Distance from each row to its k-th nearest other row: the ball that row contributes."""
    features = _check_features(features, "features", min_rows=k + 1)
    radii = []
    for start in range(0, len(features), batch_size):
        distances = pairwise_distances(features[start : start + batch_size], features)
        # Column order after partition: the row itself (distance 0) first, then neighbours.
        radii.append(np.partition(distances, k, axis=1)[:, k])
    return np.concatenate(radii)


def manifold_coverage(points, manifold, radii, batch_size: int = 1024) -> float:
    """Share of `points` inside at least one ball (manifold[i], radii[i])."""
    points, manifold = np.asarray(points, np.float64), np.asarray(manifold, np.float64)
    inside = []
    for start in range(0, len(points), batch_size):
        distances = pairwise_distances(points[start : start + batch_size], manifold)
        inside.append((distances <= radii[None, :]).any(axis=1))
    return float(np.concatenate(inside).mean())


def precision_recall(real_features, fake_features, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls.

    Precision: share of fake samples inside the real manifold (fidelity). Recall: share of real
    samples inside the fake manifold (diversity). Use sets of equal size: radii shrink with n.
    """
    real = _check_features(real_features, "real_features", min_rows=k + 1)
    fake = _check_features(fake_features, "fake_features", min_rows=k + 1)
    _check_same_width(real, fake)
    precision = manifold_coverage(fake, real, knn_radii(real, k))
    recall = manifold_coverage(real, fake, knn_radii(fake, k))
    return precision, recall


def class_consistency(requested, predicted, num_classes: int) -> dict:
    """Share of samples asked for class y that the classifier assigns to y, per class and overall.

    Classes never requested get None (not 0: nothing was measured).
    """
    requested, predicted = np.asarray(requested).ravel(), np.asarray(predicted).ravel()
    if requested.shape != predicted.shape:
        raise ValueError(
            f"requested and predicted labels differ in length: {requested.shape} vs "
            f"{predicted.shape}"
        )
    hits = requested == predicted
    per_class = [
        float(hits[requested == y].mean()) if np.any(requested == y) else None
        for y in range(num_classes)
    ]
    return {"overall": float(hits.mean()) if hits.size else None, "per_class": per_class}


def sample_scores(
    real_features,
    fake_features,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed=0,
) -> dict:
    """FID, KID (+ std) and precision/recall of one feature set against the real one.

    Precision/recall use equally many samples from each side (a seeded subset of the larger).
    """
    real = _check_features(real_features, "real_features")
    fake = _check_features(fake_features, "fake_features")
    kid, kid_std = kernel_inception_distance(real, fake, kid_subsets, kid_subset_size, seed)
    size = min(len(real), len(fake))
    rng = np.random.default_rng(seed)
    precision, recall = precision_recall(
        real[rng.choice(len(real), size, replace=False)],
        fake[rng.choice(len(fake), size, replace=False)],
        k,
    )
    return {
        "fid": frechet_distance(real, fake),
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "n": len(fake),
        "n_real": len(real),
        "n_precision_recall": int(size),
    }


# =========================================================================================
# The domain classifier
# =========================================================================================
def classifier_cache_root(cache_dir=None) -> Path:
    """cache_dir, else $ZOO_CLASSIFIER_DIR, else $XDG_CACHE_HOME/genzoo/classifiers (the XDG
    default ~/.cache when unset or relative): a per-user cache, never the current folder."""
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get(CLASSIFIER_DIR_ENV):
        return Path(os.environ[CLASSIFIER_DIR_ENV])
    cache_home = os.environ.get(CACHE_HOME_ENV, "")
    if not os.path.isabs(cache_home):  # the XDG spec: relative values are to be ignored
        cache_home = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache_home) / CLASSIFIER_CACHE_SUBDIR


def classifier_settings(**train_kwargs) -> dict:
    """Every setting a classifier is trained with, defaults filled in (what the cache is keyed
    by): `train_classifier`'s own arguments and `build_classifier`'s architecture."""
    own = TRAIN_DEFAULTS
    architecture = {k: v for k, v in train_kwargs.items() if k not in own and k != "verbose"}
    given = {k: v for k, v in train_kwargs.items() if k in own}
    return {**own, **given, **_architecture_settings(architecture)}


def classifier_overrides(epochs: int | None = None, max_train: int | None = None) -> dict:
    """The classifier settings a command line asked for (None keeps the default): a cheaper
    classifier (e.g. 3 epochs on 20,000 Fashion-MNIST images, ~6 min instead of ~68) ranks runs
    alike and is cached under its own key."""
    return {key: value for key, value in (("epochs", epochs), ("max_train", max_train))
            if value is not None}


def settings_key(settings: dict) -> str:
    """A short stable name for a set of training settings (a hash of their JSON)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def classifier_dir(dataset: str, cache_dir=None, **train_kwargs) -> Path:
    """Where the classifier of one dataset and training settings lives:
    ROOT/<dataset, made folder-safe>/<settings key>."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("_") or "dataset"
    key = settings_key(classifier_settings(**train_kwargs))
    return classifier_cache_root(cache_dir) / safe / key


def estimate_training_seconds(dataset: str, **train_kwargs) -> float:
    """A rough CPU estimate of `train_classifier`'s time, scaled from a measured mnist5k run."""
    info = data.info(dataset)
    settings = classifier_settings(**train_kwargs)
    images = (getattr(info, "splits", None) or {}).get("train") or info.size or 0
    if settings.get("max_train"):
        images = min(images, settings["max_train"]) if images else settings["max_train"]
    pixels = float(np.prod(info.image_shape)) / (28 * 28)
    width = (settings.get("filters") or 32) / 32
    return SECONDS_PER_IMAGE_EPOCH * images * settings["epochs"] * pixels * width**2


def _announce(message: str) -> None:
    print(f"zoo: {message}", file=sys.stderr, flush=True)


def _fill(**kwargs):
    """Augmentation layers fill uncovered pixels with the background (-1), not a mirror."""
    return {"fill_mode": "constant", "fill_value": -1.0, **kwargs}


# Training-only augmentations: name -> layer for a strength (a fraction) and a seed.
AUGMENTATIONS = {
    "shift": lambda f, seed: layers.RandomTranslation(f, f, **_fill(seed=seed, name="shift")),
    "rotation": lambda f, seed: layers.RandomRotation(f, **_fill(seed=seed, name="rotation")),
    "zoom": lambda f, seed: layers.RandomZoom(f, **_fill(seed=seed, name="zoom")),
    "noise": lambda f, seed: layers.GaussianNoise(f, seed=seed, name="noise"),
}
# Noise teaches the classifier to see a digit through the faint speckle young GANs paint on
# the background (without it, speckled samples of any class all read as one class).
DEFAULT_AUGMENTATION = {"shift": 0.1, "rotation": 0.03, "zoom": 0.1, "noise": 0.3}


def build_classifier(
    image_shape,
    num_classes: int,
    filters: int = 32,
    blocks: int = 3,
    feature_dim: int = 128,
    dropout: float = 0.3,
    augmentation: dict | None = None,
    seed: int = 0,
) -> keras.Model:
    """Conv blocks (2 convs + BN + pool, widths doubling), global average pooling, a
    `features` dense layer (what the scores embed) and class logits.

    `augmentation` ({name: strength}, default: shifts of 10%, rotations of 0.03 turn, zoom 10%,
    Gaussian pixel noise of std 0.3; training only) stands in for the data a small split lacks
    and for the artifacts of generated images.
    """
    augmentation = DEFAULT_AUGMENTATION if augmentation is None else augmentation
    unknown = sorted(set(augmentation) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; valid: {sorted(AUGMENTATIONS)}")
    seeds = iter(range(seed * 100, seed * 100 + 100))
    inputs = keras.Input(shape=tuple(image_shape), name="image")
    x = inputs
    for name, strength in augmentation.items():
        if strength:
            x = AUGMENTATIONS[name](strength, next(seeds))(x)
    for block in range(blocks):
        for conv in range(2):
            x = layers.Conv2D(
                filters * 2**block,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer=keras.initializers.HeUniform(seed=next(seeds)),
                name=f"conv{block}_{conv}",
            )(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{block}_{conv}")(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(padding="same", name=f"pool{block}")(x)
    x = layers.GlobalAveragePooling2D()(x)
    features = layers.Dense(
        feature_dim,
        activation="relu",
        kernel_initializer=keras.initializers.HeUniform(seed=next(seeds)),
        name=FEATURE_LAYER,
    )(x)
    x = layers.Dropout(dropout, seed=next(seeds))(features)
    logits = layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
        name="logits",
    )(x)
    return keras.Model(inputs, logits, name="domain_classifier")


@dataclasses.dataclass
class DomainClassifier:
    """A trained classifier plus what is known about it (dataset, test accuracy, settings)."""

    model: keras.Model
    info: dict
    _extractor: keras.Model | None = dataclasses.field(default=None, init=False, repr=False)

    def embed(self, images, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """(penultimate features, predicted labels) for images NHWC in [-1, 1]."""
        if self._extractor is None:
            self._extractor = keras.Model(
                self.model.input, [self.model.get_layer(FEATURE_LAYER).output, self.model.output]
            )
        features, labels = [], []
        for start in range(0, len(images), batch_size):
            feats, logits = self._extractor(
                np.asarray(images[start : start + batch_size], np.float32), training=False
            )
            features.append(keras.ops.convert_to_numpy(feats))
            labels.append(keras.ops.convert_to_numpy(logits).argmax(axis=1))
        return np.concatenate(features), np.concatenate(labels).astype(np.int32)

    def accuracy(self, images, labels) -> float:
        return float((self.embed(images)[1] == np.asarray(labels)).mean())


def _architecture_settings(given: dict) -> dict:
    """What `build_classifier` was called with, defaults included (recorded in info.json)."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(build_classifier).parameters.items()
        if parameter.default is not inspect.Parameter.empty and name != "seed"
    }
    settings = {**defaults, **given}
    if settings.get("augmentation") is None:
        settings["augmentation"] = dict(DEFAULT_AUGMENTATION)
    return settings


def train_classifier(
    dataset: str,
    epochs: int = 30,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    label_smoothing: float = 0.1,
    max_train: int | None = None,
    seed: int = 0,
    verbose: int = 0,
    **architecture,
) -> DomainClassifier:
    """Train the domain classifier on the dataset's train split; report test-split accuracy.

    Adam with cosine decay and label smoothing; `architecture` goes to `build_classifier`
    (filters, blocks, feature_dim, dropout, augmentation). `max_train` subsamples (tests).
    """
    epochs = check_count(epochs, "epochs")
    info = data.info(dataset)
    if not info.num_classes:
        raise ValueError(f"dataset {dataset!r} has no class labels; the classifier needs them")
    images, labels = data.load_arrays(dataset, "train")
    if max_train is not None:
        keep = np.random.default_rng(seed).permutation(len(images))[: check_count(max_train)]
        images, labels = images[keep], labels[keep]
    model = build_classifier(info.image_shape, info.num_classes, seed=seed, **architecture)
    steps = epochs * int(np.ceil(len(images) / batch_size))
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(learning_rate, steps)
        ),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        ),
        metrics=["accuracy"],
    )
    num_classes = info.num_classes
    train = data.from_arrays(
        images, labels, batch_size=batch_size, seed=seed, drop_remainder=False
    ).map(lambda x, y: (x, keras.ops.one_hot(y, num_classes)))
    started = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=verbose)
    seconds = time.perf_counter() - started
    classifier = DomainClassifier(model, {})
    test_images, test_labels = data.load_arrays(dataset, "test")
    classifier.info = {
        "dataset": dataset,
        "test_accuracy": classifier.accuracy(test_images, test_labels),
        "n_test": len(test_images),
        "n_train": len(images),
        "num_classes": int(num_classes),
        "image_shape": list(info.image_shape),
        "feature_layer": FEATURE_LAYER,
        "feature_dim": int(model.get_layer(FEATURE_LAYER).units),
        "settings": {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "label_smoothing": label_smoothing,
            "max_train": max_train,
            "seed": seed,
            **_architecture_settings(architecture),
        },
        "train_seconds": round(seconds, 1),
        "keras_version": keras.__version__,
    }
    return classifier


# train_classifier's settings with their defaults (part of every classifier cache key).
TRAIN_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(train_classifier).parameters.items()
    if parameter.default is not inspect.Parameter.empty and name != "verbose"
}


def load_classifier(
    dataset: str, cache_dir=None, retrain: bool = False, announce=_announce, **train_kwargs
) -> DomainClassifier:
    """The dataset's cached classifier for these `train_kwargs` (defaults filled in), trained
    and cached on first use; retrain=True replaces it. `announce(message)` is told (one line,
    with a time estimate) before a classifier trains; None says nothing."""
    folder = classifier_dir(dataset, cache_dir, **train_kwargs)
    model_path, info_path = folder / CLASSIFIER_FILE, folder / CLASSIFIER_INFO
    if not retrain and model_path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("dataset") != dataset:
            raise ValueError(
                f"{folder} holds a classifier for {info.get('dataset')!r}, not {dataset!r}; "
                "use another cache_dir"
            )
        info["path"] = str(folder)
        return DomainClassifier(keras.models.load_model(model_path), info)
    if announce is not None:
        seconds = estimate_training_seconds(dataset, **train_kwargs)
        estimate = "under a minute" if seconds < 60 else f"about {round(seconds / 60)} min"
        announce(
            f"training the {dataset} domain classifier that eval scores with (once: {estimate} "
            f"on a 2-core CPU, less on a GPU), cached in {folder}"
        )
    classifier = train_classifier(dataset, **train_kwargs)
    save_atomically(model_path, classifier.model.save)
    write_json_atomically(info_path, classifier.info)  # written last: the cache entry is whole
    classifier.info["path"] = str(folder)
    return classifier


# =========================================================================================
# Running models
# =========================================================================================
def _likelihood_metrics(model, images, labels, batch_size: int) -> dict:
    """Reconstruction error and ELBO (beta = 1, one posterior draw per image) in nats/image.

    Conditional models (CVAE) get each image's true label, as in training.
    """
    labels = labels.astype(np.int32) if model.num_classes else None
    given = {} if labels is None else {"labels": labels}
    reconstruction, kl = [], []
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        batch_labels = (
            {} if labels is None else {"labels": keras.ops.convert_to_tensor(labels[chunk])}
        )
        rec, div = model.elbo_terms(
            keras.ops.convert_to_tensor(images[chunk]), training=False, **batch_labels
        )
        reconstruction.append(keras.ops.convert_to_numpy(rec))
        kl.append(keras.ops.convert_to_numpy(div))
    reconstruction, kl = np.concatenate(reconstruction), np.concatenate(kl)
    rebuilt = model.reconstruct(images, batch_size, **given)
    return {
        "elbo": float(-(reconstruction + kl).mean()),
        "reconstruction_nll": float(reconstruction.mean()),
        "kl": float(kl.mean()),
        "reconstruction_mse": float(np.mean((rebuilt - images) ** 2)),
        "likelihood": getattr(model, "likelihood", None),
        "units": "nats per image (mse: per pixel, images in [-1, 1])",
        "n": len(images),
    }


def _has_likelihood(model) -> bool:
    return callable(getattr(model, "elbo_terms", None)) and callable(
        getattr(model, "reconstruct", None)
    )


# Extra metrics by what a model can do: name -> (applies to model?, compute(model, context)).
MODEL_METRICS = {
    "class_consistency": (
        lambda model: bool(getattr(model, "num_classes", 0)),
        lambda model, ctx: class_consistency(ctx["requested"], ctx["predicted"], model.num_classes),
    ),
    "likelihood": (
        _has_likelihood,
        lambda model, ctx: _likelihood_metrics(
            model, ctx["test_images"], ctx["test_labels"], ctx["batch_size"]
        ),
    ),
}


def _check_model_fits(model, info) -> None:
    if tuple(model.image_shape) != tuple(info.image_shape):
        raise ValueError(
            f"the model makes images of shape {tuple(model.image_shape)} but dataset "
            f"{info.name!r} has {tuple(info.image_shape)}"
        )
    if model.num_classes and model.num_classes != info.num_classes:
        raise ValueError(
            f"the model has {model.num_classes} classes but dataset {info.name!r} has "
            f"{info.num_classes}"
        )


def evaluate_model(
    model,
    dataset: str,
    n: int = 10000,
    *,
    classifier: DomainClassifier | None = None,
    cache_dir=None,
    seed: int = 0,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    batch_size: int = 256,
    classifier_settings: dict | None = None,
) -> dict:
    """Scores of `n` samples of `model` against `dataset`'s test split, with the real floor.

    Conditional models are asked for labels cycling through the classes (balanced).
    `classifier_settings` (train_classifier's arguments, e.g. {"epochs": 3, "max_train":
    20000}) picks a cheaper cached classifier than the default; scores are comparable only
    between runs scored by the same one.
    """
    n = check_count(n)
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a dataset name such as 'mnist5k', got {dataset!r}")
    info = data.info(dataset)
    _check_model_fits(model, info)
    started = time.perf_counter()
    classifier = classifier or load_classifier(dataset, cache_dir, **(classifier_settings or {}))
    test_images, test_labels = data.load_arrays(dataset, "test")
    train_images, _ = data.load_arrays(dataset, "train")
    keep = np.random.default_rng(seed).permutation(len(train_images))[:n]
    real_features, _ = classifier.embed(test_images)
    floor_features, _ = classifier.embed(train_images[keep])

    requested = np.arange(n) % model.num_classes if model.num_classes else None
    samples = model.sample(n, labels=requested, seed=seed, batch_size=batch_size)
    fake_features, predicted = classifier.embed(samples)

    options = {"k": k, "kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size, "seed": seed}
    result = {
        "dataset": dataset,
        "family": getattr(model, "family", type(model).__name__),
        "n": n,
        "seed": seed,
        "classifier": {
            key: classifier.info.get(key)
            for key in ("test_accuracy", "n_test", "n_train", "feature_dim", "path")
        },
        "model": sample_scores(real_features, fake_features, **options),
        "real_floor": sample_scores(real_features, floor_features, **options),
        "notes": "classifier-based scores (penultimate features of a small CNN trained on this "
        "dataset); not comparable with Inception FID",
    }
    context = {
        "requested": requested,
        "predicted": predicted,
        "test_images": test_images,
        "test_labels": test_labels,
        "batch_size": batch_size,
    }
    for name, (applies, compute) in MODEL_METRICS.items():
        if applies(model):
            result[name] = compute(model, context)
    if isinstance(model, ExportedGenerator):
        result["generator"] = model.describe()
        left_out = left_out_metrics(model)
        if left_out:
            result["left_out"] = left_out
    if "class_consistency" in result:
        result["class_consistency"]["real_floor"] = classifier.accuracy(test_images, test_labels)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# =========================================================================================
# Quantized exports, gated on sample quality
# =========================================================================================
QUANTIZED_FID_MAX_RATIO = 1.2  # a quantized generator may score at most this x the float one
GATE_SAMPLES = 2000


class QualityGateError(ValueError):
    """A quantized artifact's samples score too far below the float export's."""


def float_reference(manifest: dict) -> str:
    """The float32 generator artifact quantized ones are compared with: the ONNX file, else the
    smallest-batch float32 TFLite file."""
    candidates = [(entry.get("format") != "onnx", entry.get("batch") or 0, name)
                  for name, entry in manifest["artifacts"].items()
                  if entry.get("role") == "generator" and entry.get("format") in ("onnx", "tflite")
                  and entry.get("quantization", "none") == "none"]
    if not candidates:
        raise QualityGateError(
            "scoring a quantized export needs a float32 generator to compare with (onnx or "
            f"tflite), and the export holds only {sorted(manifest['artifacts'])}")
    return min(candidates)[2]


def quantized_generators(manifest: dict) -> list[str]:
    return sorted(name for name, entry in manifest["artifacts"].items()
                  if entry.get("role") == "generator"
                  and entry.get("quantization", "none") != "none")


def unscored_quantization(reason: str):
    """A `quality_check` that scores nothing and says why in each quantized artifact's entry."""
    def check(folder: Path, manifest: dict) -> dict:
        return {name: {"fid_ratio": None, "not_scored": reason}
                for name in quantized_generators(manifest)}

    return check


def quantization_gate(dataset: str, n: int = GATE_SAMPLES, seed: int = 0,
                      max_ratio: float = QUANTIZED_FID_MAX_RATIO, classifier=None, cache_dir=None):
    """A `quality_check` for exporters.export: every quantized generator artifact samples `n`
    images (the same latents and balanced labels as the float32 one), and its classifier-FID
    against `dataset`'s test split is compared with the float32 artifact's. Writes fid,
    float_fid and fid_ratio per artifact; a ratio above `max_ratio` stops the export.

    Max abs diff alone passes an int8 generator that is close per pixel yet visibly worse;
    the distance of the sample distribution is what a user sees."""
    n = check_count(n)
    if not max_ratio >= 1.0:
        raise ValueError(f"max_ratio must be a number >= 1, got {max_ratio!r}")
    info = data.info(dataset)

    def check(folder: Path, manifest: dict) -> dict:
        from exporters import runtime

        quantized = quantized_generators(manifest)
        if not quantized:
            return {}
        if tuple(manifest["image_shape"]) != tuple(info.image_shape):
            raise ValueError(f"the export makes {tuple(manifest['image_shape'])} images and "
                             f"{dataset} holds {tuple(info.image_shape)}: score it on its own data set")
        reference = float_reference(manifest)
        scorer = classifier or load_classifier(dataset, cache_dir)
        real, _ = scorer.embed(data.load_arrays(dataset, "test")[0])
        classes = manifest.get("num_classes") or 0
        labels = np.arange(n) % classes if classes else None

        def fid(name: str) -> float:
            images = runtime.load(folder / name, max_images=n).generate_float(n, labels, seed)
            return frechet_distance(real, scorer.embed(images)[0])

        float_fid = fid(reference)
        scores, worst = {}, None
        for name in quantized:
            value = fid(name)
            ratio = value / max(float_fid, 1e-12)
            scores[name] = {"fid": value, "float_fid": float_fid, "fid_ratio": ratio,
                            "reference": reference, "dataset": dataset, "n": n, "seed": seed,
                            "max_ratio": max_ratio}
            if ratio > max_ratio and (worst is None or ratio > scores[worst]["fid_ratio"]):
                worst = name
        if worst is not None:
            bad = scores[worst]
            raise QualityGateError(
                f"{worst}: classifier-FID {bad['fid']:.4f} is {bad['fid_ratio']:.2f}x the float32 "
                f"{reference}'s {float_fid:.4f} on {n} samples of {dataset} (at most "
                f"{max_ratio:g}x allowed); nothing was written")
        return scores

    return check


class ExportedGenerator:
    """A run's exported generator with what eval and plot use of a zoo model: `family`,
    `latent_dim`, `num_classes`, `image_shape`, `sample(n, labels, seed, batch_size)` (float32
    in [-1, 1], `exporters.runtime`'s `generate_float`: the same latents for the same seed as
    `model.sample`) and `generate(z, labels)` on given latents.

    `keras_class` is the family's zoo class (None when unknown): `as_keras_model()` says what the
    run's Keras model would offer, so callers can name what an export-only run leaves out.
    """

    def __init__(self, generator, source: Path, keras_class=None):
        self.runtime = generator
        self.source = Path(source)
        self.family = generator.family
        self.latent_dim = generator.latent_dim
        self.num_classes = generator.num_classes
        self.image_shape = generator.image_shape
        self.keras_class = keras_class

    @classmethod
    def load(cls, path, max_images: int = 10**7) -> ExportedGenerator:
        """From an artifact, an export folder or a run folder's export/ (sha256 checked)."""
        from exporters import runtime

        generator = runtime.load(path, max_images=max_images)
        try:
            from zoo import registry

            keras_class = registry.get_model_class(generator.family)
        except ValueError:  # a family this version of zoo does not know
            keras_class = None
        return cls(generator, generator.path, keras_class)

    def describe(self) -> dict:
        return {"source": str(self.source), "format": self.runtime.format,
                "runtime": self.runtime.entry.get("runtime", self.runtime.format)}

    def sample(self, n, labels=None, seed=None, batch_size=None, **controls) -> np.ndarray:
        """As model.sample, with the family's controls (diffusion steps/guidance, style
        truncation/mix/edits) passed to the runtime, which checks them."""
        return self.runtime.generate_float(n, labels=labels, seed=seed, batch_size=batch_size,
                                           **controls)

    def generate(self, z, labels=None, batch_size=None) -> np.ndarray:
        """The exported network on given latents z (and labels), float32 in [-1, 1]; a
        diffusion artifact runs its sampling loop from x_T = z."""
        return self.runtime.from_latents(z, labels, batch_size)

    def as_keras_model(self):
        """A stand-in with this generator's sizes and the family class's methods: what the
        Keras model could do (for "left out" notes), never called."""
        return _KerasModelView(self)


class _KerasModelView:
    SIZES = ("family", "latent_dim", "num_classes", "image_shape")

    def __init__(self, exported: ExportedGenerator):
        self._exported = exported

    def __getattr__(self, name):
        if name in self.SIZES:
            return getattr(self._exported, name)
        return getattr(self._exported.keras_class, name, None)


# What an export-only run cannot score, and why (keys of MODEL_METRICS).
NEEDS_KERAS_MODEL = {
    "likelihood": "ELBO and reconstruction scores need the VAE's encoder, which this run does "
    "not ship (its export holds the generator only; score a run that holds model.keras)",
}


def left_out_by_export(model, checks: dict, reasons: dict, default: str, *args) -> dict:
    """{name: reason} for the entries of `checks` ({name: (applies(model, *args), ...)}) that
    the run's Keras model would get but `model` (an ExportedGenerator) cannot; {} for a Keras
    model. The reason is reasons[name], else `default` (formatted with the name)."""
    if not isinstance(model, ExportedGenerator) or model.keras_class is None:
        return {}
    view = model.as_keras_model()
    return {
        name: reasons.get(name, default.format(name=name))
        for name, (applies, _) in checks.items()
        if applies(view, *args) and not applies(model, *args)
    }


def left_out_metrics(model) -> dict:
    """{metric: reason} for the MODEL_METRICS the run's Keras model would get but `model` (an
    ExportedGenerator) cannot; {} for a Keras model."""
    return left_out_by_export(
        model, MODEL_METRICS, NEEDS_KERAS_MODEL, "{name} needs the Keras model (no model.keras)"
    )


def load_generator(run_dir, needed_for: str = "this command"):
    """(model, config dict, RunFolder): the Keras model of a run (or .keras file) as `load_run`
    gives it, or, for a run that holds no model.keras but an export (the committed pretrained
    runs), its exported generator as an `ExportedGenerator`. Anything else is a ValueError
    saying what is missing."""
    if not isinstance(run_dir, (str, os.PathLike)):
        raise ValueError(f"run must be a run folder path, got {run_dir!r}")  # noqa: TRY004
    path = Path(run_dir)
    if not (path.is_file() and path.suffix == ".keras"):
        run = RunFolder.open(path)
        if run.is_export_only():
            return ExportedGenerator.load(run.path), run.read_config() or {}, run
    return load_run(run_dir, needed_for)


def load_run(run_dir, needed_for: str = "this command"):
    """(model, config dict, RunFolder) from a run folder (or a .keras file, in a run or not).

    A path that is not a run, or a run without model.keras (a pretrained run that ships only its
    exports, an unfinished run), is a ValueError saying what is missing.
    """
    from zoo import registry

    model_path, run = find_model(run_dir, needed_for)
    registry.register_all()  # every family known to Keras' deserialization
    config = run.read_config() or {}
    return keras.models.load_model(model_path), config, run


def find_model(run_dir, needed_for: str = "this command") -> tuple[Path, RunFolder]:
    """(model.keras path, RunFolder) without loading anything (no TensorFlow needed)."""
    if not isinstance(run_dir, (str, os.PathLike)):
        raise ValueError(f"run must be a run folder path, got {run_dir!r}")  # noqa: TRY004
    path = Path(run_dir)
    if path.is_file() and path.suffix == ".keras":
        return path, RunFolder(path.parent)
    run = RunFolder.open(path)
    return run.require_model(needed_for), run


def evaluate_run(run_dir, dataset: str | None = None, n: int = 10000, **options) -> dict:
    """Evaluate RUN/model.keras on `dataset` (default: config.json's); writes RUN/eval.json
    (atomically: the old file or the new one, never half). A run that ships only its export
    is scored through its exported generator (see `load_generator`)."""
    n = check_count(n)
    model, config, run = load_generator(run_dir, "zoo eval")
    dataset = dataset or config.get("dataset")
    if not dataset:
        raise ValueError(
            f"no dataset for run {str(run)!r}: config.json records none; pass dataset=NAME "
            "(e.g. mnist5k)"
        )
    result = evaluate_model(model, dataset, n, **options)
    result["run"] = str(run)
    run.write_json(EVAL_FILE, result)
    return result


# =========================================================================================
# Text table
# =========================================================================================
def _number(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


SCORE_ROWS = (
    ("FID (classifier)", "fid", 4),
    ("KID", "kid", 3),
    ("precision", "precision", 3),
    ("recall", "recall", 3),
)


def format_table(results: dict) -> str:
    """A short plain-text table of `evaluate_model` / eval.json results."""
    model, floor = results.get("model", {}), results.get("real_floor", {})
    classifier = results.get("classifier", {})
    width = 22
    lines = [
        (
            f"{results.get('family', '?')} on {results.get('dataset', '?')}: "
            f"{model.get('n', '?')} samples vs {model.get('n_real', '?')} held-apart real "
            f"images; classifier test accuracy {_number(classifier.get('test_accuracy'))}"
        ),
        f"{'metric':<20}{'model':>{width}}{'real floor':>{width}}",
    ]
    for title, key, digits in SCORE_ROWS:
        value, base = _number(model.get(key), digits), _number(floor.get(key), digits)
        if key == "kid":
            value += f" ± {_number(model.get('kid_std'), 2)}"
            base += f" ± {_number(floor.get('kid_std'), 2)}"
        lines.append(f"{title:<20}{value:>{width}}{base:>{width}}")
    consistency = results.get("class_consistency")
    if consistency:
        lines.append(
            f"{'class consistency':<20}{_number(consistency['overall'], 3):>{width}}"
            f"{_number(consistency.get('real_floor'), 3):>{width}}"
        )
        lines.append(
            "  per class: "
            + " ".join(
                f"{label}:{_number(share, 2)}"
                for label, share in enumerate(consistency["per_class"])
            )
        )
    likelihood = results.get("likelihood")
    if likelihood:
        lines.append(f"{'ELBO (nats/image)':<20}{_number(likelihood['elbo'], 5):>{width}}")
        lines.append(
            f"  reconstruction NLL {_number(likelihood['reconstruction_nll'], 5)}, "
            f"KL {_number(likelihood['kl'], 4)}, "
            f"MSE {_number(likelihood['reconstruction_mse'], 3)} per pixel"
        )
    for name, reason in (results.get("left_out") or {}).items():
        lines.append(f"left out {name}: {reason}")
    source = (results.get("generator") or {}).get("source")
    if source:
        lines.append(f"(sampled from the exported generator {source})")
    lines.append("(classifier-based scores: not comparable with Inception FID)")
    return "\n".join(lines)
