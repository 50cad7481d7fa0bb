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
import importlib.abc
import importlib.util
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


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Registers the families once `keras` has been imported (by anyone, at any time)."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            _register_families()

        spec.loader.exec_module = exec_and_register
        return spec


if "keras" in sys.modules:
    _register_families()
elif importlib.util.find_spec("keras") is not None:
    sys.meta_path.insert(0, _RegisterAfterKeras())
