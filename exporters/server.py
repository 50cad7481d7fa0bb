"""`zoo serve`: an HTTP service on an exported generator (ONNX Runtime or LiteRT, no TensorFlow).

Starlette on uvicorn (ASGI): small, TF-free, widely deployed; uvicorn brings `--workers N`
processes, keep-alive, graceful shutdown and a bounded number of connections.

genzoo's own API (clients rely on these JSON shapes):

    GET  /health                                  -> {"status": "ok"}
    GET  /v1/metadata                             -> the manifest's model fields + artifact info
    POST /v1/generate   {"n": 4, "labels": [0, 1, 2, 3], "seed": 1}
                                                  -> {"images": nested uint8 lists, "shape": [...],
                                                      "dtype": "uint8"}
         with `Accept: application/octet-stream`  -> raw uint8 NHWC bytes, shape in X-Shape
         with `Accept: application/x-npy`         -> a .npy file
    GET  /v1/generate.png?n=16&seed=2&labels=1,2  -> a PNG grid
    POST /v1/interpolate {"seed_a": 1, "seed_b": 2, "n": 8, "label": 3}
                                                  -> n images along the slerp path between the
                                                     latents generate(1, seed=seed_a / seed_b)
                                                     draws: the /v1/generate JSON shape
    GET  /v1/interpolate.png?seed_a=1&seed_b=2&n=8&label=3 -> the path as a one-row PNG strip
    GET  /                                        -> the playground page (exporters/web/)
    GET  /static/{name}                           -> its scripts and style sheet

The Open Inference Protocol (KServe v2 / Triton HTTP, JSON and binary tensors), on the
artifact's own tensors (`z` FP32 [n, latent_dim], `label` INT32 [n] -> `images` FP32 NHWC):

    GET  /v2  /v2/health/live  /v2/health/ready  /v2/models/{name}[/versions/1][/ready]
    POST /v2/models/{name}[/versions/1]/infer

plus GET /openapi.json and GET /docs (a page rendered here from it, nothing fetched online).

A style-based GAN's export (exporters.runtime.StyleGenerator) takes its controls on /v1 and v2:
"truncation" (psi in [0, 1]), "mix" ({"seed_b": int, "from_layer": int}, or "SEED:LAYER" in a
query string or v2 parameter) and "edits" ({direction: amount}, or "pc0=2,pc1=-1"); GET
/v1/metadata then holds its "style" block (num_ws, w_dim, directions with their explained
variance). Any other model answers 400 naming the control. Requests with controls are still
batched: the mapping network and the controls run per request, the synthesis network's rows
are merged.

A diffusion artifact also takes "steps" and "guidance_scale" on /v1 (JSON fields or query
parameters; default: the manifest's; an interpolation walks x_T, with a deterministic sampler)
and on /v2 its sampler settings (steps, eta, guidance_scale, sampler, seed) as request
parameters, with `z` as the starting noise x_T.

Dynamic batching (exporters.batching): concurrent requests to an image generator are merged
into one runtime call (up to max_batch rows, waiting at most max_delay) and split back; each
request's latents come from its own seed, so batching never changes a request's images. A full
queue answers 503 with Retry-After. Diffusion requests run one by one on a bounded thread pool.

Limits: request bodies (Content-Length or chunked) above max_body_bytes get 413; a body not
received within body_timeout gets 408; a connection whose request headers do not arrive within
header_timeout is closed; at most max_connections connections (more get 503). Bad requests
answer 4xx with {"error": message}, and nothing is ever written next to the artifact.

The page's files are an allow-list read from the package folder when the app is built (never a
path joined from the request), sent with a Content-Security-Policy that allows this origin only.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
from http import HTTPStatus
from importlib import metadata as importlib_metadata
from pathlib import Path
from urllib.parse import parse_qs

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.routing import Route

from exporters import compat, runtime
from exporters import inference_protocol as oip
from exporters import manifest as manifest_lib
from exporters.batching import DynamicBatcher, QueueFull
from exporters.images import make_grid, png_bytes, to_uint8
from exporters.sampling import (
    check_count,
    check_interpolation_count,
    check_labels,
    check_seed,
    expand_labels,
    latents,
    parse_labels,
    short_repr,
)

MAX_IMAGES_JSON = 256
MAX_IMAGES_PNG = 1024
MAX_IMAGES_V2 = 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024
DRAIN_FACTOR = 4  # an oversized body is read and dropped up to this many times the limit
STYLE_FIELDS = ("truncation", "mix", "edits")  # a StyleGenerator's controls (/v1 and v2)
REQUEST_FIELDS = ("n", "labels", "seed", "steps", "guidance_scale", *STYLE_FIELDS)
INTERPOLATE_FIELDS = ("seed_a", "seed_b", "n", "label", "steps", "guidance_scale",
                      *STYLE_FIELDS)
INTERPOLATION_IMAGES = 8  # /v1/interpolate's default n
DIFFUSION_FIELDS = ("steps", "guidance_scale")
V2_DIFFUSION_PARAMETERS = ("steps", "eta", "guidance_scale", "sampler", "seed")
PLATFORMS = {"onnx": "onnxruntime_onnx", "tflite": "tflite"}
MODEL_VERSION = "1"
SETTINGS_ENV = "GENZOO_SERVE_SETTINGS"
ACCESS_LOG = logging.getLogger("genzoo.access")
COMPACT_TYPES = {"application/octet-stream": "raw", "application/x-npy": "npy"}
WEB_DIR = Path(__file__).with_name("web")
PAGE = "playground.html"  # GET /
STATIC_FILES = ("playground.js", "common.js", "style.css")  # GET /static/{name}, nothing else
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
# the page and its files: this origin only, no inline code, not framed, nothing sniffed
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data: blob:; connect-src 'self'; "
                               "object-src 'none'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclasses.dataclass
class Settings:
    """Everything `zoo serve` can tune (all but the artifact have defaults)."""

    model_name: str = "generator"
    max_images_json: int = MAX_IMAGES_JSON
    max_images_png: int = MAX_IMAGES_PNG
    max_images_v2: int = MAX_IMAGES_V2
    max_body_bytes: int = MAX_BODY_BYTES
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: int = 5
    max_connections: int = 512
    max_batch: int = 256
    max_delay: float = 0.005
    max_queue: int = 4096
    batch_inflight: int = 1
    cors_origin: str | None = None
    access_log: bool = False

    def __post_init__(self):
        for name in ("max_images_json", "max_images_png", "max_images_v2", "max_body_bytes",
                     "keep_alive", "max_connections", "max_batch", "max_queue", "batch_inflight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("header_timeout", "body_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        manifest_lib.check_model_name(self.model_name)
        if self.cors_origin is not None and not self.cors_origin.strip():
            raise ValueError(f"cors_origin must be an origin like https://example.com, "
                             f"got {self.cors_origin!r}")


class BadRequest(ValueError):
    """A client error: answered with its status and message, never as a server error."""

    def __init__(self, message, status=HTTPStatus.BAD_REQUEST, headers=None):
        super().__init__(message)
        self.status = int(status)
        self.headers = headers


class JSONResponse(StarletteJSONResponse):
    """JSON rendered as `json.dumps` renders it (the bytes the stdlib server sent before)."""

    def render(self, content) -> bytes:
        return json.dumps(content).encode("utf-8")


def error_response(message, status, headers=None) -> JSONResponse:
    return JSONResponse({"error": str(message)}, int(status), headers=headers)


# ---- request parsing (/v1) --------------------------------------------------------------------
def _parse_json_request(body: bytes, fields=REQUEST_FIELDS) -> dict:
    try:
        request = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"body is not valid JSON: {error} (got {body[:80]!r})") from None
    if not isinstance(request, dict):
        raise BadRequest(
            f"body must be a JSON object like {{\"n\": 4, \"seed\": 1}}, got {body[:80]!r}"
        )
    unknown = sorted(set(request) - set(fields))
    if unknown:
        raise BadRequest(f"unknown fields {unknown}; accepted: {list(fields)}")
    return request


def _query_int(query, name, default=None):
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {values[-1]!r}") from None


def _query_float(query, name):
    text = query[name][-1]
    try:
        return float(text)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {text!r}") from None


def _parse_png_request(query_string: str) -> dict:
    query = parse_qs(query_string, keep_blank_values=True)
    unknown = sorted(set(query) - set(REQUEST_FIELDS))
    if unknown:
        raise BadRequest(f"unknown parameters {unknown}; accepted: {list(REQUEST_FIELDS)}")
    labels = None
    if query.get("labels"):
        try:
            labels = parse_labels(query["labels"][-1])
        except ValueError as error:
            raise BadRequest(str(error)) from None
    request = {"n": _query_int(query, "n", 16), "seed": _query_int(query, "seed"),
               "labels": labels}
    if query.get("steps"):
        request["steps"] = _query_int(query, "steps")
    if query.get("guidance_scale"):
        request["guidance_scale"] = _query_float(query, "guidance_scale")
    return {**request, **_style_query(query)}


def _style_query(query) -> dict:
    """truncation=0.5, mix=SEED:LAYER, edits=pc0=2,pc1=-1 from a query string (the strings
    are checked by exporters.style_controls with the model's num_ws and directions)."""
    request = {}
    if query.get("truncation"):
        request["truncation"] = _query_float(query, "truncation")
    for name in ("mix", "edits"):
        if query.get(name):
            request[name] = query[name][-1]
    if "mix" in request and request["mix"].count(":") != 1:
        raise BadRequest(f"mix must be SEED_B:FROM_LAYER (two integers), got {request['mix']!r}")
    return request


def _parse_interpolate_query(query_string: str) -> dict:
    query = parse_qs(query_string, keep_blank_values=True)
    unknown = sorted(set(query) - set(INTERPOLATE_FIELDS))
    if unknown:
        raise BadRequest(f"unknown parameters {unknown}; accepted: {list(INTERPOLATE_FIELDS)}")
    request = {name: _query_int(query, name) for name in ("seed_a", "seed_b", "n", "label", "steps")
               if name in query}
    if "guidance_scale" in query:
        request["guidance_scale"] = _query_float(query, "guidance_scale")
    return {**request, **_style_query(query)}


def _compact_kind(request: Request) -> str:
    """'json' (default), 'raw' or 'npy' from the Accept header."""
    accept = request.headers.get("accept", "")
    for item in accept.split(","):
        kind = COMPACT_TYPES.get(item.split(";")[0].strip().lower())
        if kind:
            return kind
    return "json"


def images_response(images: np.ndarray, kind: str) -> Response:
    shape = ",".join(map(str, images.shape))
    headers = {"X-Shape": shape, "X-Dtype": str(images.dtype)}
    if kind == "raw":
        return Response(np.ascontiguousarray(images).tobytes(),
                        media_type="application/octet-stream", headers=headers)
    if kind == "npy":
        buffer = io.BytesIO()
        np.save(buffer, images, allow_pickle=False)
        return Response(buffer.getvalue(), media_type="application/x-npy", headers=headers)
    payload = (f'{{"images": {uint8_json(images)}, "shape": {json.dumps(list(images.shape))}, '
               f'"dtype": "uint8"}}')
    return Response(payload, media_type="application/json")


UINT8_TEXT = np.array([str(i) for i in range(256)], dtype=object)


@functools.lru_cache(maxsize=32)
def _separators(shape: tuple) -> np.ndarray:
    """The text between consecutive values of a `shape` array in json.dumps(array.tolist()):
    after flat index k, close and reopen as many brackets as dimensions roll over."""
    follows = np.arange(1, math.prod(shape))
    closing = np.zeros(len(follows), np.int64)
    size = 1
    for dim in reversed(shape):
        size *= dim
        closing += follows % size == 0
    table = np.array(["]" * i + ", " + "[" * i for i in range(len(shape) + 1)], dtype=object)
    return table[closing]


def uint8_json(images: np.ndarray) -> str:
    """json.dumps(images.tolist()) for a uint8 array, byte for byte, ~13x faster (the JSON
    encoder walking 12k one-element lists was the JSON path's bottleneck)."""
    flat = images.ravel()
    parts = np.empty(2 * flat.size + 1, dtype=object)
    parts[0], parts[-1] = "[" * images.ndim, "]" * images.ndim
    parts[1::2] = UINT8_TEXT[flat]
    parts[2:-1:2] = _separators(images.shape)
    return "".join(parts.tolist())


# ---- the body, read with a size limit and a time limit ---------------------------------------
async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body (Content-Length or chunked), or 413/408 as BadRequest.

    A body over the limit is still read and dropped up to DRAIN_FACTOR x the limit (within the
    timeout), so an ordinary client gets to read the 413 instead of a reset connection; past
    that the connection is closed after the answer."""
    length = request.headers.get("content-length")
    declared = None
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise BadRequest(f"bad Content-Length {length!r}") from None
    chunks, size = [], 0

    def too_large():
        got = f"Content-Length {declared}" if declared is not None else f"more than {limit}"
        return BadRequest(f"body must be at most {limit} bytes, got {got}",
                          HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"Connection": "close"})

    if declared is not None and declared > DRAIN_FACTOR * limit:
        raise too_large()
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    chunks = None
                    if size > DRAIN_FACTOR * limit:
                        break
                elif chunks is not None:
                    chunks.append(chunk)
    except TimeoutError:
        raise BadRequest(f"request body not received within {timeout:g} s (got {size} bytes)",
                         HTTPStatus.REQUEST_TIMEOUT, {"Connection": "close"}) from None
    if chunks is None or (declared is not None and declared > limit):
        raise too_large()
    return b"".join(chunks)


# ---- the service ------------------------------------------------------------------------------
class GeneratorService:
    """One loaded generator behind /v1 and /v2: input checks, batching, output encoding."""

    def __init__(self, generator, settings: Settings):
        self.generator = generator
        self.settings = settings
        self.diffusion = isinstance(generator, runtime.DiffusionGenerator)
        self.style = isinstance(generator, runtime.StyleGenerator)
        self.max_images_png = min(settings.max_images_png, generator.max_images)
        self.max_images_json = min(settings.max_images_json, generator.max_images)
        self.max_images_v2 = min(settings.max_images_v2, generator.max_images)
        # a style-based generator's batches are of its synthesis network (ws -> images): each
        # request's mapping and controls run before it joins a batch
        self.batcher = DynamicBatcher(
            generator.synthesis_backend.run if self.style else generator.backend.run, max_batch=settings.max_batch, max_delay=settings.max_delay,
            max_queue=settings.max_queue, max_inflight=settings.batch_inflight,
        )
        # diffusion requests (a whole sampling loop each) run here, a bounded number at a time
        self.limiter = anyio.CapacityLimiter(max(1, settings.batch_inflight))
        self.waiting = 0
        entry = generator.entry
        # the runtime takes any batch size (a static-batch TFLite file runs chunk by chunk)
        self.inputs = [{**spec, "shape": [None, *spec["shape"][1:]]} for spec in entry["inputs"]]
        self.outputs = [{**spec, "shape": [None, *spec["shape"][1:]]} for spec in entry["outputs"]]
        if self.diffusion:  # the pipeline's tensors: starting noise (+ labels) -> images
            self.inputs = [{"name": "z", "dtype": "float32", "shape": [None, generator.latent_dim]}]
            if generator.num_classes:
                self.inputs.append({"name": "label", "dtype": "int32", "shape": [None]})
            self.outputs = [{"name": "images", "dtype": "float32",
                             "shape": [None, *generator.image_shape]}]
        self.output_dtypes = {spec["name"]: np.dtype(spec["dtype"]) for spec in self.outputs}

    # -- running ------------------------------------------------------------------------------
    async def run_blocking(self, function, *args):
        """A diffusion call on the bounded pool; 503 when too many already wait."""
        if self.waiting >= self.settings.max_queue:
            raise BadRequest("too many requests waiting; retry shortly",
                             HTTPStatus.SERVICE_UNAVAILABLE, {"Retry-After": "1"})
        self.waiting += 1
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self.limiter)
        finally:
            self.waiting -= 1

    async def run_feeds(self, feeds: dict) -> dict:
        try:
            return await self.batcher.submit(feeds)
        except QueueFull as error:
            raise BadRequest(str(error), HTTPStatus.SERVICE_UNAVAILABLE,
                             {"Retry-After": "1"}) from None

    def diffusion_options(self, request: dict) -> dict:
        options = {k: request[k] for k in DIFFUSION_FIELDS if request.get(k) is not None}
        if options and not self.diffusion:
            raise BadRequest(
                f"{sorted(options)} apply to diffusion artifacts only; this is a "
                f"{self.generator.family} generator"
            )
        return options

    def style_controls(self, request: dict) -> dict:
        """The request's style controls, checked (400 naming the value; any control on a model
        without styles is one)."""
        controls = {k: request[k] for k in STYLE_FIELDS if request.get(k) is not None}
        try:
            if self.style:
                self.generator.check_controls(**controls)
            else:
                runtime.no_style_controls(self.generator.family, **controls)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        return controls

    async def run_styles(self, z, labels, controls, mix_z=None) -> np.ndarray:
        """uint8 images of a style-based generator: mapping + controls here, the synthesis
        rows through the batcher."""
        ws = self.generator.style_inputs(z, labels, mix_z=mix_z, **controls)
        return (await self.run_feeds({self.generator.ws_name: ws}))["images"]

    async def generate(self, request: dict, cap: int) -> np.ndarray:
        """uint8 images for a /v1 request (checked as the runtime checks them)."""
        generator = self.generator
        options = self.diffusion_options(request)
        controls = self.style_controls(request)
        try:
            n = check_count(request.get("n", 1), cap)  # before expand_labels builds n labels
            labels = check_labels(expand_labels(request.get("labels"), n), n,
                                  generator.num_classes)
            seed = check_seed(request.get("seed"))
            if self.diffusion:
                # the runtime checks steps/guidance first thing, before any work
                return await self.run_blocking(
                    lambda: generator.generate(n, labels=labels, seed=seed, **options)
                )
            feeds = {generator.z_name: latents(n, generator.latent_dim, seed)}
        except ValueError as error:  # the runtime's input checks: the client's mistake
            raise BadRequest(str(error)) from None
        if self.style:
            return to_uint8(await self.run_styles(feeds[generator.z_name], labels, controls))
        if generator.label_name:
            feeds[generator.label_name] = labels
        return to_uint8((await self.run_feeds(feeds))["images"])

    async def interpolate(self, request: dict, cap: int) -> np.ndarray:
        """uint8 images of a /v1/interpolate request: runtime.interpolate's, through the
        batcher (an image generator) or the bounded pool (diffusion)."""
        generator = self.generator
        options = self.diffusion_options(request)
        controls = self.style_controls(request)
        args = (request.get("seed_a"), request.get("seed_b"),
                request.get("n", INTERPOLATION_IMAGES), request.get("label"))
        try:
            check_interpolation_count(args[2], cap)
            z, labels = generator.interpolation_inputs(*args)
            if self.diffusion:
                return await self.run_blocking(lambda: generator.interpolate(*args, **options))
        except ValueError as error:
            raise BadRequest(str(error)) from None
        if self.style:  # a mix takes seed_b's first latent for every image (runtime.interpolate)
            mix = generator.check_controls(**controls)[1]
            mix_z = None if mix is None else np.repeat(
                latents(1, generator.latent_dim, mix[0]), len(z), axis=0)
            return to_uint8(await self.run_styles(z, labels, controls, mix_z))
        feeds = {generator.z_name: z}
        if generator.label_name:
            feeds[generator.label_name] = labels
        return to_uint8((await self.run_feeds(feeds))["images"])

    # -- v2 ----------------------------------------------------------------------------------
    def v2_metadata(self) -> dict:
        return {
            "name": self.settings.model_name,
            "versions": [MODEL_VERSION],
            "platform": PLATFORMS.get(self.generator.format, self.generator.format),
            "inputs": oip.tensor_metadata(self.inputs),
            "outputs": oip.tensor_metadata(self.outputs),
            "parameters": {"family": self.generator.family,
                           "diffusion_parameters": list(V2_DIFFUSION_PARAMETERS)
                           if self.diffusion else [],
                           "style_parameters": list(STYLE_FIELDS) if self.style else []},
        }

    def check_model(self, name, version=None):
        if name != self.settings.model_name:
            raise BadRequest(f"unknown model {name!r}; this server has "
                             f"{self.settings.model_name!r}", HTTPStatus.NOT_FOUND)
        if version not in (None, "", MODEL_VERSION):
            raise BadRequest(f"model {name!r} has no version {version!r}; versions: "
                             f"[{MODEL_VERSION!r}]", HTTPStatus.NOT_FOUND)

    def parse_infer(self, body: bytes, header_length) -> tuple[dict, dict, list, dict]:
        """(feeds, parameters, [(output name, binary?)], request json) of a v2 infer body,
        checked against this model: batch size, label range, finite latents."""
        try:
            feeds, parameters, outputs, request = oip.parse_request(
                body, header_length, self.inputs, [spec["name"] for spec in self.outputs],
                V2_DIFFUSION_PARAMETERS if self.diffusion else STYLE_FIELDS,
            )
        except oip.ProtocolError as error:
            raise BadRequest(str(error)) from None
        n = len(next(iter(feeds.values())))
        if not 1 <= n <= self.max_images_v2:
            raise BadRequest(f"batch size must be in [1, {self.max_images_v2}], got {n}")
        if "label" in feeds:
            try:
                check_labels(feeds["label"], n, self.generator.num_classes)
            except ValueError as error:
                raise BadRequest(f"input 'label': {error}") from None
        first = self.inputs[0]["name"]
        if not np.all(np.isfinite(feeds[first])):
            raise BadRequest(f"input {first!r} holds NaN or infinite values")
        return feeds, parameters, outputs, request

    async def infer(self, feeds: dict, parameters: dict) -> dict:
        if not self.diffusion:
            try:
                controls = self.style_controls(parameters)
            except BadRequest as error:
                raise BadRequest(f"parameters: {error}") from None
            if not self.style:
                return await self.run_feeds(feeds)
            images = await self.run_styles(feeds[self.generator.z_name],
                                           feeds.get(self.generator.label_name), controls)
            return {"images": images}
        generator = self.generator
        options = {k: parameters.get(k) for k in V2_DIFFUSION_PARAMETERS}
        labels = feeds.get("label")
        try:
            seed = check_seed(options["seed"])
            generator.make_sampler(options["steps"], options["eta"], options["sampler"])
            generator.check_guidance(options["guidance_scale"])
        except ValueError as error:
            raise BadRequest(f"parameters: {error}") from None

        def sample():
            z = feeds["z"]
            # stochastic steps continue default_rng(seed) as if x_T had come from it: z =
            # latents(n, latent_dim, seed) gives exactly /v1's images for that seed
            rng = np.random.default_rng(seed)
            rng.standard_normal(z.shape, dtype=np.float32)
            return generator.pipeline.generate(
                generator.run_denoiser, z, labels, rng=rng, steps=options["steps"],
                eta=options["eta"], guidance_scale=options["guidance_scale"],
                sampler=options["sampler"],
            )

        return {"images": np.asarray(await self.run_blocking(sample), np.float32)}


def infer_response(service, request: dict, results: dict, outputs: list) -> Response:
    results = {name: np.asarray(value, service.output_dtypes[name])
               for name, value in results.items()}
    body, headers = oip.encode_response(service.settings.model_name, MODEL_VERSION, request,
                                        results, outputs)
    media_type = "application/octet-stream" if headers else "application/json"
    return Response(body, media_type=media_type, headers=headers)


# ---- OpenAPI and /docs --------------------------------------------------------------------------
STYLE_HELP = ("truncation (psi in [0, 1], 1 = none), mix ({\"seed_b\", \"from_layer\"}; in a "
              "query: SEED:LAYER), edits ({direction: amount}; in a query: pc0=2,pc1=-1)")


def openapi_spec(service) -> dict:
    def json_body(example, description=""):
        return {"description": description, "required": True,
                "content": {"application/json": {"example": example}}}

    error = {"description": "client error, with {\"error\": message}",
             "content": {"application/json": {"example": {"error": "labels must be in [0, 10)"}}}}
    meta = service.generator.metadata()
    example = {"n": 4, "seed": 1}
    if service.style:
        example.update(truncation=0.7, mix={"seed_b": 2, "from_layer": meta["style"]["num_ws"] // 2})
        if meta["style"]["directions"]:
            example["edits"] = {next(iter(meta["style"]["directions"])): 1.5}
    if service.generator.num_classes:
        example["labels"] = [0, 1, 2, 3]
    z_example = {"inputs": [{"name": "z", "datatype": "FP32",
                             "shape": [1, service.generator.latent_dim],
                             "data": [0.0] * service.generator.latent_dim}]}
    if service.generator.num_classes:
        z_example["inputs"].append({"name": "label", "datatype": "INT32", "shape": [1],
                                    "data": [3]})
    interpolate_example = {"seed_a": 1, "seed_b": 2, "n": 8}
    if service.generator.num_classes:
        interpolate_example["label"] = 3
    name = service.settings.model_name

    def get(summary, **extra):
        return {"get": {"summary": summary, "responses": {"200": {"description": "OK"}, **extra}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": f"genzoo: {meta['family']} generator ({meta['artifact']})",
                 "version": _version(),
                 "description": "Images from an exported genzoo generator; the Open Inference "
                                "Protocol (KServe v2) on its own tensors."},
        "paths": {
            "/health": get("liveness: {\"status\": \"ok\"}"),
            "/v1/metadata": get("the model's fields and limits"),
            "/v1/generate": {"post": {
                "summary": "n images as JSON uint8 lists (or raw bytes / .npy through Accept)",
                "requestBody": json_body(example, "n, labels (conditional models), seed; "
                                         "diffusion: steps, guidance_scale; style-based GANs: "
                                         + STYLE_HELP),
                "responses": {"200": {"description": "images", "content": {
                    "application/json": {"example": {"images": "[[[[0]]]]",
                                                     "shape": [4, *meta["image_shape"]],
                                                     "dtype": "uint8"}},
                    "application/octet-stream": {"description": "uint8 NHWC; X-Shape header"},
                    "application/x-npy": {"description": "a .npy file"}}},
                    "4XX": error, "503": {"description": "queue full; Retry-After"}}}},
            "/v1/generate.png": {"get": {
                "summary": "a PNG grid of n images",
                "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}}
                               for p in REQUEST_FIELDS],
                "responses": {"200": {"description": "PNG",
                                      "content": {"image/png": {}}}, "4XX": error}}},
            "/v1/interpolate": {"post": {
                "summary": "n images along the slerp path between the latents of "
                           "generate(1, seed=seed_a) and generate(1, seed=seed_b); the "
                           "/v1/generate answer shapes",
                "requestBody": json_body(interpolate_example,
                                         "seed_a, seed_b, n (>= 2, default 8), label "
                                         "(conditional models); diffusion: steps, "
                                         "guidance_scale; style-based GANs: " + STYLE_HELP),
                "responses": {"200": {"description": "images, as /v1/generate"}, "4XX": error,
                              "503": {"description": "queue full; Retry-After"}}}},
            "/v1/interpolate.png": {"get": {
                "summary": "the interpolation as a one-row PNG strip",
                "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}}
                               for p in INTERPOLATE_FIELDS],
                "responses": {"200": {"description": "PNG",
                                      "content": {"image/png": {}}}, "4XX": error}}},
            "/": get("the playground page (HTML)"),
            "/static/{name}": {"get": {
                "summary": "the playground's scripts and style sheet",
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string", "enum": list(STATIC_FILES)}}],
                "responses": {"200": {"description": "the file"}, "404": error}}},
            "/v2": get("server metadata (Open Inference Protocol)"),
            "/v2/health/live": get("server live"),
            "/v2/health/ready": get("server ready"),
            f"/v2/models/{name}": get("model metadata: tensor names, datatypes, shapes",
                                      **{"404": error}),
            f"/v2/models/{name}/ready": get("model ready", **{"404": error}),
            f"/v2/models/{name}/infer": {"post": {
                "summary": "inference on the model's tensors (JSON data, or the binary tensor "
                           "extension with Inference-Header-Content-Length)",
                "requestBody": json_body(z_example),
                "responses": {"200": {"description": "outputs"}, "4XX": error}}},
            "/openapi.json": get("this description"),
            "/docs": get("this description as a page"),
        },
    }


DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>genzoo API</title>
<style>body{font:15px system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem}
code,pre{background:#f3f3f3;padding:.1rem .3rem}pre{padding:.6rem;overflow:auto}
.m{display:inline-block;width:3.5rem;font-weight:bold}</style></head>
<body><h1 id="title">genzoo API</h1><p id="desc"></p>
<p>Machine-readable: <a href="openapi.json">openapi.json</a></p><div id="paths"></div>
<script>
fetch("openapi.json").then(r => r.json()).then(spec => {
  document.getElementById("title").textContent = spec.info.title;
  document.getElementById("desc").textContent = spec.info.description;
  const root = document.getElementById("paths");
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const h = document.createElement("h3");
      h.innerHTML = '<span class="m"></span><code></code>';
      h.querySelector(".m").textContent = method.toUpperCase();
      h.querySelector("code").textContent = path;
      const p = document.createElement("p");
      p.textContent = op.summary || "";
      root.append(h, p);
      const body = op.requestBody && op.requestBody.content["application/json"];
      if (body) {
        const pre = document.createElement("pre");
        pre.textContent = JSON.stringify(body.example, null, 1);
        root.append(pre);
      }
    }
  }
});
</script></body></html>
"""


