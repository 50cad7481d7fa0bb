"""`export`: write a model's generator (and a VAE's encoder, a style-based GAN's mapping and
synthesis networks) in every format, verify each, and write manifest.json. The converter tier:
imports the TF stack and the TF-free tier, never `zoo`.

    report = exporters.export(model, "saved_models/cgan-mnist5k")   # or a .keras path / run folder
    g = exporters.runtime.load("saved_models/cgan-mnist5k/generator.onnx")
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from pathlib import Path

from exporters import DEFAULT_FORMATS, DEFAULT_TFLITE_BATCH_SIZES, FORMATS, QUANTIZATIONS

# format -> (module, function): every exporter is `export_<fmt>(network, filepath, **kwargs)`.
EXPORTERS = {
    "saved_model": ("exporters.converters.saved_model", "export_saved_model"),
    "tflite": ("exporters.converters.tflite", "export_tflite"),
    "onnx": ("exporters.converters.onnx", "export_onnx"),
    "triton": ("exporters.converters.triton", "export_triton"),
    "tf_serving": ("exporters.converters.tf_serving", "export_tf_serving"),
    "web": ("exporters.converters.web", "export_web"),
}
RUNTIMES = {"saved_model": "tensorflow", "tflite": "litert", "onnx": "onnxruntime",
            "triton": "triton-onnxruntime", "tf_serving": "tensorflow-serving",
            "web": "onnxruntime-web"}
# model-repository layouts (generator only): folder -> (info key of the model inside, the
# format it is verified as)
LAYOUTS = {"triton": ("model_file", "onnx"), "tf_serving": ("model_dir", "saved_model"),
           "web": ("model_file", "onnx")}
# formats written after the others, because they reuse one (web copies generator.onnx)
LAST_FORMATS = ("web",)
DIR_MODE, FILE_MODE = 0o755, 0o644  # readable by the user a serving engine runs as
# network role -> names of its outputs in every artifact (a generator's: see _generator_outputs)
ROLE_OUTPUTS = {"encoder": ("z_mean", "z_log_var"), "mapping": ("w",), "synthesis": ("images",)}
# roles that get the quantized TFLite variants too (the image-producing networks; a mapping
# network is a small MLP whose output feeds every layer, kept float32)
QUANTIZED_ROLES = ("generator", "synthesis")
# a style-based generator (model.export_networks()): its two halves, exported beside the
# generator so a runtime can apply truncation / mixing / edits on w between them (the model
# repositories and the web page stay generator-only)
STYLE_ROLES = ("mapping", "synthesis")

__all__ = ["FORMATS", "QUANTIZATIONS", "export", "export_format"]


def export_format(fmt: str, network, filepath, **kwargs) -> dict:
    """Run one format's exporter (imported on first use)."""
    if fmt not in EXPORTERS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    module, function = EXPORTERS[fmt]
    return getattr(importlib.import_module(module), function)(network, filepath, **kwargs)


