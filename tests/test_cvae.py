"""CVAE: the VAE's ELBO with encoder and decoder conditioned on the label. The shared checks
(config, fit, save/load, 1-vs-2-replica parity, bad labels) run in test_models.py."""

import numpy as np
import pytest

import zoo
from zoo.cvae import CVAE
from zoo.vae import VAE


@pytest.fixture(scope="module")
def model():
    return zoo.build("cvae", num_classes=10, latent_dim=4, base_filters=8, embedding_dim=8, seed=0)


def test_cvae_is_the_vae_with_conditional_networks(model):
    assert isinstance(model, VAE) and CVAE.elbo_terms is VAE.elbo_terms
    assert CVAE.train_step is VAE.train_step
    assert [t.name for t in model.encoder.inputs] == ["image", "label"]
    assert [t.name for t in model.decoder.inputs] == ["z", "label"]
    assert [t.name for t in model.generator.inputs] == ["z", "label"]


def test_the_label_steers_the_decoder(model):
    z = np.zeros((10, model.latent_dim), np.float32)
    images = model.generate(z, np.arange(10, dtype=np.int32))
    assert images.shape == (10, 28, 28, 1)
    assert np.abs(images[0] - images[1]).max() > 1e-4


def test_encode_decode_reconstruct_take_labels(model):
    images, labels = zoo.data.load_arrays("mnist5k", "train")
    images, labels = images[:6], labels[:6]
    z_mean, z_log_var = model.encode(images, labels=labels)
    assert z_mean.shape == z_log_var.shape == (6, model.latent_dim)
    assert model.decode(z_mean, labels=labels).shape == images.shape
    assert model.reconstruct(images, labels=labels).shape == images.shape
    with pytest.raises(ValueError, match="conditional"):
        model.encode(images)
    with pytest.raises(ValueError, match="expected 6 labels"):
        model.reconstruct(images, labels=labels[:2])


def test_loss_is_the_elbo(model):
    model.compile()
    images, labels = zoo.data.load_arrays("mnist5k", "train")
    dataset = zoo.data.from_arrays(images[:64], labels[:64], batch_size=32)
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        results["loss"], results["reconstruction_loss"] + model.beta * results["kl_loss"],
        rtol=1e-5,
    )


def test_registry_and_errors():
    assert "cvae" in zoo.list_models() and zoo.registry.get_model_class("cvae").conditional
    with pytest.raises(ValueError, match="cvae"):
        zoo.build("vae", num_classes=10)  # the error lists the conditional models
    with pytest.raises(ValueError, match="num_classes"):
        zoo.build("cvae", num_classes=1)
    with pytest.raises(ValueError, match="embedding_dim"):
        zoo.build("cvae", embedding_dim=0)


@pytest.mark.parametrize("cls,extra", [(VAE, {}), (CVAE, {"num_classes": 3})])
def test_decoder_activation_option_and_older_configs(cls, extra):
    """New decoders use LeakyReLU (int8-friendly in LiteRT); a config saved before the option
    existed rebuilds the ReLU decoder it was trained with, so its weights mean the same."""
    model = cls(image_shape=(8, 8, 1), latent_dim=4, base_filters=4, **extra)
    def layer_types(network):
        found = set()
        for layer in network.layers:
            found |= {type(layer).__name__} | (layer_types(layer) if hasattr(layer, "layers") else set())
        return found

    layer_types_new = layer_types(model.decoder)
    assert model.get_config()["decoder_activation"] == "leaky_relu" and "LeakyReLU" in layer_types_new
    old = {k: v for k, v in model.get_config().items() if k != "decoder_activation"}
    rebuilt = cls.from_config(old)
    assert rebuilt.decoder_activation == "relu"
    assert "LeakyReLU" not in layer_types(rebuilt.decoder)
    with pytest.raises(ValueError, match="decoder_activation='gelu' is not one of"):
        cls(image_shape=(8, 8, 1), latent_dim=4, decoder_activation="gelu", **extra)
