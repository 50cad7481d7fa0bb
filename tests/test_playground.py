"""The playground page `zoo serve` answers GET / with, and /v1/interpolate under it.

Fast tier: the page's files come from an allow-list (traversal attempts sent as raw bytes, so no
client normalises them, are 404), its security headers and no third-party origin, the server's
default host, and /v1/interpolate (JSON, compact, PNG) equal to runtime.interpolate, whose ends
are runtime.generate(1, seed=seed_a / seed_b). Slow tier: the same for a tiny CDDPM (the path is
in x_T), and the page itself in headless Chromium (tests/browser_fixtures.py): its canvases hold
exactly the make_grid picture of the runtime's images, API errors show as text, and the generate
button is off while a diffusion model samples.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import socket

import numpy as np
import pytest
from export_fixtures import shared_exports
from PIL import Image
from test_diffusion_runtime import TINY as TINY_CDDPM
from test_serve import _running_server, call

from exporters import runtime, sampling, server
from exporters.images import make_grid

CSP_DIRECTIVES = ("default-src 'self'", "script-src 'self'", "style-src 'self'",
                  "connect-src 'self'", "object-src 'none'", "base-uri 'none'",
                  "frame-ancestors 'none'")
# A diffusion model's settings the browser tests send (the manifest's steps are 5)
DIFFUSION_CONTROLS = {"steps": 4, "guidance_scale": 2.0}


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    return shared_exports(tmp_path_factory)


@pytest.fixture(scope="module")
def cgan_artifact(exports):
    return exports("cgan").path("generator.onnx")


@pytest.fixture(scope="module")
def cgan_server(cgan_artifact):
    yield from _running_server(cgan_artifact)


@pytest.fixture(scope="module")
def cgan(cgan_artifact):
    return runtime.load(cgan_artifact)


@pytest.fixture(scope="module")
def cddpm_artifact(tmp_path_factory):
    """A tiny CDDPM (test_diffusion_runtime's settings) exported to ONNX once for this module."""
    import exporters
    import zoo

    out_dir = tmp_path_factory.mktemp("playground-cddpm") / "export"
    exporters.export(zoo.build("cddpm", **TINY_CDDPM), out_dir, formats=("onnx",))
    return out_dir / "generator.onnx"


@pytest.fixture(scope="module")
def cddpm_server(cddpm_artifact):
    yield from _running_server(cddpm_artifact)


@pytest.fixture(scope="module")
def cddpm(cddpm_artifact):
    return runtime.load(cddpm_artifact)


def raw_get(address, target: bytes):
    """(status, header block, body) of one GET with `target` sent byte for byte."""
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n"
                           b"Connection: close\r\n\r\n")
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1").lower(), body


def images_of(body) -> np.ndarray:
    reply = json.loads(body)
    images = np.asarray(reply["images"], np.uint8)
    assert list(images.shape) == reply["shape"] and reply["dtype"] == "uint8"
    return images


# ---- the page's files ---------------------------------------------------------------------------
@pytest.mark.parametrize("target", [
    b"/../", b"/%2e%2e/", b"/%2E%2E/%2E%2E/etc/passwd", b"/static/../../etc/passwd",
    b"/static/%2e%2e/%2e%2e/etc/passwd", b"/static/..%2f..%2fetc%2fpasswd",
    b"/static//etc/passwd", b"/static/%2fetc%2fpasswd", b"//etc/passwd", b"/etc/passwd",
    b"/static/..", b"/static/%2e%2e", b"/static/", b"/static/../server.py",
    b"/static/..%5c..%5cserver.py", b"/static/server.py", b"/static/playground.html",
    b"/static/inbrowser.js", b"/static/STYLE.CSS", b"/static/style.css%00.py",
    b"/static/./style.css", b"/playground.html", b"/web/style.css",
    b"http://localhost/etc/passwd", b"/static/common.js/..",
])
def test_only_the_allow_listed_files_are_served(cgan_server, target):
    status, _, body = raw_get(cgan_server.server_address[:2], target)
    assert status == 404, (target, status, body[:200])
    assert b"root:" not in body and b"import " not in body  # no file's content
    assert "error" in json.loads(body)


