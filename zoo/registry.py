"""The one registry of model families: `zoo.build(name, **kwargs)` and `zoo.list_models()`."""

from __future__ import annotations

import importlib

MODELS: dict[str, type] = {}
# Modules whose classes register themselves on import; imported on first registry use.
FAMILY_MODULES = (
    "zoo.gan", "zoo.vae", "zoo.wgan_gp", "zoo.cvae", "zoo.diffusion.model", "zoo.stylegan",
)


def _load_families() -> None:
    for module in FAMILY_MODULES:
        importlib.import_module(module)


def register_all() -> None:
    """Import every family so each is registered with Keras (for `keras.models.load_model`).

    `import zoo` calls this once Keras is imported. When that Keras import came from inside a
    family module's own import (`from zoo import gan` as the first thing), a family that needs
    the half-imported module cannot load yet: it is left to `_load_families`, which every
    registry call runs again.
    """
    import sys

    inside_family_import = any(module in sys.modules for module in FAMILY_MODULES)
    for module in FAMILY_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            if not inside_family_import:
                raise


def register(name: str):
    """Class decorator: make a family buildable by `name` (also its `family` attribute)."""

    def decorate(cls):
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered to {MODELS[name].__name__}")
        cls.family = name
        MODELS[name] = cls
        return cls

    return decorate


def get_model_class(name: str) -> type:
    _load_families()
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}") from None


def build(name: str, **kwargs):
    """Build a registered family. `num_classes=0` is accepted (and dropped) by unconditional ones."""
    cls = get_model_class(name)
    if not cls.conditional:
        num_classes = kwargs.pop("num_classes", 0)
        if num_classes:
            conditional = [n for n, c in MODELS.items() if c.conditional]
            raise ValueError(
                f"{name} is unconditional and takes no num_classes (got {num_classes!r}); "
                f"conditional models: {', '.join(conditional)}"
            )
    return cls(**kwargs)


def list_models() -> list[str]:
    _load_families()
    return sorted(MODELS)
