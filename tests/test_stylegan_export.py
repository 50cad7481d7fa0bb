"""Export, runtime, CLI, server and page of a style-based GAN (docs/stylegan_contract.md).

Fast tier: a stand-in model that follows the contract with tiny Keras networks (mapping,
synthesis, generator = synthesis(repeat(mapping(z)))) exported to ONNX and TFLite: every
artifact matches its Keras network, the runtime's controls match the contract's pseudo-code on
the Keras networks, default controls equal the generator artifact, and other families refuse
the controls. Slow tier: the real `stylegan` family end to end, the CLI, the server and the
playground page in headless Chromium.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from exporters import runtime, sampling
from exporters import style_controls as sc

LATENT, W_DIM, NUM_WS = 8, 8, 4


class StandIn:
    """A contract-shaped model (the attributes the converters and runtime duck-type on) on tiny
    dense networks; `sample` is the contract's pseudo-code on its Keras networks. It exports in
    seconds, and its w_avg and directions are exact numpy values the tests can recompute."""

    family = "stylegan"

    def __init__(self, num_classes=0, image_shape=(8, 8, 1), seed=0):
        import keras

        keras.utils.set_random_seed(seed)
        self.latent_dim, self.w_dim, self.num_ws = LATENT, W_DIM, NUM_WS
        self.num_classes, self.image_shape = num_classes, tuple(image_shape)
        z = keras.Input((LATENT,), name="z")
        inputs, h = [z], z  # a one-input model takes a tensor, not a list (as zoo's networks)
        if num_classes:
            label = keras.Input((), dtype="int32", name="label")
            inputs.append(label)
            h = keras.layers.Concatenate()([z, keras.layers.Embedding(num_classes, 4)(label)])
        h = keras.layers.Dense(16, activation="leaky_relu")(h)
        inputs = inputs if num_classes else z
        self.mapping = keras.Model(inputs, keras.layers.Dense(W_DIM)(h), name="mapping")
        ws = keras.Input((NUM_WS, W_DIM), name="ws")
        x = keras.layers.Dense(32, activation="leaky_relu")(keras.layers.Flatten()(ws))
        x = keras.layers.Dense(int(np.prod(image_shape)), activation="tanh")(x)
        self.synthesis = keras.Model(ws, keras.layers.Reshape(image_shape)(x), name="synthesis")
        w = self.mapping(inputs)
        self.generator = keras.Model(
            inputs, self.synthesis(keras.layers.RepeatVector(NUM_WS)(w)), name="generator")
        sample_w = self.map(sampling.latents(512, LATENT, 1), self.balanced(512))
        self.w_avg = sample_w.mean(axis=0)
        self.directions = sc.pca_directions(sample_w, k=3)

    def balanced(self, n):
        return (np.arange(n) % self.num_classes).astype(np.int32) if self.num_classes else None

    def map(self, z, labels=None):
        feeds = z if labels is None else [z, np.asarray(labels, np.int32)]
        return np.asarray(self.mapping(feeds, training=False), np.float32)

    def export_networks(self):
        return {"mapping": self.mapping, "synthesis": self.synthesis}

    def style_manifest(self):
        return {"w_dim": W_DIM, "num_ws": NUM_WS, "w_avg": self.w_avg.tolist(),
                "directions": self.directions, "truncation_default": 1.0}

    def sample(self, n, labels=None, seed=None, *, truncation=1.0, mix=None, edits=None):
        psi = sc.check_truncation(truncation)
        mix = sc.check_mix(mix, NUM_WS)
        edits = sc.check_edits(edits, self.directions)
        w = self.map(sampling.latents(n, LATENT, seed), labels)
        mix_w = self.map(sampling.latents(n, LATENT, mix[0]), labels) if mix else None
        ws = sc.style_inputs(w, NUM_WS, self.w_avg, psi, mix_w, mix[1] if mix else None, edits,
                             self.directions)
        return np.asarray(self.synthesis(ws, training=False), np.float32)


@pytest.fixture(scope="module")
def stand_in_export(tmp_path_factory):
    import exporters

    model = StandIn(num_classes=3)
    out = tmp_path_factory.mktemp("standin") / "export"
    report = exporters.export(model, out, formats=("onnx", "tflite"), quantize="int8")
    return model, out, report



class PlainGan:
    """A family without styles: the stand-in's generator alone (no export_networks)."""

    family = "gan"

    def __init__(self):
        model = StandIn(num_classes=0, seed=1)
        self.generator, self.latent_dim = model.generator, model.latent_dim
        self.num_classes, self.image_shape = 0, model.image_shape


