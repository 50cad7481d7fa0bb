"""`zoo serve`: an HTTP service on an exported generator (ONNX Runtime or LiteRT, no TensorFlow).

    GET  /health                                  -> {"status": "ok"}
    GET  /v1/metadata                             -> the manifest's model fields + artifact info
    POST /v1/generate   {"n": 4, "labels": [0, 1, 2, 3], "seed": 1}
                                                  -> {"images": nested uint8 lists, "shape": [...]}
    GET  /v1/generate.png?n=16&seed=2&labels=1,2  -> a PNG grid

A diffusion artifact (its denoiser, sampled by the runtime's DDIM/DDPM loop) also takes
"steps" and "guidance_scale" (JSON fields or query parameters; default: the manifest's);
/v1/metadata then has "sampling" with the defaults and the schedule's timesteps (max steps).

Standard library only (http.server.ThreadingHTTPServer: one thread per request; the ONNX
session is thread-safe, a LiteRT interpreter is locked by its backend). Bad requests answer 4xx
with {"error": message}; n is capped (JSON images are large); the request body is size-capped.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from exporters import runtime
from exporters.images import make_grid, png_bytes

MAX_IMAGES_JSON = 256
MAX_IMAGES_PNG = 1024
MAX_BODY_BYTES = 64 * 1024
DRAIN_LIMIT_BYTES = 16 * MAX_BODY_BYTES
REQUEST_FIELDS = ("n", "labels", "seed", "steps", "guidance_scale")
DIFFUSION_FIELDS = ("steps", "guidance_scale")


class BadRequest(ValueError):
    """A client error: answered with its status and message, never as a server error."""

    def __init__(self, message, status=HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


def _parse_json_request(body: bytes) -> dict:
    try:
        request = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"body is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise BadRequest(
            f"body must be a JSON object like {{\"n\": 4, \"seed\": 1}}, got {body[:80]!r}"
        )
    unknown = sorted(set(request) - set(REQUEST_FIELDS))
    if unknown:
        raise BadRequest(f"unknown fields {unknown}; accepted: {list(REQUEST_FIELDS)}")
    return request


def _query_int(query, name, default=None):
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {values[-1]!r}") from None


def _parse_png_request(query_string: str) -> dict:
    query = parse_qs(query_string, keep_blank_values=True)
    unknown = sorted(set(query) - set(REQUEST_FIELDS))
    if unknown:
        raise BadRequest(f"unknown parameters {unknown}; accepted: {list(REQUEST_FIELDS)}")
    labels = None
    if query.get("labels"):
        text = query["labels"][-1]
        try:
            labels = [int(item) for item in text.split(",")]
        except ValueError:
            raise BadRequest(f"labels must be comma-separated integers, got {text!r}") from None
    request = {"n": _query_int(query, "n", 16), "seed": _query_int(query, "seed"),
               "labels": labels}
    if query.get("steps"):
        request["steps"] = _query_int(query, "steps")
    if query.get("guidance_scale"):
        text = query["guidance_scale"][-1]
        try:
            request["guidance_scale"] = float(text)
        except ValueError:
            raise BadRequest(f"guidance_scale must be a number, got {text!r}") from None
    return request


def make_handler(generator, max_images_json=MAX_IMAGES_JSON, max_images_png=MAX_IMAGES_PNG):
    """A request handler class bound to one loaded generator."""

    def generate(request, cap):
        n = request.get("n", 1)
        if isinstance(n, int) and not isinstance(n, bool) and n > cap:
            raise BadRequest(f"n must be at most {cap} here, got {n}")
        labels = runtime.expand_labels(request.get("labels"), n) if isinstance(n, int) else None
        options = {k: request[k] for k in DIFFUSION_FIELDS if request.get(k) is not None}
        if options and not isinstance(generator, runtime.DiffusionGenerator):
            raise BadRequest(
                f"{sorted(options)} apply to diffusion artifacts only; this is a "
                f"{generator.family} generator"
            )
        try:
            return generator.generate(n, labels=labels, seed=request.get("seed"), **options)
        except ValueError as error:  # the runtime's input checks: the client's mistake
            raise BadRequest(str(error)) from None

    def health(handler, body):
        return handler.send_json({"status": "ok"})

    def metadata(handler, body):
        return handler.send_json(
            {**generator.metadata(), "max_images_json": max_images_json,
             "max_images_png": max_images_png}
        )

    def generate_json(handler, body):
        images = generate(_parse_json_request(body), max_images_json)
        return handler.send_json({"images": images.tolist(), "shape": list(images.shape),
                                  "dtype": "uint8"})

    def generate_png(handler, body):
        images = generate(_parse_png_request(handler.query), max_images_png)
        return handler.send_bytes(png_bytes(make_grid(images)), "image/png")

    # (method, path) -> endpoint
    routes = {
        ("GET", "/health"): health,
        ("GET", "/v1/metadata"): metadata,
        ("POST", "/v1/generate"): generate_json,
        ("GET", "/v1/generate.png"): generate_png,
    }
    paths = {path for _, path in routes}

    class Handler(BaseHTTPRequestHandler):
        server_version = "genzoo"
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # quiet by default; serve(verbose=True) logs
            if getattr(self.server, "verbose", False):
                super().log_message(format, *args)

        def send_bytes(self, payload: bytes, content_type: str, status=HTTPStatus.OK):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def send_json(self, payload, status=HTTPStatus.OK):
            self.send_bytes(json.dumps(payload).encode(), "application/json", status)

        def read_body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if length is None:
                return b""
            try:
                length = int(length)
            except ValueError:
                raise BadRequest(f"bad Content-Length {length!r}") from None
            if length < 0 or length > MAX_BODY_BYTES:
                if 0 < length <= DRAIN_LIMIT_BYTES:  # read it, so the client sees our answer
                    self.rfile.read(length)
                raise BadRequest(f"body must be at most {MAX_BODY_BYTES} bytes, got {length}",
                                 HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return self.rfile.read(length)

        def dispatch(self, method):
            parts = urlsplit(self.path)
            self.query = parts.query
            try:
                body = self.read_body() if method == "POST" else b""
                endpoint = routes.get((method, parts.path))
                if endpoint is None:
                    if parts.path in paths:
                        raise BadRequest(f"{method} is not allowed on {parts.path}",
                                         HTTPStatus.METHOD_NOT_ALLOWED)
                    raise BadRequest(f"no endpoint {parts.path!r}; try {sorted(paths)}",
                                     HTTPStatus.NOT_FOUND)
                endpoint(self, body)
            except BadRequest as error:
                self.close_connection = True
                self.send_json({"error": str(error)}, error.status)
            except Exception as error:  # noqa: BLE001  (a bug, not the client's: say so, stay up)
                self.close_connection = True
                self.send_json({"error": f"internal error: {type(error).__name__}: {error}"},
                               HTTPStatus.INTERNAL_SERVER_ERROR)

        def do_GET(self):
            self.dispatch("GET")

        def do_POST(self):
            self.dispatch("POST")

        def do_PUT(self):
            self.dispatch("PUT")

        def do_DELETE(self):
            self.dispatch("DELETE")

    return Handler


class GeneratorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start_background(self) -> threading.Thread:
        """Serve on a daemon thread (tests, notebooks); stop: .shutdown(), then .server_close()."""
        thread = threading.Thread(target=self.serve_forever, name="genzoo-server", daemon=True)
        thread.start()
        return thread


def make_server(artifact, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False,
                max_images_json: int = MAX_IMAGES_JSON) -> GeneratorServer:
    """Load `artifact` (file, export folder or run folder) and bind a server (port 0: any free)."""
    generator = artifact if isinstance(artifact, runtime.Generator) else runtime.load(artifact)
    if not isinstance(generator, runtime.Generator):
        role = generator.entry.get("role")
        raise ValueError(f"{artifact} is not a generator artifact (role {role!r})")  # noqa: TRY004
    server = GeneratorServer(
        (host, port),
        make_handler(generator, max_images_json, min(MAX_IMAGES_PNG, generator.max_images)),
    )
    server.verbose = verbose
    server.generator = generator
    return server


def serve(artifact, host: str = "127.0.0.1", port: int = 8000, verbose: bool = True):
    """Serve until interrupted (Ctrl-C)."""
    server = make_server(artifact, host, port, verbose)
    generator = server.generator
    print(f"serving {generator.path} ({generator.format}) on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
