"""manifest.json: what a deployment needs to know about an export, without TensorFlow or zoo.

One manifest per export folder. Top level: the model fields a caller needs to build inputs and
read outputs (family, latent_dim, num_classes, image_shape, output range and layout, how latents
are drawn); `artifacts`: one entry per file (format, role, inputs/outputs, sha256 and bytes,
quantization, batch, verification); `versions` of the exporting stack.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from importlib import metadata
from pathlib import Path

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
LATENT_RECIPE = "numpy.random.default_rng(seed).standard_normal((n, latent_dim), dtype=float32)"
VERSIONED_PACKAGES = (
    "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy", "genzoo",
)
_CHUNK = 1 << 20


def digest(path) -> dict:
    """{"sha256", "bytes"} of a file, or of a folder (its files in sorted relative-path order,
    each hashed as path + content, so renaming a file inside changes the hash too)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    sha, size = hashlib.sha256(), 0
    for file in files:
        if path.is_dir():
            sha.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(_CHUNK):
                sha.update(block)
                size += len(block)
    return {"sha256": sha.hexdigest(), "bytes": size}


def versions() -> dict:
    """Installed versions of the stack that made (or reads) an export; None when absent."""
    found = {}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def check_model_name(name) -> str:
    """A model name for a serving engine's repository and URLs (Triton, TF Serving, /v2)."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"model_name must be a non-empty name without '/', got {name!r}")
    return name


def model_fields(family, latent_dim, num_classes, image_shape) -> dict:
    """The model part of a manifest (also what `GET /v1/metadata` answers)."""
    return {
        "family": str(family),
        "latent_dim": int(latent_dim),
        "num_classes": int(num_classes),
        "conditional": bool(num_classes),
        "image_shape": [int(d) for d in image_shape],
        "output_range": [-1.0, 1.0],
        "output_layout": "NHWC",
        "output_dtype": "float32",
        "latent_distribution": "standard_normal",
        "latent_recipe": LATENT_RECIPE,
    }


def build(fields: dict, artifacts: dict, quantize, options: dict) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        **fields,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quantization": list(quantize),
        "options": options,
        "versions": versions(),
        "artifacts": artifacts,
    }


def write(folder, manifest: dict) -> Path:
    """manifest.json in `folder`, replaced in one rename: a reader sees the old or the new one."""
    from exporters.run_folder import write_text_atomically

    return write_text_atomically(
        Path(folder) / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    )


REQUIRED_FIELDS = ("family", "latent_dim", "num_classes", "image_shape", "artifacts")


def read(folder) -> dict:
    """The manifest in `folder`, or a ValueError saying what is missing or malformed."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in {str(folder)!r}: artifacts are loaded with the manifest that "
            "exporters.export writes beside them"
        )
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict):
        kind = type(manifest).__name__
        raise ValueError(f"{path} must hold a JSON object, got {kind}")  # noqa: TRY004
    missing = [field for field in REQUIRED_FIELDS if field not in manifest]
    if missing:
        raise ValueError(f"{path} lacks the fields {missing}")
    return manifest