def _choices(value, valid, what) -> tuple[str, ...]:
    """A tuple of valid names from "a,b" or a sequence, or a ValueError echoing the value."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        items = tuple(dict.fromkeys(str(item).strip() for item in items))
    except TypeError:
        raise ValueError(f"{what} must be a name or a list of names, got {value!r}") from None
    bad = [item for item in items if item not in valid]
    if bad or not items:
        raise ValueError(f"{what}={value!r}: {bad or 'nothing'} not in {', '.join(valid)}")
    return items


def _tflite_batches(value) -> tuple:
    sizes = (value,) if value is None or isinstance(value, int) else tuple(value)
    for size in sizes:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            raise ValueError(
                f"tflite_batch_sizes must hold positive integers or None (dynamic), got {value!r}"
            )
    return tuple(dict.fromkeys(sizes))


def _plans(formats, quantize, tflite_batch_sizes, roles):
    """(file name, role, format, quantization, exporter kwargs) for every artifact to write."""
    plans = []
    formats = sorted(formats, key=lambda fmt: fmt in LAST_FORMATS)
    for role in roles:
        for fmt in formats:
            if fmt in LAYOUTS:
                if role == "generator":
                    plans.append((fmt, role, fmt, "none", {}))
            elif fmt == "saved_model":
                plans.append((f"{role}_saved_model", role, fmt, "none", {}))
            elif fmt == "onnx":
                plans.append((f"{role}.onnx", role, fmt, "none", {}))
            else:  # tflite: float32 always, quantized variants for the image networks
                quantizations = ("none", *[q for q in quantize if q != "none"])
                for q in quantizations if role in QUANTIZED_ROLES else ("none",):
                    sizes = tflite_batch_sizes if role == "generator" else tflite_batch_sizes[:1]
                    for size in sizes:
                        tag = "-".join(
                            t for t in (role, None if q == "none" else q, f"b{size or 'N'}") if t
                        )
                        plans.append((f"{tag}.tflite", role, fmt, q,
                                      {"quantize": q, "batch_size": size}))
    return plans


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """A fresh staging folder beside out_dir (same filesystem, so the final swap is a rename)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{str(out_dir)!r} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{str(out_dir)!r} is not empty; pass --overwrite (overwrite=True in Python) to "
            "replace it, or choose another folder"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))


