"""CVAE: the VAE with encoder and decoder conditioned on the class label (Sohn et al. 2015)."""

from __future__ import annotations

import keras

from zoo import networks
from zoo.registry import register
from zoo.vae import VAE


@register("cvae")
@keras.saving.register_keras_serializable(package="zoo")
class CVAE(VAE):
    """Conditional VAE: q(z | x, y) and p(x | z, y), trained on the VAE's ELBO.

    The label enters the encoder as an extra image channel (an embedding mapped to a plane) and
    the decoder joined with z (an embedding). `generator` is [z, label] -> image, so
    `sample(n, labels=...)` needs one label per sample, as for the CGAN; `encode`, `decode` and
    `reconstruct` take `labels=` too.
    """

    conditional = True

    def __init__(
        self,
        image_shape=(28, 28, 1),
        num_classes: int = 10,
        latent_dim: int = 16,
        *,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        gaussian_scale: float = 0.1,
        base_filters: int = 32,
        embedding_dim: int = 50,
        decoder_activation: str = "leaky_relu",
        seed=None,
        **kwargs,
    ):
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
        self.embedding_dim = int(embedding_dim)
        super().__init__(
            image_shape=image_shape, latent_dim=latent_dim, likelihood=likelihood, beta=beta,
            gaussian_scale=gaussian_scale, base_filters=base_filters,
            decoder_activation=decoder_activation, seed=seed,
            num_classes=num_classes, **kwargs,
        )

    def build_networks(self):
        return (
            networks.conditional_conv_encoder(
                self.image_shape, self.latent_dim, self.num_classes, self.base_filters,
                self.embedding_dim,
            ),
            networks.conditional_conv_decoder(
                self.latent_dim, self.image_shape, self.num_classes, self.base_filters,
                self.embedding_dim, activation=self.decoder_activation,
            ),
        )

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, embedding_dim=self.embedding_dim)
        return config