def test_the_page_has_its_security_headers_and_no_third_party_origin(cgan_server):
    address = cgan_server.server_address[:2]
    status, head, html = raw_get(address, b"/")
    assert status == 200 and "content-type: text/html; charset=utf-8" in head
    policy = re.search(r"^content-security-policy: (.*)$", head, re.MULTILINE).group(1).strip()
    for directive in CSP_DIRECTIVES:
        assert directive in policy.split("; "), (directive, policy)
    assert "x-content-type-options: nosniff" in head
    page = html.decode()
    assert page == (server.WEB_DIR / "playground.html").read_text()
    # no inline code (the policy forbids it): scripts have src, no <style>, no style=/on...=
    assert "<style" not in page and not re.search(r"\s(style|on\w+)=", page)
    assert all('src="' in tag for tag in re.findall(r"<script[^>]*>", page))
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page)
    for name in ("playground.js", "common.js", "style.css"):
        status, head, body = raw_get(address, f"/static/{name}".encode())
        assert status == 200 and body == (server.WEB_DIR / name).read_bytes()
        assert "x-content-type-options: nosniff" in head and "content-security-policy:" in head
        kind = {"js": "text/javascript", "css": "text/css"}[name.rsplit(".", 1)[1]]
        assert f"content-type: {kind}; charset=utf-8" in head
        # every module the script imports is served too
        referenced += [f"static/{m}" for m in re.findall(r'from "\./([^"]+)"', body.decode())]
        assert not re.search(rb"https?://", body), name  # nothing fetched from elsewhere
    assert not re.search(r"https?://|//[a-z]", page)
    for url in referenced:
        if not url.startswith("data:"):  # relative: the page works under a path prefix too
            assert not url.startswith("/"), url
            assert call(address, "GET", "/" + url)[0] == 200, url


def test_the_server_binds_to_loopback_unless_told_otherwise(cgan_artifact):
    from zoo import cli

    assert cli.build_parser().parse_args(["serve", "x.onnx"]).host == "127.0.0.1"
    for function in (server.serve, server.make_server):
        assert inspect.signature(function).parameters["host"].default == "127.0.0.1"
    srv = server.make_server(cgan_artifact, port=0)
    try:
        assert srv.server_address[0] == "127.0.0.1"
    finally:
        srv.server_close()


def test_openapi_lists_interpolate_and_the_page(cgan_server):
    spec = json.loads(call(cgan_server.server_address[:2], "GET", "/openapi.json")[2])
    for path in ("/v1/interpolate", "/v1/interpolate.png", "/", "/static/{name}"):
        assert path in spec["paths"], path
    example = spec["paths"]["/v1/interpolate"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    assert example == {"seed_a": 1, "seed_b": 2, "n": 8, "label": 3}


# ---- interpolation: the runtime and /v1/interpolate ---------------------------------------------
def test_slerp_gives_its_ends_exactly():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 16), dtype=np.float32)
    path = sampling.slerp(a, b, np.linspace(0, 1, 5))
    assert path.dtype == np.float32 and path.shape == (5, 16)
    np.testing.assert_array_equal(path[0], a)
    np.testing.assert_array_equal(path[-1], b)
    norms = np.linalg.norm(path, axis=1)  # orthogonal-ish ends: the norm stays typical
    assert norms.min() > 0.9 * min(np.linalg.norm(a), np.linalg.norm(b))


def test_runtime_interpolation_starts_and_ends_at_the_seeds_images(cgan):
    z, labels = cgan.interpolation_inputs(3, 9, 6, label=4)
    np.testing.assert_array_equal(z[0], sampling.latents(1, cgan.latent_dim, 3)[0])
    np.testing.assert_array_equal(z[-1], sampling.latents(1, cgan.latent_dim, 9)[0])
    assert labels.tolist() == [4] * 6
    images = cgan.interpolate(3, 9, 6, label=4)
    assert images.shape == (6, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], cgan.generate(1, [4], seed=3)[0])
    np.testing.assert_array_equal(images[-1], cgan.generate(1, [4], seed=9)[0])
    assert not np.array_equal(images[2], images[0])  # it moves
    np.testing.assert_array_equal(images, cgan.interpolate(3, 9, 6, label=4, batch_size=4))