LABELS = [0, 1, 2, 0, 1]
CONTROLS = [
    {},
    {"truncation": 0.5},
    {"truncation": 0.0},
    {"mix": (4, 2)},
    {"edits": {"pc0": 2.0, "pc1": -1.0}},
    {"truncation": 0.7, "mix": (9, 1), "edits": {"pc2": 1.5}},
]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """(model, export folder, manifest): ONNX and TFLite (batch 1) of the conditional stand-in."""
    import exporters

    model = StandIn(num_classes=3)
    out = tmp_path_factory.mktemp("standin") / "export"
    report = exporters.export(model, out, formats=("onnx", "tflite"), tflite_batch_sizes=(1,))
    return model, out, report


@pytest.fixture(scope="module")
def plain_export(tmp_path_factory):
    import exporters

    out = tmp_path_factory.mktemp("plain") / "export"
    exporters.export(PlainGan(), out, formats=("onnx",))
    return out


def test_mapping_and_synthesis_are_exported_and_verified(stand_in):
    model, out, report = stand_in
    artifacts = report["artifacts"]
    roles = {name: entry["role"] for name, entry in artifacts.items()}
    assert roles == {"generator.onnx": "generator", "generator-b1.tflite": "generator",
                     "mapping.onnx": "mapping", "mapping-b1.tflite": "mapping",
                     "synthesis.onnx": "synthesis", "synthesis-b1.tflite": "synthesis"}
    for entry in artifacts.values():
        assert entry["verification"]["passed"] and entry["verification"]["max_abs_diff"] <= 1e-4
    assert [i["name"] for i in artifacts["mapping.onnx"]["inputs"]] == ["z", "label"]
    assert [o["name"] for o in artifacts["mapping.onnx"]["outputs"]] == ["w"]
    assert artifacts["synthesis.onnx"]["inputs"][0]["shape"][1:] == [NUM_WS, W_DIM]
    assert set(artifacts["mapping-b1.tflite"]["ops"]) <= set(
        artifacts["generator-b1.tflite"]["ops"])  # builtins, as the generator's
    style = json.loads((out / "manifest.json").read_text())["style"]
    assert (style["w_dim"], style["num_ws"], style["truncation_default"]) == (W_DIM, NUM_WS, 1.0)
    np.testing.assert_allclose(style["w_avg"], model.w_avg, rtol=0, atol=1e-7)
    assert style["directions"] == json.loads(json.dumps(model.directions))


@pytest.mark.parametrize("name", ["synthesis.onnx", "synthesis-b1.tflite"])
def test_synthesis_artifact_equals_keras_on_controlled_styles(stand_in, name):
    """Verification feeds repeat(mapping(z)); the controls feed per-layer styles that differ
    by layer (mixed, edited, far from w): the artifact must follow Keras there too."""
    model, out, _ = stand_in
    ws = np.random.default_rng(0).normal(0, 2, (5, NUM_WS, W_DIM)).astype(np.float32)
    backend = runtime.BACKENDS[out.joinpath(name).suffix](out / name)
    got = backend.run({"ws": ws})["images"]
    assert np.abs(got - np.asarray(model.synthesis(ws))).max() <= 1e-4


