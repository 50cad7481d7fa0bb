"""`zoo export --formats web`: the static page that runs the ONNX generator in the browser.

Fast tier: the folder and both manifests (through the export-only route, which needs no
TensorFlow, and through `exporters.export`, which copies the verified ONNX file), and the
one-line errors that leave nothing half-written. These use a stand-in onnxruntime-web folder
(three files with the real banner) because a fast-tier clone has not fetched the 14 MB runtime;
they check that its files are copied, not what they do.
Browser tier (slow, browser): the real onnxruntime-web in headless Chromium, served by
`python -m http.server`, pixel for pixel against the Python runtime on the page's latents.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from export_fixtures import build_tiny, shared_exports

import exporters
from exporters import runtime
from exporters.converters import export as converters
from exporters.converters import web
from exporters.images import make_grid, to_uint8

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "saved_models"
ZOO = [str(Path(sys.executable).with_name("zoo"))]
if not Path(ZOO[0]).exists():
    ZOO = [sys.executable, "-m", "zoo.cli"]
PAGE_NAMES = sorted([*web.PAGE_FILES.values(), *web.ORT_WEB_FILES, "generator.onnx",
                     "manifest.json"])


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    return shared_exports(tmp_path_factory)


@pytest.fixture
def stand_in_ort(tmp_path, monkeypatch) -> Path:
    """A ZOO_ORT_WEB_DIR holding the three file names (the real banner in the .mjs)."""
    folder = tmp_path / "ort-web"
    folder.mkdir()
    (folder / "ort.wasm.min.mjs").write_text("/*!\n * ONNX Runtime Web v1.30.0\n */\nexport{};\n")
    (folder / "ort-wasm-simd-threaded.mjs").write_text("export default {};\n")
    (folder / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm\1\0\0\0")
    monkeypatch.setenv(web.ORT_WEB_ENV, str(folder))
    return folder


def export_only_run(tmp_path, name="cgan-mnist5k") -> Path:
    """A copy of a committed pretrained run: config, grids and export/, no model.keras."""
    run = tmp_path / name
    shutil.copytree(PRETRAINED / name, run)
    return run


def snapshot(folder: Path) -> dict:
    """{relative path: (mode, sha256)} of everything under folder (folders too)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        mode = stat.S_IMODE(path.stat().st_mode)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        found[path.relative_to(folder).as_posix()] = (mode, digest)
    return found


def one_line_error(capsys, *fragments) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mulberry32_latents(seed: int, n: int, dim: int) -> np.ndarray:
    """The page's latent recipe (manifest "latents") in Python: mulberry32 + Box-Muller."""
    mask, state, values = 0xFFFFFFFF, seed & 0xFFFFFFFF, []

    def next_uint32():
        nonlocal state
        state = (state + 0x6D2B79F5) & mask
        t = state
        t = ((t ^ (t >> 15)) * (t | 1)) & mask
        t = (t ^ ((t + (((t ^ (t >> 7)) * (t | 61)) & mask)) & mask)) & mask
        return (t ^ (t >> 14)) & mask

    while len(values) < n * dim:
        u1, u2 = next_uint32() / 2**32, next_uint32() / 2**32
        r = math.sqrt(-2 * math.log(1 - u1))
        values += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
    return np.asarray(values[: n * dim], np.float32).reshape(n, dim)


