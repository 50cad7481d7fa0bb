"""Generate images from an exported generator with numpy + ONNX Runtime or LiteRT only.

No TensorFlow and no zoo here: this module is what a server or a laptop without TensorFlow
imports. `load(path)` reads the manifest beside the artifact, checks that the file is the one the
manifest describes (sha256, size, input names and shapes), and returns a `Generator` whose
`generate(n, labels, seed)` draws latents exactly like `zoo`'s `model.sample` (so the same seed
gives the same images) and returns uint8 NHWC images. A diffusion denoiser's artifact loads as a
`DiffusionGenerator`, which runs the sampling loop (DDIM or DDPM, `steps`, `eta`,
`guidance_scale`) here in numpy with the schedule from the manifest, through
`exporters.diffusion_pipeline`: the one sampling loop `model.sample` runs too. A style-based
GAN's export loads as a `StyleGenerator` on its mapping and synthesis artifacts, which applies
truncation, style mixing and edits (`exporters.style_controls`) on w between the two.

ONNX Runtime settings, and why: each session runs with one intra-op thread, and a large batch
is split into chunks (4 per core, at least 16 images) that a thread per core runs concurrently
(`session.run` is thread-safe and releases the GIL). ORT's ConvTranspose, DepthToSpace and
Concat kernels parallelize poorly inside one call (per-image GEMM + single-threaded col2im), so
chunk-level parallelism scales where the intra-op pool does not; small chunks keep every core
busy when one worker is descheduled, and no pool threads spin against other work.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from exporters import manifest as manifest_lib
from exporters import style_controls as sc
from exporters.diffusion_samplers import SAMPLERS
from exporters.images import to_uint8
from exporters.sampling import (
    MAX_IMAGES,
    check_count,
    check_interpolation_count,
    check_label,
    check_labels,
    check_seed,
    interpolation_latents,
    latents,
    short_repr,
)

MIN_CHUNK = 16
# chunks per worker: more, smaller chunks balance the load when a worker is descheduled
CHUNKS_PER_THREAD = 4
# Which artifact `load(folder)` picks, best first: ONNX (dynamic batch), then TFLite fp32.
PREFERRED_FORMATS = ("onnx", "tflite")


class ArtifactError(ValueError):
    """The artifact or its manifest cannot be used (corrupt, truncated, mismatched, unknown)."""


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# ---- backends: {input name: array} -> {output name: array}, any batch size ----------------------
class OnnxBackend:
    """ONNX Runtime CPU session; large batches run as concurrent per-core chunks (see above)."""

    format = "onnx"

    def __init__(self, path, threads: int | None = None,
                 chunks_per_thread: int = CHUNKS_PER_THREAD):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # noqa: BLE001  (ORT raises its own Fail/InvalidProtobuf)
            raise ArtifactError(f"{path} is not a loadable ONNX model: {error}") from None
        self.threads = threads or cpu_count()
        self.chunks_per_thread = chunks_per_thread
        self._pool = None
        self._pool_lock = threading.Lock()
        self.inputs = [_spec(i.name, i.type, i.shape) for i in self.session.get_inputs()]
        self.outputs = [_spec(o.name, o.type, o.shape) for o in self.session.get_outputs()]
        self.batch = None

    def _run_one(self, feeds):
        names = [o["name"] for o in self.outputs]
        return dict(zip(names, self.session.run(names, feeds)))

    def run(self, feeds: dict) -> dict:
        n = len(next(iter(feeds.values())))
        parts = min(self.threads * self.chunks_per_thread, n // MIN_CHUNK)
        if parts < 2 or self.threads < 2:
            return self._run_one(feeds)
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ort-chunk")
        bounds = np.linspace(0, n, parts + 1).astype(int)
        chunks = [{k: v[a:b] for k, v in feeds.items()} for a, b in itertools.pairwise(bounds)]
        results = list(self._pool.map(self._run_one, chunks))
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}


class LiteRTBackend:
    """LiteRT interpreter through the `serve` signature; a static batch is filled chunk by chunk
    (the last one padded). One interpreter is not thread-safe, so calls are serialized."""

    format = "tflite"

    def __init__(self, path, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or cpu_count())
            self.runner = self.interpreter.get_signature_runner("serve")
        except Exception as error:  # noqa: BLE001  (corrupt flatbuffers: ValueError/RuntimeError)
            raise ArtifactError(f"{path} is not a loadable TFLite model: {error}") from None
        self.lock = threading.Lock()
        details = self.runner.get_input_details()
        self.inputs = [
            _spec(name, d["dtype"], d["shape_signature"]) for name, d in sorted(details.items())
        ]
        self.outputs = [
            _spec(name, d["dtype"], d["shape_signature"])
            for name, d in sorted(self.runner.get_output_details().items())
        ]
        batches = {spec["shape"][0] for spec in self.inputs}
        self.batch = batches.pop() if len(batches) == 1 and None not in batches else None

    def run(self, feeds: dict) -> dict:
        n = len(next(iter(feeds.values())))
        step = self.batch or n
        results = []
        with self.lock:
            for start in range(0, n, step):
                chunk = {k: _pad(v[start : start + step], step) for k, v in feeds.items()}
                results.append(self.runner(**chunk))
        return {name: np.concatenate([r[name] for r in results])[:n] for name in results[0]}


def _pad(array, size):
    if len(array) == size:
        return np.ascontiguousarray(array)
    padding = np.zeros((size - len(array), *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([array, padding])


def _spec(name, dtype, shape) -> dict:
    dtype = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
    dtype = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int64)": "int64"}.get(
        dtype, dtype
    )
    dims = [int(d) if isinstance(d, (int, np.integer)) and d >= 0 else None for d in shape]
    return {"name": name, "dtype": dtype, "shape": dims}


# file suffix -> backend class
BACKENDS = {".onnx": OnnxBackend, ".tflite": LiteRTBackend}


# ---- loading ----------------------------------------------------------------------------------
class Generator:
    """An exported generator: `generate(n, labels=None, seed=None)` -> uint8 (n, H, W, C)."""

    def __init__(self, backend, manifest: dict, entry: dict, path: Path,
                 max_images: int = MAX_IMAGES):
        self.backend = backend
        self.manifest = manifest
        self.entry = entry
        self.path = path
        self.family = manifest["family"]
        self.latent_dim = int(manifest["latent_dim"])
        self.num_classes = int(manifest["num_classes"])
        self.image_shape = tuple(int(d) for d in manifest["image_shape"])
        self.max_images = max_images
        self.bind_inputs(manifest.get("generator_output", "image"))

    def bind_inputs(self, kind):
        if kind != "image":
            raise ArtifactError(
                f"{self.path.name} outputs the {self.family} network's {kind!r}, not images, "
                "and its manifest has no 'schedule' to run a sampling loop with"
            )
        names = [spec["name"] for spec in self.entry["inputs"]]
        self.z_name = names[0]
        self.label_name = names[1] if len(names) > 1 else None

    @property
    def format(self) -> str:
        return self.backend.format

    def metadata(self) -> dict:
        fields = ("family", "latent_dim", "num_classes", "conditional", "image_shape",
                  "output_range", "output_layout", "latent_distribution", "latent_recipe")
        return {
            **{k: self.manifest[k] for k in fields if k in self.manifest},
            "artifact": self.path.name,
            "format": self.format,
            "quantization": self.entry.get("quantization", "none"),
            "max_images": self.max_images,
        }

    def generate_float(self, n, labels=None, seed=None, batch_size=None, *, truncation=1.0,
                       mix=None, edits=None) -> np.ndarray:
        """float32 images in [-1, 1] (what the network outputs). The style controls are a
        StyleGenerator's: here anything but their defaults is a ValueError saying so."""
        no_style_controls(self.family, truncation, mix, edits)
        n = check_count(n, self.max_images)
        labels = check_labels(labels, n, self.num_classes)
        seed = check_seed(seed)
        if batch_size is not None:
            batch_size = check_count(batch_size, self.max_images, "batch_size")
        return self.from_latents(latents(n, self.latent_dim, seed), labels, batch_size)

    def from_latents(self, z, labels=None, batch_size=None) -> np.ndarray:
        """float32 images in [-1, 1] from given latents z (n, latent_dim) and int labels, in
        calls of at most batch_size (what `model.generate(z, labels)` is in Keras)."""
        z = np.asarray(z, np.float32)
        labels = None if labels is None else np.asarray(labels, np.int32)
        step = batch_size or max(len(z), 1)
        outputs = []
        for start in range(0, len(z), step):
            feeds = {self.z_name: z[start : start + step]}
            if self.label_name:
                feeds[self.label_name] = labels[start : start + step]
            outputs.append(self.backend.run(feeds)["images"])
        return np.concatenate(outputs).astype(np.float32)

    def generate(self, n, labels=None, seed=None, batch_size=None, *, truncation=1.0, mix=None,
                 edits=None) -> np.ndarray:
        """uint8 NHWC images; the same seed (and labels) gives the images `model.sample` gives."""
        return to_uint8(self.generate_float(n, labels, seed, batch_size, truncation=truncation,
                                            mix=mix, edits=edits))

    def interpolation_inputs(self, seed_a, seed_b, n, label=None):
        """(z, labels) of an n-image path: z slerps from the latent generate(1, seed=seed_a)
        draws to seed_b's (see sampling.interpolation_latents); one label for every image."""
        n = check_interpolation_count(n, self.max_images)
        label = check_label(label, self.num_classes)
        z = interpolation_latents(seed_a, seed_b, n, self.latent_dim)
        return z, None if label is None else np.full(n, label, np.int32)

    def interpolate_float(self, seed_a, seed_b, n, label=None, batch_size=None, *,
                          truncation=1.0, mix=None, edits=None) -> np.ndarray:
        """float32 images in [-1, 1] along the path; the ends are generate(1, seed=seed_a)
        and generate(1, seed=seed_b) (with that label)."""
        no_style_controls(self.family, truncation, mix, edits)
        z, labels = self.interpolation_inputs(seed_a, seed_b, n, label)
        if batch_size is not None:
            batch_size = check_count(batch_size, self.max_images, "batch_size")
        return self.from_latents(z, labels, batch_size)

    def interpolate(self, seed_a, seed_b, n, label=None, batch_size=None, **options) -> np.ndarray:
        """uint8 NHWC images along the path (see interpolate_float; a diffusion model also
        takes its sampling options)."""
        return to_uint8(self.interpolate_float(seed_a, seed_b, n, label, batch_size, **options))