@pytest.mark.parametrize("artifact", ["generator.onnx", "generator-b1.tflite"])
@pytest.mark.parametrize("controls", CONTROLS, ids=lambda c: ",".join(c) or "default")
def test_runtime_controls_equal_the_contract_on_keras(stand_in, artifact, controls):
    model, out, _ = stand_in
    generator = runtime.load(out / artifact)
    assert isinstance(generator, runtime.StyleGenerator)
    assert generator.format == artifact.rsplit(".", 1)[1]
    expected = model.sample(5, LABELS, seed=3, **controls)
    got = generator.generate_float(5, LABELS, seed=3, batch_size=2, **controls)
    assert np.abs(got - expected).max() <= 1e-5


def test_default_controls_equal_the_generator_artifact(stand_in):
    _, out, _ = stand_in
    styled, plain = runtime.load(out), runtime.load(out, styles=False)
    assert type(plain) is runtime.Generator and plain.path.name == "generator.onnx"
    np.testing.assert_array_equal(styled.generate(7, [2] * 7, seed=11),
                                  plain.generate(7, [2] * 7, seed=11))
    assert np.abs(styled.generate_float(7, [2] * 7, seed=11)
                  - plain.generate_float(7, [2] * 7, seed=11)).max() <= 1e-5
    with pytest.raises(ValueError, match=r"truncation=0.5 needs a style-based .*styles=False"):
        plain.generate(1, [0], seed=0, truncation=0.5)


def test_what_the_controls_do(stand_in):
    _, out, _ = stand_in
    g = runtime.load(out)
    average = g.generate_float(6, [1] * 6, seed=0, truncation=0.0)
    assert np.abs(average - average[:1]).max() <= 1e-6  # psi = 0: one image for every seed
    assert np.abs(g.generate_float(6, [1] * 6, seed=5, truncation=0.0) - average).max() <= 1e-6
    seed_b = g.generate(4, [1] * 4, seed=8)
    np.testing.assert_array_equal(g.generate(4, [1] * 4, seed=2, mix=(8, 0)), seed_b)
    plain = g.generate(4, [1] * 4, seed=2)
    np.testing.assert_array_equal(g.generate(4, [1] * 4, seed=2, mix=(8, NUM_WS)), plain)
    assert not np.array_equal(g.generate(4, [1] * 4, seed=2, mix=(8, 1)), plain)
    np.testing.assert_array_equal(g.generate(4, [1] * 4, seed=2, edits={"pc0": 0}), plain)
    assert not np.array_equal(g.generate(4, [1] * 4, seed=2, edits={"pc0": 3}), plain)


def test_interpolation_takes_the_controls_and_ends_at_the_seeds(stand_in):
    _, out, _ = stand_in
    g = runtime.load(out)
    controls = {"truncation": 0.6, "mix": (5, 2), "edits": {"pc1": 1.0}}
    path = g.interpolate(3, 4, 6, label=2, **controls)
    np.testing.assert_array_equal(path[:1], g.generate(1, [2], seed=3, **controls))
    np.testing.assert_array_equal(path[-1:], g.generate(1, [2], seed=4, **controls))
    assert np.abs(g.interpolate_float(3, 4, 6, 2, truncation=0.0) -
                  g.generate_float(1, [2], seed=0, truncation=0.0)).max() <= 1e-6


def test_metadata_has_the_style_block(stand_in):
    model, out, _ = stand_in
    meta = runtime.load(out / "generator-b1.tflite").metadata()
    assert meta["artifact"] == "mapping-b1.tflite + synthesis-b1.tflite"
    assert meta["style"]["num_ws"] == NUM_WS and meta["style"]["w_dim"] == W_DIM
    assert meta["style"]["directions"] == {
        name: d["explained_variance"] for name, d in model.directions.items()}


