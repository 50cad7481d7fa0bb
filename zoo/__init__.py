"""genzoo: image generators (GAN, CGAN, VAE, ...) trained with Keras `fit`, exported with `exporters`.

`import zoo` registers every family with Keras, so `keras.models.load_model("run/model.keras")`
works right after it. On a machine without TensorFlow (serving exported artifacts only) the
package still imports, and the TF-free commands (`zoo sample`, `zoo serve` on .onnx/.tflite) run.
"""

import importlib
import importlib.util

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


if importlib.util.find_spec("tensorflow") is not None:
    from zoo import registry as _registry

    _registry.list_models()  # imports and registers every family