def _inline_hashes(page: str, tag: str) -> str:
    """CSP sources allowing exactly the inline <tag> blocks of `page` (by their sha256)."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
    return " ".join("'sha256-{}'".format(base64.b64encode(hashlib.sha256(block.encode()).digest())
                                         .decode()) for block in blocks)


# /docs is one self-contained page: its own inline script and style (allowed by hash), this
# origin for openapi.json, nothing else.
DOCS_HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_inline_hashes(DOCS_PAGE, 'script')}; "
        f"style-src {_inline_hashes(DOCS_PAGE, 'style')}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
}


def _version() -> str:
    try:
        return importlib_metadata.version("genzoo")
    except importlib_metadata.PackageNotFoundError:
        return "0"


# ---- the ASGI app -----------------------------------------------------------------------------
class AccessLog:
    """One line per request: client "METHOD path HTTP/x" status bytes milliseconds."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        state = {"status": 0, "bytes": 0}

        async def sending(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            query = scope.get("query_string", b"").decode("latin-1")
            path = scope["path"] + (f"?{query}" if query else "")
            ACCESS_LOG.info('%s:%s "%s %s HTTP/%s" %s %d %.1fms', client[0], client[1],
                            scope["method"], path, scope.get("http_version", "1.1"),
                            state["status"], state["bytes"],
                            (time.perf_counter() - start) * 1000)


class HeaderLimit:
    """431 for a request whose header block is larger than max_bytes (h11 bounds only headers
    that arrive slowly; a large block sent at once would otherwise be accepted)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
            if size > self.max_bytes:
                response = error_response(
                    f"request headers must be at most {self.max_bytes} bytes, got {size}",
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, {"Connection": "close"})
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def page_files(folder: Path = WEB_DIR) -> dict:
    """{name: (bytes, media type)} of the page's allow-listed files, read once: a request
    can name only these, so no path it sends ever reaches the file system."""
    files = {}
    for name in (PAGE, *STATIC_FILES):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"the playground file {path} is missing (a broken install?)")
        files[name] = (path.read_bytes(), MEDIA_TYPES[path.suffix])
    return files


def build_app(generator, settings: Settings | None = None) -> Starlette:
    """The ASGI app for one loaded generator (a runtime.Generator)."""
    settings = settings or Settings()
    service = GeneratorService(generator, settings)
    files = page_files()

    async def body_of(request):
        return await read_body(request, settings.max_body_bytes, settings.body_timeout)

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def v1_metadata(request):
        return JSONResponse({
            **generator.metadata(), "max_images_json": service.max_images_json,
            "max_images_png": service.max_images_png, "max_batch": settings.max_batch,
            "v2_model": settings.model_name,
        })

    async def v1_generate(request):
        kind = _compact_kind(request)
        images = await service.generate(_parse_json_request(await body_of(request)),
                                        service.max_images_json if kind == "json"
                                        else service.max_images_png)
        return images_response(images, kind)

    async def v1_generate_png(request):
        images = await service.generate(_parse_png_request(request.url.query),
                                        service.max_images_png)
        return Response(png_bytes(make_grid(images)), media_type="image/png")

    async def v1_interpolate(request):
        kind = _compact_kind(request)
        body = _parse_json_request(await body_of(request), INTERPOLATE_FIELDS)
        images = await service.interpolate(body, service.max_images_json if kind == "json"
                                           else service.max_images_png)
        return images_response(images, kind)

    async def v1_interpolate_png(request):
        images = await service.interpolate(_parse_interpolate_query(request.url.query),
                                           service.max_images_png)
        return Response(png_bytes(make_grid(images, columns=len(images))),
                        media_type="image/png")

    def file_response(name):
        content, media_type = files[name]
        return Response(content, media_type=media_type, headers=PAGE_HEADERS)

    async def playground(request):
        return file_response(PAGE)

    async def static(request):
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            raise BadRequest(f"no file {short_repr(name)}; the page's files: "
                             f"{list(STATIC_FILES)}", HTTPStatus.NOT_FOUND)
        return file_response(name)

    async def v2_server(request):
        return JSONResponse({"name": "genzoo", "version": _version(),
                             "extensions": ["binary_tensor_data", "parameters"]})

    async def v2_live(request):
        return JSONResponse({"live": True})

    async def v2_ready(request):
        return JSONResponse({"ready": True})

    async def v2_model(request):
        service.check_model(request.path_params["name"], request.path_params.get("version"))
        return JSONResponse(service.v2_metadata())

    async def v2_model_ready(request):
        service.check_model(request.path_params["name"], request.path_params.get("version"))
        return JSONResponse({"name": settings.model_name, "ready": True})

    async def v2_infer(request):
        service.check_model(request.path_params["name"], request.path_params.get("version"))
        body = await body_of(request)
        feeds, parameters, outputs, infer_request = service.parse_infer(
            body, request.headers.get("inference-header-content-length")
        )
        results = await service.infer(feeds, parameters)
        return infer_response(service, infer_request, results, outputs)

    spec = openapi_spec(service)

    async def openapi(request):
        return JSONResponse(spec)

    async def docs(request):
        return HTMLResponse(DOCS_PAGE, headers=DOCS_HEADERS)

    routes = [
        Route("/", playground, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/v1/metadata", v1_metadata, methods=["GET"]),
        Route("/v1/generate", v1_generate, methods=["POST"]),
        Route("/v1/generate.png", v1_generate_png, methods=["GET"]),
        Route("/v1/interpolate", v1_interpolate, methods=["POST"]),
        Route("/v1/interpolate.png", v1_interpolate_png, methods=["GET"]),
        Route("/v2", v2_server, methods=["GET"]),
        Route("/v2/health/live", v2_live, methods=["GET"]),
        Route("/v2/health/ready", v2_ready, methods=["GET"]),
        Route("/v2/models/{name}", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/ready", v2_model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", v2_model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", v2_infer, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    listed = sorted({route.path for route in routes if "{" not in route.path})

    async def bad_request(request, error: BadRequest):
        return error_response(error, error.status, error.headers)

    async def http_error(request, error: HTTPException):
        if error.status_code == 404:
            message = f"no endpoint {request.url.path!r}; try {listed}"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = error.detail
        return error_response(message, error.status_code, error.headers)

    async def disconnected(request, error):  # nobody reads this answer
        return Response(status_code=499)

    async def internal_error(request, error):  # a bug, not the client's: say so, stay up
        logging.getLogger("genzoo.server").error("internal error on %s %s: %r",
                                                 request.method, request.url.path, error)
        return error_response(f"internal error: {type(error).__name__}: {error}", 500)

    middleware = []
    if settings.cors_origin:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=[settings.cors_origin],
            allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"],
            expose_headers=["X-Shape", "X-Dtype", "Inference-Header-Content-Length"],
        ))
    middleware.insert(0, Middleware(HeaderLimit, max_bytes=MAX_HEADER_BYTES))
    if settings.access_log:
        middleware.insert(0, Middleware(AccessLog))
    app = Starlette(
        routes=routes, middleware=middleware,
        exception_handlers={BadRequest: bad_request, HTTPException: http_error,
                            ClientDisconnect: disconnected, Exception: internal_error},
    )
    app.state.service = service
    return app


def _protocol_for(settings: Settings) -> type:
    return type("GenzooH11Protocol", (compat.HeaderDeadlineH11Protocol,),
                {"header_timeout": float(settings.header_timeout)})


def uvicorn_options(settings: Settings, protocol=None) -> dict:
    return {
        "http": protocol or _protocol_for(settings),
        "timeout_keep_alive": settings.keep_alive,
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": 10,
        "access_log": False,
        "lifespan": "off",
        "log_config": None,
        "ws": "none",
    }


# ---- running it -------------------------------------------------------------------------------
def load_generator(artifact, threads: int | None = None):
    generator = artifact if isinstance(artifact, runtime.Generator) else \
        runtime.load(artifact, threads=threads)
    if not isinstance(generator, runtime.Generator):
        role = generator.entry.get("role")
        raise ValueError(f"{artifact} is not a generator artifact (role {role!r})")  # noqa: TRY004
    return generator


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class GeneratorServer:
    """A bound server on one loaded generator (tests, notebooks, `zoo serve`).

    `make_server(...).start_background()` serves on a daemon thread; stop with `.shutdown()`
    then `.server_close()`. `.serve_forever()` serves in this thread until Ctrl-C / SIGTERM.
    """

    def __init__(self, generator, host: str, port: int, settings: Settings):
        import uvicorn

        self.generator = generator
        self.settings = settings
        self.app = build_app(generator, settings)
        self.socket = socket.create_server((host, port), backlog=2048,
                                           family=socket.AF_INET6 if ":" in host
                                           else socket.AF_INET)
        self.server_address = self.socket.getsockname()[:2]
        options = uvicorn_options(settings)
        self.config = uvicorn.Config(self.app, host=host, port=self.server_address[1],
                                     **options)
        self.server = uvicorn.Server(self.config)
        self._thread = None

    @property
    def url(self) -> str:
        return _url(*self.server_address[:2])

    def serve_forever(self):
        self.server.run(sockets=[self.socket])

    def start_background(self, timeout: float = 30) -> threading.Thread:
        self._thread = threading.Thread(target=self.serve_forever, name="genzoo-server",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self._thread

    def shutdown(self, timeout: float = 30):
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def server_close(self):
        self.app.state.service.batcher.close()
        self.socket.close()


def make_server(artifact, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False,
                max_images_json: int = MAX_IMAGES_JSON, **settings) -> GeneratorServer:
    """Load `artifact` (file, export folder, run folder or a loaded Generator) and bind a server
    (port 0: any free). Keyword settings: see `Settings`."""
    generator = load_generator(artifact)
    config = Settings(max_images_json=max_images_json, access_log=verbose, **settings)
    return GeneratorServer(generator, host, port, config)


def _configure_logging():
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    for name in ("genzoo.access", "genzoo.server"):
        log = logging.getLogger(name)
        if not log.handlers:
            log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not uvicorn_log.handlers:
        uvicorn_log.addHandler(handler)
    uvicorn_log.setLevel(logging.WARNING)


def app_from_environment() -> Starlette:
    """The app factory each `--workers` process runs (settings from $GENZOO_SERVE_SETTINGS)."""
    _configure_logging()
    options = json.loads(os.environ[SETTINGS_ENV])
    artifact, threads = options.pop("artifact"), options.pop("threads")
    settings = Settings(**options)
    compat.HeaderDeadlineH11Protocol.header_timeout = float(settings.header_timeout)  # its own
    return build_app(load_generator(artifact, threads), settings)


def serve(artifact, host: str = "127.0.0.1", port: int = 8000, verbose: bool = True,
          workers: int = 1, **settings):
    """Serve until interrupted (Ctrl-C or SIGTERM: a graceful shutdown)."""
    import uvicorn

    if isinstance(workers, bool) or not isinstance(workers, int) or workers <= 0:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    config = Settings(access_log=verbose, **settings)
    _configure_logging()
    generator = load_generator(artifact)  # fail here, with one clear line, on a bad artifact
    if workers == 1:
        server = GeneratorServer(generator, host, port, config)
        print(f"serving {generator.path} ({generator.format}) on {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: drained, then a quiet exit
            server.serve_forever()
        return
    # the cores shared out: each worker's runtime runs on its share, not on all of them
    threads = max(1, runtime.cpu_count() // workers)
    os.environ[SETTINGS_ENV] = json.dumps(
        {"artifact": str(generator.path), "threads": threads, **dataclasses.asdict(config)}
    )
    del generator
    print(f"serving {artifact} on {_url(host, port)} with {workers} worker processes", flush=True)
    # the protocol class travels to the spawned workers by name; each sets its header timeout
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run("exporters.server:app_from_environment", factory=True, host=host,
                    port=port, workers=workers, **uvicorn_options(config, compat.HeaderDeadlineH11Protocol))