@pytest.mark.parametrize(("controls", "fragment"), [
    ({"truncation": 1.5}, "truncation must be a number in [0, 1]"),
    ({"truncation": "0.5"}, "got '0.5'"),
    ({"mix": (1, NUM_WS + 1)}, f"from_layer must be in [0, {NUM_WS}]"),
    ({"mix": "1-2"}, "SEED_B:FROM_LAYER"),
    ({"edits": {"pc7": 1}}, "unknown direction 'pc7'"),
    ({"edits": {"pc0": float("nan")}}, "'pc0' must be a finite number"),
])
def test_bad_controls_are_one_error_naming_the_value(stand_in, controls, fragment):
    _, out, _ = stand_in
    with pytest.raises(ValueError) as error:
        runtime.load(out).generate(1, [0], seed=0, **controls)
    assert fragment in str(error.value)


@pytest.mark.parametrize(("controls", "fragment"), [
    ({"truncation": 0.5}, "truncation=0.5 needs a style-based generator"),
    ({"mix": (1, 2)}, "needs a style-based generator"),
    ({"edits": {"pc0": 1}}, "need a style-based generator"),
])
def test_controls_on_a_model_without_styles_are_refused(plain_export, controls, fragment):
    g = runtime.load(plain_export)
    assert type(g) is runtime.Generator
    for call in (lambda: g.generate(2, seed=0, **controls),
                 lambda: g.interpolate(0, 1, 3, **controls)):
        with pytest.raises(ValueError, match="style-based") as error:
            call()
        assert fragment in str(error.value) and "gan model has no styles" in str(error.value)
    g.generate(2, seed=0, truncation=1.0, mix=None, edits={})  # the defaults are fine