class DiffusionGenerator(Generator):
    """An exported diffusion denoiser (x_t, t [, label]) -> prediction, sampled here in numpy:
    `generate(n, labels, seed, batch_size, steps, eta, guidance_scale, sampler)` runs
    `exporters.diffusion_pipeline` (the loop `model.sample` runs: DDIM or DDPM, classifier-free
    guidance as one [x; x] batch with [labels; null label], x_T and then each stochastic step's
    noise from default_rng(seed)) over the exported denoiser, with the schedule and defaults
    (sampler, steps, eta, guidance_scale) from the manifest, so the same seed and options give
    the images `model.sample` gives."""

    def bind_inputs(self, kind):
        from exporters import diffusion_pipeline
        config = self.manifest["schedule"]
        try:
            self.pipeline = diffusion_pipeline.DiffusionPipeline.from_schedule_config(
                config, self.image_shape, self.num_classes
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ArtifactError(f"{self.path.parent}'s manifest has a bad 'schedule': {error}") \
                from None
        self.schedule = self.pipeline.schedule
        self.prediction = self.pipeline.prediction
        self.clip_denoised = self.pipeline.clip_denoised
        expected = config.get("alphas_cumprod")
        if expected is not None and not np.allclose(
            self.schedule.alphas_cumprod, expected, rtol=0, atol=1e-9
        ):
            raise ArtifactError(
                f"{self.path.parent}'s schedule {self.schedule!r} does not give the manifest's "
                "alphas_cumprod"
            )
        if config.get("timestep_spacing", "trailing") != "trailing":
            raise ArtifactError(f"timestep_spacing {config['timestep_spacing']!r} is unknown")
        self.output_name = self.entry["outputs"][0]["name"]
        names = [spec["name"] for spec in self.entry["inputs"]]
        wanted = list(config.get("inputs") or (["x_t", "t", "label"][: len(names)]))
        if sorted(wanted) != sorted(names):
            raise ArtifactError(
                f"{self.path.name} takes inputs {names}; its schedule says {wanted}"
            )
        self.x_name, self.t_name = wanted[0], wanted[1]
        self.label_name = wanted[2] if len(wanted) > 2 else None
        if bool(self.label_name) != bool(self.num_classes):
            raise ArtifactError(
                f"{self.path.name} has inputs {names} but num_classes={self.num_classes}"
            )
        self.null_label = self.pipeline.null_label

    def metadata(self) -> dict:
        return {
            **super().metadata(),
            "generator_output": self.manifest.get("generator_output"),
            "sampling": {
                "sampler": self.pipeline.sampler, "steps": self.pipeline.steps,
                "eta": self.pipeline.eta, "timesteps": self.schedule.timesteps,
                "schedule": self.schedule.kind, "prediction": self.prediction,
                "guidance_scale": self.pipeline.guidance_scale if self.num_classes else None,
                "samplers": sorted(SAMPLERS),
            },
        }

    def make_sampler(self, steps=None, eta=None, sampler=None):
        """The sampler model.make_sampler builds for the same arguments (checked)."""
        return self.pipeline.make_sampler(steps, eta, sampler)

    def check_guidance(self, guidance_scale) -> float:
        return self.pipeline.check_guidance(guidance_scale)

    def run_denoiser(self, x_t, t, labels) -> np.ndarray:
        """The exported denoiser on one batch: the pipeline's `denoise_raw`."""
        feeds = {self.x_name: x_t, self.t_name: t}
        if self.label_name:
            feeds[self.label_name] = labels
        return self.backend.run(feeds)[self.output_name].astype(np.float32, copy=False)

    def denoise_raw(self, x_t, t, labels=None, batch_size=None) -> np.ndarray:
        """The exported denoiser on (x_t, t [, labels]) in batches of batch_size."""
        return self.pipeline.denoise_unguided(self.run_denoiser, x_t, t, labels, batch_size)

    def denoise(self, x_t, t, labels=None, guidance_scale=1.0, batch_size=None) -> np.ndarray:
        """Denoiser output at timestep t with classifier-free guidance (as model.denoise)."""
        return self.pipeline.denoise(
            self.run_denoiser, x_t, t, labels, guidance_scale, batch_size
        )

    def from_latents(self, z, labels=None, batch_size=None) -> np.ndarray:
        """float32 images in [-1, 1] sampled from x_T = z with the manifest's defaults (what
        `model.generate(z, labels)` is in Keras)."""
        return self.pipeline.generate(self.run_denoiser, z, labels, batch_size=batch_size)

    def generate_float(self, n, labels=None, seed=None, batch_size=None, steps=None, eta=None,
                       guidance_scale=None, sampler=None, *, truncation=1.0, mix=None,
                       edits=None) -> np.ndarray:
        """float32 images in [-1, 1]; the same arguments give model.sample's images."""
        no_style_controls(self.family, truncation, mix, edits)
        return self.pipeline.sample(
            self.run_denoiser, n, labels, seed, batch_size=batch_size, steps=steps, eta=eta,
            guidance_scale=guidance_scale, sampler=sampler, max_images=self.max_images,
        )

    def generate(self, n, labels=None, seed=None, batch_size=None, steps=None, eta=None,
                 guidance_scale=None, sampler=None, *, truncation=1.0, mix=None,
                 edits=None) -> np.ndarray:
        """uint8 NHWC images (see generate_float)."""
        return to_uint8(self.generate_float(
            n, labels, seed, batch_size, steps, eta, guidance_scale, sampler,
            truncation=truncation, mix=mix, edits=edits,
        ))

    def interpolate_float(self, seed_a, seed_b, n, label=None, batch_size=None, steps=None,
                          eta=None, guidance_scale=None, sampler=None, *, truncation=1.0,
                          mix=None, edits=None) -> np.ndarray:
        """The path in x_T, sampled with a deterministic sampler (DDIM, eta 0): the image is
        then a function of x_T alone, so the ends equal generate(1, seed=seed_a / seed_b). A
        stochastic sampler draws fresh noise per image and step, which no path can follow."""
        no_style_controls(self.family, truncation, mix, edits)
        walk = self.make_sampler(steps, eta, sampler)
        if walk.stochastic:
            raise ValueError(
                f"interpolation needs a deterministic sampler (ddim with eta=0): x_T is its only "
                f"latent; got sampler={sampler!r}, eta={eta!r}, which make a stochastic "
                f"{walk.kind} sampler (None: the manifest's {self.pipeline.sampler!r}, "
                f"eta={self.pipeline.eta!r})"
            )
        z, labels = self.interpolation_inputs(seed_a, seed_b, n, label)
        return self.pipeline.generate(
            self.run_denoiser, z, labels, batch_size=batch_size, steps=steps, eta=eta,
            guidance_scale=guidance_scale, sampler=sampler,
        )


def no_style_controls(family, truncation=1.0, mix=None, edits=None):
    """A model without per-layer styles takes only the controls' defaults; anything else is the
    contract's clear ValueError (docs/stylegan_contract.md), never a silent no-op."""
    why = ("this is its generator artifact alone (loaded with styles=False)"
           if family == "stylegan" else f"this {family} model has no styles")
    if mix is not None:
        raise ValueError(f"mix={short_repr(mix)} needs a style-based generator (stylegan; "
                         f"per-layer styles); {why}")
    if isinstance(truncation, bool) or truncation != 1.0:
        raise ValueError(f"truncation={short_repr(truncation)} needs a style-based generator "
                         f"(stylegan); {why}")
    if edits not in (None, {}, ""):
        raise ValueError(f"edits={short_repr(edits)} need a style-based generator (stylegan); "
                         f"{why}")


class StyleBackend:
    """mapping then synthesis with no controls (psi 1): what the `generator` artifact computes,
    as one backend (z [, label] -> images) for callers that run feeds."""

    def __init__(self, mapping, synthesis, num_ws: int):
        self.mapping, self.synthesis, self.num_ws = mapping, synthesis, num_ws
        self.format = synthesis.format
        self.inputs, self.outputs, self.batch = mapping.inputs, synthesis.outputs, None
        self.ws_name = synthesis.inputs[0]["name"]

    def run(self, feeds: dict) -> dict:
        w = self.mapping.run(feeds)["w"]
        return self.synthesis.run({self.ws_name: np.repeat(w[:, None, :], self.num_ws, axis=1)})


class StyleGenerator(Generator):
    """A style-based GAN's export (mapping + synthesis artifacts and the manifest's "style"):
    `generate(n, labels, seed, batch_size, *, truncation, mix, edits)` draws z as every family
    does, maps it to w, applies the controls with exporters.style_controls (the code Keras'
    model.sample runs) and synthesizes; default controls give the `generator` artifact's images."""

    def __init__(self, mapping, synthesis, manifest: dict, entries: dict, path: Path,
                 max_images: int = MAX_IMAGES):
        style = manifest["style"]
        try:
            self.w_dim, self.num_ws = int(style["w_dim"]), int(style["num_ws"])
            self.w_avg = np.asarray(style["w_avg"], np.float32).reshape(self.w_dim)
            self.directions = dict(style.get("directions") or {})
        except (KeyError, TypeError, ValueError) as error:
            raise ArtifactError(f"{path.parent}'s manifest has a bad 'style': {error!r}") \
                from None
        self.entries = entries
        self.mapping_backend, self.synthesis_backend = mapping, synthesis
        # the composite's interface: the mapping's inputs, the synthesis' images
        entry = {**entries["synthesis"], "role": "generator",
                 "inputs": entries["mapping"]["inputs"], "outputs": entries["synthesis"]["outputs"]}
        super().__init__(StyleBackend(mapping, synthesis, self.num_ws), manifest, entry, path,
                         max_images)
        self.ws_name = self.backend.ws_name

    def metadata(self) -> dict:
        return {
            **super().metadata(),
            "artifact": f"{self.entries['mapping']['file']} + {self.entries['synthesis']['file']}",
            "style": {
                "num_ws": self.num_ws, "w_dim": self.w_dim,
                "truncation_default": self.manifest["style"].get("truncation_default", 1.0),
                "directions": {name: float(d.get("explained_variance", 0.0))
                               for name, d in self.directions.items()},
                "mapping": self.entries["mapping"]["file"],
                "synthesis": self.entries["synthesis"]["file"],
            },
        }

    def check_controls(self, truncation=1.0, mix=None, edits=None):
        """(psi, (seed_b, from_layer) or None, {direction: amount}), checked."""
        return (sc.check_truncation(truncation), sc.check_mix(mix, self.num_ws),
                sc.check_edits(edits, self.directions))

    def map(self, z, labels=None) -> np.ndarray:
        """w [n, w_dim] of latents z (and labels) through the exported mapping network."""
        feeds = {self.z_name: np.asarray(z, np.float32)}
        if self.label_name:
            feeds[self.label_name] = np.asarray(labels, np.int32)
        return self.mapping_backend.run(feeds)["w"].astype(np.float32, copy=False)

    def style_inputs(self, z, labels=None, *, truncation=1.0, mix=None, edits=None,
                     mix_z=None):
        """ws [n, num_ws, w_dim] for latents z with the controls (the contract's order): mix
        takes seed_b's latents, latents(n, latent_dim, seed_b) unless mix_z gives them, with
        the same labels."""
        psi, mix, edits = self.check_controls(truncation, mix, edits)
        z = np.asarray(z, np.float32)
        if mix is not None and mix_z is None:
            mix_z = latents(len(z), self.latent_dim, mix[0])
        mix_w = None if mix is None else self.map(mix_z, labels)
        return sc.style_inputs(self.map(z, labels), self.num_ws, self.w_avg, psi, mix_w,
                               None if mix is None else mix[1], edits, self.directions)

    def synthesize(self, ws, batch_size=None) -> np.ndarray:
        """float32 images in [-1, 1] from per-layer styles ws, in calls of at most batch_size."""
        ws = np.asarray(ws, np.float32)
        step = batch_size or max(len(ws), 1)
        return np.concatenate([
            self.synthesis_backend.run({self.ws_name: ws[start : start + step]})["images"]
            for start in range(0, len(ws), step)
        ]).astype(np.float32)

    def from_latents(self, z, labels=None, batch_size=None, *, truncation=1.0, mix=None,
                     edits=None, mix_z=None) -> np.ndarray:
        """float32 images from latents z (and int labels) with the controls."""
        ws = self.style_inputs(z, labels, truncation=truncation, mix=mix, edits=edits,
                               mix_z=mix_z)
        return self.synthesize(ws, batch_size)

    def generate_float(self, n, labels=None, seed=None, batch_size=None, *, truncation=1.0,
                       mix=None, edits=None) -> np.ndarray:
        """float32 images in [-1, 1]; the same seed, labels and controls give model.sample's."""
        self.check_controls(truncation, mix, edits)
        n = check_count(n, self.max_images)
        labels = check_labels(labels, n, self.num_classes)
        seed = check_seed(seed)
        if batch_size is not None:
            batch_size = check_count(batch_size, self.max_images, "batch_size")
        return self.from_latents(latents(n, self.latent_dim, seed), labels, batch_size,
                                 truncation=truncation, mix=mix, edits=edits)

    def interpolate_float(self, seed_a, seed_b, n, label=None, batch_size=None, *,
                          truncation=1.0, mix=None, edits=None) -> np.ndarray:
        """The slerp path in z, each image with the controls; a mix takes seed_b's first
        latent for every image (as generate(1) does), so the ends are generate(1, seed=seed_a /
        seed_b) with the same controls."""
        _, checked_mix, _ = self.check_controls(truncation, mix, edits)
        z, labels = self.interpolation_inputs(seed_a, seed_b, n, label)
        if batch_size is not None:
            batch_size = check_count(batch_size, self.max_images, "batch_size")
        mix_z = None if checked_mix is None else np.repeat(
            latents(1, self.latent_dim, checked_mix[0]), len(z), axis=0)
        return self.from_latents(z, labels, batch_size, truncation=truncation, mix=mix,
                                 edits=edits, mix_z=mix_z)


class Encoder:
    """An exported VAE encoder: `encode(images in [-1, 1], NHWC)` -> (z_mean, z_log_var)."""

    def __init__(self, backend, manifest: dict, entry: dict, path: Path):
        self.backend, self.manifest, self.entry, self.path = backend, manifest, entry, path
        self.image_shape = tuple(int(d) for d in manifest["image_shape"])
        self.input_name = entry["inputs"][0]["name"]

    def encode(self, images):
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"expected images of shape (n, {', '.join(map(str, self.image_shape))}), "
                f"got {images.shape}"
            )
        out = self.backend.run({self.input_name: images})
        return out["z_mean"], out["z_log_var"]


