"""Diffusion: schedule and sampler math against closed forms, DDIM determinism, classifier-free
guidance, EMA, and the graph sampling loop. The shared checks (config, fit, save/load,
1-vs-2-replica parity) run in test_models.py."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from exporters import diffusion_pipeline
from zoo.diffusion import samplers
from zoo.diffusion.schedules import PREDICTIONS, NoiseSchedule

TINY = {"base_filters": 8, "channel_multipliers": (1, 2), "sampling_steps": 5, "seed": 0}


def _train_eagerly(model, steps=1, n=16):
    """`steps` train steps on real digits, eagerly (no tracing: fast for a one-off step)."""
    images, labels = zoo.data.load_arrays("mnist5k", "train")
    for step in range(steps):
        batch = slice(step * n, (step + 1) * n)
        data = (tf.constant(images[batch]), tf.constant(labels[batch]))
        model.train_step(data if model.num_classes else data[:1])


# ---- schedules ----------------------------------------------------------------------------
def test_linear_schedule_is_closed_form():
    schedule = NoiseSchedule("linear", 1000)
    np.testing.assert_allclose(schedule.betas, np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(schedule.alphas_cumprod, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    # other T: ends rescaled by 1000 / T
    np.testing.assert_allclose(NoiseSchedule("linear", 500).betas[[0, -1]], [2e-4, 0.04])


def test_cosine_schedule_is_closed_form():
    T, s = 1000, 0.008
    schedule = NoiseSchedule("cosine", T)

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    expected = np.array([f(t + 1) / f(0) for t in range(T)])
    unclipped = schedule.betas < 0.999
    np.testing.assert_allclose(schedule.alphas_cumprod[unclipped], expected[unclipped], rtol=1e-9)
    assert schedule.betas.max() == pytest.approx(0.999)  # the last beta is clipped


def test_schedule_config_round_trips_and_rejects_bad_input():
    schedule = NoiseSchedule("linear", 200, beta_end=0.01)
    config = json.loads(json.dumps(schedule.config()))
    assert config == {"kind": "linear", "timesteps": 200, "params": {"beta_start": 1e-4, "beta_end": 0.01}}
    np.testing.assert_array_equal(NoiseSchedule.from_config(config).betas, schedule.betas)
    with pytest.raises(ValueError, match="not one of"):
        NoiseSchedule("sigmoid")
    with pytest.raises(ValueError, match="unknown parameters"):
        NoiseSchedule("cosine", 100, beta_end=0.02)
    with pytest.raises(ValueError, match="timesteps"):
        NoiseSchedule("cosine", 1)
    with pytest.raises(ValueError, match="outside"):
        NoiseSchedule("linear", 10)  # 0.02 * 1000 / 10 = 2 is not a probability


def test_add_noise_and_targets_in_numpy_and_keras_ops():
    schedule = NoiseSchedule("cosine", 100)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (4, 3, 3, 2))
    noise = rng.normal(size=x0.shape)
    t = np.array([0, 10, 50, 99])
    a = schedule.alphas_cumprod[t][:, None, None, None]
    x_t = schedule.add_noise(x0, noise, t)
    np.testing.assert_allclose(x_t, np.sqrt(a) * x0 + np.sqrt(1 - a) * noise)
    np.testing.assert_allclose(
        schedule.velocity(x0, noise, t), np.sqrt(a) * noise - np.sqrt(1 - a) * x0
    )
    as_ops = schedule.add_noise(
        x0.astype(np.float32), noise.astype(np.float32), t.astype(np.int32), xp=keras.ops
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(as_ops), x_t, atol=1e-5)
    # every prediction type's target, read back at x_t, gives x0 and the noise again
    for prediction, (_, split) in PREDICTIONS.items():
        target = schedule.prediction_target(prediction, x0, noise, t)
        x0_back, eps_back = split(target, x_t, a, np)
        np.testing.assert_allclose(x0_back, x0, atol=1e-9, err_msg=prediction)
        np.testing.assert_allclose(eps_back, noise, atol=1e-7, err_msg=prediction)


# ---- samplers -----------------------------------------------------------------------------
def test_trailing_timesteps():
    np.testing.assert_array_equal(samplers.trailing_timesteps(10, 10), np.arange(9, -1, -1))
    np.testing.assert_array_equal(
        samplers.trailing_timesteps(1000, 10), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    )
    steps = samplers.trailing_timesteps(1000, 7)
    assert steps[0] == 999 and len(np.unique(steps)) == 7 and np.all(np.diff(steps) < 0)
    for bad in (0, 1001, 2.5):
        with pytest.raises(ValueError, match="steps"):
            samplers.trailing_timesteps(1000, bad)


def _oracle(schedule, x0, prediction):
    """The exact denoiser of a one-point data distribution at x0."""

    def denoise(x_t, t):
        t = t.astype(np.int64)  # the pipeline hands the step's timestep as float32, per image
        a = schedule.alphas_cumprod[t][:, None, None, None]
        eps = (x_t - np.sqrt(a) * x0) / np.sqrt(1 - a)
        return schedule.prediction_target(prediction, x0, eps, t)

    return denoise


@pytest.mark.parametrize("prediction", sorted(PREDICTIONS))
@pytest.mark.parametrize("steps", [1, 4, 50])
def test_ddim_with_an_exact_denoiser_lands_on_the_data(prediction, steps):
    schedule = NoiseSchedule("linear", 1000)
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-0.9, 0.9, (3, 4, 4, 1))
    sampler = samplers.DDIMSampler(schedule, steps, prediction, eta=0.0)
    assert not sampler.stochastic
    x_T = rng.normal(size=x0.shape)
    out = diffusion_pipeline.run(sampler, _oracle(schedule, x0, prediction), x_T)
    np.testing.assert_allclose(out, x0, atol=1e-6)


def test_ddim_step_is_song_et_al_equation_12():
    schedule = NoiseSchedule("cosine", 1000)
    sampler = samplers.DDIMSampler(schedule, 20, "epsilon", clip_denoised=False, eta=0.6)
    rng = np.random.default_rng(2)
    x_t, eps, noise = (rng.normal(size=(2, 3, 3, 1)) for _ in range(3))
    i = 5
    a = schedule.alphas_cumprod[sampler.timesteps[i]]
    a_prev = schedule.alphas_cumprod[sampler.timesteps[i + 1]]
    sigma = 0.6 * math.sqrt((1 - a_prev) / (1 - a)) * math.sqrt(1 - a / a_prev)
    x0 = (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
    expected = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma**2) * eps + sigma * noise
    np.testing.assert_allclose(sampler.step(eps, i, x_t, noise), expected, rtol=1e-10)
    # the last step goes to alpha_bar = 1: x_0 itself, no noise
    last = sampler.num_steps - 1
    assert sampler.sigmas[last] == 0 and not sampler.needs_noise(last)


def test_ddpm_step_is_the_posterior_and_equals_ddim_with_eta_1():
    schedule = NoiseSchedule("linear", 1000)
    ddpm = samplers.DDPMSampler(schedule, None, "epsilon", clip_denoised=False)
    ddim = samplers.DDIMSampler(schedule, None, "epsilon", clip_denoised=False, eta=1.0)
    assert ddpm.num_steps == 1000
    rng = np.random.default_rng(3)
    x_t, eps, noise = (rng.normal(size=(2, 3, 3, 1)) for _ in range(3))
    for i in (0, 500, 998):
        t = ddpm.timesteps[i]
        beta, a = schedule.betas[t], schedule.alphas_cumprod[t]
        a_prev = schedule.alphas_cumprod[t - 1]
        x0 = (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
        mean = (
            math.sqrt(a_prev) * beta / (1 - a) * x0
            + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a) * x_t
        )
        variance = (1 - a_prev) / (1 - a) * beta
        np.testing.assert_allclose(
            ddpm.step(eps, i, x_t, noise), mean + math.sqrt(variance) * noise, rtol=1e-9
        )
        np.testing.assert_allclose(
            ddim.step(eps, i, x_t, noise), ddpm.step(eps, i, x_t, noise), rtol=1e-7, atol=1e-12
        )


def test_sampler_steps_agree_in_numpy_and_in_a_graph():
    schedule = NoiseSchedule("cosine", 1000)
    sampler = samplers.DDIMSampler(schedule, 10, "v", eta=0.5)
    rng = np.random.default_rng(4)
    x_t, out, noise = (rng.normal(size=(2, 3, 3, 1)).astype(np.float32) for _ in range(3))

    @tf.function
    def graph_step(out, i, x_t, noise):
        return sampler.step(out, i, x_t, noise, xp=keras.ops)

    for i in (0, 4, 9):
        expected = sampler.step(out, i, x_t, noise)
        assert expected.dtype == np.float32
        np.testing.assert_allclose(graph_step(out, tf.constant(i), x_t, noise), expected, atol=1e-5)


def test_guide_and_sampler_errors():
    c, u = np.array([2.0]), np.array([1.0])
    assert samplers.guide(c, u, 0.0) == 1.0 and samplers.guide(c, u, 1.0) == 2.0
    assert samplers.guide(c, u, 3.0) == 4.0
    schedule = NoiseSchedule("cosine", 100)
    with pytest.raises(ValueError, match="not one of"):
        samplers.make_sampler("euler", schedule)
    with pytest.raises(ValueError, match="eta"):
        samplers.make_sampler("ddpm", schedule, eta=0.5)
    with pytest.raises(ValueError, match="eta"):
        samplers.make_sampler("ddim", schedule, eta=1.5)
    with pytest.raises(ValueError, match="pass noise"):
        samplers.make_sampler("ddpm", schedule, steps=3).step(np.zeros(1), 0, np.zeros(1))


# ---- the model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cddpm():
    keras.utils.set_random_seed(0)
    model = zoo.build("cddpm", num_classes=10, ema_decay=0.9, **TINY)
    model.compile(optimizer="adam")
    _train_eagerly(model, steps=2)
    return model


def test_model_defaults_config_and_schedule_config():
    model = zoo.build("ddpm", **TINY)
    assert model.latent_dim == 28 * 28 and model.num_classes == 0
    assert model.generator is model.ema_denoiser and model.generator_output == "prediction"
    assert [t.name for t in model.generator.inputs] == ["x_t", "t"]
    config = json.loads(json.dumps(model.schedule_config()))
    assert config["kind"] == "cosine" and config["timesteps"] == 1000
    assert config["prediction"] == "v" and config["null_label"] is None
    np.testing.assert_array_equal(NoiseSchedule.from_config(config).betas, config["betas"])
    with pytest.raises(ValueError, match="latent_dim"):
        zoo.build("ddpm", latent_dim=16)
    with pytest.raises(ValueError, match="cddpm"):
        zoo.build("ddpm", num_classes=10)
    with pytest.raises(ValueError, match="prediction"):
        zoo.build("ddpm", prediction="score")
    with pytest.raises(ValueError, match="guidance_scale"):
        model.sample(2, guidance_scale=3.0)
    with pytest.raises(ValueError, match="multiples of 4"):
        zoo.build("ddpm", image_shape=(6, 6, 1), channel_multipliers=(1, 2, 2))


def test_ema_follows_the_closed_form():
    keras.utils.set_random_seed(0)
    model = zoo.build("ddpm", ema_decay=0.9, **TINY)
    model.compile()
    initial = model.denoiser.get_weights()
    _train_eagerly(model)
    assert int(model.optimizer.iterations) == 1
    decay = min(0.9, 2 / 11)  # warm-up after one update
    trained = model.denoiser.get_weights()
    assert any(np.abs(a - b).max() > 0 for a, b in zip(initial, trained))
    for w0, w1, ema in zip(initial, trained, model.ema_denoiser.get_weights()):
        np.testing.assert_allclose(ema, decay * w0 + (1 - decay) * w1, rtol=1e-5, atol=1e-7)


def test_sampling_uses_the_ema_weights(cddpm):
    labels = [3, 1]
    before = cddpm.sample(2, labels=labels, seed=5)
    saved = cddpm.denoiser.get_weights()
    cddpm.denoiser.set_weights([np.zeros_like(w) for w in saved])
    try:
        np.testing.assert_array_equal(cddpm.sample(2, labels=labels, seed=5), before)
    finally:
        cddpm.denoiser.set_weights(saved)


def test_label_dropout_trains_the_null_label_only_when_on():
    labels = zoo.data.load_arrays("mnist5k", "train")[1][:16]
    for dropout, changed_rows in ((1.0, [10]), (0.0, np.unique(labels).tolist())):
        model = zoo.build("cddpm", num_classes=10, label_dropout=dropout, **TINY)
        model.compile(optimizer="adam")  # no weight decay: rows without gradient stay put
        before = model.denoiser.get_layer("label_embedding").get_weights()[0]
        _train_eagerly(model)
        after = model.denoiser.get_layer("label_embedding").get_weights()[0]
        changed = np.flatnonzero(np.abs(after - before).max(axis=1) > 0).tolist()
        assert changed == changed_rows, (dropout, changed)


def test_guidance_scale_mixes_conditional_and_unconditional(cddpm):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 28, 28, 1)).astype(np.float32)
    labels = np.array([0, 1, 2, 3], np.int32)
    null = np.full(4, 10, np.int32)
    conditional = cddpm.denoise_raw(x, np.full(4, 500.0, np.float32), labels)
    unconditional = cddpm.denoise_raw(x, np.full(4, 500.0, np.float32), null)
    assert np.abs(conditional - unconditional).max() > 1e-6
    for scale in (0.0, 1.0, 3.0):
        np.testing.assert_allclose(
            cddpm.denoise(x, 500, labels, guidance_scale=scale),
            unconditional + scale * (conditional - unconditional), atol=1e-5,
        )
    # scale 0 ignores the labels entirely; the default scale does not
    same = cddpm.sample(2, labels=[4, 4], seed=1, guidance_scale=0.0)
    other = cddpm.sample(2, labels=[7, 7], seed=1, guidance_scale=0.0)
    np.testing.assert_allclose(same, other, atol=1e-6)
    assert np.abs(cddpm.sample(2, labels=[4, 4], seed=1) - cddpm.sample(2, labels=[7, 7], seed=1)).max() > 1e-4


def test_ddim_eta_0_is_deterministic_and_eta_or_ddpm_are_not(cddpm):
    labels = np.array([1, 2, 3], np.int32)
    z = np.random.default_rng(0).standard_normal((3, 784), dtype=np.float32)

    def run(seed, **options):
        return cddpm.generate(z, labels, rng=np.random.default_rng(seed), **options)

    np.testing.assert_array_equal(run(1), run(2))  # DDIM eta=0: only x_T matters
    assert np.abs(run(1, eta=1.0) - run(2, eta=1.0)).max() > 1e-3
    ddpm = run(1, sampler="ddpm", steps=4)
    np.testing.assert_array_equal(ddpm, run(1, sampler="ddpm", steps=4))
    assert np.abs(ddpm - run(2, sampler="ddpm", steps=4)).max() > 1e-3
    assert ddpm.min() >= -1 and ddpm.max() <= 1
    # GroupNorm over groups of several channels (Keras' reshape + moments) rounds differently
    # with the batch size, so batching changes the images by float32 round-off only
    np.testing.assert_allclose(
        cddpm.sample(3, labels=labels, seed=9), cddpm.sample(3, labels=labels, seed=9, batch_size=2),
        atol=1e-5,
    )


@pytest.mark.slow  # a SavedModel of the whole sampling loop
def test_sampling_function_matches_sample_and_saves_as_a_signature(cddpm, tmp_path):
    labels = np.array([5, 6], np.int32)
    z = np.random.default_rng(3).standard_normal((2, 784), dtype=np.float32)
    expected = cddpm.generate(z, labels)
    function = cddpm.sampling_function()
    images = z.reshape(2, 28, 28, 1)
    np.testing.assert_allclose(function(images, labels).numpy(), expected, atol=1e-4)

    module = tf.Module()
    module.generator = cddpm.generator
    module.sample = function
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"sample": function})
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    outputs = loaded.signatures["sample"](z=tf.constant(images), label=tf.constant(labels))
    np.testing.assert_allclose(next(iter(outputs.values())).numpy(), expected, atol=1e-4)
