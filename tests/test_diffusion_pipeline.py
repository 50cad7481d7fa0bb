"""The one diffusion sampling loop (`exporters.diffusion_pipeline`) on a tiny closed-form
denoiser: x_T and noise draw order, guidance as one [x; x] batch, batching, stochastic vs
deterministic samplers, checked inputs, and the numpy loop against the same loop in a
tf.while_loop. Then the Keras model's `call` (the EMA denoiser) and constructors."""

from __future__ import annotations

import numpy as np
import pytest

from exporters.diffusion_pipeline import DiffusionPipeline
from exporters.diffusion_schedules import NoiseSchedule

SHAPE = (2, 2, 1)
T = 50


def pipeline(**options):
    options = {"num_classes": 3, "steps": 4, "guidance_scale": 2.0, **options}
    return DiffusionPipeline(NoiseSchedule("cosine", T), SHAPE, **options)


class Recorder:
    """A closed-form denoiser, output = 0.5 x_t + 0.1 label + 1e-3 t (label 0 when None), that
    keeps the (x_t, t, labels) of every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_t, t, labels):
        self.calls.append((x_t.copy(), t.copy(), None if labels is None else labels.copy()))
        label = 0.0 if labels is None else labels.astype(np.float32).reshape(-1, 1, 1, 1)
        return (0.5 * x_t + 0.1 * label + 1e-3 * t.reshape(-1, 1, 1, 1)).astype(np.float32)


def test_one_ddim_step_is_the_golden_x0_of_the_first_draw():
    # one DDIM step from T - 1 lands on x0 = (x_T - sqrt(1 - a) eps) / sqrt(a); with eps = 0 that
    # is x_T / sqrt(a), x_T the first (n, H*W*C) float32 draw of default_rng(seed)
    pipe = DiffusionPipeline(NoiseSchedule("cosine", T), SHAPE, steps=1, clip_denoised=False)
    images = pipe.sample(lambda x, t, labels: np.zeros_like(x), 2, seed=0)
    a = NoiseSchedule("cosine", T).alphas_cumprod[-1]
    x_T = np.random.default_rng(0).standard_normal((2, 4), dtype=np.float32).reshape(2, *SHAPE)
    np.testing.assert_allclose(images, np.clip(x_T / np.sqrt(a), -1, 1), rtol=1e-6)
    assert images.dtype == np.float32 and images.shape == (2, *SHAPE)
    # pinned: the draw is the runtime's contract (manifest), not just any normal draw
    np.testing.assert_allclose(
        x_T.reshape(-1)[:3], [1.1176220, -1.3871249, -0.4265716], rtol=1e-6
    )


def test_x_T_then_one_draw_per_stochastic_step_in_order():
    pipe = pipeline(num_classes=0, guidance_scale=None, sampler="ddpm", steps=3)
    walk = pipe.make_sampler()
    assert [walk.needs_noise(i) for i in range(3)] == [True, True, False]
    denoise = Recorder()
    images = pipe.sample(denoise, 2, seed=5)
    # the reference: the same draws, made by hand in the documented order
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4), dtype=np.float32).reshape(2, *SHAPE)
    np.testing.assert_array_equal(denoise.calls[0][0], x)
    for i in range(3):
        output = Recorder()(x, np.full(2, walk.timesteps[i], np.float32), None)
        noise = rng.standard_normal((2, 4), dtype=np.float32).reshape(x.shape) if i < 2 else None
        x = walk.step(output, i, x, noise)
    np.testing.assert_array_equal(images, np.clip(x, -1, 1))
    # from a given x_T, exactly the 2 stochastic steps draw: the stream is 2 draws further on
    rng = np.random.default_rng(1)
    pipe.generate(Recorder(), np.zeros((2, 4), np.float32), rng=rng)
    reference = np.random.default_rng(1)
    for _ in range(2):
        reference.standard_normal((2, 4), dtype=np.float32)
    assert rng.standard_normal() == reference.standard_normal()


def test_timesteps_reach_the_denoiser_as_float32_per_image():
    denoise = Recorder()
    pipeline(num_classes=0, guidance_scale=None, steps=4).sample(denoise, 3, seed=0)
    assert [float(t[0]) for _, t, _ in denoise.calls] == [49.0, 37.0, 24.0, 11.0]
    for _, t, _ in denoise.calls:
        assert t.dtype == np.float32 and t.shape == (3,) and np.all(t == t[0])


def test_guidance_is_one_batch_equal_to_separate_calls():
    pipe = pipeline(guidance_scale=3.0)
    x = np.random.default_rng(0).standard_normal((4, *SHAPE)).astype(np.float32)
    t = np.full(4, 30.0, np.float32)
    labels = np.array([0, 1, 2, 1], np.int32)
    denoise = Recorder()
    guided = pipe.denoise(denoise, x, 30, labels)
    (x_in, t_in, labels_in), = denoise.calls  # one call with 2n rows
    np.testing.assert_array_equal(x_in, np.concatenate([x, x]))
    np.testing.assert_array_equal(t_in, np.concatenate([t, t]))
    np.testing.assert_array_equal(labels_in, [0, 1, 2, 1, 3, 3, 3, 3])  # 3 = the null label
    conditional = Recorder()(x, t, labels)
    unconditional = Recorder()(x, t, np.full(4, 3, np.int32))
    np.testing.assert_allclose(guided, unconditional + 3.0 * (conditional - unconditional),
                               rtol=1e-6)
    # scale 1 is the conditional output alone, in one call of n rows
    denoise = Recorder()
    np.testing.assert_array_equal(pipe.denoise(denoise, x, 30, labels, 1.0), conditional)
    assert len(denoise.calls) == 1 and len(denoise.calls[0][0]) == 4


def test_batch_size_bounds_each_call_and_changes_nothing():
    pipe = pipeline(guidance_scale=2.0)
    labels = [0, 1, 2, 0, 1]
    whole = Recorder()
    expected = pipe.sample(whole, 5, labels, seed=3)
    assert {len(call[0]) for call in whole.calls} == {10}
    chunked = Recorder()
    np.testing.assert_array_equal(pipe.sample(chunked, 5, labels, seed=3, batch_size=2), expected)
    assert [len(call[0]) for call in chunked.calls[:3]] == [4, 4, 2]  # 2 images -> 4 rows
    # each call is one chunk's [x; x] with its own [labels; null]
    np.testing.assert_array_equal(chunked.calls[1][2], [2, 0, 3, 3])


def test_deterministic_ddim_needs_only_x_T_and_stochastic_samplers_use_the_rng():
    pipe = pipeline(steps=5)
    z = np.random.default_rng(0).standard_normal((3, 4), dtype=np.float32)
    labels = [0, 1, 2]

    def run(seed, **options):
        return pipe.generate(Recorder(), z, labels, rng=np.random.default_rng(seed), **options)

    np.testing.assert_array_equal(run(1), run(2))
    for options in ({"eta": 1.0}, {"sampler": "ddpm"}):
        np.testing.assert_array_equal(run(1, **options), run(1, **options))
        assert np.abs(run(1, **options) - run(2, **options)).max() > 1e-3


def test_defaults_come_from_the_pipeline_and_options_override_them():
    pipe = pipeline(steps=3, eta=0.5, sampler="ddim", guidance_scale=1.5)
    walk = pipe.make_sampler()
    assert walk.kind == "ddim" and walk.num_steps == 3 and walk.eta == 0.5
    assert pipe.make_sampler(steps=7, sampler="ddpm").num_steps == 7
    assert pipe.check_guidance(None) == 1.5 and pipe.check_guidance(4) == 4.0
    assert pipeline(num_classes=0, guidance_scale=None).check_guidance(None) == 1.0
    config = {**NoiseSchedule("cosine", T).config(), "prediction": "v", "clip_denoised": False,
              "sampler": "ddpm", "steps": 6, "eta": 0.0, "guidance_scale": 2.5}
    loaded = DiffusionPipeline.from_schedule_config(config, SHAPE, num_classes=3)
    assert (loaded.prediction, loaded.clip_denoised, loaded.sampler) == ("v", False, "ddpm")
    assert loaded.make_sampler().num_steps == 6 and loaded.guidance_scale == 2.5
    assert loaded.latent_dim == 4 and loaded.null_label == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "positive integer, got 0"),
        ({"steps": 2.5}, "positive integer, got 2.5"),
        ({"steps": 51}, "at most 50 .*got 51"),
        ({"eta": 1.5}, r"eta must be in \[0, 1\], got 1.5"),
        ({"sampler": "ddpm", "eta": 0.5}, "eta=0.5 is a DDIM option"),
        ({"sampler": "euler"}, "sampler must be one of .*'euler'"),
        ({"sampler": ["ddim"]}, "sampler must be one of"),
        ({"guidance_scale": "2"}, "guidance_scale must be a finite number, got '2'"),
        ({"guidance_scale": float("nan")}, "finite number, got nan"),
        ({"labels": [0, 3]}, r"in \[0, 3\), got \[3\]"),
        ({"labels": None}, "conditional"),
        ({"n": 0}, "n must be a positive integer, got 0"),
        ({"seed": -1}, "seed .*got -1"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ],
)
def test_bad_inputs_name_the_value(kwargs, match):
    args = {"n": 2, "labels": [0, 1], "seed": 0, **kwargs}
    denoise = Recorder()
    with pytest.raises(ValueError, match=match):
        pipeline().sample(denoise, args.pop("n"), **args)
    assert denoise.calls == []  # checked before any denoiser call


def test_bad_defaults_and_unconditional_guidance():
    with pytest.raises(ValueError, match="guidance_scale=2.0 needs a class-conditional"):
        pipeline(num_classes=0, guidance_scale=2.0)
    with pytest.raises(ValueError, match="guidance_scale=3 needs"):
        pipeline(num_classes=0, guidance_scale=None).sample(Recorder(), 2, guidance_scale=3)
    with pytest.raises(ValueError, match="sampler must be one of .*'plms'"):
        pipeline(sampler="plms")
    with pytest.raises(ValueError, match="steps must be at most 50"):
        pipeline(steps=100)
    with pytest.raises(ValueError, match="prediction='score'"):
        pipeline(prediction="score")
    with pytest.raises(TypeError, match="NoiseSchedule, got 'cosine'"):
        DiffusionPipeline("cosine", SHAPE)


def _graph_denoise(xp):
    def denoise_raw(x_t, t, labels):
        label = xp.reshape(xp.cast(labels, "float32"), (-1, 1, 1, 1))
        return 0.5 * x_t + 0.1 * label + 1e-3 * xp.reshape(t, (-1, 1, 1, 1))

    return denoise_raw


@pytest.mark.parametrize("options", [{}, {"eta": 0.7, "steps": 6}, {"sampler": "ddpm"}],
                         ids=["ddim", "ddim-eta", "ddpm"])
def test_numpy_and_graph_drivers_run_the_same_loop(options):
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    pipe = pipeline(guidance_scale=2.5)
    n = 3
    z = np.random.default_rng(0).standard_normal((n, 4), dtype=np.float32)
    labels = np.array([0, 2, 1], np.int32)
    noise = np.random.default_rng(1).standard_normal((10, n, *SHAPE)).astype(np.float32)

    expected = pipe.generate(
        Recorder(), z, labels, draw_noise=lambda i, like: noise[i], **options
    )

    def driver(num_steps, body, x):
        return tf.while_loop(
            lambda i, x: i < num_steps, lambda i, x: (i + 1, body(i, x)), (tf.constant(0), x)
        )[1]

    @tf.function(input_signature=[tf.TensorSpec((None, *SHAPE), tf.float32),
                                  tf.TensorSpec((None,), tf.int32)])
    def graph(z, labels):
        return pipe.generate(
            _graph_denoise(keras.ops), z, labels, draw_noise=lambda i, like: tf.gather(noise, i),
            xp=keras.ops, driver=driver, **options,
        )

    found = graph(z.reshape(n, *SHAPE), labels).numpy()
    np.testing.assert_allclose(found, expected, atol=1e-5)
    if options:  # a stochastic walk: the noise reaches the result
        other = pipe.generate(
            Recorder(), z, labels, draw_noise=lambda i, like: noise[i] * 0, **options
        )
        assert np.abs(other - expected).max() > 1e-3


# ---- the Keras model: call() is the EMA denoiser; keyword-only constructors -----------------------
TINY = {"base_filters": 8, "channel_multipliers": (1, 2), "sampling_steps": 3, "seed": 0}


def test_model_call_is_the_ema_denoiser_and_survives_save_load(tmp_path):
    keras = pytest.importorskip("keras")
    import zoo

    model = zoo.build("cddpm", image_shape=(8, 8, 1), num_classes=10, timesteps=50, **TINY)
    # make the EMA weights differ from the trained ones, so call() must pick the EMA denoiser
    model.denoiser.set_weights([w + 0.01 for w in model.denoiser.get_weights()])
    inputs = model.example_generator_inputs(4)
    output = model(inputs).numpy()
    np.testing.assert_array_equal(output, model.generator(inputs).numpy())
    trained = model.denoiser(inputs).numpy()
    assert np.abs(output - trained).max() > 1e-4
    path = tmp_path / "cddpm.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded.summary(print_fn=lambda *args, **kwargs: None)
    np.testing.assert_array_equal(loaded(inputs).numpy(), output)
    np.testing.assert_array_equal(
        loaded.sample(2, [1, 2], seed=0), model.sample(2, [1, 2], seed=0)
    )


# every keyword-only argument of DDPM / CDDPM with a non-default value: a new argument must be
# added here (the test checks the list is complete), so its forwarding to the base is checked too
DDPM_NON_DEFAULTS = {
    "base_filters": 12, "channel_multipliers": (1, 2), "blocks_per_level": 2, "attention": True,
    "schedule": "linear", "timesteps": 40, "schedule_params": {"beta_start": 2e-4},
    "prediction": "epsilon", "ema_decay": 0.99, "unet": "classic", "min_group_channels": 2,
    "loss_weighting": "none", "min_snr_gamma": 3.0, "sampler": "ddpm", "sampling_steps": 7, "eta": 0.25,
    "clip_denoised": False, "latent_dim": 16 * 16, "seed": 5,
}
CDDPM_NON_DEFAULTS = {**DDPM_NON_DEFAULTS, "label_dropout": 0.2, "guidance_scale": 3.5}


@pytest.mark.parametrize(("name", "kwargs"), [("DDPM", DDPM_NON_DEFAULTS),
                                              ("CDDPM", CDDPM_NON_DEFAULTS)])
def test_every_keyword_reaches_the_model_and_its_config(name, kwargs):
    pytest.importorskip("keras")
    import inspect

    import zoo

    cls = getattr(zoo.diffusion, name)
    parameters = inspect.signature(cls.__init__).parameters.values()
    assert {p.name for p in parameters if p.kind is p.KEYWORD_ONLY} == set(kwargs)
    for key, value in kwargs.items():
        assert value != inspect.signature(cls.__init__).parameters[key].default, key
    positional = ((16, 16, 1), 3) if cls.conditional else ((16, 16, 1),)
    model = cls(*positional, **kwargs)
    config = model.get_config()
    for key, value in kwargs.items():
        echoed = tuple(config[key]) if key == "channel_multipliers" else config[key]
        assert echoed == value, key
        attribute = getattr(model, key)
        assert (tuple(attribute) if key == "channel_multipliers" else attribute) == value, key
    assert model.num_classes == (3 if cls.conditional else 0)
    assert cls.from_config(config).get_config() == config


def test_constructor_arguments_past_the_first_are_keyword_only():
    pytest.importorskip("keras")
    import zoo

    with pytest.raises(TypeError, match="positional"):
        zoo.diffusion.DDPM((8, 8, 1), 8)
    with pytest.raises(TypeError, match="positional"):
        zoo.diffusion.CDDPM((8, 8, 1), 10, 8)
    model = zoo.diffusion.DDPM((8, 8, 1), timesteps=50, **TINY)
    clone = zoo.diffusion.DDPM.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert (clone.label_dropout, clone.guidance_scale, clone.num_classes) == (0.0, 1.0, 0)
    conditional = zoo.diffusion.CDDPM((8, 8, 1), 4, timesteps=50, guidance_scale=3.0, **TINY)
    assert conditional.num_classes == 4 and conditional.pipeline.guidance_scale == 3.0
