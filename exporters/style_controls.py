"""The style-based generator's controls, one implementation for every place that samples
(the Keras `stylegan` model, `exporters.runtime`, `zoo sample`, `zoo serve`): numpy only.

A style-based generator is mapping (z [, label] -> w, [n, w_dim]) then synthesis (per-layer
styles ws, [n, num_ws, w_dim] -> images). Its controls act on w between the two:

- truncation psi in [0, 1]: w <- w_avg + psi (w - w_avg); psi = 1 changes nothing, psi = 0 gives
  every seed the average-w image;
- mix (seed_b, from_layer): layers from `from_layer` on take seed_b's (truncated) w; coarse
  styles (the first layers) stay the first seed's. from_layer = 0 is seed_b's image,
  from_layer = num_ws the first seed's;
- edits {direction: amount}: ws += amount * std * vector for each named direction (amount in
  standard deviations of w along it; the directions are principal components of w, GANSpace
  style, found by `pca_directions`). An amount of 0 changes nothing.

The order is fixed: truncate each w, mix, then edit, on every layer.
The model-side names (mapping, synthesis, w_avg, num_ws, directions, export roles, the
manifest's "style") are in docs/stylegan_contract.md (CONTRACT_PLACEHOLDER in task prompts).
"""

from __future__ import annotations

import numpy as np

from exporters.sampling import short_repr


def check_truncation(psi) -> float:
    if isinstance(psi, bool) or not isinstance(psi, (int, float, np.floating, np.integer)) or not (
        0.0 <= float(psi) <= 1.0
    ):
        raise ValueError(f"truncation must be a number in [0, 1] (1 = none), got {short_repr(psi)}")
    return float(psi)


def check_mix(mix, num_ws: int | None):
    """(seed_b, from_layer) from a pair, a {"seed_b", "from_layer"} dict or "SEED:LAYER";
    None stays None. num_ws None: the model has no per-layer styles."""
    if mix is None:
        return None
    if num_ws is None:
        raise ValueError(f"mix={short_repr(mix)} needs a style-based generator (per-layer styles); "
                         "this model has none")
    if isinstance(mix, str):
        parts = mix.split(":")
        try:
            mix = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"mix must be SEED_B:FROM_LAYER (two integers), got {mix!r}") from None
    if isinstance(mix, dict):
        unknown = set(mix) - {"seed_b", "from_layer"}
        if unknown or len(mix) != 2:
            raise ValueError("mix must be {\"seed_b\": int, \"from_layer\": int}, got "
                             f"{short_repr(mix)}")
        mix = (mix["seed_b"], mix["from_layer"])
    if not isinstance(mix, (tuple, list)) or len(mix) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in mix
    ):
        raise ValueError(f"mix must be (seed_b, from_layer), two integers, got {short_repr(mix)}")
    seed_b, from_layer = int(mix[0]), int(mix[1])
    if seed_b < 0:
        raise ValueError(f"mix seed_b must be >= 0, got {seed_b}")
    if not 0 <= from_layer <= num_ws:
        raise ValueError(f"mix from_layer must be in [0, {num_ws}] (this model has {num_ws} style "
                         f"layers), got {from_layer}")
    return seed_b, from_layer


def check_edits(edits, directions: dict | None) -> dict:
    """{name: amount} with every name a known direction and every amount a finite number."""
    if edits is None or edits == {}:
        return {}
    if isinstance(edits, str):
        edits = parse_edits(edits)
    if not isinstance(edits, dict):
        raise ValueError(  # noqa: TRY004 (bad input is a ValueError everywhere: CLI, HTTP 4xx)
            f"edits must be {{direction: amount}}, got {short_repr(edits)}")
    known = sorted(directions or {})
    for name, amount in edits.items():
        if name not in (directions or {}):
            raise ValueError(f"unknown direction {name!r}; this model has "
                             f"{known or 'none (run `zoo directions RUN` first)'}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float, np.floating,
                                                                np.integer)) or not np.isfinite(
                                                                    amount):
            raise ValueError(f"edit amount for {name!r} must be a finite number, got "
                             f"{short_repr(amount)}")
    return {name: float(amount) for name, amount in edits.items()}


def parse_edits(text: str) -> dict:
    """"pc0=2,pc1=-1.5" -> {"pc0": 2.0, "pc1": -1.5} (the CLI's and the query string's form)."""
    edits = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, amount = item.partition("=")
        try:
            if not sep:
                raise ValueError
            edits[name.strip()] = float(amount)
        except ValueError:
            raise ValueError(f"edits must be NAME=AMOUNT[,NAME=AMOUNT...], got {text!r}") from None
    return edits


def truncate(w, w_avg, psi: float) -> np.ndarray:
    w = np.asarray(w, np.float32)
    if psi == 1.0:
        return w
    w_avg = np.asarray(w_avg, np.float32)
    return (w_avg + np.float32(psi) * (w - w_avg)).astype(np.float32)


def style_inputs(w, num_ws: int, w_avg, psi: float = 1.0, mix_w=None, from_layer=None,
                 edits: dict | None = None, directions: dict | None = None) -> np.ndarray:
    """Per-layer styles [n, num_ws, w_dim] from mapping outputs w [n, w_dim] (and mix_w, the
    second seed's, when mixing): truncate, mix, edit, in that order."""
    ws = np.repeat(truncate(w, w_avg, psi)[:, None, :], num_ws, axis=1)
    if mix_w is not None:
        ws[:, from_layer:] = truncate(mix_w, w_avg, psi)[:, None, :]
    for name, amount in (edits or {}).items():
        if amount:
            direction = directions[name]
            step = np.float32(amount * direction["std"]) * np.asarray(direction["vector"],
                                                                      np.float32)
            ws = ws + step
    return ws.astype(np.float32)


def pca_directions(w, k: int = 8, prefix: str = "pc") -> dict:
    """The top-k principal directions of w samples [n, w_dim] (GANSpace): {"pc0": {"vector":
    unit [w_dim], "std": standard deviation of w along it, "explained_variance": share of the
    total variance}}. Signs are fixed so each vector's largest entry is positive (repeatable)."""
    w = np.asarray(w, np.float64)
    if w.ndim != 2 or len(w) < 2:
        raise ValueError(f"pca_directions needs w samples of shape [n >= 2, w_dim], got {w.shape}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= w.shape[1]:
        raise ValueError(f"k must be an integer in [1, {w.shape[1]}], got {short_repr(k)}")
    centered = w - w.mean(axis=0)
    _, singular, vectors = np.linalg.svd(centered, full_matrices=False)
    variance = singular**2 / (len(w) - 1)
    total = variance.sum()
    directions = {}
    for i in range(k):
        vector = vectors[i]
        vector = vector if vector[np.argmax(np.abs(vector))] > 0 else -vector
        directions[f"{prefix}{i}"] = {
            "vector": vector.astype(np.float32).tolist(),
            "std": float(np.sqrt(variance[i])),
            "explained_variance": float(variance[i] / total) if total > 0 else 0.0,
        }
    return directions