def _swap_in(staging: Path, out_dir: Path):
    """Replace out_dir by staging; the old export is removed only once the new one is in place."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        out_dir.rename(old)
    try:
        staging.rename(out_dir)
    except OSError:
        if old is not None:
            old.rename(out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export(model_or_path, out_dir, formats=DEFAULT_FORMATS, quantize="none", *, overwrite=False,
           tflite_batch_sizes=DEFAULT_TFLITE_BATCH_SIZES, opset=None, optimize_onnx=True,
           tolerances=None, quality_check=None) -> dict:
    """Export a model's generator (and a VAE's encoder), verify every artifact, write manifest.json.

    A style-based model (one with `export_networks()` and `style_manifest()`, see
    docs/stylegan_contract.md) also gets its "mapping" and "synthesis" networks in every file
    format (mapping.onnx, synthesis-b1.tflite, ..., the quantized variants for synthesis) and
    its style block (w_avg, num_ws, directions) under the manifest's "style"; triton, tf_serving
    and web hold the generator only.

    model_or_path: a zoo model, a `.keras` file or a run folder holding `model.keras`.
    formats: any of "saved_model", "tflite", "onnx" (a list or "a,b"), and the model
        repositories "triton" (triton/generator/config.pbtxt + 1/model.onnx) and "tf_serving"
        (tf_serving/generator/1/, a SavedModel in TF Serving's layout), and "web" (web/: a
        static page running the ONNX generator in the browser with onnxruntime-web, which
        `bash tools/fetch_onnxruntime_web.sh` fetches; see exporters.converters.web).
    quantize: "none" | "fp16" | "dynamic" | "int8" | "int16x8", or several: extra TFLite generator variants
        next to the float32 ones (SavedModel and ONNX stay float32).
    tflite_batch_sizes: static batch of each TFLite file; None gives a dynamic-batch file.
    overwrite: replace a non-empty out_dir. The export is built in a staging folder and swapped
        in at the end, so a failed export leaves the previous one untouched.
    tolerances: {quantization: max abs diff} overrides for verify.TOLERANCES.
    quality_check: optional `check(staging_folder, manifest) -> {artifact: scores}`, run on the
        verified export before it is swapped in (zoo.evaluate.quantization_gate scores quantized
        samples against the float ones); its scores go into each artifact's "quality", and an
        exception from it stops the export with nothing written.
    Returns the manifest (plus "out_dir" and "manifest_path"); raises if any artifact fails.
    """
    formats = _choices(formats, FORMATS, "formats")
    quantize = _choices(quantize, QUANTIZATIONS, "quantize")
    tflite_batch_sizes = _tflite_batches(tflite_batch_sizes)
    tolerances = dict(tolerances or {})
    out_dir = Path(out_dir)
    ort_dir = None
    if "web" in formats:  # a missing onnxruntime-web fails before anything is written
        from exporters.converters.web import onnxruntime_web_dir

        ort_dir = onnxruntime_web_dir()

    staging = _prepare_out_dir(out_dir, overwrite)  # refuse before any heavy work
    try:
        return _export(model_or_path, out_dir, staging, formats, quantize, tflite_batch_sizes,
                       opset, optimize_onnx, tolerances, ort_dir, quality_check)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _export(model_or_path, out_dir, staging, formats, quantize, tflite_batch_sizes, opset,
            optimize_onnx, tolerances, ort_dir=None, quality_check=None) -> dict:
    from exporters import manifest as manifest_lib
    from exporters.converters import saved_model, tflite, verify

    model = saved_model.load_model(model_or_path)
    for quantization, reason in getattr(model, "quantizations_not_offered", {}).items():
        if quantization in quantize:
            raise ValueError(f"quantize={quantization!r} is not offered for {model.family}: "
                             f"{reason}")
    if "int16x8" in quantize and model.num_classes:
        raise ValueError(
            f"quantize='int16x8' needs an unconditional model ({model.family} has num_classes="
            f"{model.num_classes}): LiteRT's 16x8 calibration cannot record the int32 label "
            "input; use int8 or dynamic"
        )
    fields = manifest_lib.model_fields(
        model.family, model.latent_dim, model.num_classes, model.image_shape
    )
    networks = {"generator": saved_model.float32_network(model.generator)}
    if getattr(model, "encoder", None) is not None:
        networks["encoder"] = saved_model.float32_network(model.encoder)
    if hasattr(model, "export_networks"):  # duck-typed: see docs/stylegan_contract.md
        style_networks = model.export_networks()
        missing = [role for role in STYLE_ROLES if role not in style_networks]
        if missing:
            raise ValueError(f"{model.family}.export_networks() lacks {missing}; it returned "
                             f"{sorted(style_networks)}")
        for role in STYLE_ROLES:
            networks[role] = saved_model.float32_network(style_networks[role])
    outputs = {"generator": _generator_outputs(model), **ROLE_OUTPUTS}
    references = {
        role: verify.KerasReference(network, outputs[role], _input_maker(model, role, network,
                                                                         networks))
        for role, network in networks.items()
    }
    fields["generator_output"] = getattr(model, "generator_output", "image")
    if hasattr(model, "schedule_config"):  # a diffusion denoiser: what a sampling loop needs
        fields["schedule"] = model.schedule_config()
    if hasattr(model, "style_manifest"):  # w_avg, directions, num_ws: what the controls need
        fields["style"] = _style_fields(model.style_manifest())
    if "web" in formats:  # an unsupported family fails before the other formats' work
        from exporters.converters.web import check_supported

        check_supported(fields)
    options = {"opset": opset or _default_opset(), "optimize": bool(optimize_onnx)}
    artifacts = {}
    for name, role, fmt, quantization, kwargs in _plans(
        formats, quantize, tflite_batch_sizes, networks
    ):
        kwargs = {**kwargs, "output_names": outputs[role]}
        if fmt in ("onnx", "triton", "web"):
            kwargs.update(options)
        if fmt == "web":
            onnx_name = f"{role}.onnx"
            kwargs.update(fields=fields, ort_dir=ort_dir)
            if onnx_name in artifacts:  # the verified ONNX export, copied, not converted again
                kwargs.update(onnx_source=staging / onnx_name, onnx_info=artifacts[onnx_name])
        if fmt == "tflite" and quantization in tflite.CALIBRATED:
            kwargs["representative_data"] = tflite.representative_data(
                references[role].make_inputs
            )
        info = export_format(fmt, networks[role], staging / name, **kwargs)
        key, checked_as = LAYOUTS.get(fmt, (None, fmt))
        check = verify.verify_artifact(
            staging / name / info[key] if key else staging / name, checked_as, references[role],
            quantization,
            tolerance=tolerances.get(quantization),
        )
        artifacts[name] = {
            "file": name, "role": role, "format": fmt, "runtime": RUNTIMES[fmt],
            "quantization": quantization, **info,
            **manifest_lib.digest(staging / name), "verification": check,
        }
    manifest = manifest_lib.build(
        fields, artifacts, quantize,
        {"formats": list(formats), "tflite_batch_sizes": list(tflite_batch_sizes),
         "float32_export": True, **options},
    )
    manifest_lib.write(staging, manifest)
    if quality_check is not None:  # on the finished staging folder, before it replaces anything
        for name, quality in quality_check(staging, manifest).items():
            manifest["artifacts"][name]["quality"] = quality
        manifest_lib.write(staging, manifest)
    _make_readable(staging)
    _swap_in(staging, out_dir)
    return {**manifest, "out_dir": str(out_dir),
            "manifest_path": str(out_dir / manifest_lib.MANIFEST_NAME)}


def _make_readable(folder: Path):
    """Folders 0755 and files 0644 (mkdtemp makes 0700 folders: a server running as another
    user could not read the export)."""
    folder.chmod(DIR_MODE)
    for path in folder.rglob("*"):
        path.chmod(DIR_MODE if path.is_dir() else FILE_MODE)


def _generator_outputs(model) -> tuple[str, ...]:
    """("images",) for an image generator; a diffusion denoiser's output is its prediction."""
    kind = getattr(model, "generator_output", "image")
    return ("images",) if kind == "image" else (str(kind),)