ROLES = {"generator": Generator, "encoder": Encoder}


def resolve(path) -> Path:
    """A file path for an artifact, export folder (manifest.json inside) or run folder (export/)."""
    from exporters.run_folder import RunFolder

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no artifact at {str(path)!r} (no such file or folder)")
    if path.is_file():
        return path
    if (path / "saved_model.pb").is_file():
        raise ArtifactError(
            f"{path} is a SavedModel: it needs TensorFlow (tf.saved_model.load(path)"
            ".signatures['serve']); the runtime loads .onnx and .tflite files"
        )
    run = RunFolder(path)
    if (path / manifest_lib.MANIFEST_NAME).is_file() or not (run.is_run() or run.has_export()):
        folder = path  # an export folder (manifest_lib.read says when the manifest is missing)
    else:  # a run folder: its export/, or an error saying what it lacks
        folder = run.require_export()
    manifest = manifest_lib.read(folder)
    entries = manifest["artifacts"].values()
    for fmt in PREFERRED_FORMATS:
        for entry in entries:
            if (entry.get("format") == fmt and entry.get("role") == "generator"
                    and entry.get("quantization", "none") == "none"):
                return folder / entry["file"]
    raise ArtifactError(
        f"{folder} holds no generator in a runtime format ({', '.join(PREFERRED_FORMATS)})"
    )


