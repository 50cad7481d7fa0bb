"""The shared model-test harness: every family plugs in one `ModelCase` and gets every check.

Add a family by appending to CASES; tests/test_models.py runs each check on each case
(config round-trip, fit on real bundled digits, deterministic sampling, .keras round-trip
that keeps training, 1-vs-2-replica parity, bad sample() input).
"""

from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np
import tensorflow as tf

import zoo

PARITY_TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class ModelCase:
    id: str
    name: str
    kwargs: dict
    dataset: str = "mnist5k"
    fit_examples: int = 256
    batch_size: int = 64

    @property
    def conditional(self) -> bool:
        if "num_classes" in self.kwargs:  # a family that is both (stylegan) says which it is
            return bool(self.kwargs["num_classes"])
        return zoo.registry.get_model_class(self.name).conditional

    def build(self, **overrides):
        info = zoo.data.info(self.dataset)
        kwargs = {"image_shape": info.image_shape, "seed": 7, **self.kwargs, **overrides}
        if self.conditional:
            kwargs.setdefault("num_classes", info.num_classes)
        return zoo.build(self.name, **kwargs)

    def labels(self, n):
        return (np.arange(n) % 10).tolist() if self.conditional else None

    def arrays(self, n=None):
        images, labels = zoo.data.load_arrays(self.dataset, "train")
        n = n or self.fit_examples
        return images[:n], labels[:n]

    def dataset_of(self, n=None, shuffle=False):
        images, labels = self.arrays(n)
        return zoo.data.from_arrays(
            images, labels, batch_size=self.batch_size, shuffle=shuffle, seed=0
        )


TINY_STYLEGAN = {"latent_dim": 16, "w_dim": 16, "mapping_layers": 2, "base_filters": 8,
                 "max_filters": 16, "d_base_filters": 8, "embedding_dim": 8}

CASES = [
    ModelCase("gan-dcgan", "gan", {"latent_dim": 16, "base_filters": 8}),
    ModelCase("gan-mlp", "gan", {"latent_dim": 16, "architecture": "mlp"}),
    ModelCase("cgan-projection", "cgan", {"latent_dim": 16, "base_filters": 8}),
    ModelCase(
        "cgan-embedding", "cgan",
        {"latent_dim": 16, "base_filters": 8, "conditioning": "embedding", "upsampling": "resize"},
    ),
    ModelCase("vae-bernoulli", "vae", {"latent_dim": 8, "base_filters": 8}),
    ModelCase("vae-gaussian", "vae", {"latent_dim": 8, "base_filters": 8, "likelihood": "gaussian", "beta": 0.5}),
    ModelCase("wgan_gp-dcgan", "wgan_gp", {"latent_dim": 16, "base_filters": 8, "n_critic": 2}),
    ModelCase("cvae", "cvae", {"latent_dim": 8, "base_filters": 8, "embedding_dim": 8}),
    ModelCase(
        "ddpm-epsilon", "ddpm",
        {"base_filters": 8, "channel_multipliers": (1, 2), "sampling_steps": 8},
    ),
    ModelCase(
        "cddpm-v-attention", "cddpm",
        {"base_filters": 8, "channel_multipliers": (1, 2), "sampling_steps": 8,
         "prediction": "v", "schedule": "linear", "attention": True},
    ),
    ModelCase("stylegan-conditional", "stylegan", TINY_STYLEGAN),
    ModelCase("stylegan", "stylegan", {**TINY_STYLEGAN, "num_classes": 0}),
]


def check_config_round_trip(case: ModelCase):
    model = case.build()
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    for attribute in ("latent_dim", "image_shape", "num_classes"):
        assert getattr(clone, attribute) == getattr(model, attribute)
    assert model.num_classes == (10 if case.conditional else 0)
    assert isinstance(model.generator, keras.Model)
    inputs = model.example_generator_inputs(2)
    images = keras.ops.convert_to_numpy(model.generator(inputs, training=False))
    assert images.shape == (2, *model.image_shape)
    if model.generator_output == "image":  # a diffusion denoiser's prediction is unbounded
        assert np.all(np.abs(images) <= 1.0)


# Families whose trackers hold one objective that every step minimises (no adversary):
# its epoch mean must go down. GAN losses trade off against each other and need not.
MINIMISED_LOSS = "loss"
# Variables that get no gradient by construction (regular expressions on variable.path), per
# family; the check asserts they get no learning step, so a fix shows up here to be removed.
NO_GRADIENT = {
    # a Wasserstein critic's output bias cancels in D(real) - D(fake), and the gradient penalty
    # sees only gradients w.r.t. the input
    "wgan_gp": r"logit/bias",
    # the hinge loss (CGAN's default) is linear in the logit while every |logit| < 1, as it is
    # in these few steps of a spectrally normalized D: the bias cancels as in WGAN-GP's critic
    "cgan": r"logit_sn/logit/bias",
}