def _style_fields(style: dict) -> dict:
    """The manifest's "style" block as plain JSON types (w_avg may come as a numpy array)."""
    import numpy as np

    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    style = plain({k: np.asarray(v, np.float32).tolist() if k == "w_avg" else v
                   for k, v in dict(style).items()})
    for key in ("w_dim", "num_ws", "w_avg"):
        if key not in style:
            raise ValueError(f"style_manifest() lacks {key!r}; it has {sorted(style)}")
    if len(style["w_avg"]) != int(style["w_dim"]):
        raise ValueError(f"style_manifest()'s w_avg has {len(style['w_avg'])} values, "
                         f"w_dim is {style['w_dim']}")
    style.setdefault("directions", {})
    style.setdefault("truncation_default", 1.0)
    return style


def _input_maker(model, role, network, networks=None):
    """make_inputs(n, seed=None) -> {input name: array}: the model's own example inputs for its
    generator when it has them (diffusion denoisers take x_t, t), else latents/labels/images.
    A mapping network gets latents (+ labels); a synthesis network the styles its mapping gives
    them, ws = repeat(mapping(z), num_ws), so it is verified (and int8-calibrated) on the inputs
    it meets."""
    import numpy as np

    from exporters.sampling import latents

    if role == "synthesis":
        mapping = _input_maker(model, "mapping", networks["mapping"])

        def style_inputs(n, seed=None):
            feeds = list(mapping(n, seed).values())
            w = np.asarray(networks["mapping"](feeds[0] if len(feeds) == 1 else feeds,
                                               training=False), np.float32)
            ws = np.repeat(w[:, None, :], int(model.num_ws), axis=1)
            return {network.inputs[0].name: ws}

        return style_inputs

    def default_inputs(n, seed):
        rng = np.random.default_rng(seed)
        values = []
        for i, tensor in enumerate(network.inputs):
            if "int" in str(tensor.dtype):
                values.append((np.arange(n) % max(model.num_classes, 1)).astype(np.int32))
            elif role in ("generator", "mapping") and i == 0:
                values.append(latents(n, model.latent_dim, seed))
            else:
                shape = (n, *tensor.shape[1:])
                values.append(rng.uniform(-1, 1, shape).astype(np.float32))
        return values

    def make_inputs(n, seed=None):
        seed = 1000 + n if seed is None else seed
        if role == "generator" and hasattr(model, "example_generator_inputs"):
            values = model.example_generator_inputs(n, seed=seed)
        else:
            values = default_inputs(n, seed)
        values = values if isinstance(values, (list, tuple)) else [values]
        return {t.name: np.asarray(v) for t, v in zip(network.inputs, values)}

    return make_inputs


