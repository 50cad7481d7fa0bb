"""genzoo: image generators (GAN, CGAN, VAE) trained with Keras `fit`, exported with `exporters`."""

from zoo import callbacks, data, distribute, losses, networks
from zoo.base import GenerativeModel
from zoo.gan import CGAN, GAN
from zoo.registry import build, list_models
from zoo.vae import VAE

__all__ = [
    "CGAN", "GAN", "VAE", "GenerativeModel", "build", "callbacks", "data", "distribute",
    "list_models", "losses", "networks",
]
__version__ = "0.1.0"