def find_entry(manifest: dict, path: Path) -> dict:
    for entry in manifest["artifacts"].values():
        if entry.get("file") == path.name:
            return entry
    raise ArtifactError(
        f"{path.name} is not listed in {path.parent / manifest_lib.MANIFEST_NAME} "
        f"(it lists {sorted(e.get('file') for e in manifest['artifacts'].values())})"
    )


def check_matches(path: Path, entry: dict):
    """The file on disk is the one the manifest describes (catches truncation and swaps)."""
    found = manifest_lib.digest(path)
    if found["bytes"] != entry.get("bytes") or found["sha256"] != entry.get("sha256"):
        raise ArtifactError(
            f"{path} does not match its manifest: {found['bytes']} bytes, sha256 "
            f"{found['sha256'][:12]}..., manifest says {entry.get('bytes')} bytes, sha256 "
            f"{str(entry.get('sha256'))[:12]}... (truncated, corrupt or replaced file)"
        )


def check_interface(backend, entry: dict, path: Path):
    def view(specs):
        return sorted((s["name"], s["dtype"], tuple(s["shape"][1:])) for s in specs)

    for side in ("inputs", "outputs"):
        expected, found = view(entry[side]), view(getattr(backend, side))
        if expected != found:
            raise ArtifactError(
                f"{path}'s {side} {found} do not match the manifest's {expected}"
            )