# ---- zoo sample ----------------------------------------------------------------------------
def test_cli_sample_with_controls_writes_the_runtime_images(stand_in, tmp_path, capsys):
    from zoo import cli

    _, out, _ = stand_in
    target = tmp_path / "s.npy"
    assert cli.main(["sample", str(out), "--n", "5", "--labels", "0,1,2,0,1", "--seed", "3",
                     "--truncation", "0.7", "--mix", "9:1", "--edit", "pc2=1.5,pc0=-1",
                     "--out", str(target)]) == 0
    expected = runtime.load(out).generate(5, LABELS, seed=3, truncation=0.7, mix=(9, 1),
                                          edits={"pc2": 1.5, "pc0": -1.0})
    np.testing.assert_array_equal(np.load(target), expected)
    assert "samples:" in capsys.readouterr().out


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--truncation", "half"], "--truncation must be a number in [0, 1], got 'half'"),
    (["--truncation", "2"], "truncation must be a number in [0, 1] (1 = none), got 2.0"),
    (["--mix", "9"], "--mix must be SEED_B:FROM_LAYER (two integers), got '9'"),
    (["--mix", "9:7"], f"from_layer must be in [0, {NUM_WS}]"),
    (["--edit", "pc0"], "edits must be NAME=AMOUNT"),
    (["--edit", "up=1"], "unknown direction 'up'"),
])
def test_cli_bad_controls_are_one_line(stand_in, tmp_path, capsys, flags, fragment):
    from zoo import cli

    _, out, _ = stand_in
    target = tmp_path / "s.png"
    assert cli.main(["sample", str(out), "--n", "1", "--labels", "0", *flags,
                     "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and not target.exists()


def test_cli_controls_on_a_model_without_styles(plain_export, tmp_path, capsys):
    from zoo import cli

    assert cli.main(["sample", str(plain_export), "--n", "1", "--truncation", "0.5",
                     "--out", str(tmp_path / "s.png")]) == 2
    assert "needs a style-based generator" in capsys.readouterr().err


# ---- zoo serve ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def style_server(stand_in):
    from test_serve import _running_server

    yield from _running_server(stand_in[1] / "generator.onnx", max_delay=0.02)


@pytest.fixture(scope="module")
def plain_server(plain_export):
    from test_serve import _running_server

    yield from _running_server(plain_export / "generator.onnx")


def images_of(body):
    return np.asarray(json.loads(body)["images"], np.uint8)


def test_server_generate_with_controls_equals_the_runtime(stand_in, style_server):
    import io

    from PIL import Image
    from test_serve import call

    from exporters.images import make_grid

    address = style_server.server_address[:2]
    g = runtime.load(stand_in[1])
    controls = {"truncation": 0.5, "mix": (3, 2), "edits": {"pc1": -1.5}}
    expected = g.generate(5, LABELS, seed=5, **controls)
    status, _, body = call(address, "POST", "/v1/generate", {
        "n": 5, "labels": LABELS, "seed": 5, "truncation": 0.5,
        "mix": {"seed_b": 3, "from_layer": 2}, "edits": {"pc1": -1.5}})
    assert status == 200
    np.testing.assert_array_equal(images_of(body), expected)
    status, kind, body = call(address, "GET", "/v1/generate.png?n=5&labels=0,1,2,0,1&seed=5"
                              "&truncation=0.5&mix=3:2&edits=pc1=-1.5")
    assert (status, kind) == (200, "image/png")
    picture = np.asarray(Image.open(io.BytesIO(body)))
    np.testing.assert_array_equal(picture.reshape(make_grid(expected).shape), make_grid(expected))

    path = g.interpolate(1, 2, 4, 1, **controls)
    status, _, body = call(address, "POST", "/v1/interpolate", {
        "seed_a": 1, "seed_b": 2, "n": 4, "label": 1, "truncation": 0.5, "mix": "3:2",
        "edits": {"pc1": -1.5}})
    assert status == 200
    np.testing.assert_array_equal(images_of(body), path)
    status, _, body = call(address, "GET", "/v1/interpolate.png?seed_a=1&seed_b=2&n=4&label=1"
                           "&truncation=0.5&mix=3:2&edits=pc1=-1.5")
    assert status == 200
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(body))).reshape(
        make_grid(path, columns=4).shape), make_grid(path, columns=4))

    z = sampling.latents(2, LATENT, 5)
    status, _, body = call(address, "POST", "/v2/models/generator/infer", {
        "inputs": [{"name": "z", "datatype": "FP32", "shape": [2, LATENT],
                    "data": z.ravel().tolist()},
                   {"name": "label", "datatype": "INT32", "shape": [2], "data": [0, 1]}],
        "parameters": {"truncation": 0.5, "mix": "3:2", "edits": "pc1=-1.5"}})
    assert status == 200
    got = np.asarray(json.loads(body)["outputs"][0]["data"], np.float32).reshape(2, 8, 8, 1)
    assert np.abs(got - g.generate_float(2, [0, 1], seed=5, **controls)).max() <= 1e-6


