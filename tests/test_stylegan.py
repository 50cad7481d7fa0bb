"""The stylegan family: networks, training parts, the controls in Keras, directions, export.

The shared checks (config round-trip, fit, determinism, .keras round-trip, 1-vs-2 replica
parity, bad sample input) run through tests/harness.py (tests/test_models.py lists stylegan).
Fast tier: one tiny 16x16 model built once; training, round-trips and export are slow.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from exporters.sampling import latents
from zoo import style_networks
from zoo.stylegan import StyleGAN

TINY = {"image_shape": (16, 16, 1), "latent_dim": 8, "w_dim": 8, "mapping_layers": 2,
        "base_filters": 4, "max_filters": 8, "d_base_filters": 4, "embedding_dim": 4, "seed": 3}


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def model():
    """A tiny unconditional stylegan with a non-zero w_avg and two directions."""
    keras.utils.set_random_seed(0)
    built = zoo.build("stylegan", **TINY)
    built.w_avg.assign(built.map(latents(64, 8, 9)).mean(axis=0))
    built.find_directions(n=256, k=2, seed=1)
    return built


@pytest.fixture(scope="module")
def conditional():
    keras.utils.set_random_seed(0)
    return zoo.build("stylegan", **TINY, num_classes=3)


# ---- networks -------------------------------------------------------------------------------
def test_shapes_and_the_contract_attributes(model):
    # 16x16: 4 -> 8 -> 16, two convs per doubling and the start conv, plus the last toRGB
    assert (model.num_ws, model.w_dim, model.latent_dim, model.family) == (6, 8, 8, "stylegan")
    z = latents(3, 8, 0)
    w = numpy(model.mapping(z))
    assert w.shape == (3, 8)
    ws = np.repeat(w[:, None], model.num_ws, axis=1)
    images = numpy(model.synthesis(ws))
    assert images.shape == (3, 16, 16, 1) and np.abs(images).max() <= 1.0
    # generator = synthesis(repeat(mapping(z))): no truncation
    np.testing.assert_allclose(numpy(model.generator(z)), images, atol=1e-6)
    np.testing.assert_allclose(model.sample(3, seed=0), images, atol=1e-6)
    assert [t.name for t in model.synthesis.outputs] and model.synthesis.input.shape[1:] == (6, 8)
    networks = model.export_networks()
    assert networks["mapping"] is model.mapping and networks["synthesis"] is model.synthesis
    manifest = model.style_manifest()
    assert (manifest["w_dim"], manifest["num_ws"], manifest["truncation_default"]) == (8, 6, 1.0)
    np.testing.assert_allclose(manifest["w_avg"], numpy(model.w_avg))
    assert manifest["directions"] == model.directions and sorted(model.directions) == ["pc0", "pc1"]


def test_sampling_uses_the_ema_copy(model):
    assert model.ema_decay > 0 and model.raw_generator is not model.generator
    assert model.mapping is model.generator.get_layer("mapping")
    assert not model.generator.trainable


def test_conditional_mapping_takes_labels(conditional):
    assert conditional.conditional and not StyleGAN(image_shape=(16, 16, 1), base_filters=4,
                                                    max_filters=8).conditional
    z = latents(4, 8, 0)
    a = numpy(conditional.mapping([z, np.array([0, 1, 2, 0], np.int32)]))
    b = numpy(conditional.mapping([z, np.array([1, 1, 2, 0], np.int32)]))
    assert np.abs(a[0] - b[0]).max() > 1e-4 and np.array_equal(a[1:], b[1:])
    images = conditional.sample(4, labels=[0, 1, 2, 0], seed=0, truncation=0.5, mix=(1, 2))
    assert images.shape == (4, 16, 16, 1)


def test_modulation_equals_per_sample_weights():
    """x * s -> conv(W) -> * d is StyleGAN2's conv with per-sample weights W * s, demodulated."""
    layer = style_networks.ModulatedConv2D(5, 0, use_noise=False, activation=None)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    ws = np.random.default_rng(1).standard_normal((2, 1, 4)).astype(np.float32)
    out = numpy(layer([x, ws]))
    styles = numpy(layer.affine(ws[:, 0]))
    kernel = numpy(layer.kernel) * layer.weight_gain
    for i in range(2):
        weights = kernel * styles[i][None, None, :, None]
        weights = weights / np.sqrt((weights**2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
        expected = numpy(tf.nn.conv2d(x[i : i + 1], weights, 1, "SAME"))
        np.testing.assert_allclose(out[i : i + 1], expected, atol=1e-5)


def test_synthesis_graph_has_no_random_ops(model):
    """Fixed noise buffers: the same ws give the same images, and the traced graph that the
    exporters convert holds no random op."""
    ws = np.repeat(model.map(latents(2, 8, 4))[:, None], model.num_ws, axis=1)
    np.testing.assert_array_equal(numpy(model.synthesis(ws)), numpy(model.synthesis(ws)))
    for network, spec in ((model.synthesis, [None, model.num_ws, 8]),
                          (model.generator, [None, 8])):
        graph = tf.function(lambda x, net=network: net(x, training=False)).get_concrete_function(
            tf.TensorSpec(spec, tf.float32)).graph.as_graph_def()
        op_types = {node.op for node in graph.node} | {
            node.op for function in graph.library.function for node in function.node_def}
        assert not {op for op in op_types if "Random" in op}, op_types
        assert "Conv2DBackpropInput" not in op_types  # resize + conv, no transposed conv


# ---- training parts -------------------------------------------------------------------------
def test_style_mixing_takes_later_layers_from_the_second_latent():
    mixing = zoo.build("stylegan", **{**TINY, "style_mixing": 1.0})
    mapping = mixing.raw_generator.get_layer("mapping")
    z = latents(16, 8, 0)
    ws, w = mixing._mixed_styles(mapping, tf.constant(z), None, 16)
    ws, w = numpy(ws), numpy(w)
    for row in range(16):
        same = np.all(ws[row] == w[row], axis=1)
        cutoff = int(np.argmin(same))  # first layer styled by the second latent
        assert 1 <= cutoff < mixing.num_ws and same[:cutoff].all() and not same[cutoff:].any()
        assert np.all(ws[row, cutoff:] == ws[row, -1])
    mixing.style_mixing = 0.0
    ws, w = mixing._mixed_styles(mapping, tf.constant(z), None, 16)
    assert np.all(numpy(ws) == numpy(w)[:, None])


# ---- the controls ---------------------------------------------------------------------------
def test_truncation_zero_gives_every_seed_the_average_image(model):
    images = model.sample(4, seed=0, truncation=0.0)
    average = numpy(model.synthesis(np.repeat(numpy(model.w_avg)[None, None], 6, axis=1)))
    np.testing.assert_allclose(images, np.repeat(average, 4, axis=0), atol=1e-6)
    assert np.abs(model.sample(4, seed=0, truncation=0.5) - images).max() > 1e-3
    np.testing.assert_array_equal(model.sample(4, seed=0, truncation=1.0), model.sample(4, seed=0))


def test_mixing_ends_are_the_two_seeds(model):
    a, b = model.sample(3, seed=1), model.sample(3, seed=2)
    np.testing.assert_allclose(model.sample(3, seed=1, mix=(2, 0)), b, atol=1e-6)
    np.testing.assert_allclose(model.sample(3, seed=1, mix=(2, model.num_ws)), a, atol=1e-6)
    middle = model.sample(3, seed=1, mix="2:3")
    assert np.abs(middle - a).max() > 1e-3 and np.abs(middle - b).max() > 1e-3
    z = latents(3, 8, 1)  # generate(z) takes the same controls
    np.testing.assert_array_equal(model.generate(z, mix={"seed_b": 2, "from_layer": 3}), middle)


def test_edits_zero_changes_nothing_and_an_amount_moves_the_images(model):
    plain = model.sample(3, seed=5)
    np.testing.assert_array_equal(model.sample(3, seed=5, edits={"pc0": 0.0}), plain)
    assert np.abs(model.sample(3, seed=5, edits={"pc0": 2.0}) - plain).max() > 1e-3
    assert np.abs(model.sample(3, seed=5, edits="pc1=-2") - plain).max() > 1e-3


@pytest.mark.parametrize("controls,message", [
    ({"truncation": 1.5}, "truncation must be a number in [0, 1] (1 = none), got 1.5"),
    ({"mix": (1, 7)}, "from_layer must be in [0, 6] (this model has 6 style layers), got 7"),
    ({"edits": {"pc7": 1.0}}, "unknown direction 'pc7'; this model has ['pc0', 'pc1']"),
    ({"edits": {"pc0": "up"}}, "edit amount for 'pc0' must be a finite number, got 'up'"),
])
def test_bad_controls_are_one_clear_error(model, controls, message):
    with pytest.raises(ValueError) as error:
        model.sample(2, seed=0, **controls)
    assert message in str(error.value)


@pytest.mark.parametrize("controls,message", [
    ({"mix": (1, 2)}, "mix=(1, 2) needs a style-based generator"),
    ({"truncation": 0.7},
     "truncation=0.7 needs a style-based generator (stylegan; per-layer styles); this gan has"),
    ({"edits": {"pc0": 1.0}}, "edits={'pc0': 1.0} need a style-based generator"),
])
@pytest.mark.parametrize("family,kwargs", [
    ("gan", {"latent_dim": 4, "base_filters": 4}),
    # the diffusion families once raised TypeError (an unexpected keyword) instead
    ("ddpm", {"base_filters": 4, "channel_multipliers": (1,), "sampling_steps": 2}),
])
def test_other_families_refuse_the_controls(controls, message, family, kwargs):
    model = zoo.build(family, image_shape=(8, 8, 1), **kwargs)
    with pytest.raises(ValueError, match="style-based") as error:
        model.sample(2, seed=0, **controls)
    assert message.replace("this gan", f"this {family}") in str(error.value)
    with pytest.raises(ValueError, match="style-based"):
        model.generate(latents(2, model.latent_dim, 0), **controls)
    assert model.sample(2, seed=0, truncation=1.0, mix=None, edits={}).shape == (2, 8, 8, 1)


def test_bad_constructor_values_name_them():
    for kwargs, message in [
        ({"style_mixing": 1.5}, "style_mixing must be a number in [0, 1], got 1.5"),
        ({"r1_interval": 0}, "r1_interval must be a positive integer, got 0"),
        ({"w_dim": 0}, "w_dim must be a positive integer, got 0"),
        ({"num_classes": 1}, "num_classes must be 0 (unconditional) or an integer >= 2, got 1"),
        ({"mapping_lr_multiplier": 0}, "mapping_lr_multiplier must be a number in (0, 1], got 0"),
        ({"directions": {"pc0": {"vector": [1.0], "std": 1.0}}},
         "direction 'pc0' has 1 entries; this model's w has w_dim=8"),
    ]:
        with pytest.raises(ValueError) as error:
            zoo.build("stylegan", **{**TINY, **kwargs})
        assert message in str(error.value), (kwargs, str(error.value))


def test_find_directions_are_principal_directions_of_w(model):
    from exporters import style_controls as sc

    expected = sc.pca_directions(model.map(latents(256, 8, 1)), 2)
    assert model.directions == expected
    assert model.get_config()["directions"] == expected
    with pytest.raises(ValueError, match="k must be an integer in \\[1, 8\\], got 9"):
        zoo.build("stylegan", **TINY).find_directions(n=50, k=9)


def test_keras_round_trip_keeps_ema_w_avg_and_directions(model, tmp_path):
    raw = model.raw_generator.get_layer("synthesis").get_layer("b0_conv")
    raw.bias.assign(raw.bias + 0.5)  # the raw networks differ from the EMA copy now
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded) is StyleGAN and loaded.directions == model.directions
    np.testing.assert_array_equal(numpy(loaded.w_avg), numpy(model.w_avg))
    for name in ("generator", "raw_generator", "discriminator"):
        for a, b in zip(getattr(model, name).weights, getattr(loaded, name).weights):
            np.testing.assert_array_equal(numpy(a), numpy(b), err_msg=f"{name}: {a.path}")
    kw = {"seed": 2, "truncation": 0.7, "mix": (3, 2), "edits": {"pc1": 1.5}}
    np.testing.assert_array_equal(loaded.sample(3, **kw), model.sample(3, **kw))


# ---- slow: training, export -----------------------------------------------------------------
def tiny_data(n=32, num_classes=0):
    images, labels = zoo.data.load_arrays("mnist5k", "train")
    images = tf.image.resize(images[:n], (16, 16)).numpy().clip(-1, 1)
    return zoo.data.from_arrays(images, labels[:n], batch_size=16, shuffle=False)


@pytest.mark.slow
def test_training_moves_the_losses_w_avg_and_the_ema():
    keras.utils.set_random_seed(0)
    trained = zoo.build("stylegan", **{**TINY, "r1_interval": 2})
    trained.compile()
    before = [numpy(v).copy() for v in trained.generator.weights]
    history = trained.fit(tiny_data(), epochs=2, verbose=0).history
    for name in ("d_loss", "g_loss"):
        assert np.all(np.isfinite(history[name])) and history[name][0] != history[name][1], name
    assert np.abs(numpy(trained.w_avg)).max() > 0
    assert int(trained.g_optimizer.iterations) == 4
    moved = [np.abs(numpy(v) - b).max() for v, b in zip(trained.generator.weights, before)]
    assert max(moved) > 0  # the EMA copy followed the trained networks


@pytest.mark.slow
def test_lazy_r1_enters_with_the_interval_as_weight():
    """On a D step where iterations % r1_interval == 0 (the first), the D loss is the plain one
    plus r1_weight / 2 * r1_interval * ||grad D(real)||^2, the penalty of the untrained D."""
    from zoo import losses

    real = next(iter(tiny_data(16)))[0]
    first_step = {}
    for name, kwargs in {"none": {"r1_weight": 0.0}, "lazy": {"r1_weight": 5.0,
                                                               "r1_interval": 4}}.items():
        keras.utils.set_random_seed(0)
        m = zoo.build("stylegan", **{**TINY, **kwargs})
        m.compile()
        if name == "none":
            penalty = numpy(losses.r1_penalty(lambda x, m=m: m.discriminate(x, None, True), real))
        first_step[name] = m.fit(tiny_data(16), epochs=1, verbose=0).history["d_loss"][0]
    expected = first_step["none"] + 0.5 * 5.0 * 4 * float(penalty.mean())
    assert first_step["lazy"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_generator_exports_to_onnx_and_matches(model, tmp_path):
    import exporters
    from exporters import runtime

    exporters.export(model, tmp_path / "export", formats=("onnx",))
    path = tmp_path / "export" / "generator.onnx"
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    styled = "style" in manifest  # the converters' mapping/synthesis roles have landed
    generator = runtime.load(path, styles=False) if styled else runtime.load(path)

    def as_uint8(images):
        return ((images + 1.0) * 127.5).round().clip(0, 255).astype(int)

    assert np.abs(generator.generate(4, seed=3).astype(int) - as_uint8(model.sample(4, seed=3))
                  ).max() <= 1
    if styled:
        assert manifest["style"]["num_ws"] == model.num_ws
        kw = {"seed": 3, "truncation": 0.6, "mix": (4, 2), "edits": {"pc0": 1.0}}
        got = runtime.load(path).generate(4, **kw).astype(int)
        assert np.abs(got - as_uint8(model.sample(4, **kw))).max() <= 1


# ---- zoo directions, zoo plot ----------------------------------------------------------------
def test_zoo_directions_stores_them_in_the_model_and_a_json(tmp_path, capsys):
    from zoo import cli

    keras.utils.set_random_seed(0)
    fresh = zoo.build("stylegan", **TINY)
    fresh.save(tmp_path / "model.keras")
    assert cli.main(["directions", str(tmp_path / "model.keras"), "--n", "300", "--k", "3"]) == 0
    table = capsys.readouterr().out
    assert "explained variance" in table and "pc2" in table
    summary = json.loads((tmp_path / "directions.json").read_text())
    assert (summary["n"], summary["k"], sorted(summary["directions"])) == (300, 3, ["pc0", "pc1",
                                                                                    "pc2"])
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.directions == summary["directions"] == fresh.find_directions(300, 3, 0)
    assert not list(tmp_path.glob(".tmp-*"))  # saved atomically, nothing left behind


def test_zoo_directions_errors_are_one_line(tmp_path, capsys):
    from zoo import cli

    zoo.build("gan", image_shape=(8, 8, 1), latent_dim=4, base_filters=4).save(tmp_path / "g.keras")
    assert cli.main(["directions", str(tmp_path / "g.keras")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "holds a gan model: directions need a style-based" in error
    (tmp_path / "empty").mkdir()
    assert cli.main(["directions", str(tmp_path / "empty")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("zoo: error:") and error.count("\n") == 0


def test_plots_draw_truncation_mixing_and_directions(model, tmp_path):
    from PIL import Image

    from zoo import plots

    drawn = {}
    for name in ("truncation", "mixing", "directions"):
        applies, draw = plots.PICTURES[name]
        assert applies(model, {})
        drawn.update(draw(model, {"out": tmp_path}))
    sizes = {name: Image.open(path).size for name, path in drawn.items()}
    assert sizes["truncation"][0] == sizes["truncation"][1]  # 6 seeds x 6 psi
    assert sizes["mixing"][0] == sizes["mixing"][1]  # 6 x 6 with the headers
    assert sizes["directions"][0] > 3 * sizes["directions"][1]  # 7 amounts x 2 directions
    gan = zoo.build("gan", image_shape=(8, 8, 1), latent_dim=4, base_filters=4)
    assert not any(plots.PICTURES[n][0](gan, {}) for n in ("truncation", "mixing", "directions"))
    bare = zoo.build("stylegan", **TINY)
    assert plots.PICTURES["mixing"][0](bare, {}) and not plots.PICTURES["directions"][0](bare, {})


def grid_of(draw, *args, **kwargs):
    """(images, columns) a plots function hands to its grid writer."""
    from zoo import plots

    saved = {}
    original = plots._save
    plots._save = lambda images, path, columns: saved.setdefault("grid", (images, columns))
    try:
        draw(*args, **kwargs)
    finally:
        plots._save = original
    return saved["grid"]


def test_truncation_and_direction_pictures_hold_what_they_say(model, tmp_path):
    from zoo import plots

    images, columns = grid_of(plots.plot_truncation, model, tmp_path, seeds=3, steps=4)
    assert columns == 4
    grid = images.reshape(3, 4, *model.image_shape)  # seed rows, psi 0 .. 1 columns
    np.testing.assert_allclose(grid[:, 0], np.repeat(grid[:1, 0], 3, axis=0), atol=1e-6)
    for seed in range(3):
        np.testing.assert_array_equal(grid[seed, -1], model.sample(1, seed=seed)[0])
    images, columns = grid_of(plots.plot_directions, model, tmp_path, seed=4)
    assert columns == 7
    strips = images.reshape(2, 7, *model.image_shape)  # pc0, pc1 x amounts -3 .. 3
    np.testing.assert_array_equal(strips[1, 3], model.sample(1, seed=4)[0])  # amount 0
    np.testing.assert_array_equal(strips[0, 6], model.sample(1, seed=4, edits={"pc0": 3.0})[0])


def test_mixing_picture_cells_are_the_mixes(model, tmp_path):
    """Row r, column c of the grid (row 0: seeds B, column 0: seeds A) is at r * 4 + c; a cell
    is sample(seed A, mix=(seed B, num_ws // 2)). Rows: seeds 0, 1; columns: seeds 2, 3, 4."""
    from zoo import plots

    images, columns = grid_of(plots.plot_mixing, model, tmp_path, rows=2, columns=3)
    assert columns == 4 and len(images) == 12
    np.testing.assert_array_equal(images[2 * 4 + 0], model.sample(1, seed=1)[0])  # A column
    np.testing.assert_array_equal(images[2 * 4 + 2], model.sample(1, seed=1, mix=(3, 3))[0])
    np.testing.assert_array_equal(images[2], model.sample(1, seed=3)[0])