STYLE_ROLES = ("mapping", "synthesis")


def style_entries(manifest: dict, entry: dict) -> dict:
    """{"mapping": entry, "synthesis": entry} to run beside the generator `entry`: the same
    format (and quantization for synthesis; the mapping is float32), preferring the same file
    tag (generator-b1.tflite -> synthesis-b1.tflite), else the float32 ONNX ones."""
    fmt, quantization = entry.get("format"), entry.get("quantization", "none")
    name = str(entry.get("file", ""))
    tag = name[len("generator"):] if name.startswith("generator") else None
    found = {}
    for role in STYLE_ROLES:
        wanted_q = quantization if role == "synthesis" else "none"
        candidates = [e for e in manifest["artifacts"].values() if e.get("role") == role]
        ranked = ([e for e in candidates if e.get("file") == f"{role}{tag}"]
                  + [e for e in candidates if e.get("format") == fmt
                     and e.get("quantization", "none") == wanted_q]
                  + [e for e in candidates if e.get("format") == "onnx"
                     and e.get("quantization", "none") == "none"])
        if not ranked:
            raise ArtifactError(
                f"{manifest['family']} export lists no {role} artifact in "
                f"{', '.join(PREFERRED_FORMATS)} (it lists {sorted(manifest['artifacts'])}); "
                "export again with onnx or tflite, or load(..., styles=False) for the "
                "generator alone (no controls)")
        found[role] = ranked[0]
    return found