def test_interpolate_endpoints_equal_the_runtime(cgan_server, cgan):
    address = cgan_server.server_address[:2]
    expected = cgan.interpolate(5, 12, 7, label=3)
    request = {"seed_a": 5, "seed_b": 12, "n": 7, "label": 3}
    status, kind, body = call(address, "POST", "/v1/interpolate", request)
    assert (status, kind) == (200, "application/json")
    np.testing.assert_array_equal(images_of(body), expected)
    np.testing.assert_array_equal(images_of(body)[0], cgan.generate(1, [3], seed=5)[0])
    np.testing.assert_array_equal(images_of(body)[-1], cgan.generate(1, [3], seed=12)[0])

    status, _, body = call(address, "POST", "/v1/interpolate", request,
                           {"Accept": "application/octet-stream"})
    assert status == 200
    np.testing.assert_array_equal(np.frombuffer(body, np.uint8).reshape(expected.shape), expected)

    status, kind, body = call(address, "GET", "/v1/interpolate.png?seed_a=5&seed_b=12&n=7&label=3")
    assert (status, kind) == (200, "image/png")
    picture = np.asarray(Image.open(io.BytesIO(body)))
    np.testing.assert_array_equal(picture, make_grid(expected, columns=7)[..., 0])  # one row

    status, _, body = call(address, "POST", "/v1/interpolate", {"seed_a": 5, "seed_b": 12,
                                                                 "label": 0})
    assert status == 200 and images_of(body).shape[0] == server.INTERPOLATION_IMAGES


@pytest.fixture(scope="module")
def gan_server(exports):
    yield from _running_server(exports("gan").path("generator.onnx"))


def test_unconditional_interpolation(gan_server):
    gan = gan_server.generator
    address = gan_server.server_address[:2]
    status, _, body = call(address, "POST", "/v1/interpolate", {"seed_a": 1, "seed_b": 2, "n": 3})
    assert status == 200
    np.testing.assert_array_equal(images_of(body), gan.interpolate(1, 2, 3))
    np.testing.assert_array_equal(images_of(body)[-1], gan.generate(1, seed=2)[0])
    status, _, body = call(address, "POST", "/v1/interpolate",
                           {"seed_a": 1, "seed_b": 2, "n": 3, "label": 0})
    assert status == 400 and "takes no label, got 0" in json.loads(body)["error"]


GOOD = {"seed_a": 1, "seed_b": 2, "label": 1}
PNG = "/v1/interpolate.png?seed_a=1&seed_b=2&label=1"


@pytest.mark.parametrize(("method", "path", "body", "fragment"), [
    ("POST", "/v1/interpolate", {"seed_b": 2, "label": 1},
     "seed_a must be a non-negative integer, got None"),
    ("POST", "/v1/interpolate", {**GOOD, "seed_b": -3},
     "seed_b must be a non-negative integer, got -3"),
    ("POST", "/v1/interpolate", {**GOOD, "seed_a": "1"},
     "seed_a must be a non-negative integer, got '1'"),
    ("POST", "/v1/interpolate", {**GOOD, "n": 1},
     "n must be at least 2 (the two ends of the path), got 1"),
    ("POST", "/v1/interpolate", {**GOOD, "n": 257}, "n must be at most 256, got 257"),
    ("POST", "/v1/interpolate", {**GOOD, "n": 2.5}, "n must be a positive integer, got 2.5"),
    ("POST", "/v1/interpolate", {**GOOD, "label": 10},
     "label must be an integer in [0, 10) (this model is conditional), got 10"),
    ("POST", "/v1/interpolate", {"seed_a": 1, "seed_b": 2}, "label must be an integer"),
    ("POST", "/v1/interpolate", {**GOOD, "label": "3"}, "got '3'"),
    ("POST", "/v1/interpolate", {**GOOD, "labels": [1]}, "unknown fields ['labels']"),
    ("POST", "/v1/interpolate", {**GOOD, "steps": 5}, "apply to diffusion artifacts only"),
    ("POST", "/v1/interpolate", "[1, 2]", "must be a JSON object"),
    ("GET", PNG.replace("seed_a=1", "seed_a=x"), None, "seed_a must be an integer, got 'x'"),
    ("GET", PNG + "&n=2000", None, "n must be at most 1024, got 2000"),
    ("GET", PNG + "&guidance_scale=y", None, "guidance_scale must be a number, got 'y'"),
    ("GET", PNG + "&colour=red", None, "unknown parameters ['colour']"),
    ("GET", "/v1/interpolate", None, "GET is not allowed"),
])
def test_bad_interpolations_are_4xx_naming_the_value(cgan_server, method, path, body, fragment):
    address = cgan_server.server_address[:2]
    status, _, answer = call(address, method, path, body)
    assert 400 <= status < 500 and fragment in json.loads(answer)["error"], answer
    assert call(address, "GET", "/health")[0] == 200  # still up