# ---- fast tier: the folder, the manifests, the errors ---------------------------------------
def test_cgan_page_folder_holds_page_model_runtime_and_manifest(exports, stand_in_ort, tmp_path):
    exported = exports("cgan")
    report = converters.export_from_export(exported.out_dir, tmp_path / "out", formats="web")
    folder = tmp_path / "out" / "web"
    assert sorted(p.name for p in folder.iterdir()) == PAGE_NAMES
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "web"]
    for source, target in web.PAGE_FILES.items():
        assert (folder / target).read_bytes() == (web.PAGE_DIR / source).read_bytes(), target
    for name in web.ORT_WEB_FILES:
        assert (folder / name).read_bytes() == (stand_in_ort / name).read_bytes(), name
    assert sha256(folder / "generator.onnx") == sha256(exported.path("generator.onnx"))
    for path in [tmp_path / "out", *(tmp_path / "out").rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path

    page = json.loads((folder / "manifest.json").read_text())
    assert {k: page[k] for k in ("family", "latent_dim", "num_classes", "image_shape",
                                 "input_names", "output_names", "output_range", "model")} == {
        "family": "cgan", "latent_dim": 16, "num_classes": 10, "image_shape": [28, 28, 1],
        "input_names": ["z", "label"], "output_names": ["images"], "output_range": [-1.0, 1.0],
        "model": "generator.onnx"}
    assert page["inputs"][1] == {"name": "label", "dtype": "int32", "shape": [None]}
    assert page["latents"]["prng"] == "mulberry32"
    assert page["latents"]["note"].startswith("seeds are this page's own; the same seed gives "
                                              "different images from zoo sample")
    assert page["onnxruntime_web"]["version"] == "1.30.0"
    assert page["onnxruntime_web"]["num_threads"] == 1
    assert page["max_images"] == web.MAX_IMAGES
    model_entry = page["artifacts"]["generator.onnx"]
    assert model_entry["sha256"] == sha256(folder / "generator.onnx")
    assert model_entry["bytes"] == (folder / "generator.onnx").stat().st_size

    entry = report["artifacts"]["web"]
    assert entry["format"] == "web" and entry["runtime"] == "onnxruntime-web"
    assert entry["model_file"] == "generator.onnx" and entry["page"] == "index.html"
    assert entry["verification"]["passed"] and entry["verification"]["max_abs_diff"] == 0.0
    listed = json.loads((tmp_path / "out" / "manifest.json").read_text())["artifacts"]["web"]
    assert listed["sha256"] == exporters.manifest.digest(folder)["sha256"]

    # the page's manifest is also one the runtime loads: the copy generates what the source does
    z = np.random.default_rng(0).standard_normal((5, 16), dtype=np.float32)
    labels = [3, 1, 4, 1, 5]
    np.testing.assert_array_equal(
        runtime.load(folder / "generator.onnx").from_latents(z, labels),
        runtime.load(exported.path("generator.onnx")).from_latents(z, labels))


def test_page_runs_under_a_strict_content_security_policy():
    html = (web.PAGE_DIR / "inbrowser.html").read_text()
    policy = html.split('http-equiv="Content-Security-Policy" content="')[1].split('"')[0]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert directives["style-src"] == directives["connect-src"] == "'self'"
    assert "http" not in policy and "unsafe-inline" not in policy
    # nothing inline that the policy would block, nothing from another origin
    assert html.count("<script") == html.count('<script type="module" src=') == 1
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    for name in ("inbrowser.html", "inbrowser.js", "inbrowser.css"):
        assert "http://" not in (web.PAGE_DIR / name).read_text(), name
        assert "https://" not in (web.PAGE_DIR / name).read_text(), name


def test_keras_export_copies_the_verified_onnx_and_keeps_the_old_export_on_failure(
        exports, stand_in_ort, tmp_path, monkeypatch):
    model = exports("cgan").model
    out = tmp_path / "export"
    report = exporters.export(model, out, formats="web,onnx")  # web is written after onnx
    assert sorted(report["artifacts"]) == ["generator.onnx", "web"]
    entry = report["artifacts"]["web"]
    assert entry["copied_from"] == "generator.onnx"
    assert entry["verification"]["max_abs_diff"] <= 1e-4 and entry["verification"]["passed"]
    assert sha256(out / "web" / "generator.onnx") == sha256(out / "generator.onnx")
    assert sorted(p.name for p in (out / "web").iterdir()) == PAGE_NAMES
    assert "web" not in exporters.DEFAULT_FORMATS and "web" in exporters.FORMATS

    # a failure while the page is written (a page file missing) leaves the old export whole
    before = snapshot(out)
    broken = tmp_path / "broken-page"
    shutil.copytree(web.PAGE_DIR, broken)
    (broken / "inbrowser.js").unlink()
    monkeypatch.setattr(web, "PAGE_DIR", broken)
    with pytest.raises(web.WebExportError, match="inbrowser.js"):
        exporters.export(model, out, formats="onnx,web", overwrite=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken-page", "export", "ort-web"]


def test_missing_onnxruntime_web_is_one_line_naming_folder_and_fix(exports, tmp_path,
                                                                   monkeypatch, capsys):
    from zoo import cli

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(web.ORT_WEB_ENV, str(empty))
    run = export_only_run(tmp_path)
    before = snapshot(run)
    assert cli.main(["export", str(run), "--formats", "web"]) == 2
    one_line_error(capsys, f"{empty} lacks ort.wasm.min.mjs, ort-wasm-simd-threaded.mjs, "
                   "ort-wasm-simd-threaded.wasm", "run `bash tools/fetch_onnxruntime_web.sh`",
                   "ZOO_ORT_WEB_DIR")
    assert snapshot(run) == before
    # the Keras route refuses before any work: no folder, no staging left behind
    with pytest.raises(FileNotFoundError, match="onnxruntime-web 1.30.0 not found"):
        exporters.export(exports("cgan").model, tmp_path / "k", formats="onnx,web")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cgan-mnist5k", "empty"]
    # without the override: the cache folder tools/fetch_onnxruntime_web.sh fills
    expected = tmp_path / "cache" / "genzoo" / "onnxruntime-web" / "1.30.0"
    with pytest.raises(FileNotFoundError, match=f"{expected} lacks"):
        web.onnxruntime_web_dir({"XDG_CACHE_HOME": str(tmp_path / "cache")})


def test_a_run_without_onnx_or_an_unsupported_family_is_refused_in_one_line(
        stand_in_ort, tmp_path, capsys):
    from zoo import cli

    run = export_only_run(tmp_path)  # ships only its TFLite generator: no ONNX to run
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    del manifest["artifacts"]["generator.onnx"]
    (run / "export" / "manifest.json").write_text(json.dumps(manifest))
    (run / "export" / "generator.onnx").unlink()
    before = snapshot(run)
    assert cli.main(["export", str(run), "--formats", "web"]) == 2
    one_line_error(capsys, "holds no float32 ONNX generator to build web from "
                   "(it lists generator-b1.tflite)")
    assert snapshot(run) == before

    import zoo

    ddpm = zoo.build("ddpm", base_filters=8, channel_multipliers=(1, 2), sampling_steps=5, seed=0)
    with pytest.raises(web.WebExportError) as error:
        exporters.export(ddpm, tmp_path / "ddpm", formats="onnx,web")
    assert str(error.value).startswith(
        "family 'ddpm' cannot be exported to web: its network outputs 'prediction', not images")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "ddpm").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ddpm")]


def test_in_place_page_of_an_export_only_run_is_kept_when_a_rebuild_fails(
        stand_in_ort, tmp_path, monkeypatch, capsys):
    from zoo import cli

    run = export_only_run(tmp_path)
    assert cli.main(["export", str(run), "--formats", "web"]) == 0
    printed = capsys.readouterr().out
    assert "web" in printed and "max abs diff 0.00e+00" in printed
    listed = json.loads((run / "export" / "manifest.json").read_text())["artifacts"]
    assert sorted(listed) == ["generator-b1.tflite", "generator.onnx", "web"]
    assert sorted(p.name for p in (run / "export" / "web").iterdir()) == PAGE_NAMES
    before = snapshot(run)

    assert cli.main(["export", str(run), "--formats", "web"]) == 2
    one_line_error(capsys, "already holds web/; pass --overwrite")
    assert snapshot(run) == before

    broken = tmp_path / "broken-page"
    shutil.copytree(web.PAGE_DIR, broken)
    (broken / "style.css").unlink()
    monkeypatch.setattr(web, "PAGE_DIR", broken)
    assert cli.main(["export", str(run), "--formats", "web", "--overwrite"]) == 2
    one_line_error(capsys, "the genzoo install lacks", "style.css")
    assert snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken-page", "cgan-mnist5k",
                                                          "ort-web"]
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in
                                                           (PRETRAINED / run.name).iterdir())