def _default_opset() -> int:
    from exporters.converters.onnx import DEFAULT_OPSET

    return DEFAULT_OPSET


# ---- formats derived from an existing export (no Keras model needed) -----------------------
# A run that ships only its export/ (the committed pretrained runs hold no model.keras) can
# still get these: format -> builder(source ONNX file, its manifest entry, target folder) -> info.
FROM_EXPORT_SOURCE = "onnx"  # the artifact they are built from: the float32 ONNX generator


def _triton_from_onnx(source: Path, entry: dict, target: Path) -> dict:
    """A Triton repository (config.pbtxt + generator/1/model.onnx) around a copy of `source`;
    the config is written from the manifest's tensor specs, as export_triton does from the graph."""
    from exporters.converters import triton

    name = triton.DEFAULT_MODEL_NAME
    version = target / name / triton.VERSION
    version.mkdir(parents=True)
    shutil.copyfile(source, version / "model.onnx")
    config = triton.model_config(name, entry["inputs"], entry["outputs"])
    (target / name / "config.pbtxt").write_text(config)
    return {
        "inputs": entry["inputs"], "outputs": entry["outputs"], "opset": entry.get("opset"),
        "model_name": name, "model_file": f"{name}/{triton.VERSION}/model.onnx",
        "config": f"{name}/config.pbtxt", "max_batch_size": triton.DEFAULT_MAX_BATCH_SIZE,
        "max_queue_delay_us": triton.DEFAULT_QUEUE_DELAY_US, "derived_from": source.name,
    }


def _web_from_onnx(source: Path, entry: dict, target: Path) -> dict:
    """The in-browser page around a copy of `source`, with the model fields of the manifest
    beside it (exporters.converters.web)."""
    from exporters import manifest as manifest_lib
    from exporters.converters import web

    fields = manifest_lib.read(source.parent)
    return {**web.build_page(target, source, fields, entry), "derived_from": source.name}


FROM_EXPORT = {"triton": _triton_from_onnx, "web": _web_from_onnx}


def _verify_against_source(model_file: Path, source: Path, entry: dict) -> dict:
    """Run the derived ONNX model and its source in ONNX Runtime on the same inputs (batch 1
    and 7): they must agree to 1e-4 (a copy agrees exactly)."""
    import numpy as np

    from exporters.runtime import OnnxBackend
    from exporters.sampling import latents

    derived, original = OnnxBackend(model_file, threads=1), OnnxBackend(source, threads=1)
    diffs = []
    for n in (1, 7):
        feeds = {}
        for i, spec in enumerate(entry["inputs"]):
            if "int" in spec["dtype"]:
                feeds[spec["name"]] = (np.arange(n) % 10).astype(spec["dtype"])
            else:
                feeds[spec["name"]] = latents(n, int(spec["shape"][-1]), 1000 + n + i)
        a, b = derived.run(feeds), original.run(feeds)
        diffs += [np.abs(a[k].astype(np.float64) - b[k]).ravel() for k in b]
    diff = np.concatenate(diffs)
    check = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
             "tolerance": 1e-4, "batch_sizes": [1, 7], "reference": source.name}
    check["passed"] = check["max_abs_diff"] <= check["tolerance"]
    if not check["passed"]:
        raise ValueError(
            f"{model_file} differs from {source.name} by {check['max_abs_diff']:.3g} (> 1e-4)"
        )
    return check


