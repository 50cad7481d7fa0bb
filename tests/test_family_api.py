"""Keras' own entry points on every family, and the constructor contract.

- `model(x)` is the documented network: the generator for GAN / CGAN / WGAN-GP (and a
  diffusion family's denoiser), the deterministic reconstruction decode(z_mean) for VAE / CVAE;
- `model.export(path)` (Keras' SavedModel export) holds the GENERATOR for every family;
- `model.summary()` after `keras.models.load_model` counts the model's real weights;
- constructors take image_shape, latent_dim (and num_classes for conditional families) by
  position, everything else by keyword only, and forward every keyword to the base.
"""

import inspect
import re

import harness
import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.cvae import CVAE
from zoo.gan import CGAN, GAN
from zoo.stylegan import StyleGAN
from zoo.vae import VAE
from zoo.wgan_gp import WGANGP

# The first harness case of each model name; the DDPM family once, conditional (cddpm).
ONE_PER_FAMILY = [
    case for i, case in enumerate(harness.CASES)
    if case.name != "ddpm" and case.name not in {c.name for c in harness.CASES[:i]}
]
FAMILIES = pytest.mark.parametrize("case", ONE_PER_FAMILY, ids=[c.name for c in ONE_PER_FAMILY])
RECONSTRUCTING = {"vae", "cvae"}


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def images_and_labels(n=5):
    images, labels = zoo.data.load_arrays("mnist5k", "train")
    return images[:n], labels[:n].astype(np.int32)


# ---- call ----------------------------------------------------------------------------------
@FAMILIES
def test_call_is_the_documented_network(case):
    model = case.build()
    if case.name in RECONSTRUCTING:
        images, labels = images_and_labels()
        inputs = [images, labels] if model.num_classes else images
        expected = model.reconstruct(images, labels=labels if model.num_classes else None)
        # decode(z_mean), spelled out: the posterior mean, no sampling
        z_mean, _ = model.encode(images, labels=labels if model.num_classes else None)
        np.testing.assert_allclose(
            expected, model.decode(z_mean, labels=labels if model.num_classes else None)
        )
    else:
        inputs = model.example_generator_inputs(3, seed=1)
        expected = numpy(model.generator(inputs, training=False))
    output = numpy(model(inputs))
    np.testing.assert_allclose(output, expected, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(numpy(model(inputs)), output)  # deterministic
    if case.name in RECONSTRUCTING:  # and not the generator on the images' latents by chance
        z = model.example_generator_inputs(len(output), seed=1)
        assert np.abs(output - numpy(model.generator(z))).max() > 1e-3


# ---- Keras' export gives the generator -------------------------------------------------------
@pytest.mark.parametrize("case", [  # the diffusion denoiser's SavedModel takes ~15 s: slow tier
    pytest.param(c, id=c.name, marks=pytest.mark.slow if c.name == "cddpm" else ())
    for c in ONE_PER_FAMILY
])
def test_keras_export_is_the_generator(case, tmp_path):
    model = case.build()
    model.export(tmp_path / "sm", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "sm"))
    for n in (1, 4):
        inputs = model.example_generator_inputs(n, seed=n)
        np.testing.assert_allclose(
            numpy(served.serve(inputs)), numpy(model.generator(inputs, training=False)),
            atol=1e-5, rtol=0,
        )
    signature = served.signatures["serving_default"].structured_input_signature[1]
    assert sorted(signature) == sorted(t.name for t in model.generator.inputs)


# ---- summary after load ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cgan", "vae"])
def test_summary_after_load_counts_the_real_weights(name, tmp_path):
    case = next(c for c in harness.CASES if c.name == name)
    model = case.build()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    lines = []
    loaded.summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    total = int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))
    assert total == sum(int(np.prod(w.shape)) for w in model.weights)
    assert "generator" in text