def _fit_twice_seeded(case: ModelCase):
    """Two fits from the same seed: (model, history, trainable weights before) of the first."""
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        model = case.build()
        model.compile()
        before = {role: [v.numpy().copy() for v in model.variables_for(role)]
                  for role in model.optimizer_roles}
        history = model.fit(case.dataset_of(shuffle=True), epochs=2, verbose=0).history
        runs.append((model, history, before))
    return runs


def check_fit_changes_losses(case: ModelCase):
    """fit trains every network it should, downhill where there is one objective, and the same
    seed gives the same training, to the bit.

    A train step that skips an optimizer, leaves a variable without gradient, ascends the
    objective or ignores the seed fails here; "the losses differ between epochs" would not.
    """
    (model, history, before), (again, history_again, _) = _fit_twice_seeded(case)
    assert set(history) == set(model.tracker_names)
    for name, values in history.items():
        assert len(values) == 2 and np.all(np.isfinite(values)), (name, values)
        np.testing.assert_array_equal(values, history_again[name], err_msg=f"{name}: same seed")
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{a.path}: same seed")
    if MINIMISED_LOSS in history:
        first, second = history[MINIMISED_LOSS]
        assert second < first, f"{MINIMISED_LOSS} went up: {first} -> {second}"
    for role, weights in before.items():
        optimizer = getattr(model, role)
        assert int(optimizer.iterations) >= 2 * len(case.dataset_of()), role
        # Adam-family steps move each weight with a gradient by about the learning rate: a
        # variable that moved by less than a tenth of one step got no update.
        bound = 0.1 * float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        for variable, old in zip(model.variables_for(role), weights):
            moved = float(np.abs(variable.numpy() - old).max())
            if re.fullmatch(NO_GRADIENT.get(case.name, "$^"), variable.path):
                assert moved <= bound, f"{role}: {variable.path} has no gradient yet moved {moved}"
            else:
                assert moved > bound, f"{role}: {variable.path} moved {moved:.2e} <= {bound:.1e}"
    return model, history


def check_sample_is_deterministic(case: ModelCase):
    model = case.build()
    labels = case.labels(6)
    first = model.sample(6, labels=labels, seed=11)
    again = model.sample(6, labels=labels, seed=11)
    other = model.sample(6, labels=labels, seed=12)
    assert first.dtype == np.float32 and first.shape == (6, *model.image_shape)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    assert first.min() >= -1.0 and first.max() <= 1.0


def check_save_load_continues(case: ModelCase, tmp_path):
    model = case.build()
    model.compile()
    model.fit(case.dataset_of(128), epochs=1, verbose=0)
    path = tmp_path / f"{case.id}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    labels = case.labels(4)
    np.testing.assert_array_equal(
        model.sample(4, labels=labels, seed=3), loaded.sample(4, labels=labels, seed=3)
    )
    for role in model.optimizer_roles:
        saved, restored = getattr(model, role), getattr(loaded, role)
        assert int(restored.iterations) == int(saved.iterations) > 0
        for a, b in zip(saved.variables, restored.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    history = loaded.fit(case.dataset_of(128), epochs=1, verbose=0).history
    assert all(np.isfinite(v[0]) for v in history.values())


def _train_one_step(case: ModelCase, strategy, images, labels):
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = case.build()
        model.compile()
    dataset = zoo.data.from_arrays(images, labels, batch_size=len(images), shuffle=False)
    history = model.fit(dataset, epochs=1, verbose=0).history
    weights = [np.asarray(v) for v in model.weights]
    return weights, {k: v[0] for k, v in history.items()}


def check_replica_parity(case: ModelCase):
    """One step on 2 replicas == one step on 1 device: same weights, same reported losses."""
    assert len(tf.config.list_logical_devices("CPU")) >= 2, "conftest splits the CPU in two"
    images, labels = case.arrays(16)
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    two = zoo.distribute.get_strategy("mirrored")
    weights_1, losses_1 = _train_one_step(case, one, images, labels)
    weights_2, losses_2 = _train_one_step(case, two, images, labels)
    assert two.num_replicas_in_sync == 2
    assert len(weights_1) == len(weights_2)
    for a, b in zip(weights_1, weights_2):
        np.testing.assert_allclose(a, b, atol=PARITY_TOLERANCE, rtol=0)
    for name in losses_1:
        np.testing.assert_allclose(losses_1[name], losses_2[name], rtol=1e-5, atol=1e-5)
    return losses_1, losses_2


def check_bad_sample_input(case: ModelCase):
    import pytest

    model = case.build()
    with pytest.raises(ValueError, match="positive integer"):
        model.sample(0, labels=case.labels(1))
    if case.conditional:
        with pytest.raises(ValueError, match="conditional"):
            model.sample(2)
        with pytest.raises(ValueError, match=r"in \[0, 10\)"):
            model.sample(2, labels=[0, 10])
        with pytest.raises(ValueError, match="expected 2 labels"):
            model.sample(2, labels=[1])
        with pytest.raises(ValueError, match="integers"):
            model.sample(2, labels=[0.5, 1])
    else:
        with pytest.raises(ValueError, match="unconditional"):
            model.sample(2, labels=[0, 1])