def test_server_metadata_and_openapi_show_the_styles(stand_in, style_server):
    from test_serve import call

    address = style_server.server_address[:2]
    meta = json.loads(call(address, "GET", "/v1/metadata")[2])
    assert meta["style"]["num_ws"] == NUM_WS
    assert sorted(meta["style"]["directions"]) == ["pc0", "pc1", "pc2"]
    spec = json.loads(call(address, "GET", "/openapi.json")[2])
    example = spec["paths"]["/v1/generate"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    assert {"truncation", "mix", "edits"} <= set(example)
    names = [p["name"] for p in spec["paths"]["/v1/generate.png"]["get"]["parameters"]]
    assert {"truncation", "mix", "edits"} <= set(names)
    v2 = json.loads(call(address, "GET", "/v2/models/generator")[2])
    assert v2["parameters"]["style_parameters"] == ["truncation", "mix", "edits"]


@pytest.mark.parametrize(("method", "path", "body", "fragment"), [
    ("POST", "/v1/generate", {"n": 1, "labels": [0], "truncation": 1.5}, "got 1.5"),
    ("POST", "/v1/generate", {"n": 1, "labels": [0], "truncation": "x"}, "got 'x'"),
    ("POST", "/v1/generate", {"n": 1, "labels": [0], "mix": {"seed_b": 1, "from_layer": 9}},
     "got 9"),
    ("POST", "/v1/generate", {"n": 1, "labels": [0], "mix": {"seed": 1}}, "{'seed': 1}"),
    ("POST", "/v1/generate", {"n": 1, "labels": [0], "edits": {"pc9": 1}}, "'pc9'"),
    ("GET", "/v1/generate.png?n=1&labels=0&truncation=big", None, "got 'big'"),
    ("GET", "/v1/generate.png?n=1&labels=0&mix=1", None, "got '1'"),
    ("GET", "/v1/generate.png?n=1&labels=0&edits=pc0=x", None, "'pc0=x'"),
    ("POST", "/v1/interpolate", {"seed_a": 1, "seed_b": 2, "label": 0, "truncation": -1},
     "got -1"),
    ("POST", "/v2/models/generator/infer",
     {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, LATENT], "data": [0] * LATENT},
                 {"name": "label", "datatype": "INT32", "shape": [1], "data": [0]}],
      "parameters": {"mix": "2:99"}}, "got 99"),
])
def test_server_bad_controls_are_4xx_naming_the_value(style_server, method, path, body,
                                                      fragment):
    from test_serve import call

    status, kind, answer = call(style_server.server_address[:2], method, path, body)
    assert 400 <= status < 500 and kind == "application/json"
    assert fragment in json.loads(answer)["error"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/generate", {"n": 1, "truncation": 0.5}),
    ("POST", "/v1/generate", {"n": 1, "mix": {"seed_b": 1, "from_layer": 0}}),
    ("GET", "/v1/generate.png?n=1&edits=pc0=1", None),
    ("POST", "/v1/interpolate", {"seed_a": 1, "seed_b": 2, "truncation": 0.0}),
    ("POST", "/v2/models/generator/infer",
     {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, LATENT], "data": [0] * LATENT}],
      "parameters": {"truncation": 0.5}}),
])
def test_server_controls_on_a_model_without_styles_are_4xx(plain_server, method, path, body):
    from test_serve import call

    status, _, answer = call(plain_server.server_address[:2], method, path, body)
    assert status == 400
    assert "a style-based generator" in json.loads(answer)["error"]
    assert "gan model has no styles" in json.loads(answer)["error"]
    meta = json.loads(call(plain_server.server_address[:2], "GET", "/v1/metadata")[2])
    assert "style" not in meta