# ---- constructors: positional few, keyword-only rest, forwarded by keyword ---------------------
# Each family's keyword-only arguments with a non-default value. A new argument must be added
# here (the test checks the list is complete), so its forwarding is checked too.
NON_DEFAULTS = {
    GAN: {
        "architecture": "mlp", "base_filters": 12, "upsampling": "resize", "embedding_dim": 7,
        "ema_decay": 0.5, "augment": "cutout", "gan_loss": "hinge", "spectral_norm": True,
        "r1_weight": 0.5, "seed": 5,
    },
    CGAN: {
        "architecture": "mlp", "base_filters": 12, "upsampling": "resize",
        "conditioning": "embedding", "embedding_dim": 7, "ema_decay": 0.5, "augment": "cutout",
        "gan_loss": "nonsaturating", "spectral_norm": False, "r1_weight": 0.5,
        "class_loss_weight": 0.0, "class_norm": False, "seed": 5,
    },
    WGANGP: {
        "architecture": "mlp", "base_filters": 12, "upsampling": "resize", "n_critic": 3,
        "gp_weight": 2.5, "embedding_dim": 7, "ema_decay": 0.5, "augment": "cutout",
        "spectral_norm": True, "r1_weight": 0.5, "seed": 5,
    },
    VAE: {
        "likelihood": "gaussian", "beta": 0.5, "gaussian_scale": 0.2, "base_filters": 12,
        "decoder_activation": "relu", "seed": 5,
    },
    CVAE: {
        "likelihood": "gaussian", "beta": 0.5, "gaussian_scale": 0.2, "base_filters": 12,
        "embedding_dim": 7, "decoder_activation": "relu", "seed": 5,
    },
    StyleGAN: {
        "w_dim": 12, "mapping_layers": 2, "mapping_lr_multiplier": 0.1, "base_filters": 12,
        "max_filters": 24, "d_base_filters": 12, "embedding_dim": 7, "style_mixing": 0.5,
        "r1_weight": 0.5, "r1_interval": 4, "ema_decay": 0.5, "augment": "cutout",
        "gan_loss": "hinge", "spectral_norm": True,
        "directions": {"pc0": {"vector": [1.0] + [0.0] * 11, "std": 2.0,
                               "explained_variance": 0.5}},
        "seed": 5,
    },
}
# Keyword-only arguments a family takes only to pass through (VAE's num_classes is CVAE's).
PASS_THROUGH = {VAE: {"num_classes"}}
POSITIONAL = {
    GAN: ("image_shape", "latent_dim"),
    CGAN: ("image_shape", "num_classes", "latent_dim"),
    WGANGP: ("image_shape", "latent_dim"),
    VAE: ("image_shape", "latent_dim"),
    CVAE: ("image_shape", "num_classes", "latent_dim"),
    StyleGAN: ("image_shape", "num_classes", "latent_dim"),
}
CLASSES = pytest.mark.parametrize("cls", list(NON_DEFAULTS), ids=lambda c: c.__name__)


def parameters(cls, kind):
    return [
        p.name for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is kind and p.name != "self"
    ]


@CLASSES
def test_only_the_first_few_arguments_are_positional(cls):
    assert tuple(parameters(cls, inspect.Parameter.POSITIONAL_OR_KEYWORD)) == POSITIONAL[cls]
    assert set(parameters(cls, inspect.Parameter.KEYWORD_ONLY)) == (
        set(NON_DEFAULTS[cls]) | PASS_THROUGH.get(cls, set())
    ), "a new keyword-only argument: add a non-default value for it in NON_DEFAULTS"
    # the dtype-policy wrapper keeps both views Keras reads of __init__ equal
    spec = inspect.getfullargspec(cls.__init__)
    assert tuple(spec.args) == ("self", *POSITIONAL[cls])
    assert spec.kwonlyargs == parameters(cls, inspect.Parameter.KEYWORD_ONLY)


@CLASSES
def test_positional_use_past_the_first_few_is_a_type_error(cls):
    positional = [(28, 28, 1), 10, 8] if cls.conditional else [(28, 28, 1), 8]
    first_keyword = parameters(cls, inspect.Parameter.KEYWORD_ONLY)[0]
    with pytest.raises(TypeError, match="positional argument"):
        cls(*positional, NON_DEFAULTS[cls][first_keyword])
    model = cls(*positional, base_filters=8)  # the positional ones land where they belong
    assert model.image_shape == (28, 28, 1) and model.latent_dim == 8
    assert model.num_classes == (10 if cls.conditional else 0)


@CLASSES
def test_every_keyword_reaches_the_model_and_its_config(cls):
    kwargs = NON_DEFAULTS[cls]
    for name, value in kwargs.items():  # really non-default, or the check below proves nothing
        default = inspect.signature(cls.__init__).parameters[name].default
        assert value != default, (cls.__name__, name)
    positional = {"image_shape": (16, 16, 1), "latent_dim": 6}
    if cls.conditional:
        positional["num_classes"] = 3
    model = cls(**positional, **kwargs)
    config = model.get_config()
    for name, value in {**kwargs, **positional}.items():
        echoed = config[name]
        assert (tuple(echoed) if name == "image_shape" else echoed) == value, name
        assert (tuple(getattr(model, name)) if name == "image_shape" else getattr(model, name)) == (
            value
        ), name
    clone = cls.from_config(config)
    assert clone.get_config() == config


def test_base_takes_its_arguments_by_keyword():
    """What every family (the diffusion ones included) forwards to, by keyword."""
    model = zoo.base.GenerativeModel(image_shape=(8, 8, 1), latent_dim=2, num_classes=0, seed=3)
    assert (model.image_shape, model.latent_dim, model.num_classes, model.seed) == (
        (8, 8, 1), 2, 0, 3
    )