# ---- browser tier: the real onnxruntime-web in Chromium --------------------------------------
class StaticServer:
    """`python -m http.server` on a free port of 127.0.0.1, serving one folder."""

    def __init__(self, folder: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.process.poll() is None, "http.server exited"
                assert time.monotonic() < deadline, "http.server did not start in 30 s"
                time.sleep(0.1)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def serve():
    servers = []

    def start(folder):
        servers.append(StaticServer(folder))
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


def finish(page, runs: int):
    """Wait until the page has finished `runs` actions (CSS selector: no eval under the CSP)."""
    page.wait_for_selector(f'body[data-runs="{runs}"]', state="attached")


def canvas_rgb(page, selector) -> np.ndarray:
    data = page.evaluate(
        """selector => { const c = document.querySelector(selector);
             const d = c.getContext("2d").getImageData(0, 0, c.width, c.height);
             return {w: c.width, h: c.height, data: Array.from(d.data)}; }""", selector)
    return np.asarray(data["data"], np.uint8).reshape(data["h"], data["w"], 4)


def python_grid(generator, last, columns=None) -> np.ndarray:
    z = np.asarray(last["z"], np.float32).reshape(last["shape"][0], -1)
    images = to_uint8(generator.from_latents(z, last["labels"]))
    grid = make_grid(images, columns)
    return np.repeat(grid, 3, axis=-1) if grid.shape[-1] == 1 else grid


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("name", ["cgan-mnist5k", "gan-mnist5k", "vae-mnist5k"])
def test_page_draws_what_the_python_runtime_gives_on_its_latents(page, serve, tmp_path, name):
    converters.export_from_export(PRETRAINED / name / "export", tmp_path / "out", formats="web")
    folder = tmp_path / "out" / "web"
    manifest = json.loads((folder / "manifest.json").read_text())
    generator = runtime.load(folder / "generator.onnx")
    page.goto(serve(folder))
    finish(page, 1)  # the page generates once on load
    assert page.inner_text("#error") == ""

    page.fill("#n", "16")
    page.fill("#seed", "7")
    if manifest["num_classes"]:
        assert page.is_visible("#label")
        page.select_option("#label", "3")
    else:
        assert not page.is_visible("#label")
    page.click("#generate")
    finish(page, 2)
    last = page.evaluate("window.genzooLastRun")
    assert last["shape"] == [16, *manifest["image_shape"]] and last["seed"] == 7
    assert last["labels"] == ([3] * 16 if manifest["num_classes"] else None)
    z = np.asarray(last["z"], np.float32).reshape(16, manifest["latent_dim"])
    np.testing.assert_allclose(z, mulberry32_latents(7, 16, manifest["latent_dim"]), atol=1e-6)
    pixels = canvas_rgb(page, "#grid")
    expected = python_grid(generator, last)
    assert pixels.shape[:2] == expected.shape[:2]
    assert (pixels[..., 3] == 255).all()
    diff = np.abs(pixels[..., :3].astype(int) - expected).max()
    assert diff <= 1, diff
    print(f"{name}: 16 images in {last['ms']:.1f} ms in the page, max uint8 diff {diff}")
    assert "16 images in" in page.inner_text("#status")

    page.fill("#steps", "5")
    page.click("#interpolate")
    finish(page, 3)
    strip = page.evaluate("window.genzooLastRun")
    assert strip["kind"] == "strip" and strip["shape"][0] == 5
    height, width = manifest["image_shape"][:2]
    assert canvas_rgb(page, "#strip").shape[:2] == (height + 4, 5 * (width + 2) + 2)
    assert np.abs(canvas_rgb(page, "#strip")[..., :3].astype(int)
                  - python_grid(generator, strip, columns=5)).max() <= 1

    page.fill("#n", str(web.MAX_IMAGES + 1))
    page.click("#generate")
    finish(page, 4)
    assert page.is_visible("#error")
    assert page.inner_text("#error") == (
        f'images must be an integer from 1 to {web.MAX_IMAGES}, got "{web.MAX_IMAGES + 1}"')
    assert page.evaluate("window.genzooLastRun.kind") == "strip"  # nothing ran
    page.fill("#n", "4")
    page.click("#new-seed")  # a fresh seed, shown in the field, then a grid from it
    finish(page, 5)
    assert page.inner_text("#error") == "" and not page.is_visible("#error")
    seed = int(page.input_value("#seed"))
    assert page.evaluate("window.genzooLastRun.seed") == seed
    assert page.evaluate("window.genzooLastRun.shape[0]") == 4

    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == f"{manifest['family']}-seed{seed}.png"
    from PIL import Image

    saved = np.asarray(Image.open(download.value.path()).convert("RGB"))
    np.testing.assert_array_equal(saved, canvas_rgb(page, "#grid")[..., :3])
    assert page.genzoo_errors == []


@pytest.mark.slow  # `zoo export` subprocesses that import TensorFlow and convert to ONNX
def test_zoo_export_run_formats_web_through_the_cli(tmp_path):
    model = build_tiny("cgan")
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    result = subprocess.run([*ZOO, "export", str(run), "--formats", "web"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = run / "export" / "web"
    assert sorted(p.name for p in folder.iterdir()) == PAGE_NAMES
    assert sorted(json.loads((run / "export" / "manifest.json").read_text())["artifacts"]) == [
        "web"]
    assert "copied_from" not in json.loads((run / "export" / "manifest.json").read_text())[
        "artifacts"]["web"]  # no ONNX in this export: converted for the page
    z = np.random.default_rng(1).standard_normal((4, 16), dtype=np.float32)
    labels = np.array([0, 3, 3, 9], np.int32)
    got = runtime.load(folder / "generator.onnx").from_latents(z, labels)
    expected = np.asarray(model.generator([z, labels], training=False))
    assert np.abs(got - expected).max() <= 1e-4

    before = snapshot(run)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([*ZOO, "export", str(run), "--formats", "web", "--overwrite"],
                            capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, web.ORT_WEB_ENV: str(empty)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: onnxruntime-web 1.30.0 not found")
    assert snapshot(run) == before