@pytest.mark.slow  # exports a CDDPM (~15 s)
def test_diffusion_interpolation_walks_x_t(cddpm, cddpm_server):
    options = {"steps": 3, "guidance_scale": 2.5}
    images = cddpm.interpolate(7, 8, 4, label=3, **options)
    assert images.shape == (4, 8, 8, 1)
    np.testing.assert_array_equal(images[0], cddpm.generate(1, [3], seed=7, **options)[0])
    np.testing.assert_array_equal(images[-1], cddpm.generate(1, [3], seed=8, **options)[0])
    address = cddpm_server.server_address[:2]
    status, _, body = call(address, "POST", "/v1/interpolate",
                           {"seed_a": 7, "seed_b": 8, "n": 4, "label": 3, **options})
    assert status == 200
    np.testing.assert_array_equal(images_of(body), images)
    with pytest.raises(ValueError, match="deterministic sampler .* got sampler='ddpm'"):
        cddpm.interpolate(7, 8, 4, label=3, sampler="ddpm")
    status, _, body = call(address, "POST", "/v1/interpolate",
                           {"seed_a": 7, "seed_b": 8, "n": 4, "label": 3, "steps": 99})
    assert status == 400
    assert "steps must be at most 50 (the schedule's timesteps), got 99" in json.loads(body)["error"]


# ---- the page in a browser ----------------------------------------------------------------------
FAMILIES = ["cgan", "cddpm"]


@pytest.fixture
def served(request):
    """(server, runtime generator, diffusion controls) of the family the test names."""
    family = request.param
    srv = request.getfixturevalue(f"{family}_server")
    generator = request.getfixturevalue(family)
    return srv, generator, DIFFUSION_CONTROLS if family == "cddpm" else {}


def open_page(page, srv):
    page.goto(srv.url + "/")
    page.wait_for_selector("#generate:enabled")


def set_controls(page, controls):
    if controls:
        page.fill("#steps", str(controls["steps"]))
        page.fill("#guidance", str(controls["guidance_scale"]))


def canvas_rgb(page, selector) -> np.ndarray:
    width, height, data = page.evaluate("""selector => {
        const canvas = document.querySelector(selector);
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
        return [canvas.width, canvas.height, Array.from(pixels.data)];
    }""", selector)
    rgba = np.asarray(data, np.uint8).reshape(height, width, 4)
    assert (rgba[..., 3] == 255).all()
    return rgba[..., :3]


def rgb(grid) -> np.ndarray:
    return np.repeat(grid, 3, axis=-1) if grid.shape[-1] == 1 else grid


def click_and_wait(page, button):
    page.click(button)
    page.wait_for_selector(f"{button}:enabled")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("served", FAMILIES, indirect=True)
def test_page_grid_equals_the_runtime_picture(page, served, tmp_path):
    srv, generator, controls = served
    open_page(page, srv)
    assert page.is_visible("#steps") == bool(controls)
    page.select_option("#label", "3")
    page.fill("#seed", "7")
    set_controls(page, controls)
    click_and_wait(page, "#generate")
    assert page.is_hidden("#error"), page.text_content("#error")
    expected = make_grid(generator.generate(16, [3] * 16, seed=7, **controls))
    np.testing.assert_array_equal(canvas_rgb(page, "#grid"), rgb(expected))

    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "grid.png"
    download.value.save_as(saved)
    np.testing.assert_array_equal(np.asarray(Image.open(saved).convert("RGB")), rgb(expected))

    page.check("#rows-per-class")  # n per class, one row each
    page.fill("#n", "2")
    click_and_wait(page, "#generate")
    labels = np.repeat(np.arange(10), 2)
    expected = make_grid(generator.generate(20, labels, seed=7, **controls), columns=2)
    np.testing.assert_array_equal(canvas_rgb(page, "#grid"), rgb(expected))
    assert page.genzoo_errors == []


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("served", FAMILIES, indirect=True)
def test_page_interpolation_strip_equals_the_server(page, served):
    srv, generator, controls = served
    open_page(page, srv)
    page.select_option("#label", "3")
    set_controls(page, controls)
    page.fill("#interp-seed-a", "7")
    page.fill("#interp-seed-b", "11")
    page.fill("#interp-steps", "6")
    click_and_wait(page, "#interpolate")
    assert page.is_hidden("#error"), page.text_content("#error")
    status, _, body = call(srv.server_address[:2], "POST", "/v1/interpolate",
                           {"seed_a": 7, "seed_b": 11, "n": 6, "label": 3, **controls})
    assert status == 200
    images = images_of(body)
    np.testing.assert_array_equal(images, generator.interpolate(7, 11, 6, label=3, **controls))
    strip = canvas_rgb(page, "#strip")
    height, width = generator.image_shape[:2]
    assert strip.shape[:2] == (height + 4, 6 * (width + 2) + 2)  # 6 images in one row
    np.testing.assert_array_equal(strip, rgb(make_grid(images, columns=6)))
    assert page.genzoo_errors == []