def export_from_export(export_dir, out_dir=None, formats=("triton",), *, overwrite=False) -> dict:
    """Build `formats` (only those in FROM_EXPORT) from an existing export's float32 ONNX
    generator, for a run that ships its export but no Keras model. TensorFlow is not needed.

    out_dir None (or the export folder itself): the new artifacts are added beside the shipped
    ones (export/triton/, export/web/) and listed in its manifest.json; nothing there is
    replaced unless `overwrite` (then only the derived folder, once the new one is built and
    verified).
    Another out_dir: a new export folder holding the derived artifacts and a manifest (a
    non-empty one is replaced only with `overwrite`, as `export` does).
    Returns the manifest written (plus "out_dir", "manifest_path" and "added").
    """
    from exporters import manifest as manifest_lib
    from exporters.runtime import check_matches

    formats = _choices(formats, FORMATS, "formats")
    keras_only = [fmt for fmt in formats if fmt not in FROM_EXPORT]
    if keras_only:
        raise ValueError(
            f"formats {', '.join(keras_only)} need the Keras model; from an export's ONNX "
            f"generator only {', '.join(FROM_EXPORT)} can be built"
        )
    source_dir = Path(export_dir)
    manifest = manifest_lib.read(source_dir)
    if "web" in formats:  # before anything is written: the page's files and a family it runs
        from exporters.converters import web

        web.onnxruntime_web_dir()
        web.check_supported(manifest)
    entry = next(
        (e for e in manifest["artifacts"].values()
         if e.get("role", "generator") == "generator" and e.get("format") == FROM_EXPORT_SOURCE
         and e.get("quantization", "none") == "none"),
        None,
    )
    if entry is None:
        raise ValueError(
            f"{source_dir} holds no float32 ONNX generator to build {', '.join(formats)} from "
            f"(it lists {', '.join(sorted(manifest['artifacts']))})"
        )
    source = source_dir / entry["file"]
    check_matches(source, entry)  # the shipped file is the one its manifest describes
    in_place = out_dir is None or Path(out_dir).resolve() == source_dir.resolve()
    out = source_dir if in_place else Path(out_dir)
    if in_place:
        taken = [fmt for fmt in formats if (out / fmt).exists()]
        if taken and not overwrite:
            raise FileExistsError(
                f"{out} already holds {', '.join(f + '/' for f in taken)}; pass --overwrite "
                "(overwrite=True in Python) to rebuild it"
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.derived-", dir=out.parent))
    else:
        staging = _prepare_out_dir(out, overwrite)
    try:
        artifacts = {}
        for fmt in formats:
            info = FROM_EXPORT[fmt](source, entry, staging / fmt)
            check = _verify_against_source(staging / fmt / info["model_file"], source, entry)
            artifacts[fmt] = {
                "file": fmt, "role": "generator", "format": fmt, "runtime": RUNTIMES[fmt],
                "quantization": "none", **info, **manifest_lib.digest(staging / fmt),
                "verification": check,
            }
        _make_readable(staging)
        if in_place:
            for fmt in formats:
                _swap_in(staging / fmt, out / fmt)
            shutil.rmtree(staging, ignore_errors=True)
            written = {**manifest, "artifacts": {**manifest["artifacts"], **artifacts}}
            written["options"] = {**manifest.get("options", {}),
                                  "formats": list(dict.fromkeys(
                                      [*manifest.get("options", {}).get("formats", []),
                                       *formats]))}
        else:
            fields = {k: v for k, v in manifest.items()
                      if k not in ("format_version", "created", "quantization", "options",
                                   "versions", "artifacts")}
            written = manifest_lib.build(
                fields, artifacts, ("none",),
                {"formats": list(formats), "derived_from": str(source)},
            )
            manifest_lib.write(staging, written)
            _make_readable(staging)
            _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    path = out / manifest_lib.MANIFEST_NAME
    if in_place:  # the manifest is replaced in one rename: the old list or the new one
        manifest_lib.write(out, written)
    return {**written, "out_dir": str(out), "manifest_path": str(path), "added": list(artifacts)}