def _load_backend(folder: Path, entry: dict, threads, verify_hash):
    path = folder / entry["file"]
    if verify_hash:
        check_matches(path, entry)
    backend = BACKENDS[path.suffix](path, threads=threads)
    check_interface(backend, entry, path)
    return backend


def load(path, max_images: int = MAX_IMAGES, threads: int | None = None, verify_hash=True,
         styles: bool = True):
    """A Generator (or Encoder) for an .onnx/.tflite file, an export folder or a run folder.

    A style-based GAN's export (manifest "style") gives a StyleGenerator on its mapping and
    synthesis artifacts (see style_entries); styles=False: the generator artifact alone."""
    path = resolve(path)
    backend_class = BACKENDS.get(path.suffix)
    if backend_class is None:
        raise ArtifactError(
            f"cannot run {path.name!r}: the runtime loads {', '.join(sorted(BACKENDS))} files "
            "(a SavedModel needs TensorFlow)"
        )
    manifest = manifest_lib.read(path.parent)
    entry = find_entry(manifest, path)
    if verify_hash:
        check_matches(path, entry)
    backend = backend_class(path, threads=threads)
    check_interface(backend, entry, path)
    role = ROLES.get(entry.get("role", "generator"))
    if role is None:
        raise ArtifactError(f"{path.name} has role {entry.get('role')!r}; known: {sorted(ROLES)}")
    if role is Generator:
        if styles and manifest.get("style") is not None:
            entries = style_entries(manifest, entry)
            mapping, synthesis = (_load_backend(path.parent, entries[r], threads, verify_hash)
                                  for r in STYLE_ROLES)
            # path stays the generator artifact asked for: load(g.path) gives this again
            return StyleGenerator(mapping, synthesis, manifest, entries, path, max_images)
        if manifest.get("generator_output", "image") != "image" and manifest.get("schedule"):
            return DiffusionGenerator(backend, manifest, entry, path, max_images)
        return Generator(backend, manifest, entry, path, max_images)
    return role(backend, manifest, entry, path)