@pytest.mark.slow
@pytest.mark.browser
def test_page_shows_api_errors_as_text(page, cgan_server):
    open_page(page, cgan_server)
    cap = json.loads(call(cgan_server.server_address[:2], "GET", "/v1/metadata")[2])[
        "max_images_json"]
    page.fill("#n", str(cap + 1))
    click_and_wait(page, "#generate")
    assert page.is_visible("#error")
    assert f"n must be at most {cap}, got {cap + 1}" in page.text_content("#error")
    assert page.get_attribute("#grid", "width") == "0"  # nothing drawn
    page.fill("#interp-steps", "1")
    click_and_wait(page, "#interpolate")
    assert "n must be at least 2" in page.text_content("#error")
    # Chromium logs each 4xx fetch as a console error; nothing else may appear
    unexpected = [e for e in page.genzoo_errors if "status of 400" not in e]
    assert unexpected == [] and len(page.genzoo_errors) <= 2


@pytest.mark.slow
@pytest.mark.browser
def test_generate_is_disabled_while_a_diffusion_model_samples(page, cddpm_server, cddpm):
    open_page(page, cddpm_server)
    page.evaluate("""() => {
        const button = document.querySelector("#generate");
        const status = document.querySelector("#status");
        window.seen = [];
        new MutationObserver(() => window.seen.push([button.disabled, status.textContent]))
            .observe(document.body, {subtree: true, childList: true, attributes: true,
                                     characterData: true});
    }""")
    page.fill("#n", "64")
    page.fill("#steps", "50")
    page.click("#generate")
    assert page.is_disabled("#generate")  # off until the answer is drawn
    page.wait_for_selector("#generate:enabled", timeout=300_000)
    seen = page.evaluate("window.seen")
    sampling_texts = {text for disabled, text in seen if text.startswith("sampling images")}
    assert all(disabled for disabled, text in seen if text in sampling_texts)
    # the elapsed time ticked while the server sampled: the page was never frozen
    assert len(sampling_texts) >= 2, seen
    assert seen[-1][0] is False and re.match(r"64 images in [\d.]+ s", seen[-1][1]), seen[-1]
    assert page.is_hidden("#error")
    assert canvas_rgb(page, "#grid").shape == (8 * 10 + 2, 8 * 10 + 2, 3)
    assert page.genzoo_errors == []


@pytest.mark.slow
@pytest.mark.browser
def test_page_fits_a_phone_screen(page, cgan_server):
    page.set_viewport_size({"width": 360, "height": 740})
    open_page(page, cgan_server)
    click_and_wait(page, "#generate")  # 16 images: 122 pixels wide
    page.fill("#interp-steps", "12")  # 362 pixels: wider than the screen
    click_and_wait(page, "#interpolate")
    layout = page.evaluate("""() => ({
        page: document.documentElement.scrollWidth,
        grid: document.querySelector("#grid").getBoundingClientRect().right,
        strip: document.querySelector("#strip").getBoundingClientRect().right,
        gridPixels: document.querySelector("#grid").width,
        shown: document.querySelector("#grid").getBoundingClientRect().width,
        rendering: getComputedStyle(document.querySelector("#grid")).imageRendering,
    })""")
    assert layout["page"] <= 360, layout  # no sideways scrolling
    assert layout["grid"] <= 360 and layout["strip"] <= 360, layout
    assert layout["rendering"] == "pixelated"
    # the grid is enlarged by a whole factor, as much as the screen allows
    assert layout["shown"] >= 2 * layout["gridPixels"], layout
    assert layout["shown"] % layout["gridPixels"] == 0, layout
    assert page.genzoo_errors == []


@pytest.mark.slow
@pytest.mark.browser
def test_docs_page_runs_under_its_own_csp(page, cgan_server):
    """/docs keeps its inline script and style, allowed by hash: the page renders every path
    of openapi.json and the browser reports no CSP violation."""
    response = page.goto(cgan_server.url + "/docs")
    policy = response.headers["content-security-policy"]
    assert "'sha256-" in policy and "unsafe-inline" not in policy and "http" not in policy
    page.wait_for_selector("#paths h3")
    paths = json.loads(call(cgan_server.server_address[:2], "GET", "/openapi.json")[2])["paths"]
    assert page.locator("#paths h3").count() == sum(len(ops) for ops in paths.values())
    assert page.evaluate("getComputedStyle(document.body).maxWidth") != "none"  # style applied
    assert page.genzoo_errors == []
