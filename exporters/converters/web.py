"""A static web page that runs a generator in the browser with onnxruntime-web (WASM):

    <filepath>/index.html, inbrowser.js, inbrowser.css, common.js, style.css   the page
    <filepath>/generator.onnx                                                 the ONNX generator
    <filepath>/manifest.json                                                  what the page reads
    <filepath>/ort.wasm.min.mjs, ort-wasm-simd-threaded.mjs, .wasm            onnxruntime-web

Any static file server runs it (`python -m http.server -d <export>/web`): no genzoo, no Python
and nothing from another origin behind it (the page sets a strict Content-Security-Policy).
onnxruntime-web is not bundled with genzoo (14 MB of WASM): `tools/fetch_onnxruntime_web.sh`
puts a pinned copy in a cache folder, which `onnxruntime_web_dir` finds (ZOO_ORT_WEB_DIR
overrides it). Latents are drawn in JS by a seeded PRNG of the page's own (numpy's generator
cannot be reproduced there), so a page seed gives other images than `zoo sample`'s seed.
Single-pass generators only: a diffusion denoiser needs its sampling loop, not written in JS.

This module imports no TensorFlow unless `export_web` has to convert the network itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from exporters import manifest as manifest_lib

ORT_WEB_VERSION = "1.30.0"  # what tools/fetch_onnxruntime_web.sh fetches
ORT_WEB_ENV = "ZOO_ORT_WEB_DIR"
ORT_WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
FETCH_COMMAND = "bash tools/fetch_onnxruntime_web.sh"
PAGE_DIR = Path(__file__).resolve().parents[1] / "web"
# package file -> name in the export
PAGE_FILES = {"inbrowser.html": "index.html", "inbrowser.js": "inbrowser.js",
              "inbrowser.css": "inbrowser.css", "common.js": "common.js", "style.css": "style.css"}
MODEL_FILE = "generator.onnx"
WEB_FORMAT_VERSION = 1
MAX_IMAGES = 64  # the page's cap on n (and on the interpolation strip)
INTERPOLATION_STEPS = 8
LATENTS = {
    "prng": "mulberry32",
    "distribution": "standard_normal",
    "recipe": "mulberry32(seed) uniforms u = next() / 2**32; each pair (u1, u2) gives the two "
              "Box-Muller normals r*cos(2*pi*u2), r*sin(2*pi*u2) with r = sqrt(-2*ln(1 - u1)); "
              "rounded to float32 and filled row-major into (n, latent_dim); seeds are integers "
              "in [0, 2**32)",
    "note": "seeds are this page's own; the same seed gives different images from zoo sample "
            "(numpy's default_rng cannot be reproduced in JS)",
}
UINT8_RULE = "clip(rint((x + 1) * 127.5), 0, 255), rint rounding half to even (images.to_uint8)"
GRID = {"padding": 2, "columns": "ceil(sqrt(n))", "background": 255}


class WebExportError(ValueError):
    """The model or artifact cannot become a web page (wrong family, inputs or files)."""


def onnxruntime_web_dir(environ=None) -> Path:
    """The folder holding onnxruntime-web's files: $ZOO_ORT_WEB_DIR, else the cache
    tools/fetch_onnxruntime_web.sh fills; a FileNotFoundError naming the folder and the fix."""
    environ = os.environ if environ is None else environ
    if environ.get(ORT_WEB_ENV):
        folder = Path(environ[ORT_WEB_ENV])
    else:
        cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = cache / "genzoo" / "onnxruntime-web" / ORT_WEB_VERSION
    missing = [name for name in ORT_WEB_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"onnxruntime-web {ORT_WEB_VERSION} not found: {folder} lacks {', '.join(missing)}; "
            f"run `{FETCH_COMMAND}` (or set {ORT_WEB_ENV} to a folder holding {', '.join(ORT_WEB_FILES)})"
        )
    return folder


def onnxruntime_web_version(folder: Path) -> str:
    """The version in the banner of ort.wasm.min.mjs (`ONNX Runtime Web v1.30.0`)."""
    head = (Path(folder) / ORT_WEB_FILES[0]).read_bytes()[:400].decode("utf-8", "replace")
    found = re.search(r"ONNX Runtime Web v(\d+\.\d+\.\d+\S*)", head)
    if not found:
        raise WebExportError(
            f"{Path(folder) / ORT_WEB_FILES[0]} has no 'ONNX Runtime Web vX.Y.Z' banner: not an "
            f"onnxruntime-web dist file? run `{FETCH_COMMAND}`"
        )
    return found.group(1)


def check_supported(fields: dict, inputs=None):
    """A single-pass image generator taking z [, label]; else a one-line WebExportError."""
    kind = fields.get("generator_output", "image")
    if kind != "image":
        raise WebExportError(
            f"family {fields.get('family')!r} cannot be exported to web: its network outputs "
            f"{kind!r}, not images, and needs a diffusion sampling loop that the page does not "
            "run; the page runs single-pass generators (gan, cgan, wgan_gp, vae, cvae)"
        )
    if inputs is not None:
        names = [spec["name"] for spec in inputs]
        expected = 2 if fields.get("num_classes") else 1
        if len(names) != expected or "float" not in inputs[0]["dtype"] or (
            expected == 2 and "int" not in inputs[1]["dtype"]
        ):
            raise WebExportError(
                f"the {fields.get('family')!r} generator takes inputs {inputs}; the page feeds "
                f"latents (float32) {'and labels (int)' if expected == 2 else 'only'}"
            )


def web_manifest(fields: dict, model: dict, ort_version: str) -> dict:
    """The page's manifest.json; with its one `artifacts` entry it also loads in
    exporters.runtime (`zoo sample <export>/web`)."""
    model_fields = ("family", "latent_dim", "num_classes", "conditional", "image_shape",
                    "output_range", "output_layout", "output_dtype", "latent_distribution")
    return {
        "format": "genzoo-web",
        "format_version": WEB_FORMAT_VERSION,
        **{key: fields[key] for key in model_fields if key in fields},
        "generator_output": "image",
        "model": MODEL_FILE,
        "inputs": model["inputs"],
        "outputs": model["outputs"],
        "input_names": [spec["name"] for spec in model["inputs"]],
        "output_names": [spec["name"] for spec in model["outputs"]],
        "latents": LATENTS,
        "uint8": UINT8_RULE,
        "grid": GRID,
        "max_images": MAX_IMAGES,
        "interpolation_steps": INTERPOLATION_STEPS,
        "onnxruntime_web": {"version": ort_version, "files": list(ORT_WEB_FILES),
                            "backend": "wasm", "num_threads": 1},
        "artifacts": {MODEL_FILE: {"file": MODEL_FILE, "role": "generator", "format": "onnx",
                                   "runtime": "onnxruntime-web", "quantization": "none", **model}},
    }


def build_page(folder, onnx_file, fields: dict, model: dict, ort_dir=None) -> dict:
    """Write the page into the new folder `folder` around a copy of `onnx_file` (the ONNX
    generator `model` describes: inputs, outputs, opset); returns its manifest entry info."""
    check_supported(fields, model["inputs"])
    ort_dir = onnxruntime_web_dir() if ort_dir is None else Path(ort_dir)
    ort_version = onnxruntime_web_version(ort_dir)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in PAGE_FILES.items():
        if not (PAGE_DIR / source).is_file():
            raise WebExportError(f"the genzoo install lacks {PAGE_DIR / source} (a page file)")
        shutil.copyfile(PAGE_DIR / source, folder / target)
    for name in ORT_WEB_FILES:
        shutil.copyfile(ort_dir / name, folder / name)
    if Path(onnx_file).resolve() != (folder / MODEL_FILE).resolve():
        shutil.copyfile(onnx_file, folder / MODEL_FILE)
    described = {key: model[key] for key in ("inputs", "outputs", "opset") if key in model}
    described.update(manifest_lib.digest(folder / MODEL_FILE))
    page_manifest = web_manifest(fields, described, ort_version)
    (folder / manifest_lib.MANIFEST_NAME).write_text(json.dumps(page_manifest, indent=2) + "\n")
    return {
        "inputs": model["inputs"], "outputs": model["outputs"], "opset": model.get("opset"),
        "model_file": MODEL_FILE, "page": "index.html", "onnxruntime_web": ort_version,
        "model_sha256": described["sha256"],
    }


def export_web(network, filepath, output_names=None, opset=None, optimize: bool = True, *,
               fields: dict, onnx_source=None, onnx_info=None, ort_dir=None) -> dict:
    """Write the in-browser page for `network` at `filepath` (a folder). `fields`: the export's
    model fields (manifest.model_fields + generator_output). `onnx_source`: an ONNX export of
    the same network, described by `onnx_info` (its exporter's info), copied rather than
    converted again."""
    check_supported(fields)
    ort_dir = onnxruntime_web_dir() if ort_dir is None else Path(ort_dir)
    folder = Path(filepath)
    if onnx_source is not None:
        info = build_page(folder, onnx_source, fields, onnx_info, ort_dir)
        return {**info, "copied_from": Path(onnx_source).name}
    from exporters.converters.onnx import DEFAULT_OPSET, export_onnx

    folder.mkdir(parents=True)
    model = export_onnx(network, folder / MODEL_FILE, opset=opset or DEFAULT_OPSET,
                        optimize=optimize, output_names=output_names)
    return build_page(folder, folder / MODEL_FILE, fields, model, ort_dir)