# ---- the playground page in headless Chromium ------------------------------------------------
def cells(page, shape, padding=2):
    """The grid canvas cut back into its n images (make_grid's layout, read from the pixels)."""
    from test_playground import canvas_rgb

    n, height, width = shape[:3]
    grid, columns = canvas_rgb(page, "#grid"), int(np.ceil(np.sqrt(n)))
    tops = [padding + (i // columns) * (height + padding) for i in range(n)]
    lefts = [padding + (i % columns) * (width + padding) for i in range(n)]
    return [grid[t : t + height, left : left + width] for t, left in zip(tops, lefts)]


@pytest.mark.slow
@pytest.mark.browser
def test_page_truncation_zero_draws_one_image_for_every_seed(page, stand_in, style_server):
    from test_playground import canvas_rgb, click_and_wait, open_page, rgb

    from exporters.images import make_grid

    generator = runtime.load(stand_in[1])
    open_page(page, style_server)
    assert page.is_visible("#truncation") and page.is_visible("#mix-layer")
    assert page.get_attribute("#mix-layer", "max") == str(NUM_WS)
    for name, share in generator.metadata()["style"]["directions"].items():
        assert f"{name} ({100 * share:.1f}%)" in page.text_content("#edits")
    page.select_option("#label", "1")
    page.fill("#n", "4")
    page.fill("#seed", "7")
    click_and_wait(page, "#generate")
    plain = make_grid(generator.generate(4, [1] * 4, seed=7))
    np.testing.assert_array_equal(canvas_rgb(page, "#grid"), rgb(plain))
    first = cells(page, (4, 8, 8, 1))
    assert not all(np.array_equal(first[0], cell) for cell in first[1:])  # seeds differ

    page.fill("#truncation", "0")  # psi 0: the average w, the same image in every cell
    assert page.text_content("#truncation-value") == "0"
    click_and_wait(page, "#generate")
    assert page.is_hidden("#error"), page.text_content("#error")
    drawn = cells(page, (4, 8, 8, 1))
    assert all(np.array_equal(drawn[0], cell) for cell in drawn[1:])
    np.testing.assert_array_equal(
        canvas_rgb(page, "#grid"), rgb(make_grid(generator.generate(4, [1] * 4, seed=7,
                                                                    truncation=0.0))))

    page.fill("#truncation", "0.5")  # every control, as the runtime draws them
    page.check("#mix-on")
    page.fill("#mix-seed", "3")
    page.fill("#mix-layer", "2")
    page.fill("#edit-pc1", "-1.5")
    click_and_wait(page, "#generate")
    expected = generator.generate(4, [1] * 4, seed=7, truncation=0.5, mix=(3, 2),
                                  edits={"pc1": -1.5})
    np.testing.assert_array_equal(canvas_rgb(page, "#grid"), rgb(make_grid(expected)))
    click_and_wait(page, "#interpolate")
    path = generator.interpolate(0, 1, 8, 1, truncation=0.5, mix=(3, 2), edits={"pc1": -1.5})
    np.testing.assert_array_equal(canvas_rgb(page, "#strip"),
                                  rgb(make_grid(path, columns=8)))
    assert page.genzoo_errors == []


@pytest.mark.slow
@pytest.mark.browser
def test_page_hides_the_styles_for_other_families(page, plain_server):
    from test_playground import click_and_wait, open_page

    open_page(page, plain_server)
    assert page.is_hidden("#style-field") and page.is_hidden("#truncation")
    click_and_wait(page, "#generate")  # the plain request: no control sent, no error
    assert page.is_hidden("#error"), page.text_content("#error")
    assert page.genzoo_errors == []


# ---- the real family (slow: builds and exports zoo's stylegan) -------------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """(model, .keras file, export folder, manifest) of a tiny conditional stylegan whose w_avg
    is the mean of its mapped w (as training tracks it) and with 3 directions."""
    import keras
    from harness import TINY_STYLEGAN

    import exporters
    import zoo

    keras.utils.set_random_seed(0)
    model = zoo.build("stylegan", image_shape=(16, 16, 1), num_classes=3, **TINY_STYLEGAN)
    labels = (np.arange(512) % 3).astype(np.int32)
    model.w_avg.assign(model.map(sampling.latents(512, model.latent_dim, 1), labels).mean(0))
    model.find_directions(n=512, k=3)
    folder = tmp_path_factory.mktemp("stylegan")
    model.save(folder / "model.keras")
    report = exporters.export(model, folder / "export", formats=("onnx", "tflite"),
                              tflite_batch_sizes=(1,))
    return model, folder / "model.keras", folder / "export", report


@pytest.mark.slow
def test_real_family_exports_every_network_within_tolerance(real):
    model, _, _, report = real
    diffs = {name: entry["verification"]["max_abs_diff"]
             for name, entry in report["artifacts"].items()}
    assert sorted(diffs) == ["generator-b1.tflite", "generator.onnx", "mapping-b1.tflite",
                             "mapping.onnx", "synthesis-b1.tflite", "synthesis.onnx"]
    assert max(diffs.values()) <= 1e-4, diffs
    style = report["style"]
    assert (style["num_ws"], style["w_dim"]) == (model.num_ws, model.w_dim)
    assert sorted(style["directions"]) == ["pc0", "pc1", "pc2"]


@pytest.mark.slow
@pytest.mark.parametrize("artifact", ["generator.onnx", "generator-b1.tflite"])
@pytest.mark.parametrize("controls", CONTROLS, ids=lambda c: ",".join(c) or "default")
def test_real_family_runtime_equals_keras_sample(real, artifact, controls):
    from exporters.images import to_uint8

    model, _, out, _ = real
    generator = runtime.load(out / artifact)
    expected = model.sample(5, LABELS, seed=3, **controls)
    got = generator.generate_float(5, LABELS, seed=3, **controls)
    assert np.abs(got - expected).max() <= 1e-5
    if artifact.endswith(".onnx"):
        np.testing.assert_array_equal(generator.generate(5, LABELS, seed=3, **controls),
                                      to_uint8(expected))


@pytest.mark.slow
def test_real_family_cli_sample_from_keras_and_export_agree(real, tmp_path):
    from zoo import cli

    _, keras_file, out, _ = real
    flags = ["--n", "5", "--labels", "0,1,2,0,1", "--seed", "3", "--truncation", "0.7",
             "--mix", "9:1", "--edit", "pc2=1.5"]
    for source, name in ((keras_file, "keras.npy"), (out, "export.npy")):
        assert cli.main(["sample", str(source), *flags, "--out", str(tmp_path / name)]) == 0
    from_keras, from_export = np.load(tmp_path / "keras.npy"), np.load(tmp_path / "export.npy")
    np.testing.assert_array_equal(from_export, from_keras)
    np.testing.assert_array_equal(from_export, runtime.load(out).generate(
        5, LABELS, seed=3, truncation=0.7, mix=(9, 1), edits={"pc2": 1.5}))


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["int8", "int16x8"])
def test_quantized_synthesis_is_exported_verified_and_used_by_the_runtime(tmp_path, quantization):
    """--quantize int8 / int16x8: a quantized synthesis file calibrated on ws =
    repeat(mapping(z)) within 0.2 of Keras (the mapping stays float32), and a quantized
    generator loads on it."""
    import exporters

    # int16x8 is unconditional only (its calibration cannot record the int32 label)
    num_classes = 3 if quantization == "int8" else 0
    labels = [0, 1, 2] * 2 if num_classes else None
    model = StandIn(num_classes=num_classes, seed=2)
    report = exporters.export(model, tmp_path / "export", formats=("tflite",),
                              quantize=quantization, tflite_batch_sizes=(1,))
    artifacts = report["artifacts"]
    quantized = f"synthesis-{quantization}-b1.tflite"
    assert sorted(artifacts) == ["generator-b1.tflite", f"generator-{quantization}-b1.tflite",
                                 "mapping-b1.tflite", "synthesis-b1.tflite", quantized]
    check = artifacts[quantized]["verification"]
    assert check["passed"] and check["max_abs_diff"] <= 0.2 and check["tolerance"] == 0.2
    assert artifacts[quantized]["quantization"] == quantization
    generator = runtime.load(tmp_path / "export" / f"generator-{quantization}-b1.tflite")
    assert generator.metadata()["artifact"] == f"mapping-b1.tflite + {quantized}"
    assert generator.metadata()["quantization"] == quantization
    controls = {"truncation": 0.7, "mix": (4, 2), "edits": {"pc0": 1.0}}
    got = generator.generate_float(6, labels, seed=1, **controls)
    assert np.abs(got - model.sample(6, labels, seed=1, **controls)).max() <= 0.2


def test_int16x8_of_a_conditional_model_is_one_clear_error_before_any_work(tmp_path):
    import exporters

    with pytest.raises(ValueError, match=r"quantize='int16x8' needs an unconditional model .*"
                                         r"num_classes=3.*use int8 or dynamic"):
        exporters.export(StandIn(num_classes=3), tmp_path / "export", formats=("tflite",),
                         quantize="int16x8")
    assert not (tmp_path / "export").exists()
