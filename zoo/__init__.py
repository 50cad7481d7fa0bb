"""genzoo: image generators (GAN, CGAN, VAE) trained with Keras `fit`, exported with `exporters`.

Attributes load on first use, so `zoo --help` and TF-free tools start without TensorFlow.
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (None: a submodule; any other zoo.X submodule works too)
_EXPORTS = {
    "build": "zoo.registry",
    "list_models": "zoo.registry",
    "GenerativeModel": "zoo.base",
    "GAN": "zoo.gan",
    "CGAN": "zoo.gan",
    "VAE": "zoo.vae",
    "callbacks": None,
    "data": None,
    "distribute": None,
    "losses": None,
    "networks": None,
    "train": None,
    "evaluate": None,
    "plots": None,
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module_name = _EXPORTS.get(name)
    if module_name is not None:
        return getattr(importlib.import_module(module_name), name)
    try:
        return importlib.import_module(f"zoo.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"zoo.{name}":
            raise
        raise AttributeError(f"module 'zoo' has no attribute {name!r}") from None
