"""genzoo: image generators (GAN, CGAN, VAE, ...) trained with Keras `fit`, exported with `exporters`.

`import zoo` registers every family with Keras, so `keras.models.load_model("run/model.keras")`
works after it, without importing TensorFlow itself: where Keras is already imported the
families register now, otherwise right after Keras is first imported. So `zoo sample` and
`zoo serve` on an artifact, which never import Keras, never pay for TensorFlow either.

Layers: the model code (`base`, `networks`, `losses`, `data`, the families, `evaluate`, `plots`,
`callbacks`, `distribute`, `registry`) imports only the TF-free tier of `exporters`; only the
composition layer (`cli`, `train`) calls the converters, through `exporters.export`.
"""

import importlib
import sys

__version__ = "0.1.0"

# public name -> module that defines it; any other zoo.X submodule is loaded on first use too.
_EXPORTS = {
    "build": "zoo.registry",
    "list_models": "zoo.registry",
    "GenerativeModel": "zoo.base",
    "GAN": "zoo.gan",
    "CGAN": "zoo.gan",
    "VAE": "zoo.vae",
}
__all__ = sorted([*_EXPORTS, "callbacks", "data", "distribute", "losses", "networks", "train"])


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


def _register_families() -> None:
    from zoo import registry

    registry.register_all()


def _register_after(exec_module, module) -> None:
    exec_module(module)
    _register_families()


if "keras" in sys.modules:
    _register_families()
else:
    from zoo.import_hooks import around_first_import

    around_first_import("keras", _register_after)
